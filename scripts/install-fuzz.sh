#!/usr/bin/env bash
# Installs what `cargo +nightly fuzz run TARGET` needs (fuzz/README.md): a nightly toolchain
# (cargo-fuzz passes `-Zsanitizer=address` and coverage flags that only nightly accepts) and
# the cargo-fuzz subcommand. Idempotent: each step is skipped when already done.
set -euo pipefail

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    # Build it with the stable compiler, one job at a time on a shared machine if asked.
    cargo install cargo-fuzz --locked ${FUZZ_INSTALL_JOBS:+-j "$FUZZ_INSTALL_JOBS"}
fi
cargo fuzz --version
rustup run nightly rustc --version
