#!/usr/bin/env bash
# Installs `ip` (Debian's iproute2), idempotently, for the network-partition test
# (cli/tests/partition.rs puts each master in its own `ip netns`). Only as root: without root
# that test cannot create namespaces and skips anyway (visibly, see test-skip/).
#
# Prints nothing when `ip` is present or this is not root.
set -euo pipefail

log() { printf '[iproute] %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || exit 0
command -v ip >/dev/null 2>&1 && exit 0
log "apt-get install iproute2"
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >&2
command -v ip >/dev/null 2>&1 || { log "ip missing after installing iproute2"; exit 1; }
