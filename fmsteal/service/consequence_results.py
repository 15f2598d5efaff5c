"""The precomputed consequences grid as stealability vs transferability: does a victim that is copied more
closely also fall more often to adversarial examples crafted offline on the copy?

Reads the table `python -m fmsteal sweep --preset consequences-cifar10` writes and keeps each cell's last
checkpoint; its `transfer_*` columns are fractions of correctly classified test images the victim gets
wrong after the attack. Every number is a mean ± sd over the seeds with n beside it; the finding is
computed from the table. No torch here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from fmsteal.evaluation.saturation import SATURATED, signed_span
from fmsteal.service.conditions import output_name, pct, seeds
from fmsteal.service.plots import placeholder
from fmsteal.service.results import grid_table, last_checkpoints

__all__ = ["CONSEQUENCE_GRID", "VICTIM", "load_consequence_cells", "consequence_summary", "transfer_scatter",
           "theft_cells", "transfer_finding", "victim_name"]

CONSEQUENCE_GRID = "consequences-cifar10"
MEASURES = {"transfer_thief_pgd": ("PGD on the stolen copy", "circle"),
            "transfer_independent_pgd": ("PGD on an independent model (true labels, no queries)", "circle-open"),
            "transfer_thief_fgsm": ("FGSM on the stolen copy", "diamond"),
            "transfer_independent_fgsm": ("FGSM on an independent model", "diamond-open"),
            "transfer_noise": ("random sign noise (floor)", "x")}
ATTACK_NAMES = {"fgsm": "FGSM", "pgd": "PGD"}
VICTIM = ["victim", "victim_mode", "victim_label", "thief_label", "output"]


def load_consequence_cells(precomputed_dir: str | Path = "precomputed") -> pd.DataFrame:
    """One row per finished cell (its last checkpoint) with its transfer and corruption columns."""
    return theft_cells(CONSEQUENCE_GRID, "transfer_thief_pgd", precomputed_dir)


def theft_cells(grid: str, measured: str | None, precomputed_dir: str | Path = "precomputed") -> pd.DataFrame:
    """One row per finished cell (its last checkpoint, keyed by VICTIM, thief and seed) of `grid`, which runs this
    grid's thefts: the cells that hold a `measured` value (all where `measured` is None); empty without the column."""
    rows = grid_table(grid, precomputed_dir)
    if rows.empty or (measured is not None and measured not in rows.columns):
        return pd.DataFrame()
    rows = rows if measured is None else rows.dropna(subset=[measured])
    return last_checkpoints(rows, VICTIM + ["thief", "seed"])


def consequence_summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per victim: mean and sd over seeds of agreement and every transfer column, and n."""
    columns = ["agreement", "victim_acc"] + [c for c in cells.columns if c.startswith(("transfer_", "corrupted_"))]
    grouped = cells.groupby(VICTIM, sort=False)
    out = grouped[columns].mean().join(grouped[columns].std().add_suffix("_sd"))
    return out.join(grouped["seed"].nunique().rename("n")).reset_index()


def victim_name(row) -> str:
    """"Scratch CNN (from scratch)", "EfficientNet-Lite0 (pretrained, LP)": a victim by its label and mode."""
    return f"{row.victim_label} ({'from scratch' if row.victim_mode == 'fft' else 'pretrained, LP'})"


def transfer_scatter(cells: pd.DataFrame) -> go.Figure:
    """x: agreement, y: the share of attacked images the victim gets wrong, per victim (mean ± 1 sd error bars)
    for PGD on the stolen copy beside the independent-model and noise baselines."""
    summary = consequence_summary(cells) if not cells.empty else pd.DataFrame()
    figure = go.Figure()
    if summary.empty:
        return placeholder(figure, "No precomputed transfer results.")
    palette = plotly.colors.qualitative.Plotly
    names = [victim_name(row) for row in summary.itertuples()]
    for measure, (label, symbol) in MEASURES.items():
        if measure not in summary:
            continue
        figure.add_trace(go.Scatter(
            x=100 * summary["agreement"], y=100 * summary[measure], mode="markers", name=label,
            marker={"size": 13, "symbol": symbol, "color": [palette[i % len(palette)] for i in range(len(summary))],
                    "line": {"width": 2, "color": [palette[i % len(palette)] for i in range(len(summary))]}},
            error_x={"array": 100 * summary["agreement_sd"].fillna(0), "thickness": 1},
            error_y={"array": 100 * summary[f"{measure}_sd"].fillna(0), "thickness": 1},
            text=names, hovertemplate="%{text}<br>agreement %{x:.1f}%<br>" + label + ": %{y:.1f}% fooled<extra></extra>"))
    for i, row in enumerate(summary.itertuples()):
        figure.add_annotation(x=100 * row.agreement, y=100 * row.transfer_thief_pgd, text=names[i], showarrow=False,
                              yshift=16, font={"color": palette[i % len(palette)]})
    low, high = 100 * summary["agreement"].min(), 100 * summary["agreement"].max()
    pad = max(3.0, 0.15 * (high - low))  # room for the victims' names written at the outermost points
    figure.update_xaxes(range=[low - pad, high + pad])
    first = summary.iloc[0]
    n = int(summary["n"].min())
    figure.update_layout(
        title=(f"Stealability vs transferability<br><sup>measured here (grid {CONSEQUENCE_GRID}) · thief "
               f"{first.thief_label} · {output_name(first.output)} · {int(cells['budget'].max()):,} queries</sup>"
               f"<br><sup>{_attack_setting(cells)}, on images the victim classifies correctly · "
               f"mean ± 1 sd over n={seeds(n)}</sup>"),
        xaxis_title="thief agreement with the victim %", yaxis_title="victim fooled %", margin={"t": 130},
        height=560, legend={"orientation": "h", "yanchor": "top", "y": -0.25})  # below the axis title
    return figure


def transfer_finding(cells: pd.DataFrame) -> str:
    """Per victim, each attack (FGSM, PGD) on the stolen copy against the same attack on an independent model,
    paired by seed; an attack that fools the victim from both models on nearly every image is called saturated
    and left out of the verdict (it cannot tell the two apart). Then whether transfer follows agreement."""
    if cells.empty:
        return "No precomputed transfer results."
    summary = consequence_summary(cells).sort_values("agreement", ascending=False)
    groups = dict(list(cells.groupby(VICTIM, sort=False)))  # a victim is its backbone, mode and thief, not its name
    paragraphs, gains = [], []
    for row in summary.itertuples():
        victim = groups[tuple(getattr(row, key) for key in VICTIM)].sort_values("seed")
        parts = []
        for attack, name in ATTACK_NAMES.items():
            name = _pgd_steps(cells) + name if attack == "pgd" else name
            copy, independent = victim[f"transfer_thief_{attack}"], victim[f"transfer_independent_{attack}"]
            if copy.isna().all() or independent.isna().all():
                continue
            stats = (f"the copy's examples fool it on {pct(copy.mean(), copy.std(), row.n, with_n=False)}, "
                     f"the independent model's on {pct(independent.mean(), independent.std(), row.n, with_n=False)}")
            if min(copy.mean(), independent.mean()) >= SATURATED:
                parts.append(f"{name}: {stats}, saturated (both fool it on nearly every image, so it cannot tell "
                             "them apart)")
                continue
            gain = 100 * (copy - independent).dropna()
            gains.append(gain.mean())
            text = f"{name}: {stats}: {_paired(gain)}"
            if copy.mean() <= row.transfer_noise:
                text += f"; no more than random sign noise of the same size ({pct(row.transfer_noise, with_n=False)})"
            parts.append(text)
        paragraphs.append(f"{victim_name(row)}, agreement {pct(row.agreement, row.agreement_sd, row.n)}: "
                          + "; ".join(parts) + ".")
    text = " ".join(paragraphs)
    if gains:
        text += (f" Over the unsaturated attacks, stealing adds {signed_span(gains)} points of transfer over a model of "
                 "the thief's architecture trained on as many true labels (means over seeds).")
    else:
        text += " Every attack is saturated at this epsilon: the grid cannot say whether stealing adds transfer."
    if len(summary) > 2:
        rho = summary["agreement"].rank().corr(summary["transfer_thief_fgsm"].rank())
        trend = "rises" if rho > 0.5 else "falls" if rho < -0.5 else "shows no clear trend"
        text += (f" Across the {len(summary)} victims, FGSM transfer from the copy {trend} with agreement (Spearman "
                 f"rank correlation of the victims' means {rho:+.2f}; a handful of victims, so a direction, not a law).")
    return text


def _attack_setting(cells: pd.DataFrame) -> str:
    """"L∞ 8/255, FGSM and 5-step PGD": the transfer setting the cells were measured with, as their cards say."""
    eps = _one_value(cells, "transfer_eps")
    budget = f"L∞ {round(eps * 255)}/255, " if eps is not None else ""
    return f"{budget}FGSM and {_pgd_steps(cells)}PGD"


def _pgd_steps(cells: pd.DataFrame) -> str:
    """"5-step " when every cell ran PGD with that many steps, "" when they differ or tables predate the column."""
    steps = _one_value(cells, "transfer_steps")
    return f"{int(steps)}-step " if steps is not None else ""


def _one_value(cells: pd.DataFrame, column: str):
    values = cells[column].dropna().unique() if column in cells else []
    return values[0] if len(values) == 1 else None


def _paired(gain: pd.Series) -> str:
    """"+7.6 ± 2.0 points paired by seed, higher in 3 and lower in 0 of 3 seeds (paired t-test p = 0.04)"."""
    text = f"{gain.mean():+.1f}"
    if len(gain) > 1:
        text += f" ± {gain.std():.1f}"
    text += (f" points paired by seed, higher in {int((gain > 0).sum())} and lower in {int((gain < 0).sum())} of "
             f"{seeds(len(gain))}")
    if len(gain) >= 3 and gain.std() > 0:
        from scipy.stats import ttest_1samp

        text += f" (paired t-test p = {ttest_1samp(gain, 0).pvalue:.2g})"
    return text
