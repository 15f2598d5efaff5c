"""The code blocks of README.md and docs/, and one session run of the README's command-line example, which
test_readme_examples checks runs as written and test_cli reads the card and summary of."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def blocks() -> list[tuple[str, str, str, str]]:
    """(file, marker or "", language, code) of every fenced block in README.md and docs/*.md."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text()
        for marker, language, code in re.findall(r"(<!-- [^\n]*? -->\n)?```(\w*)\n(.*?)```", text, re.S):
            found.append((path.name, marker.strip(), language, code))
    return found


def examples() -> dict[str, str]:
    """{name: code} of the README blocks marked `<!-- example: name -->`."""
    return {marker[len("<!-- example: "):-len(" -->")]: code for _, marker, _, code in blocks()
            if marker.startswith("<!-- example: ")}


@pytest.fixture(scope="session")
def readme_cli_run(cifar_mini: Path, session_cache: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """The README's command-line block run verbatim in a checkout beside ../shared: (the process, the checkout)."""
    root = tmp_path_factory.mktemp("readme-cli")
    (root / "shared").symlink_to(cifar_mini.parents[1])  # ../shared/data/... as from a checkout
    checkout = root / "checkout"
    checkout.mkdir()
    env = dict(os.environ, FMSTEAL_CACHE=str(session_cache), PYTHONPATH=str(REPO),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", "-ec", examples()["cli"]], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=900)
    return done, checkout
