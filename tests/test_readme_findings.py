"""The README's findings on the precomputed defence and consequences grids are exactly what the code computes
from the committed tables: a new sweep that changes a number fails here until the README says it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _findings() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("print_findings", REPO / "scripts" / "print_findings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.readme_findings()


@pytest.mark.parametrize("what", ["defences, label answers", "defences, probs answers", "consequences"])
def test_the_readme_quotes_each_finding_as_computed(what: str) -> None:
    finding = _findings()[what]
    assert not finding.startswith("No precomputed"), f"precomputed/ lacks the table behind the {what} finding"
    readme = " ".join((REPO / "README.md").read_text().split())
    assert finding in readme, f"README out of date for {what}: run `python scripts/print_findings.py` and paste it"
