#!/usr/bin/env bash
# The main job: build the example frameworks and the wasmos command, then run a local cluster
# (a master and two agents in one process, `wasmos dev`) that runs the pi framework to its result.
# Arguments are passed to pi: [TASKS] [SAMPLES-PER-TASK].
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-examples.sh >/dev/null
cargo build --release -p wasmos
exec target/release/wasmos dev --run examples-wasm/target/wasm32-wasip2/release/pi.wasm -- "$@"
