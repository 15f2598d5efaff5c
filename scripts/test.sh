#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, in a fresh virtual environment, then run them.
# The venv sees no system site-packages, so a package the code imports but no requirements file declares
# fails here as it would on a newcomer's machine. FMSTEAL_TEST_VENV names the venv (default .venv-test;
# it is emptied first). Arguments go to pytest, e.g. `bash scripts/test.sh tests/test_cli.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(realpath -m "${FMSTEAL_TEST_VENV:-.venv-test}")"
python3 -m venv --clear "$venv"
# uv installs the pinned requirements ~4x faster than pip (it unpacks torch's 5.5 GB in parallel); it is told
# the indexes, local wheel folders and constraints pip is configured with, so both install the same files.
"$venv/bin/python" -m pip install -q uv==0.13.9
pip_setting() { "$venv/bin/python" -m pip config list | sed -n "s/^global\.$1='\(.*\)'$/\1/p"; }
export UV_EXTRA_INDEX_URL="${PIP_EXTRA_INDEX_URL:-$(pip_setting extra-index-url)}"
export UV_FIND_LINKS="$(echo "${PIP_FIND_LINKS:-$(pip_setting find-links)}" | tr ' ' ',')"
export UV_CONSTRAINT="${PIP_CONSTRAINT:-$(pip_setting constraint)}"
export UV_INDEX_STRATEGY=unsafe-best-match  # as pip: the best version on any index, not the first index's
"$venv/bin/uv" pip install -q --python "$venv/bin/python" -r requirements-dev.txt
"$venv/bin/uv" pip install -q --python "$venv/bin/python" --no-deps -e .  # the `fmsteal` command the README's examples use
if ! command -v chromium >/dev/null 2>&1; then
  # The browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo "sudo")
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest "$@"
