#!/usr/bin/env bash
# Builds {{name}} into one WebAssembly component (wasm32-wasip2, world wasmos:framework) and
# prints the component's path as its last line:
#   wasmos dev --run "$(./build.sh | tail -1)"
#
# Needs a Rust toolchain that targets wasm32-wasip2, one of:
#   rustup: `rustup target add wasm32-wasip2` (then a plain `cargo build`);
#   debian: Debian's rustc-web, cargo-web, rust-web-src, wasi-libc and lld-14, with
#           wasm-component-ld from `cargo install --locked wasm-component-ld` (the std is built
#           with -Zbuild-std).
# The first that is installed is used; WASMOS_GUEST_ROUTE=rustup|debian chooses. wasm-tools
# (`cargo install --locked wasm-tools`), when installed, checks the result. CARGO_TARGET_DIR
# and the rest of cargo's environment are honoured.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
crate={{crate}}

log() { printf '[build] %s\n' "$*" >&2; }
fail() {
  log "$*"
  exit 1
}

have_rustup_target() {
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2
}
have_debian_route() {
  [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] \
    && [ -d "$(/usr/bin/rustc --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library" ]
}

route=${WASMOS_GUEST_ROUTE:-}
if [ -z "$route" ]; then
  if have_rustup_target; then
    route=rustup
  elif have_debian_route; then
    route=debian
  else
    fail "no Rust toolchain for wasm32-wasip2: run 'rustup target add wasm32-wasip2' (or install the Debian route, see README.md)"
  fi
fi

case "$route" in
  rustup)
    have_rustup_target || fail "rustup has no wasm32-wasip2 target: run 'rustup target add wasm32-wasip2'"
    cargo=cargo
    cargo build --release --target wasm32-wasip2 >&2
    ;;
  debian)
    have_debian_route || fail "Debian's Rust is missing: apt-get install rustc-web cargo-web rust-web-src wasi-libc lld-14"
    linker=$(command -v wasm-component-ld || echo "${CARGO_HOME:-$HOME/.cargo}/bin/wasm-component-ld")
    [ -x "$linker" ] || fail "wasm-component-ld not found: cargo install --locked wasm-component-ld"
    command -v wasm-ld >/dev/null 2>&1 \
      || fail "wasm-ld not on PATH (wasm-component-ld runs it): ln -s /usr/bin/wasm-ld-14 /usr/local/bin/wasm-ld"
    cargo=/usr/bin/cargo
    # Debian's rustc and cargo first on PATH; -Zbuild-std is unstable, hence RUSTC_BOOTSTRAP;
    # link against Debian's wasi-libc rather than a self-contained copy it does not ship.
    env PATH="/usr/bin:$PATH" \
      RUSTC_BOOTSTRAP=1 \
      CARGO_TARGET_WASM32_WASIP2_LINKER="$linker" \
      RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi" \
      /usr/bin/cargo build --release -Zbuild-std=std,panic_abort --target wasm32-wasip2 >&2
    ;;
  *)
    fail "unknown WASMOS_GUEST_ROUTE '$route': use rustup or debian"
    ;;
esac

# Where cargo put it (CARGO_TARGET_DIR, a .cargo/config.toml, or ./target).
target_dir=$("$cargo" metadata --format-version 1 --no-deps --offline 2>/dev/null \
  | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4 || true)
[ -n "$target_dir" ] || target_dir=$here/target
wasm=$target_dir/wasm32-wasip2/release/$crate.wasm
[ -f "$wasm" ] || fail "cargo finished but $wasm is missing"

wasm_tools=$(command -v wasm-tools || echo "${CARGO_HOME:-$HOME/.cargo}/bin/wasm-tools")
if [ -x "$wasm_tools" ]; then
  "$wasm_tools" validate --features component-model "$wasm" || fail "$wasm is not a valid component"
  wit=$("$wasm_tools" component wit "$wasm")
  for want in "export wasmos:framework/scheduler@" "export wasmos:framework/executor@"; do
    grep -qF "$want" <<<"$wit" || fail "$wasm lacks '$want...' (expected the wasmos:framework world)"
  done
fi
log "$(printf '%s: %d bytes' "$crate.wasm" "$(stat -c %s "$wasm" 2>/dev/null || wc -c <"$wasm")")"
echo "$wasm"
