"""What each classroom scenario should show, computed from the precomputed grids it repeats.

A scenario's "look for" sentence is read off the shipped measurements at 5,000 label queries, never written
by hand, so it cannot teach the opposite of the data: when a difference is not clear at the seeds measured
(Welch's t-test), the sentence says so. Every figure is a mean ± sd over seeds with n. No torch here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fmsteal.service.conditions import pct
from fmsteal.service.confound_results import CONFOUND_GRID, confound_summary
from fmsteal.service.results import grid_table

__all__ = ["BUDGET", "compare", "contrast_finding", "outputs_finding", "bigger_thief_finding", "defence_finding"]

BUDGET = 5000
ALPHA = 0.05  # a difference is called clear below this p-value
LITE0, LITE2, SCRATCH = "tf_efficientnet_lite0", "tf_efficientnet_lite2", "scratch_cnn"
Stats = tuple[float, float, int]
NOT_MEASURED = "The precomputed grids do not hold this comparison yet: watch the two curves."


def _agreement(table: pd.DataFrame, column: str = "agreement", **match) -> Stats | None:
    """(mean, sd, n seeds) of `column` over the rows at BUDGET whose columns equal every `match` value and
    that hold a value in `column`."""
    rows = _rows(table, column, **match)
    if rows.empty:
        return None
    return rows[column].mean(), rows[column].std(), int(rows["seed"].nunique())


def _rows(table: pd.DataFrame, column: str, **match) -> pd.DataFrame:
    """The rows at BUDGET whose columns equal every `match` value and that hold a value in `column`."""
    if table.empty or column not in table:
        return pd.DataFrame()
    rows = table[(table["budget"] == BUDGET) & table[column].notna()]
    for key, value in match.items():
        rows = rows[rows[key] == value]
    return rows


def compare(first: Stats, second: Stats, first_name: str, second_name: str) -> str:
    """"A 83.8% ± 0.2 (n=3) against B 80.1% ± 0.1 (n=3): +3.7 points, a clear difference (Welch's t-test
    p = 0.0001)": the verdict holds for the numbers; with too few seeds for a test it says so."""
    gap = round(100 * (first[0] - second[0]), 1) or 0.0  # never "-0.0"
    text = f"{first_name} {pct(*first)} against {second_name} {pct(*second)}: {gap:+.1f} points"
    if min(first[2], second[2]) < 2:  # one seed has no sd
        return text + " (one seed: too few to tell a difference from chance)"
    from scipy.stats import ttest_ind_from_stats

    p = ttest_ind_from_stats(*first, *second, equal_var=False).pvalue
    if p < ALPHA:
        return text + f", a clear difference (Welch's t-test p = {p:.2g})"
    return text + (f", not a clear difference (Welch's t-test p = {p:.2g}; {min(first[2], second[2])} seeds "
                   "detect only large gaps)")


def contrast_finding(precomputed_dir: str | Path = "precomputed") -> str:
    """Pretrained features alone: a fine-tuned Lite0 victim against the scratch CNN, both fully trained at 32 px."""
    summary = confound_summary(grid_table(CONFOUND_GRID, precomputed_dir), BUDGET)
    pretrained, scratch, probe = (summary.get(key, {}).get("agreement")
                                  for key in ((LITE0, "fft"), (SCRATCH, "fft"), (LITE0, "lp")))
    if pretrained is None or scratch is None:
        return NOT_MEASURED
    text = (f"Precomputed (both at 32 px, the Lite0 thief, {BUDGET:,} label queries): "
            + compare(pretrained, scratch, "the fine-tuned Lite0 victim", "the scratch CNN") + ".")
    if probe is not None:
        text += (" The same Lite0 kept frozen as a linear probe (the paper's setting): " +
                 compare(probe, pretrained, "linear probe", "fine-tuned") + ".")
    return text


def outputs_finding(precomputed_dir: str | Path = "precomputed") -> str:
    """Label answers against probability vectors, on the offline grid's Lite0 victim and thief."""
    table = grid_table("offline-cifar10", precomputed_dir)
    pair = dict(victim=LITE0, thief=LITE0, victim_mode="lp")
    probs, labels = _agreement(table, output="probs", **pair), _agreement(table, output="label", **pair)
    if probs is None or labels is None:
        return NOT_MEASURED
    return (f"Precomputed (Lite0 victim and thief, 96 px, {BUDGET:,} queries): "
            + compare(probs, labels, "probabilities", "labels") + ".")


def bigger_thief_finding(precomputed_dir: str | Path = "precomputed") -> str:
    """A bigger thief (Lite2) against the thief that shares the Lite0 victim's backbone."""
    table = grid_table("offline-cifar10", precomputed_dir)
    victim = dict(victim=LITE0, victim_mode="lp", output="label")
    bigger, shared = _agreement(table, thief=LITE2, **victim), _agreement(table, thief=LITE0, **victim)
    if bigger is None or shared is None:
        return NOT_MEASURED
    return (f"Precomputed (Lite0 victim, 96 px, {BUDGET:,} label queries): "
            + compare(bigger, shared, "the bigger Lite2 thief", "the Lite0 thief that shares the victim's backbone")
            + ".")


def defence_finding(precomputed_dir: str | Path = "precomputed") -> str:
    """Reverse sigmoid (its default beta=1.0) against the undefended API, on probability answers."""
    table = grid_table("defences-cifar10", precomputed_dir)
    victim = dict(victim=LITE0, victim_mode="lp", output="probs")
    reverse_sigmoid = dict(defence="reverse-sigmoid", defence_params="beta=1.0", **victim)
    defended = _agreement(table, **reverse_sigmoid)
    plain = _agreement(table, defence="none", **victim)
    honest = _agreement(table, "api_accuracy", **reverse_sigmoid)
    clean = _agreement(table, "victim_acc", defence="none", **victim)  # an undefended API answers as the victim
    if None in (defended, plain, honest, clean):
        return NOT_MEASURED
    text = (f"Precomputed (Lite0 victim, probability answers, {BUDGET:,} queries, a thief that distils the answers): "
            + compare(defended, plain, "thief agreement with the defence", "without") + "; honest users' accuracy "
            + compare(honest, clean, "with the defence", "without") + ".")
    strongest = _agreement(table, "worst_case_agreement", **reverse_sigmoid)
    if strongest is None:  # cells measured before the argmax thief
        return text + " Not yet measured against a thief that keeps only each answer's top class."
    names = sorted(set(_rows(table, "strongest_thief", **reverse_sigmoid)["strongest_thief"]))
    which = " or ".join(f"the {name} thief" for name in names)
    return (text + f" The strongest thief a run trains with the same budget ({which}): "
            + compare(strongest, plain, "with the defence", "the distilling thief without") + ".")
