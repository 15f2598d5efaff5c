"""The README's "Steal your own model" examples, run verbatim, so they cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def examples() -> dict[str, str]:
    """{name: code} of the README blocks marked `<!-- example: name -->`."""
    text = (REPO / "README.md").read_text()
    return {name: code for name, code in re.findall(r"<!-- example: (\S+) -->\n```\w+\n(.*?)```", text, re.S)}


def test_the_readme_examples_run_as_written(cifar_subset, session_cache, tmp_path):
    found = examples()
    assert set(found) == {"my_model.py", "python", "shell"}
    (tmp_path / "my-images").symlink_to(cifar_subset)
    (tmp_path / "my_model.py").write_text(found["my_model.py"])
    (tmp_path / "example.py").write_text(found["python"])
    env = dict(os.environ, FMSTEAL_CACHE=str(session_cache), PYTHONPATH=str(REPO),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    python = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    assert python.returncode == 0, python.stderr[-2000:]
    lines = python.stdout.strip().splitlines()
    assert re.fullmatch(r"agreement \d+\.\d% after 200 queries", lines[-1])
    assert len([line for line in lines if "queries: agreement" in line]) >= 5
    shell = subprocess.run(["bash", "-c", found["shell"]], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=900)
    assert shell.returncode == 0, shell.stderr[-2000:]
    assert "Agreement with the victim" in shell.stdout and len(list((tmp_path / "runs").glob("attack__*.json"))) == 1
