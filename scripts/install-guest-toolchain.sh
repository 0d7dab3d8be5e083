#!/usr/bin/env bash
# Installs what building the wasm32-wasip2 guests needs, idempotently.
#
# Route 1 (a laptop with rustup and network access to its dist server):
#   rustup target add wasm32-wasip2
# Route 2 (machines whose rustup cannot fetch targets, e.g. CI here): Debian's Rust with its
#   std sources, wasi-libc and lld, plus wasm-component-ld and wasm-tools from crates.io; the
#   guest std is then built with -Zbuild-std (see scripts/build-examples.sh).
#
# Writes the chosen route to target/guest-toolchain.env so build-examples.sh can source it.
# Set WASMOS_GUEST_ROUTE=debian to skip route 1.
#
# On either route, the C examples (examples-wasm-c/) need clang with the wasm32-wasi target and
# wasi-libc (Debian: clang-14, libclang-rt-14-dev-wasm32, wasi-libc, lld-14) and
# wasm-component-ld (shipped with rustup's wasm32-wasip2 target, else from crates.io). Set
# WASI_CC to a clang of your own (e.g. wasi-sdk's) to skip the Debian packages.
#
# Python frameworks (guest-sdk-python/, examples-python/) need componentize-py, pinned, pip-installed
# into a project-local venv, target/python-guest/venv (nothing global): python_toolchain below.
# Set WASMOS_SKIP_PYTHON=1 to skip it.
# The JavaScript examples (examples-js/) need Node.js 20+ and the npm packages locked in
# guest-sdk-js/package-lock.json, installed into guest-sdk-js/node_modules (js_toolchain).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$here/target"
envfile="$here/target/guest-toolchain.env"

log() { printf '[guest-toolchain] %s\n' "$*" >&2; }

have_rustup_target() {
  command -v rustup >/dev/null 2>&1 || return 1
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2
}

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

cargo_tools() {
  # wasm-tools is used to validate and inspect components (tests and scripts);
  # wasm-component-ld links the guest on the Debian route.
  local want=("$@")
  for t in "${want[@]}"; do
    if ! command -v "$t" >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/$t" ]; then
      log "cargo install --locked $t"
      cargo install --locked "$t" >&2
    fi
  done
}

# Debian packages that are not installed yet, out of "$@"; installs them (quiet when none).
apt_install_missing() {
  local need_pkgs=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
  done
  if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "apt-get install ${need_pkgs[*]}"
    sudo_if_needed apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "${need_pkgs[@]}" >&2
  fi
}

# What examples-wasm-c/build.sh needs: clang for wasm32-wasi with wasi-libc, and a
# wasm-component-ld (rustup's, next to its wasm32-wasip2 target, or one from crates.io).
c_toolchain() {
  if [ -z "${WASI_CC:-}" ]; then
    if command -v dpkg >/dev/null 2>&1; then
      apt_install_missing clang-14 libclang-rt-14-dev-wasm32 wasi-libc lld-14
    elif ! command -v clang-14 >/dev/null 2>&1; then
      log "no dpkg and no clang-14: set WASI_CC to a clang with wasi-libc for examples-wasm-c"
    fi
  fi
  local sysroot_ld
  sysroot_ld="$(rustc --print sysroot 2>/dev/null || true)/lib/rustlib/$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')/bin/wasm-component-ld"
  if [ ! -x "$sysroot_ld" ]; then
    cargo_tools wasm-component-ld
  fi
}

# The Python client of the scheduler API (clients/python/, package wasmos-client): a venv of
# its own in target/python-client-venv with the pinned grpcio, grpcio-tools, protobuf and the
# tools of its tests (requirements-dev.txt), and the package installed editable, which
# generates its gRPC code from api/proto. Nothing outside the venv is touched. Quick when
# nothing changed: the requirements and the package are reinstalled only when their inputs'
# hash (requirements, pyproject, build backend, protos) differs from the one recorded.
# WASMOS_PYTHON picks the interpreter (default python3, 3.10 or newer).
python_client() {
  local pkg="$here/clients/python" venv="$here/target/python-client-venv"
  local py="${WASMOS_PYTHON:-python3}" stamp reqs_hash pkg_hash
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    log "python client: $py is missing or older than 3.10 (set WASMOS_PYTHON)"
    return 1
  fi
  if [ ! -x "$venv/bin/python" ]; then
    log "python client: creating $venv"
    if ! "$py" -m venv "$venv" >&2; then
      # Debian splits venv's ensurepip into python3-venv.
      apt_install_missing python3-venv
      "$py" -m venv "$venv" >&2
    fi
  fi
  stamp="$venv/.wasmos-client-stamp"
  reqs_hash=$(cat "$pkg/requirements.txt" "$pkg/requirements-dev.txt" | sha256sum | cut -c1-16)
  pkg_hash=$(cat "$pkg/pyproject.toml" "$pkg/build_backend.py" "$here"/api/proto/wasmos/v1/*.proto \
    | sha256sum | cut -c1-16)
  if [ "$(sed -n 1p "$stamp" 2>/dev/null)" != "$reqs_hash" ]; then
    log "python client: pip install -r clients/python/requirements-dev.txt"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r "$pkg/requirements-dev.txt" >&2
    printf '%s\n' "$reqs_hash" > "$stamp"
  fi
  if [ "$(sed -n 2p "$stamp" 2>/dev/null)" != "$pkg_hash" ] \
    || [ ! -f "$pkg/src/wasmos_client/_proto/scheduler_pb2.py" ]; then
    log "python client: installing clients/python (generating its gRPC code from api/proto)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      --no-build-isolation --no-deps -e "$pkg" >&2
    printf '%s\n%s\n' "$reqs_hash" "$pkg_hash" > "$stamp"
  fi
}

python_client


# componentize-py, pinned, in a venv under target/ (a python3 with venv is all it needs from the
# machine: Debian python3-venv). Idempotent: a venv that already holds the pinned version is kept.
# Its path is written to target/python-guest/env for build-examples.sh.
COMPONENTIZE_PY_VERSION=0.25.1
python_toolchain() {
  [ "${WASMOS_SKIP_PYTHON:-}" = 1 ] && return 0
  local dir="$here/target/python-guest" venv="$here/target/python-guest/venv"
  local have=""
  [ -x "$venv/bin/componentize-py" ] && have=$("$venv/bin/python" -m pip show componentize-py 2>/dev/null | sed -n 's/^Version: //p')
  if [ "$have" != "$COMPONENTIZE_PY_VERSION" ]; then
    if ! python3 -m venv --help >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
      apt_install_missing python3-venv
    fi
    log "pip install componentize-py==$COMPONENTIZE_PY_VERSION into $venv"
    rm -rf "$venv"
    mkdir -p "$dir"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
  fi
  echo "WASMOS_COMPONENTIZE_PY=$venv/bin/componentize-py" > "$dir/env"
}

# JavaScript guests (guest-sdk-js/, examples-js/): componentize-js, Rolldown and what they pull
# in, pinned by guest-sdk-js/package-lock.json and installed by `npm ci` into
# guest-sdk-js/node_modules (nothing global). Needs Node.js 20 or later with npm (Debian:
# nodejs, npm). A stamp of the lock file's hash skips the install when nothing changed.
js_toolchain() {
  local sdk="$here/guest-sdk-js"
  local stamp="$sdk/node_modules/.wasmos-lock-sha256"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if command -v dpkg >/dev/null 2>&1; then
      apt_install_missing nodejs npm
    else
      log "no node/npm and no dpkg: install Node.js 20+ for the JavaScript examples"
      return 1
    fi
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    log "Node.js $(node --version) is too old for componentize-js: install Node.js 20 or later"
    return 1
  fi
  local want
  want=$(sha256sum "$sdk/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  log "npm ci in guest-sdk-js (componentize-js, Rolldown; about 400 MB in guest-sdk-js/node_modules)"
  (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" > "$stamp"
}

# WASMOS_GUEST_ROUTE=debian forces the fallback even where rustup works, so it can be tested
# (and used by anyone who prefers distro packages).
if [ "${WASMOS_GUEST_ROUTE:-}" != debian ] \
  && { have_rustup_target || { command -v rustup >/dev/null 2>&1 && timeout 120 rustup target add wasm32-wasip2 >/dev/null 2>&1; }; }; then
  log "using rustup's wasm32-wasip2 target"
  cargo_tools wasm-tools
  c_toolchain
  python_toolchain
  js_toolchain
  echo "WASMOS_GUEST_ROUTE=rustup" > "$envfile"
  exit 0
fi

if [ "${WASMOS_GUEST_ROUTE:-}" = debian ]; then
  log "WASMOS_GUEST_ROUTE=debian: using the Debian route"
else
  log "rustup has no wasm32-wasip2 target; using the Debian route"
fi
# The C toolchain's packages too, so that one apt-get run installs everything.
c_pkgs=()
[ -n "${WASI_CC:-}" ] || c_pkgs=(clang-14 libclang-rt-14-dev-wasm32)
apt_install_missing rustc-web cargo-web rust-web-src wasi-libc lld-14 "${c_pkgs[@]}"
cargo_tools wasm-component-ld wasm-tools
c_toolchain
python_toolchain
js_toolchain
if ! command -v wasm-ld >/dev/null 2>&1; then
  # wasm-component-ld runs `wasm-ld` from PATH.
  sudo_if_needed ln -sf /usr/bin/wasm-ld-14 /usr/local/bin/wasm-ld
fi
echo "WASMOS_GUEST_ROUTE=debian" > "$envfile"
log "guest toolchain ready"
