#!/usr/bin/env bash
# Installs what the web UI's browser tests need, idempotently: Debian's `chromium` and
# `chromium-driver` (headless Chromium driven over WebDriver by cli/tests/ui.rs).
#
# Prints nothing when both are present. Needs root or `sudo` for apt-get otherwise.
# Set WASMOS_SKIP_BROWSER=1 to skip (the UI tests then fail with a message saying so, never
# pass silently).
set -euo pipefail

log() { printf '[browser] %s\n' "$*" >&2; }

if [ "${WASMOS_SKIP_BROWSER:-}" = 1 ]; then
  log "WASMOS_SKIP_BROWSER=1: not installing chromium"
  exit 0
fi

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

need=()
for p in chromium chromium-driver; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  sudo_if_needed apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >&2
fi
command -v chromedriver >/dev/null 2>&1 || { log "chromedriver missing after install"; exit 1; }
