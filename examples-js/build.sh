#!/usr/bin/env bash
# Builds the JavaScript example frameworks into wasmos:framework components:
#   examples-js/target/<name>.wasm        (printed on stdout, one per line)
#
# Each example is examples-js/<name>/<name>.js; guest-sdk-js's wasmos-js-build bundles it with
# the SDK (Rolldown) and componentizes it (componentize-js: StarlingMonkey plus the code, about
# 12 MB). Needs the packages of guest-sdk-js/package-lock.json in guest-sdk-js/node_modules,
# which scripts/install-guest-toolchain.sh installs (scripts/build-examples.sh runs both).
#
# A build takes about 20 s, so an example is rebuilt only when the hash of what it is built from
# (its sources, the SDK, the lock file, the WIT) differs from the one kept beside its output.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/target"
sdk="$root/guest-sdk-js"

log() { printf '[build-examples-js] %s\n' "$*" >&2; }
fail() {
  log "$*"
  exit 1
}

[ -d "$sdk/node_modules/@bytecodealliance/componentize-js" ] \
  || fail "guest-sdk-js/node_modules is missing: run scripts/install-guest-toolchain.sh"
wasm_tools=$(command -v wasm-tools || echo "${CARGO_HOME:-$HOME/.cargo}/bin/wasm-tools")

examples=(squares)
mkdir -p "$out"
for name in "${examples[@]}"; do
  wasm="$out/$name.wasm"
  inputs=$(cat "$here/$name"/*.js "$sdk/src/"*.js "$sdk/bin/"*.mjs "$sdk/package-lock.json" \
    "$root/wit/"*.wit | sha256sum | cut -d' ' -f1)
  if [ -f "$wasm" ] && [ "$(cat "$wasm.inputs" 2>/dev/null)" = "$inputs" ]; then
    log "$name is up to date"
  else
    started=$(date +%s)
    rm -f "$wasm.inputs"
    node "$sdk/bin/wasmos-js-build.mjs" "$here/$name/$name.js" -o "$wasm" >&2
    echo "$inputs" > "$wasm.inputs"
    log "$name built in $(($(date +%s) - started)) s"
  fi
  "$wasm_tools" validate --features component-model "$wasm" || fail "$wasm is not a valid component"
  wit=$("$wasm_tools" component wit "$wasm")
  for want in "export wasmos:framework/scheduler@" "export wasmos:framework/executor@"; do
    grep -qF "$want" <<<"$wit" || fail "$name.wasm lacks '$want...' (expected the wasmos:framework world)"
  done
  # A wasmos host gives a framework no network: an import of wasi:http would not link.
  if grep -q "import wasi:http" <<<"$wit"; then
    fail "$name.wasm imports wasi:http, which wasmos hosts do not provide"
  fi
  log "$(printf '%-11s %8d bytes' "$name" "$(stat -c %s "$wasm")")"
  echo "$wasm"
done
