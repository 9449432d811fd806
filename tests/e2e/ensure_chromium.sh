#!/usr/bin/env bash
# The browser test drives Debian's chromium package (never a browser download): install it when missing.
# Called from .ci/run before the tests; does nothing when /usr/bin/chromium exists. When the install is
# impossible (not root and no password-less sudo, or apt fails) it warns and exits 0: the browser test
# then skips, naming this script.
set -uo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ensure_chromium: /usr/bin/chromium is missing and apt-get needs root: the browser test will skip" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium; }; then
  echo "ensure_chromium: apt-get install chromium failed: the browser test will skip" >&2
  exit 0
fi
/usr/bin/chromium --version
