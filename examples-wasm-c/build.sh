#!/usr/bin/env bash
# Builds the C example frameworks into wasmos:framework components:
#   examples-wasm-c/target/<name>.wasm        (printed on stdout, one per line)
#
# Needs clang with the wasm32-wasi target and wasi-libc (Debian: clang-14,
# libclang-rt-14-dev-wasm32, wasi-libc, lld-14) and wasm-component-ld, all of which
# scripts/install-guest-toolchain.sh installs. scripts/build-examples.sh runs this script.
#
# How: clang compiles the C sources against wasi-libc for wasm32-wasi (WASI preview 1) as a
# reactor (no main); clang's linker is wasm-component-ld, which runs wasm-ld and then turns the
# core module into a component: it reads the world from the component-type section that
# bindings/framework_component_type.o carries, and adapts the preview-1 imports to WASI 0.2.
#
# Environment: WASI_CC (default clang-14), WASM_LD (default wasm-ld-14, else wasm-ld),
# WASM_COMPONENT_LD (default: on PATH, in ~/.cargo/bin, or in the Rust sysroot).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/target"

log() { printf '[build-examples-c] %s\n' "$*" >&2; }
fail() {
  log "$*"
  exit 1
}

# The bindings are generated from wit/framework.wit and committed; refuse stale ones.
want_sha=$(cat "$here/bindings/WIT_SHA256")
have_sha=$(sha256sum "$root/wit/framework.wit" | cut -d' ' -f1)
[ "$want_sha" = "$have_sha" ] \
  || fail "wit/framework.wit changed since bindings/ was generated: run examples-wasm-c/regen-bindings.sh"

cc_wasi=${WASI_CC:-clang-14}
command -v "$cc_wasi" >/dev/null 2>&1 \
  || fail "$cc_wasi not found: run scripts/install-guest-toolchain.sh (or set WASI_CC)"

wasm_ld=${WASM_LD:-$(command -v wasm-ld-14 || command -v wasm-ld || true)}
[ -n "$wasm_ld" ] || fail "wasm-ld not found: install lld-14 (or set WASM_LD)"

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
[ -n "$linker" ] || fail "wasm-component-ld not found: run scripts/install-guest-toolchain.sh"

wasm_tools=$(command -v wasm-tools || echo "${CARGO_HOME:-$HOME/.cargo}/bin/wasm-tools")

mkdir -p "$out"

# Native checks first (a few seconds): the sieve, then the scheduler and executor through the
# generated glue with stubbed host imports, under AddressSanitizer/UBSan where cc has them.
if command -v cc >/dev/null 2>&1; then
  cc -O2 -Wall -Wextra -o "$out/sieve_test" "$here/primes/sieve.c" "$here/primes/sieve_test.c" -lm
  "$out/sieve_test" >&2 || fail "primes/sieve_test.c failed"
  sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
  if ! echo 'int main(void){return 0;}' \
    | cc "${sanitize[@]}" -x c - -o "$out/sanitize_probe" >/dev/null 2>&1; then
    log "cc has no AddressSanitizer: scheduler_test runs without it"
    sanitize=()
  fi
  # -w: the glue's Wasm import/export attributes mean nothing natively.
  cc -g -O1 -w "${sanitize[@]}" -I"$here/bindings" -I"$here/primes" \
    "$here/primes/scheduler_test.c" "$here/primes/primes.c" "$here/primes/sieve.c" \
    "$here/bindings/framework.c" -lm -o "$out/scheduler_test"
  "$out/scheduler_test" >&2 || fail "primes/scheduler_test.c failed"
else
  log "no native cc: skipping primes/sieve_test.c and primes/scheduler_test.c"
fi

build() {
  local name=$1
  shift
  "$cc_wasi" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra \
    -I"$here/bindings" "$@" \
    "$here/bindings/framework.c" "$here/bindings/framework_component_type.o" \
    -fuse-ld="$linker" -Wl,--wasm-ld-path="$wasm_ld" -Wl,--strip-debug \
    -o "$out/$name.wasm"
  "$wasm_tools" validate --features component-model "$out/$name.wasm" \
    || fail "$out/$name.wasm is not a valid component"
  local wit
  wit=$("$wasm_tools" component wit "$out/$name.wasm")
  for want in "export wasmos:framework/scheduler@" "export wasmos:framework/executor@"; do
    grep -qF "$want" <<<"$wit" || fail "$name.wasm lacks '$want...' (expected the wasmos:framework world)"
  done
  log "$(printf '%-11s %8d bytes (C)' "$name" "$(stat -c %s "$out/$name.wasm")")"
  echo "$out/$name.wasm"
}

build primes -I"$here/primes" "$here/primes/primes.c" "$here/primes/sieve.c"
