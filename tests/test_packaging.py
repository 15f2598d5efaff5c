"""Packaging: the wheel carries the package and its data; `pip install .` and `pip install -e .` give a
working `fmsteal` command and `import fmsteal` from any directory.

Installs go into throwaway venvs that see the running interpreter's packages through a .pth file (torch is not
installed again; `--system-site-packages` would show the base Python's, which has no torch when the tests run
in a venv), from a copy of the sources, so the checkout gets no build/ or egg-info folders.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import fmsteal

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What pip needs of the checkout: pyproject.toml, README.md and the package."""
    root = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, root)
    shutil.copytree(REPO / "fmsteal", root / "fmsteal", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def _venv(path: Path) -> Path:
    """A venv that also sees the packages of the interpreter running the tests (venv or system Python)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    Path(own, "running-interpreter.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def _pip_install(python: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                           "--no-build-isolation", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def _run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(FMSTEAL_CACHE=str(cwd / "cache"), HF_HUB_OFFLINE="1")
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_carries_the_package_its_data_and_the_console_script(source, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                           "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("fmsteal-*.whl")
    assert wheel.name.startswith(f"fmsteal-{fmsteal.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode()
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert {"fmsteal/service/about.md", "fmsteal/victims/url.py", "fmsteal/cli/main.py"} <= names
    assert not any("__pycache__" in n or n.startswith(("tests/", "examples/")) for n in names)
    assert "fmsteal = fmsteal.cli:main" in entry_points
    assert "Requires-Dist: torch>=" in metadata and "Provides-Extra: onnx" in metadata
    assert 'Requires-Dist: onnxruntime>=1.32.0; extra == "onnx"' in metadata


def test_pip_install_gives_the_fmsteal_command_and_import_anywhere(source, tmp_path):
    python = _venv(tmp_path / "venv")
    _pip_install(python, str(source))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    zoo = _run(tmp_path / "venv" / "bin" / "fmsteal", "zoo", cwd=elsewhere)
    assert zoo.returncode == 0, zoo.stderr
    assert any(line.startswith("tf_efficientnet_lite0") and " yes " in line for line in zoo.stdout.splitlines())
    probe = _run(python, "-c", "import fmsteal, fmsteal.victims, importlib.resources as r; print(fmsteal.__file__); "
                 "print(r.files('fmsteal.service').joinpath('about.md').read_text()[:40])", cwd=elsewhere)
    assert probe.returncode == 0, probe.stderr
    installed, about = probe.stdout.splitlines()[:2]
    assert Path(installed).is_relative_to(tmp_path / "venv")
    assert about == (REPO / "fmsteal" / "service" / "about.md").read_text()[:40].splitlines()[0]
    bad = _run(tmp_path / "venv" / "bin" / "fmsteal", "run", "--victim", "no_such_backbone", "--thief",
               "tf_efficientnet_lite0", cwd=elsewhere)
    assert bad.returncode == 2 and "no_such_backbone" in bad.stderr and "Traceback" not in bad.stderr


def test_an_editable_install_imports_the_working_tree(source, tmp_path):
    python = _venv(tmp_path / "venv")
    _pip_install(python, "-e", str(source))
    (source / "fmsteal" / "_editable_probe.py").write_text("WHERE = __file__\n")
    probe = _run(python, "-c", "from fmsteal._editable_probe import WHERE; print(WHERE)", cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()) == source / "fmsteal" / "_editable_probe.py"
