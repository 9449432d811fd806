#!/usr/bin/env bash
# The browser test drives Debian's chromium package (never a browser download): install it when missing.
# Called from .ci/run before the tests; safe to run again (does nothing when /usr/bin/chromium exists).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "ensure_chromium: /usr/bin/chromium is missing and we are not root (no sudo): the browser test will skip" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q chromium
/usr/bin/chromium --version || true
