"""The confound grid taken apart: pretrained features, training mode and resolution, one at a time.

The offline grid compares pretrained victims (linear probes at 96 px) with a scratch victim (fully trained
at 32 px): three differences at once. `confound-cifar10` puts a Lite0 linear probe, a fully fine-tuned
Lite0 and the scratch CNN, all at 32 px, in front of one Lite0 thief. This module turns its table (and the
offline grid's, for resolution) into the README's table and sentences; every number is a mean ± sd over
seeds with n, and a row or comparison without data says "not measured yet". No torch here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fmsteal.service.conditions import pct
from fmsteal.service.results import grid_table

__all__ = ["CONFOUND_GRID", "VICTIMS", "BUDGETS", "confound_summary", "confound_table", "confound_finding"]

CONFOUND_GRID = "confound-cifar10"
OFFLINE_GRID = "offline-cifar10"
BUDGETS = (5000, 20000)
# (victim, victim mode) -> how the README names it, in the order of the table
VICTIMS = {("tf_efficientnet_lite0", "lp"): "EfficientNet-Lite0, linear probe",
           ("tf_efficientnet_lite0", "fft"): "EfficientNet-Lite0, fully fine-tuned",
           ("scratch_cnn", "fft"): "Scratch CNN, trained from scratch"}
MISSING = "not measured yet"


def confound_summary(table: pd.DataFrame, budget: int, output: str = "label") -> dict[tuple[str, str], dict]:
    """(victim, mode) -> {"agreement", "victim_acc": (mean, sd, n)} at `budget` queries (label answers)."""
    if table.empty:
        return {}
    rows = table[(table["budget"] == budget) & (table["output"] == output)]
    out = {}
    for key, group in rows.groupby(["victim", "victim_mode"]):
        out[key] = {column: (group[column].mean(), group[column].std(), group["seed"].nunique())
                    for column in ("agreement", "victim_acc")}
    return out


def _pct(stats: tuple | None) -> str:
    return MISSING if stats is None else pct(*stats)


def confound_table(precomputed_dir: str | Path = "precomputed") -> str:
    """The README's markdown table: agreement at each budget and the victim's test accuracy, per victim."""
    table = grid_table(CONFOUND_GRID, precomputed_dir)
    by_budget = {budget: confound_summary(table, budget) for budget in BUDGETS}
    lines = ["| victim (32 px) | " + " | ".join(f"{b:,} queries" for b in BUDGETS) + " | victim test accuracy |",
             "|---" * (len(BUDGETS) + 2) + "|"]
    for key, name in VICTIMS.items():
        cells = [_pct(by_budget[b].get(key, {}).get("agreement")) for b in BUDGETS]
        accuracy = _pct(next((by_budget[b][key]["victim_acc"] for b in BUDGETS if key in by_budget[b]), None))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {accuracy} |")
    return "\n".join(lines)


def _gap(first: dict | None, second: dict | None) -> float | None:
    if first is None or second is None:
        return None
    return 100 * (first["agreement"][0] - second["agreement"][0])


def _offline_lite0(budget: int, precomputed_dir: str | Path) -> dict | None:
    """The offline grid's Lite0 LP victim against its Lite0 thief at 96 px, summarised as `confound_summary` does."""
    table = grid_table(OFFLINE_GRID, precomputed_dir)
    if table.empty:
        return None
    own = confound_summary(table[table["thief"] == "tf_efficientnet_lite0"], budget)
    return own.get(("tf_efficientnet_lite0", "lp"))


def confound_finding(precomputed_dir: str | Path = "precomputed", budget: int = 5000) -> str:
    """What each comparison the grid allows shows at `budget` queries, or that it is not measured yet."""
    summary = confound_summary(grid_table(CONFOUND_GRID, precomputed_dir), budget)
    lp, fft, scratch = (summary.get(key) for key in VICTIMS)
    sentences = []
    features = _gap(fft, scratch)
    if features is None:
        sentences.append("Pretrained features alone (the fine-tuned Lite0 against the scratch CNN, both fully trained "
                         f"at 32 px): {MISSING}.")
    else:
        sentences.append(
            f"Pretrained features alone (both victims fully trained at 32 px): the thief copies the fine-tuned Lite0 "
            f"with {pct(*fft['agreement'])} agreement and the scratch CNN with {pct(*scratch['agreement'])}, "
            f"{features:+.1f} points for the pretrained victim, whose test accuracy is {pct(*fft['victim_acc'])} "
            f"against {pct(*scratch['victim_acc'])}.")
    mode = _gap(lp, fft)
    if mode is None:
        sentences.append(f"Training mode alone (the same pretrained Lite0 as a linear probe or fine-tuned): {MISSING}.")
    else:
        sentences.append(
            f"Training mode alone (the same pretrained Lite0): the linear probe is copied with {pct(*lp['agreement'])}, "
            f"the fine-tuned network with {pct(*fft['agreement'])}, {mode:+.1f} points for the linear probe.")
    at_96 = _offline_lite0(budget, precomputed_dir)
    resolution = _gap(lp, at_96)
    if resolution is None:
        sentences.append(f"Resolution alone (the Lite0 linear probe at 32 px against 96 px): {MISSING}.")
    else:
        sentences.append(
            f"Resolution (the Lite0 linear probe and its Lite0 thief together at 32 px instead of 96 px, offline grid): "
            f"{pct(*lp['agreement'])} against {pct(*at_96['agreement'])}, {resolution:+.1f} points.")
    ranking = _ranking({"training mode": mode, "resolution": resolution, "pretrained features": features})
    return f"All comparisons at {budget:,} top-1-label queries. " + " ".join(sentences + ([ranking] if ranking else []))


def _ranking(gaps: dict[str, float | None]) -> str:
    """"Training mode moves agreement most (23.9 points), then resolution (11.5), then pretrained features (0.8)."
    over the comparisons that are measured (two at least), by the size of their gap."""
    measured = sorted(((abs(gap), name) for name, gap in gaps.items() if gap is not None), reverse=True)
    if len(measured) < 2:
        return ""
    (size, first), rest = measured[0], measured[1:]
    return (f"{first[0].upper()}{first[1:]} moves agreement most ({size:.1f} points), "
            + ", ".join(f"then {name} ({gap:.1f})" for gap, name in rest) + ".")
