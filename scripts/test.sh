#!/usr/bin/env bash
# The project's test command: installs what the tests need (the Wasm guest toolchain and the
# Python client's venv, through build-examples.sh; a headless browser; `ip` for the partition
# test), builds the example components, then runs every test of the workspace. `.ci/run` calls
# exactly this.
#
# A test that cannot run on this machine (no root or cgroups, no `ip netns`) skips visibly: it
# appends a line to the skip log (`wasmos_test_skip`, test-skip/), and this script prints how
# many tests skipped and why at the end. With WASMOS_REQUIRE_ROOT=1 such a test fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build-examples.sh
# The JavaScript SDK's own tests (Node, against a fake host; under a second).
(cd guest-sdk-js && npm test --silent)
# Headless Chromium and chromedriver for the web UI's browser test (cli/tests/ui.rs).
./scripts/install-browser.sh
./scripts/install-iproute.sh

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
export WASMOS_SKIP_LOG="${WASMOS_SKIP_LOG:-$target_dir/wasmos-skipped.txt}"
mkdir -p "$(dirname "$WASMOS_SKIP_LOG")"
: >"$WASMOS_SKIP_LOG"
skip_summary() {
  # One line per skip, `binary::test: needs WHAT: WHY`; a retried test may log twice.
  local n
  n=$(sed 's/: needs .*//' "$WASMOS_SKIP_LOG" | sort -u | wc -l)
  if [ "$n" -eq 0 ]; then
    echo "wasmos: no test skipped for a missing precondition" >&2
  else
    echo "wasmos: $n tests (or parts) skipped for a missing precondition" \
      "(WASMOS_REQUIRE_ROOT=1 fails them instead):" >&2
    sort -u "$WASMOS_SKIP_LOG" | sed 's/^/  /' >&2
  fi
}
trap skip_summary EXIT

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast "$@"
fi
