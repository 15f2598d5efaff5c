"""The authors' transfer setting over the consequences grid's thefts (`adversarial-fidelity-cifar10`): per victim,
the share of adversarial images crafted on the thief on which thief and victim still agree, beside their agreement
on clean images, paired by seed.

Reads the `adversarial_*` columns the `adversarial-fidelity` evaluation gives a cell. Every number is a mean ± sd
over the seeds with n beside it; the finding is computed from the table, its setting from the table too. No torch.
"""

from __future__ import annotations

import pandas as pd

from fmsteal.service.conditions import pct, seeds
from fmsteal.service.consequence_results import VICTIM, theft_cells, victim_name

__all__ = ["FIDELITY_GRID", "fidelity_finding", "load_fidelity_cells"]

FIDELITY_GRID = "adversarial-fidelity-cifar10"


def load_fidelity_cells(precomputed_dir: str = "precomputed") -> pd.DataFrame:
    """One row per finished cell of the grid (its last checkpoint), keyed as the consequences grid's."""
    return theft_cells(FIDELITY_GRID, "adversarial_fidelity", precomputed_dir)


def fidelity_finding(cells: pd.DataFrame) -> str:
    """Per victim: agreement on the adversarial images against agreement on clean ones, and the victim's error on
    the adversarial images; the attack, budget and image count as the cells record them."""
    if cells.empty:
        return "No precomputed adversarial-fidelity results."
    first = cells.iloc[0]
    setting = (f"{str(first.adversarial_attack).upper()} at {round(255 * first.adversarial_eps)}/255 crafted on the "
               f"thief, {int(first.adversarial_n):,} test images")
    parts = []
    for _, victim in cells.groupby(VICTIM, sort=False):
        n = victim["seed"].nunique()
        change = 100 * (victim["adversarial_fidelity"] - victim["agreement"])
        spread = f" ± {change.std():.1f}" if n > 1 else ""
        parts.append(f"{victim_name(victim.iloc[0])}: thief and victim agree on {_mean(victim, 'adversarial_fidelity')}"
                     f" of the adversarial images against {_mean(victim, 'agreement')} of the clean ones "
                     f"({change.mean():+.1f}{spread} points paired by seed, {seeds(n)}); the victim gets "
                     f"{_mean(victim, 'adversarial_victim_fooled', with_n=False)} of the adversarial images wrong")
    return f"The authors' setting ({setting}): " + "; ".join(parts) + "."


def _mean(cells: pd.DataFrame, column: str, with_n: bool = True) -> str:
    return pct(cells[column].mean(), cells[column].std(), cells["seed"].nunique(), with_n)
