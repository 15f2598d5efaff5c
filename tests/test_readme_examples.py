"""The code blocks of README.md and docs/, so they cannot rot: each is run verbatim here (`<!-- example: name -->`),
is a command CI itself runs (`<!-- ci: what -->`), is a diagram or schema (a `text` block), or says visibly on
its first line that the tests do not run it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from readme_fixtures import REPO, blocks, examples

NOT_RUN = "# Not run by the tests:"


def test_every_block_runs_here_or_in_ci_or_says_it_is_not_run():
    seen = {"example": set(), "ci": set()}
    for name, marker, language, code in blocks():
        kind = re.match(r"<!-- (\w+): (\S+) -->", marker)
        if kind and kind[1] in seen:
            seen[kind[1]].add(kind[2])
        else:
            assert language == "text" or code.startswith(NOT_RUN), f"{name}: a block no test runs:\n{code[:200]}"
    assert seen == {"example": {"my_model.py", "python", "shell", "blackbox", "cli"}, "ci": {"app", "tests"}}


def test_ci_runs_the_readmes_test_command_and_the_app_command_installs_what_the_app_imports():
    commands = {marker: code.strip() for _, marker, _, code in blocks() if marker.startswith("<!-- ci: ")}
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [commands["<!-- ci: tests -->"]]
    assert commands["<!-- ci: app -->"] == "pip install -r requirements.txt && python app.py"
    script = (REPO / "scripts" / "test.sh").read_text()
    assert "-m venv --clear" in script and "pip install -q --python \"$venv/bin/python\" -r requirements-dev.txt" in script
    assert (REPO / "requirements-dev.txt").read_text().splitlines()[0] == "-r requirements.txt"
    assert 'Popen([sys.executable, "app.py"]' in (REPO / "tests" / "app_fixtures.py").read_text()


def test_the_black_box_example_answers_labels_only_and_counts_queries():
    done = subprocess.run([sys.executable, "-c", examples()["blackbox"]], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr[-2000:]
    labels, probs, used = re.fullmatch(r"(\[.*\]) (\w+) (\d+)\n", done.stdout).groups()
    assert len(json.loads(labels)) == 8 and all(0 <= label < 10 for label in json.loads(labels))
    assert probs == "None" and used == "8"


def test_the_command_line_example_runs_as_written(readme_cli_run):
    done, checkout = readme_cli_run
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tf_efficientnet_lite0" in done.stdout and "prada" in done.stdout
    (card,) = (checkout / "runs").glob("*.json")
    assert '"budget": 500' in card.read_text()


def test_the_readme_examples_run_as_written(cifar_subset, session_cache, tmp_path):
    found = examples()
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
    assert "\nVictim  " in shell.stdout and " images sent" in shell.stdout
