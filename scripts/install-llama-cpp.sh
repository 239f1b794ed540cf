#!/usr/bin/env bash
# Builds llama-cpp-python (the llama.cpp reference for `skd bench student`) into a virtual
# environment under the cache folder. PyPI ships it as source, so this compiles llama.cpp
# for this CPU: several minutes on 2 cores. Prints the venv's python path.
#
# Built like skd's own llama.cpp: native kernels, without the AMX matmul that crashes on
# our VMs (see .cargo/config.toml).
set -euo pipefail
venv="${SKD_LLAMA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/skd/llama-venv}"
flags="-U__AMX_TILE__ -U__AMX_INT8__ -U__AMX_BF16__"
marker="$venv/.skd-build-flags"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null \
   || [ "$(cat "$marker" 2>/dev/null)" != "$flags" ]; then
  python3 -m venv "$venv"
  CFLAGS="$flags" CXXFLAGS="$flags" CMAKE_ARGS="-DGGML_NATIVE=ON" \
    "$venv/bin/pip" install --quiet --force-reinstall --no-cache-dir "llama-cpp-python==0.3.36" >&2
  echo "$flags" > "$marker"
fi
echo "$venv/bin/python"
