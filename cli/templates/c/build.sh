#!/usr/bin/env bash
# Builds {{name}} into one WebAssembly component (world wasmos:framework) and prints the
# component's path as its last line:
#   wasmos dev --run "$(./build.sh | tail -1)"
#
# Needs clang with the wasm32-wasi target and wasi-libc (Debian: clang-14,
# libclang-rt-14-dev-wasm32, wasi-libc, lld-14) and wasm-component-ld (shipped with rustup's
# wasm32-wasip2 target, else `cargo install --locked wasm-component-ld`). wasm-tools, when
# installed, checks the result.
#
# How: clang compiles the sources against wasi-libc for wasm32-wasi as a reactor (no main); its
# linker is wasm-component-ld, which runs wasm-ld and then turns the core module into a
# component, reading the world from bindings/framework_component_type.o and adapting the
# WASI preview-1 imports to WASI 0.2.
#
# Environment: WASI_CC (default clang-14, else clang), WASM_LD (default wasm-ld-14, else
# wasm-ld), WASM_COMPONENT_LD (default: on PATH, in ~/.cargo/bin, or in the Rust sysroot).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/target
name={{crate}}

log() { printf '[build] %s\n' "$*" >&2; }
fail() {
  log "$*"
  exit 1
}

cc_wasi=${WASI_CC:-$(command -v clang-14 || command -v clang || true)}
[ -n "$cc_wasi" ] && command -v "$cc_wasi" >/dev/null 2>&1 \
  || fail "no clang: apt-get install clang-14 libclang-rt-14-dev-wasm32 wasi-libc lld-14 (or set WASI_CC)"

wasm_ld=${WASM_LD:-$(command -v wasm-ld-14 || command -v wasm-ld || true)}
[ -n "$wasm_ld" ] || fail "wasm-ld not found: apt-get install lld-14 (or set WASM_LD)"

linker=${WASM_COMPONENT_LD:-}
if [ -z "$linker" ]; then
  for candidate in "$(command -v wasm-component-ld || true)" \
    "${CARGO_HOME:-$HOME/.cargo}/bin/wasm-component-ld" \
    "$(rustc --print sysroot 2>/dev/null || true)/lib/rustlib/$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')/bin/wasm-component-ld"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      linker=$candidate
      break
    fi
  done
fi
[ -n "$linker" ] || fail "wasm-component-ld not found: cargo install --locked wasm-component-ld (or set WASM_COMPONENT_LD)"

mkdir -p "$out"
wasm=$out/$name.wasm
"$cc_wasi" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra \
  -I"$here/bindings" \
  "$here"/src/*.c "$here/bindings/framework.c" "$here/bindings/framework_component_type.o" \
  -fuse-ld="$linker" -Wl,--wasm-ld-path="$wasm_ld" -Wl,--strip-debug \
  -o "$wasm" >&2

wasm_tools=$(command -v wasm-tools || echo "${CARGO_HOME:-$HOME/.cargo}/bin/wasm-tools")
if [ -x "$wasm_tools" ]; then
  "$wasm_tools" validate --features component-model "$wasm" || fail "$wasm is not a valid component"
  wit=$("$wasm_tools" component wit "$wasm")
  for want in "export wasmos:framework/scheduler@" "export wasmos:framework/executor@"; do
    grep -qF "$want" <<<"$wit" || fail "$wasm lacks '$want...' (expected the wasmos:framework world)"
  done
fi
log "$(printf '%s: %d bytes' "$name.wasm" "$(wc -c <"$wasm")")"
echo "$wasm"
