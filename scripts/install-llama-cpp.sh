#!/usr/bin/env bash
# Builds llama-cpp-python (the llama.cpp reference for `skd bench student`) into a virtual
# environment under the cache folder. PyPI ships it as source, so this compiles llama.cpp
# for this CPU: several minutes on 2 cores. Prints the venv's python path.
set -euo pipefail
venv="${SKD_LLAMA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/skd/llama-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  python3 -m venv "$venv"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$venv/bin/pip" install --quiet "llama-cpp-python==0.3.36" >&2
fi
echo "$venv/bin/python"
