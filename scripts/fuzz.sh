#!/usr/bin/env bash
# Runs one libFuzzer target for a while: scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]
# (targets: ls fuzz/fuzz_targets). Installs cargo-fuzz and nightly first if needed
# (scripts/install-fuzz.sh). It starts from the committed seeds (fuzz/corpus/TARGET) and keeps
# the inputs it finds in target/fuzz/corpus/TARGET (copy to fuzz/corpus only the few that
# matter); a crash lands in fuzz/artifacts/TARGET/ and stops the run.
# Without a sanitizer: the targets are safe Rust, and ASan would halve the executions per
# second for no gain (FUZZ_SANITIZER=address to use it anyway).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer flags...]; targets: $(ls fuzz/fuzz_targets | sed 's/\.rs$//' | tr '\n' ' ')" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2

./scripts/install-fuzz.sh >/dev/null
# The same target dir as the main workspace's, in its own subdirectory.
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")/fuzz
work_corpus=$target_dir/corpus/$target
mkdir -p "$work_corpus"
cd fuzz
exec cargo +nightly fuzz run "$target" \
    --sanitizer "${FUZZ_SANITIZER:-none}" \
    --target-dir "$target_dir" \
    "$work_corpus" "corpus/$target" \
    -- -max_total_time="$seconds" -print_final_stats=1 "$@"
