# Sourced by the measurement scripts (run from the checkout's root): sets SKD to the skd
# binary to measure: $SKD when given, else this checkout's, built first (with the build
# dependencies installed).
if [ -z "${SKD:-}" ]; then
  bash scripts/install-build-deps.sh
  cargo build --locked -q -p skd-cli
  SKD="${CARGO_TARGET_DIR:-target}/debug/skd"
fi
