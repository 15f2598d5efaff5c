#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run them.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-dev.txt
python -m pip install -q --no-deps -e .  # the `fmsteal` command the README's examples use
if ! command -v chromium >/dev/null 2>&1; then
  # The browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo "sudo")
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
python -m pytest "$@"
