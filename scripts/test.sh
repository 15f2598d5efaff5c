#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, in a fresh virtual environment, then run them.
# The venv sees no system site-packages, so a package the code imports but no requirements file declares
# fails here as it would on a newcomer's machine. FMSTEAL_TEST_VENV names the venv (default .venv-test;
# it is emptied first). Arguments go to pytest, e.g. `bash scripts/test.sh tests/test_cli.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${FMSTEAL_TEST_VENV:-.venv-test}"
python3 -m venv --clear "$venv"
"$venv/bin/python" -m pip install -q --no-compile -r requirements-dev.txt  # bytecode is made on first import
"$venv/bin/python" -m pip install -q --no-compile --no-deps -e .  # the `fmsteal` command the README's examples use
if ! command -v chromium >/dev/null 2>&1; then
  # The browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo "sudo")
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" -m pytest "$@"
