#!/usr/bin/env bash
# Builds {{name}} into one WebAssembly component (world wasmos:framework) and prints the
# component's path as its last line:
#   wasmos dev --run "$(./build.sh | tail -1)"
#
# Needs componentize-py 0.25.1 (it carries CPython: the component is about 18 MB, and a build
# takes about 15 s). Found as $WASMOS_COMPONENTIZE_PY, else .venv/bin/componentize-py in this
# project, else componentize-py on PATH. Install it with
#   python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1
# wasm-tools, when installed, checks the result.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/target
name={{crate}}

log() { printf '[build] %s\n' "$*" >&2; }
fail() {
  log "$*"
  exit 1
}

cpy=${WASMOS_COMPONENTIZE_PY:-}
if [ -z "$cpy" ]; then
  if [ -x "$here/.venv/bin/componentize-py" ]; then
    cpy=$here/.venv/bin/componentize-py
  else
    cpy=$(command -v componentize-py || true)
  fi
fi
[ -n "$cpy" ] && [ -x "$cpy" ] \
  || fail "componentize-py not found: python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1 (or set WASMOS_COMPONENTIZE_PY)"

mkdir -p "$out"
wasm=$out/$name.wasm
rm -f "$wasm" "$wasm.tmp"
# src/ (app.py and the SDK package wasmos/) is the module search path; componentize-py
# bundles what is there, so nothing else (no .venv) may live in it.
"$cpy" -d "$here/wit" -w framework componentize app -p "$here/src" -o "$wasm.tmp" >&2 \
  || fail "componentize-py failed"
mv "$wasm.tmp" "$wasm"

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
