#!/usr/bin/env bash
# Builds every example framework in examples-wasm/ into a wasm32-wasip2 component:
#   examples-wasm/target/wasm32-wasip2/release/<name>.wasm
#
# Installs the guest toolchain first (scripts/install-guest-toolchain.sh, idempotent), then builds
# with whichever route it chose:
#   rustup: the rustup target, a plain `cargo build --release --target wasm32-wasip2`;
#   debian: Debian's rustc 1.96 with -Zbuild-std, linked by wasm-component-ld (see
#           shared/wasm-toolchain.md for why each flag is there).
# Finally validates each component with wasm-tools and checks the framework ones export the
# wasmos:framework world. Cargo is incremental, so a second run with no changes takes seconds.
# Then builds the frameworks written in C (examples-wasm-c/build.sh, about a second) into
#   examples-wasm-c/target/<name>.wasm
# and those written in Python (examples-python/build.sh: componentize-py, about 15 s each when
# changed, nothing when not) into
#   examples-python/target/<name>.wasm
# and those written in JavaScript (examples-js/build.sh, about 20 s each, skipped when nothing
# they are built from changed) into
#   examples-js/target/<name>.wasm
#
# Usage: scripts/build-examples.sh            (prints the built paths, one per line, on stdout)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
examples="$here/examples-wasm"
out="$examples/target/wasm32-wasip2/release"

log() { printf '[build-examples] %s\n' "$*" >&2; }

bash "$here/scripts/install-guest-toolchain.sh"
# shellcheck source=/dev/null
. "$here/target/guest-toolchain.env"

# Crates in examples-wasm/Cargo.toml's `members`, and which of them must be wasmos frameworks.
members=(pi logreg service hostile benchguest wrongworld)
frameworks=(pi logreg service hostile benchguest)

started=$(date +%s)
cd "$examples"
case "${WASMOS_GUEST_ROUTE:-}" in
  rustup)
    log "building with rustup's wasm32-wasip2 target"
    cargo build --release --target wasm32-wasip2 >&2
    ;;
  debian)
    log "building with Debian's rustc and -Zbuild-std"
    # cargo install puts it in $CARGO_HOME/bin, normally ~/.cargo/bin.
    linker=$(command -v wasm-component-ld || echo "${CARGO_HOME:-$HOME/.cargo}/bin/wasm-component-ld")
    # /usr/bin first: Debian's cargo/rustc 1.96 (rustup's, first on PATH, has no wasm std here).
    # RUSTC_BOOTSTRAP: -Zbuild-std is unstable. link-self-contained=no and -L: link against
    # Debian's wasi-libc instead of a self-contained copy the Debian toolchain does not ship.
    env PATH="/usr/bin:$PATH" \
      RUSTC_BOOTSTRAP=1 \
      CARGO_TARGET_WASM32_WASIP2_LINKER="$linker" \
      RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi" \
      /usr/bin/cargo build --release -Zbuild-std=std,panic_abort --target wasm32-wasip2 >&2
    ;;
  *)
    log "unknown WASMOS_GUEST_ROUTE '${WASMOS_GUEST_ROUTE:-}' in target/guest-toolchain.env"
    exit 1
    ;;
esac
log "cargo finished in $(($(date +%s) - started)) s"

wasm_tools=$(command -v wasm-tools || echo "${CARGO_HOME:-$HOME/.cargo}/bin/wasm-tools")
for name in "${members[@]}"; do
  wasm="$out/$name.wasm"
  if [ ! -f "$wasm" ]; then
    log "missing $wasm: is $name a cdylib member of examples-wasm/Cargo.toml?"
    exit 1
  fi
  "$wasm_tools" validate --features component-model "$wasm" || {
    log "$wasm is not a valid component"
    exit 1
  }
done
for name in "${frameworks[@]}"; do
  wit=$("$wasm_tools" component wit "$out/$name.wasm")
  for want in "export wasmos:framework/scheduler@" "export wasmos:framework/executor@"; do
    if ! grep -qF "$want" <<<"$wit"; then
      log "$name.wasm lacks '$want...' (expected the wasmos:framework world)"
      exit 1
    fi
  done
done

for name in "${members[@]}"; do
  log "$(printf '%-11s %8d bytes' "$name" "$(stat -c %s "$out/$name.wasm")")"
  echo "$out/$name.wasm"
done

# Frameworks in C: validated and checked for the wasmos:framework world by their own script.
bash "$here/examples-wasm-c/build.sh"

# Frameworks in Python: built, validated and checked for the world by their own script
# (WASMOS_SKIP_PYTHON=1 skips them, as it skips their toolchain).
if [ "${WASMOS_SKIP_PYTHON:-}" != 1 ]; then
  bash "$here/examples-python/build.sh"
fi
# Frameworks in JavaScript: bundled and componentized by guest-sdk-js, checked the same way.
bash "$here/examples-js/build.sh"
