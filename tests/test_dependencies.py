"""Every import is declared: the package's in requirements.txt (or, for an import made only where it is
needed, in an optional extra of pyproject.toml), the tests', benchmarks' and scripts' in requirements-dev.txt.

An undeclared import passes on a machine that happens to have the package and fails on a newcomer's
fresh venv and on a Space (scipy in PRADA did exactly that).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Imports that no requirements file can provide, with the reason.
PROVIDED_ELSEWHERE = {
    "spaces": "installed by Hugging Face on ZeroGPU Spaces only; imported only when find_spec('spaces') finds it",
}
LOCAL = {"fmsteal", "app"} | {path.stem for folder in ("tests", "bench", "scripts")  # scripts import their siblings
                               for path in (REPO / folder).glob("*.py")}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path: Path) -> set[str]:
    """Distribution names a requirements file asks for, following `-r other.txt`."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r"):
            names |= requirements(path.parent / line[2:].strip())
        elif line:
            names |= _names([line])
    return names


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _names(specs: list[str]) -> set[str]:
    return {_normal(re.split(r"[<>=!~\[; ]", spec)[0]) for spec in specs}


def imports(paths: list[Path]) -> dict[str, dict[str, bool]]:
    """{top-level module: {file: imported at module level}} for every import outside the standard library."""
    found: dict[str, dict[str, bool]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                root = module.split(".")[0]
                if root in sys.stdlib_module_names or root in LOCAL or root == "__future__":
                    continue
                where = found.setdefault(root, {})
                key = str(path.relative_to(REPO))
                where[key] = where.get(key, False) or id(node) in top_level
    return found


@functools.cache
def _providers() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # reads every installed distribution's files: once


def distributions(module: str) -> set[str]:
    """The installed distributions that provide `module` (empty when it is not installed)."""
    return {_normal(name) for name in _providers().get(module, [])}


def _undeclared(found: dict[str, dict[str, bool]], allowed: set[str]) -> list[str]:
    problems = []
    for module, files in sorted(found.items()):
        if module in PROVIDED_ELSEWHERE:
            continue
        provided = distributions(module)
        if not provided:
            problems.append(f"{module} (imported in {', '.join(sorted(files))}) is not installed: declare it")
        elif not provided & allowed:
            problems.append(f"{module} (from {', '.join(sorted(provided))}; imported in {', '.join(sorted(files))})")
    return problems


def package_files() -> list[Path]:
    return sorted((REPO / "fmsteal").rglob("*.py")) + [REPO / "app.py"]


def test_the_package_imports_only_what_requirements_txt_declares_or_an_extra_offers():
    runtime = requirements(REPO / "requirements.txt")
    extras = set().union(*(_names(specs) for specs in _pyproject()["optional-dependencies"].values()))
    found = imports(package_files())
    at_module_level = {m: f for m, f in found.items() if any(f.values())}
    problems = _undeclared(at_module_level, runtime)
    assert not problems, "imported at module level but not in requirements.txt:\n" + "\n".join(problems)
    problems = _undeclared(found, runtime | extras)
    assert not problems, "imported but in neither requirements.txt nor an extra:\n" + "\n".join(problems)


def test_tests_benchmarks_and_scripts_import_only_what_requirements_dev_txt_declares():
    files = [p for folder in ("tests", "bench", "scripts", "examples") for p in sorted((REPO / folder).rglob("*.py"))]
    problems = _undeclared(imports(files), requirements(REPO / "requirements-dev.txt"))
    assert not problems, "imported but not in requirements-dev.txt:\n" + "\n".join(problems)


def test_pyproject_declares_what_requirements_txt_pins():
    """`pip install .` gets the same packages as the app's requirements.txt (pinned there, floors in pyproject)."""
    project = _pyproject()
    declared = _names(project["dependencies"]).union(*map(_names, project["optional-dependencies"].values()))
    assert requirements(REPO / "requirements.txt") - declared == set()
    assert all("==" in line for line in (REPO / "requirements.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")), "requirements.txt pins exact versions"



def test_every_module_of_the_package_imports_in_a_fresh_interpreter():
    import subprocess

    modules = sorted(".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                     for path in (REPO / "fmsteal").rglob("*.py") if path.name != "__main__.py")
    script = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    done = subprocess.run([sys.executable, "-c", script, *modules], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(modules) > 80
