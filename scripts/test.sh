#!/usr/bin/env bash
# The project's test command (README, .ci/run): formatting, lints, then every test, with
# real inference on SmolLM2-135M and real embeddings from all-MiniLM-L6-v2 (pulled into the
# model cache first; a no-op once there).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-build-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Each engine alone still builds and lints clean (the quick start, scripts/demo.sh, builds
# llama.cpp alone with no embedding model).
cargo clippy --locked -p skd-cli --no-default-features --features llama-cpp -- -D warnings
cargo clippy --locked -p skd-cli --no-default-features --features mistralrs -- -D warnings
cargo run --locked -q -p skd-cli -- models pull smollm2-135m all-minilm-l6-v2
cargo test --workspace --locked
