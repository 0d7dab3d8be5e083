#!/usr/bin/env bash
# Builds the Python example frameworks into wasmos:framework components:
#   examples-python/target/<name>.wasm        (printed on stdout, one per line)
# and the Python bindings of wit/framework.wit that the SDK's unit tests import:
#   examples-python/target/bindings/          (`wit_world`, `componentize_py_types`)
#
# Each example is a folder with an `app.py` that binds `Scheduler` and `Executor` (see
# guest-sdk-python/). componentize-py (pinned; scripts/install-guest-toolchain.sh puts it in
# target/python-guest/venv and names it in target/python-guest/env) turns the app, the SDK
# package `wasmos` and CPython into one component of about 18 MB in about 15 s; an example whose
# sources, SDK and WIT are older than its component is not built again.
#
# Environment: WASMOS_COMPONENTIZE_PY (default: the one in target/python-guest/env).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/target"

log() { printf '[build-examples-python] %s\n' "$*" >&2; }
fail() {
  log "$*"
  exit 1
}

if [ -z "${WASMOS_COMPONENTIZE_PY:-}" ] && [ -f "$root/target/python-guest/env" ]; then
  # shellcheck source=/dev/null
  . "$root/target/python-guest/env"
fi
cpy=${WASMOS_COMPONENTIZE_PY:-}
[ -n "$cpy" ] && [ -x "$cpy" ] \
  || fail "componentize-py not found: run scripts/install-guest-toolchain.sh (or set WASMOS_COMPONENTIZE_PY)"
wasm_tools=$(command -v wasm-tools || echo "${CARGO_HOME:-$HOME/.cargo}/bin/wasm-tools")

mkdir -p "$out"
# Newer than this stamp means something the components are built from changed.
inputs=("$root/wit" "$root/guest-sdk-python/wasmos")

if [ ! -d "$out/bindings" ] || [ -n "$(find "${inputs[@]}" -newer "$out/bindings" -print -quit)" ]; then
  rm -rf "$out/bindings"
  "$cpy" -d "$root/wit" -w framework bindings "$out/bindings" >&2
  touch "$out/bindings"
fi

for dir in "$here"/*/; do
  [ -f "$dir/app.py" ] || continue
  name=$(basename "$dir")
  wasm="$out/$name.wasm"
  if [ -f "$wasm" ] && [ -z "$(find "${inputs[@]}" "$dir" -newer "$wasm" -name '*' -print -quit)" ]; then
    log "$name: up to date"
  else
    started=$(date +%s)
    # The SDK and the example's own folder are the module search path; -o writes atomically
    # enough for us (a failed build leaves no .wasm: it is removed first).
    rm -f "$wasm"
    "$cpy" -d "$root/wit" -w framework componentize app \
      -p "$root/guest-sdk-python" -p "$dir" -o "$wasm.tmp" >&2 \
      || fail "componentize-py failed for $name"
    mv "$wasm.tmp" "$wasm"
    log "$name: built in $(($(date +%s) - started)) s"
  fi
  "$wasm_tools" validate --features component-model "$wasm" || fail "$wasm is not a valid component"
  wit=$("$wasm_tools" component wit "$wasm")
  for want in "export wasmos:framework/scheduler@" "export wasmos:framework/executor@"; do
    grep -qF "$want" <<<"$wit" || fail "$name.wasm lacks '$want...' (expected the wasmos:framework world)"
  done
  log "$(printf '%-11s %8d bytes' "$name" "$(stat -c %s "$wasm")")"
  echo "$wasm"
done
