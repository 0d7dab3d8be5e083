#!/bin/sh
# Installs schemathesis (pinned) into a venv under the cargo target dir, once; prints the
# path of its `schemathesis` command. Run by cli/tests/openapi.rs; safe to run again.
set -eu
VERSION=4.32.5
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${CARGO_TARGET_DIR:-$root/target}/schemathesis-$VERSION"
bin="$venv/bin/schemathesis"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$VERSION"; then
    echo "$bin"
    exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv" >&2 || {
    echo "cannot create a Python venv in $venv: install python3-venv" >&2
    exit 1
}
"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2 || {
    echo "cannot install schemathesis==$VERSION from PyPI (is PyPI reachable? pip's error is above)" >&2
    rm -rf "$venv"
    exit 1
}
echo "$bin"
