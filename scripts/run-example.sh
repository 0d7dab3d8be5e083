#!/usr/bin/env bash
# The main job, for now: build the example frameworks and run a pi task in its executor.
# (Becomes `wasmos dev --run pi.wasm` once the master and agents land.)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-examples.sh
cargo build --release -p wasmos
exec target/release/wasmos task run examples-wasm/target/wasm32-wasip2/release/pi.wasm \
  --executor-id pi --payload "${1:-5000000} ${2:-42}"
