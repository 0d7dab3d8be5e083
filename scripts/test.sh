#!/usr/bin/env bash
# The project's test command: installs what the tests need (the Wasm guest toolchain, a headless
# browser), builds the example components, then runs every test of the workspace. `.ci/run`
# calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build-examples.sh
# The JavaScript SDK's own tests (Node, against a fake host; under a second).
(cd guest-sdk-js && npm test --silent)
# Headless Chromium and chromedriver for the web UI's browser test (cli/tests/ui.rs).
./scripts/install-browser.sh

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast "$@"
fi
