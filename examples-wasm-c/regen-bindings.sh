#!/usr/bin/env bash
# Regenerates bindings/ (the C glue for the wasmos:framework world) from wit/framework.wit with
# wit-bindgen's C generator, at the version the Rust SDK (guest-sdk) uses, and records the WIT's
# sha256 so that build.sh refuses bindings that no longer match it. Run after changing the WIT;
# commit the result. Installs wit-bindgen-cli with cargo if it is missing (a few minutes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
version=0.63.0

wit_bindgen=$(command -v wit-bindgen || echo "${CARGO_HOME:-$HOME/.cargo}/bin/wit-bindgen")
if ! "$wit_bindgen" --version 2>/dev/null | grep -qF " $version"; then
  echo "[regen-bindings] cargo install --locked wit-bindgen-cli@$version" >&2
  cargo install --locked "wit-bindgen-cli@$version" >&2
  wit_bindgen="${CARGO_HOME:-$HOME/.cargo}/bin/wit-bindgen"
fi

"$wit_bindgen" c "$root/wit" --world framework --out-dir "$here/bindings" >&2
sha256sum "$root/wit/framework.wit" | cut -d' ' -f1 >"$here/bindings/WIT_SHA256"
echo "[regen-bindings] bindings/ regenerated from wit/framework.wit" >&2
