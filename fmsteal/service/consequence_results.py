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

from fmsteal.service.conditions import output_name, pct, seeds
from fmsteal.service.plots import placeholder
from fmsteal.service.results import grid_table

__all__ = ["CONSEQUENCE_GRID", "load_consequence_cells", "consequence_summary", "transfer_scatter",
           "transfer_finding"]

CONSEQUENCE_GRID = "consequences-cifar10"
MEASURES = {"transfer_thief_pgd": ("PGD on the stolen copy", "circle"),
            "transfer_independent_pgd": ("PGD on an independent model (true labels, no queries)", "circle-open"),
            "transfer_noise": ("random sign noise (floor)", "x")}
VICTIM = ["victim", "victim_mode", "victim_label", "thief_label", "output"]


def load_consequence_cells(precomputed_dir: str | Path = "precomputed") -> pd.DataFrame:
    """One row per finished cell (its last checkpoint) with its transfer and corruption columns."""
    rows = grid_table(CONSEQUENCE_GRID, precomputed_dir)
    if "transfer_thief_pgd" not in rows.columns:
        return pd.DataFrame()
    rows = rows.dropna(subset=["transfer_thief_pgd"])
    return rows.loc[rows.groupby(VICTIM + ["thief", "seed"])["budget"].idxmax()].reset_index(drop=True)


def consequence_summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per victim: mean and sd over seeds of agreement and every transfer column, and n."""
    columns = ["agreement", "victim_acc"] + [c for c in cells.columns if c.startswith(("transfer_", "corrupted_"))]
    grouped = cells.groupby(VICTIM, sort=False)
    out = grouped[columns].mean().join(grouped[columns].std().add_suffix("_sd"))
    return out.join(grouped["seed"].nunique().rename("n")).reset_index()


def _victim_name(row) -> str:
    return f"{row.victim_label} ({'from scratch' if row.victim_mode == 'fft' else 'pretrained, LP'})"


def transfer_scatter(cells: pd.DataFrame) -> go.Figure:
    """x: agreement, y: the share of attacked images the victim gets wrong, per victim (mean ± 1 sd error bars)
    for PGD on the stolen copy beside the independent-model and noise baselines."""
    summary = consequence_summary(cells) if not cells.empty else pd.DataFrame()
    figure = go.Figure()
    if summary.empty:
        return placeholder(figure, "No precomputed transfer results.")
    palette = plotly.colors.qualitative.Plotly
    names = [_victim_name(row) for row in summary.itertuples()]
    for measure, (label, symbol) in MEASURES.items():
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
    first = summary.iloc[0]
    n = int(summary["n"].min())
    figure.update_layout(
        title=(f"Stealability vs transferability<br><sup>measured here (grid {CONSEQUENCE_GRID}) · thief "
               f"{first.thief_label} · {output_name(first.output)} · {int(cells['budget'].max()):,} queries</sup>"
               f"<br><sup>L∞ 8/255, 10-step PGD on images the victim classifies correctly · "
               f"mean ± 1 sd over n={seeds(n)}</sup>"),
        xaxis_title="thief agreement with the victim %", yaxis_title="victim fooled %", margin={"t": 130},
        legend={"orientation": "h", "y": -0.2})
    return figure


def transfer_finding(cells: pd.DataFrame) -> str:
    """Which victims the copy's adversarial examples fool most, against the honest baselines, and whether that
    follows the ranking by agreement (over the victims' means)."""
    if cells.empty:
        return "No precomputed transfer results."
    summary = consequence_summary(cells).sort_values("agreement", ascending=False)
    parts = [f"{_victim_name(row)}: agreement {pct(row.agreement, row.agreement_sd, row.n)}, PGD on the copy fools "
             f"it on {pct(row.transfer_thief_pgd, row.transfer_thief_pgd_sd, row.n)} of attacked images (independent "
             f"model {pct(row.transfer_independent_pgd, row.transfer_independent_pgd_sd, row.n, with_n=False)}, "
             f"noise {pct(row.transfer_noise, row.transfer_noise_sd, row.n, with_n=False)})"
             for row in summary.itertuples()]
    text = "; ".join(parts) + "."
    if len(summary) > 2:
        rho = summary["agreement"].rank().corr(summary["transfer_thief_pgd"].rank())
        trend = "rises" if rho > 0.5 else "falls" if rho < -0.5 else "shows no clear trend"
        text += (f" Across the {len(summary)} victims, transfer from the copy {trend} with agreement (Spearman "
                 f"rank correlation of the victims' means {rho:+.2f}; a handful of victims, so a direction, not a law).")
    gain = 100 * (summary["transfer_thief_pgd"] - summary["transfer_independent_pgd"])
    span = f"{gain.min():+.1f}" if f"{gain.min():+.1f}" == f"{gain.max():+.1f}" else f"{gain.min():+.1f} to {gain.max():+.1f}"
    text += (f" Stealing adds {span} points of transfer over a model of the thief's architecture trained on as many "
             "true labels (victims' means).")
    return text
