"""Print the findings the README quotes, computed from the precomputed tables (paste them after a new sweep).

    python scripts/print_findings.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fmsteal.service.consequence_results import load_consequence_cells, transfer_finding  # noqa: E402
from fmsteal.service.defence_results import load_defence_cells, protection_finding  # noqa: E402


def readme_findings() -> dict[str, str]:
    """{what: finding} for every finding the README quotes."""
    defences, consequences = load_defence_cells(), load_consequence_cells()
    found = {f"defences, {output} answers": protection_finding(defences, output) for output in ("label", "probs")}
    found["consequences"] = transfer_finding(consequences)
    return found


if __name__ == "__main__":
    for what, finding in readme_findings().items():
        print(f"## {what}\n{finding}\n")
