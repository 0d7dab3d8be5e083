#!/usr/bin/env bash
# Builds {{name}} into one WebAssembly component (world wasmos:framework) and prints the
# component's path as its last line:
#   wasmos dev --run "$(./build.sh | tail -1)"
#
# Needs Node.js 20 or later with npm. wasmos-js/bin/wasmos-js-build.mjs bundles src/app.js with
# the SDK (Rolldown) and componentizes it (componentize-js: the StarlingMonkey engine plus the
# code, about 12 MB; about 20 s). Its packages, pinned by wasmos-js/package-lock.json, go into
# wasmos-js/node_modules: the first build runs `npm ci` there (about 400 MB, from the npm
# registry), unless WASMOS_JS_NODE_MODULES names a node_modules installed from the same lock
# file, which is then linked instead. wasm-tools, when installed, checks the result.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sdk=$here/wasmos-js
out=$here/target
name={{crate}}

log() { printf '[build] %s\n' "$*" >&2; }
fail() {
  log "$*"
  exit 1
}

command -v node >/dev/null 2>&1 || fail "node not found: install Node.js 20 or later (Debian: apt-get install nodejs npm)"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || fail "Node.js $(node --version) is too old for componentize-js: install Node.js 20 or later"

if [ ! -d "$sdk/node_modules/@bytecodealliance/componentize-js" ]; then
  if [ -n "${WASMOS_JS_NODE_MODULES:-}" ]; then
    [ -d "$WASMOS_JS_NODE_MODULES/@bytecodealliance/componentize-js" ] \
      || fail "WASMOS_JS_NODE_MODULES=$WASMOS_JS_NODE_MODULES holds no @bytecodealliance/componentize-js"
    rm -rf "$sdk/node_modules"
    ln -s "$WASMOS_JS_NODE_MODULES" "$sdk/node_modules"
  else
    command -v npm >/dev/null 2>&1 || fail "npm not found: install it (Debian: apt-get install npm)"
    log "npm ci in wasmos-js (componentize-js, Rolldown)"
    (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error >&2) || fail "npm ci failed in $sdk"
  fi
fi

mkdir -p "$out"
wasm=$out/$name.wasm
rm -f "$wasm"
node "$sdk/bin/wasmos-js-build.mjs" "$here/src/app.js" --wit "$here/wit" -o "$wasm" >&2 \
  || fail "wasmos-js-build failed"

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
