"""The findings the README quotes, computed from the precomputed tables.

    python scripts/print_findings.py           # print them
    python scripts/print_findings.py --write   # and rewrite the README's marked regions with them

In the README each one sits between `<!-- finding: NAME -->` and `<!-- /finding -->`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fmsteal.service.adversarial_fidelity_results import fidelity_finding, load_fidelity_cells  # noqa: E402
from fmsteal.service.confound_results import confound_finding, confound_table  # noqa: E402
from fmsteal.service.consequence_results import load_consequence_cells, transfer_finding  # noqa: E402
from fmsteal.service.defence_results import load_defence_cells, protection_finding  # noqa: E402
from fmsteal.service.results import precomputed_root  # noqa: E402
from fmsteal.service.sweep import Grid, measured_status  # noqa: E402
from fmsteal.service.transfer_sweep_results import load_sweep_cells, sweep_grid_finding  # noqa: E402

STATUS_OF = ("defences-cifar10", "consequences-cifar10", "transfer-sweep-cifar10", "adversarial-fidelity-cifar10",
             "confound-cifar10")


def readme_findings() -> dict[str, str]:
    """{name: finding} for every finding the README quotes."""
    defences, consequences = load_defence_cells(), load_consequence_cells()
    found = {f"defences, {output} answers": protection_finding(defences, output) for output in ("label", "probs")}
    found["consequences"] = transfer_finding(consequences)
    found["transfer over epsilons"] = sweep_grid_finding(load_sweep_cells())
    found["adversarial fidelity"] = fidelity_finding(load_fidelity_cells())
    found["confound table"], found["confound"] = confound_table(), confound_finding()
    for grid in STATUS_OF:
        found[f"status {grid}"] = measured_status(Grid.from_preset(grid), precomputed_root() / grid)
    return found


def write_readme(found: dict[str, str], readme: Path = REPO / "README.md") -> list[str]:
    """Replace each marked region of the README with its finding; the names of the regions not found."""
    text, absent = readme.read_text(), []
    for name, finding in found.items():
        # lazy: a region, empty or not, ends at its own closing marker, never at a later region's
        pattern = re.compile(rf"(<!-- finding: {re.escape(name)} -->\n).*?(<!-- /finding -->)", re.S)
        text, count = pattern.subn(lambda match: match.group(1) + finding + "\n" + match.group(2), text)
        if not count:
            absent.append(name)
    readme.write_text(text)
    return absent


if __name__ == "__main__":
    findings = readme_findings()
    for name, finding in findings.items():
        print(f"## {name}\n{finding}\n")
    if "--write" in sys.argv[1:]:
        missing = write_readme(findings)
        print("README updated." + (f" No region for: {', '.join(missing)}." if missing else ""))
