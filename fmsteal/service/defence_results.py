"""The precomputed defence grid as protection vs utility: which defence keeps a thief's agreement down, and
what it costs the API's honest users, for a pretrained and a scratch victim side by side.

Reads the table `python -m fmsteal sweep --preset defences-cifar10` writes (a row per cell and curve
checkpoint; the defence's results repeated on every row of its cell) and keeps each cell's last
checkpoint. Utility lost is the victim's undefended test accuracy minus what honest clients get from
the defended API (a refused query counts as wrong). Protection is judged by the strongest thief with the same
budget (the distilling and the argmax thief and, where they apply, the invert, simulate and repeat thieves,
`fmsteal.adversary.thieves`): the defender's worst case.
Cells measured before the argmax thief existed count with the distilling thief alone, and say so. Every number
is a mean ± sd over the seeds with n beside it; the finding is computed from the table. No torch here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fmsteal.adversary.thieves import REPEATS
from fmsteal.service.conditions import counted, output_name, pct, seeds
from fmsteal.service.plots import placeholder
from fmsteal.service.results import grid_table, last_checkpoints

__all__ = ["DEFENCE_GRID", "load_defence_cells", "defence_summary", "protection_figure", "protection_finding",
           "summary_rows", "SUMMARY_HEADERS", "p_text"]

DEFENCE_GRID = "defences-cifar10"
SETTING = ["victim_kind", "victim_label", "output", "defence", "defence_params"]
KINDS = {"lp": "Pretrained victim (linear probe)", "fft": "Victim trained from scratch"}
FINDING_KINDS = {"lp": "pretrained, linear probe", "fft": "trained from scratch"}
SHORT = {"lp": "pretrained, LP", "fft": "from scratch"}
CHEAP = 1.0  # points of API accuracy: a defence costing honest users less than this is "cheap"
CONVICTION_P = 0.01  # the ownership test convicts a model whose p-value is below this
SUMMARY_HEADERS = ["victim", "answers", "defence", "strongest thief's agreement", "distilling thief's agreement",
                   "API accuracy lost (points)",
                   "answers changed", "detected at (queries)", "false alarms",
                   f"watermark convictions (p < {CONVICTION_P:g}): thief / innocent"]


def load_defence_cells(precomputed_dir: str | Path = "precomputed") -> pd.DataFrame:
    """One row per finished cell (its last checkpoint), with `utility_lost` (fraction) and `victim_kind`."""
    rows = grid_table(DEFENCE_GRID, precomputed_dir)
    if rows.empty:
        return rows
    rows["defence_params"] = rows["defence_params"].fillna("")
    cell = ["victim", "victim_mode", "thief", "output", "seed", "defence", "defence_params"]
    last = last_checkpoints(rows, cell)
    undefended = last["defence"] == "none"
    last.loc[undefended, "api_accuracy"] = last.loc[undefended, "victim_acc"]
    last.loc[undefended, "answers_changed"] = 0.0
    for column in ("worst_case_agreement", "strongest_thief", "repeat_agreement"):  # absent from older grids
        if column not in last:
            last[column] = np.nan
    last.loc[undefended, "worst_case_agreement"] = last.loc[undefended, "agreement"]  # the baseline: the default thief
    return last.assign(utility_lost=last["victim_acc"] - last["api_accuracy"],
                       victim_kind=last["victim_mode"].map(lambda m: "lp" if m == "lp" else "fft"))


def defence_summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd and n over seeds of each setting (victim kind, output, defence, parameters)."""
    grouped = cells.groupby(SETTING, sort=False, dropna=False)
    out = grouped.agg(agreement=("agreement", "mean"), agreement_sd=("agreement", "std"),
                      utility_lost=("utility_lost", "mean"), utility_lost_sd=("utility_lost", "std"),
                      answers_changed=("answers_changed", "mean"), n=("seed", "nunique"),
                      detected_at=("detected_at", lambda s: _median_or_none(s)),
                      detected=("detected_at", lambda s: int(s.notna().sum())),
                      false_alarm_rate=("false_alarm_rate", "mean"),
                      thief_log10_p=("watermark_thief_log10_p", "min"),
                      innocent_log10_p=("watermark_innocent_log10_p", "min"),
                      thief_convicted=("watermark_thief_log10_p", _convictions),
                      innocent_convicted=("watermark_innocent_log10_p", _convictions),
                      worst=("worst_case_agreement", "mean"), worst_sd=("worst_case_agreement", "std"),
                      worst_n=("worst_case_agreement", "count"), strongest=("strongest_thief", _most_often),
                      repeat=("repeat_agreement", "mean"))
    out["adaptive"] = out["worst_n"] == out["n"]  # every seed measured against the strongest thief
    out["protected"] = out["worst"].where(out["adaptive"], out["agreement"])
    out["protected_sd"] = out["worst_sd"].where(out["adaptive"], out["agreement_sd"])
    return out.reset_index()


def _most_often(names: pd.Series) -> str | None:
    names = names.dropna()
    return names.mode().iat[0] if len(names) else None


def _convictions(log10_p: pd.Series) -> int:
    """Seeds in which the ownership test convicted the model (p < CONVICTION_P)."""
    return int((log10_p < math.log10(CONVICTION_P)).sum())


def _median_or_none(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.median()) if len(values) else None


def setting_name(row) -> str:
    """"gaussian-noise (sigma=0.3)", "undefended"."""
    if row.defence == "none":
        return "undefended"
    return f"{row.defence} ({row.defence_params})" if row.defence_params else row.defence


def protection_figure(cells: pd.DataFrame, output: str) -> go.Figure:
    """Thief agreement vs API accuracy lost, one point per defence setting (mean ± 1 sd over seeds as error
    bars), the pretrained and the scratch victim side by side; the undefended agreement as a dashed line."""
    summary = defence_summary(cells[cells["output"] == output]) if not cells.empty else pd.DataFrame()
    kinds = [kind for kind in KINDS if not summary.empty and (summary["victim_kind"] == kind).any()]
    if not kinds:
        return placeholder(go.Figure(), f"No precomputed defence results for {output_name(output)}.")
    titles = [f"{KINDS[k]}:<br>{summary.loc[summary['victim_kind'] == k, 'victim_label'].iloc[0]}" for k in kinds]
    figure = make_subplots(rows=1, cols=len(kinds), shared_yaxes=True, subplot_titles=titles, horizontal_spacing=0.06)
    palette = plotly.colors.qualitative.Dark24
    colours = {name: palette[i % len(palette)] for i, name in enumerate(summary["defence"].unique())}
    for col, kind in enumerate(kinds, start=1):
        rows = summary[summary["victim_kind"] == kind]
        for defence, points in rows.groupby("defence", sort=False):
            if defence == "none":
                base = points.iloc[0]
                figure.add_hline(y=100 * base.agreement, line_dash="dash", line_color="grey", row=1, col=col,
                                 annotation_text=f"undefended {pct(base.agreement, base.agreement_sd, base.n)}",
                                 annotation_position="top right")
            figure.add_trace(go.Scatter(
                x=100 * points["utility_lost"], y=100 * points["protected"],
                mode="markers",  # settings on hover (labels piled up)
                text=list(points["defence_params"]),
                marker={"size": 11, "color": colours[defence], "symbol": "x" if defence == "none" else "circle"},
                error_x={"array": 100 * points["utility_lost_sd"].fillna(0), "thickness": 1},
                error_y={"array": 100 * points["protected_sd"].fillna(0), "thickness": 1},
                name="undefended" if defence == "none" else defence, legendgroup=defence, showlegend=col == 1,
                customdata=np.stack([points["n"], 100 * points["answers_changed"], 100 * points["agreement"]], axis=1),
                hovertemplate=(f"{defence} %{{text}}<br>strongest thief's agreement %{{y:.1f}}%<br>distilling "
                               "thief's %{customdata[2]:.1f}%<br>accuracy lost %{x:.2f} points<br>answers changed "
                               "%{customdata[1]:.1f}%<br>n=%{customdata[0]} seeds<extra></extra>")), row=1, col=col)
        figure.update_xaxes(title_text="honest users' accuracy<br>lost (points)", row=1, col=col)
    n = int(summary["n"].min())
    figure.update_yaxes(title_text="strongest thief's agreement %", row=1, col=1)
    figure.update_layout(title=f"Protection vs utility: {output_name(output)} answers<br><sup>measured here (grid "
                               f"{DEFENCE_GRID}) · thief {summary_thief(cells)} · mean ± 1 sd over n={seeds(n)} · "
                               f"{int(cells['budget'].max()):,} queries</sup>",
                         margin={"t": 140, "b": 40}, height=640,  # the legend below: the two plots keep the width
                         legend={"title": "defence", "orientation": "h", "yanchor": "top", "y": -0.25})
    return figure


def summary_thief(cells: pd.DataFrame) -> str:
    return " / ".join(sorted(cells["thief_label"].unique()))


def protection_finding(cells: pd.DataFrame, output: str) -> str:
    """Per victim kind, a paragraph each: the undefended agreement, the defence that lowered the strongest thief's
    agreement most and what that cost, the most any cheap defence (< CHEAP points of accuracy lost) achieved,
    where the distilling thief alone overstated a defence; detection and watermark verdicts."""
    if cells.empty:
        return f"No precomputed defence results for {output_name(output)}."
    summary = defence_summary(cells[cells["output"] == output])
    settings = len(summary.loc[summary["defence"] != "none", ["defence", "defence_params"]].drop_duplicates())
    sentences = []
    for kind, rows in summary.groupby("victim_kind", sort=False):
        base = rows[rows["defence"] == "none"]
        defended = rows[rows["defence"] != "none"]
        if base.empty or defended.empty:
            continue
        base = base.iloc[0]
        best = defended.loc[defended["protected"].idxmin()]
        cheap = defended[defended["utility_lost"] < CHEAP / 100]
        partial = (f" Only {len(defended)} of the {settings} defence settings are measured for this victim so far; "
                   "what follows is among those." if len(defended) < settings else "")
        text = (f"{base.victim_label} victim ({FINDING_KINDS[kind]}), {output_name(output)}: undefended, the thief reaches "
                f"{pct(base.agreement, base.agreement_sd, base.n)}.{partial} The largest drop is {setting_name(best)}, "
                f"to {pct(best.protected, best.protected_sd, best.n)}{_against(best)}, at a cost of "
                f"{100 * best.utility_lost:.1f} "
                f"points of honest users' accuracy ({100 * best.answers_changed:.0f}% of answers changed).")
        if not cheap.empty:
            top = cheap.loc[cheap["protected"].idxmin()]
            drop = 100 * (base.agreement - top.protected)
            text += (f" Of the defences costing under {CHEAP:g} point, {setting_name(top)} lowers agreement most: by "
                     f"{drop:.1f} points{_against(top)}." if drop >= 0.05 else
                     f" No defence costing under {CHEAP:g} point lowers agreement by 0.1 points or more.")
        sentences.append(text + _overstated_text(defended) + _repeat_text(defended) + _detection_text(defended)
                         + _watermark_text(defended))
    return "\n\n".join(sentences) or f"No precomputed defence results for {output_name(output)}."


def _against(row) -> str:
    """Which thief a protection figure is for."""
    strongest = {"distil": "distilling"}.get(row.strongest, row.strongest)
    return (f" for the strongest thief with the same budget (the {strongest} thief)" if row.adaptive
            else " for the distilling thief (the argmax thief not yet run on these cells)")


def _overstated_text(defended: pd.DataFrame) -> str:
    """The setting whose protection the distilling thief alone overstates most (by more than a point)."""
    measured = defended[defended["adaptive"]]
    gaps = measured["worst"] - measured["agreement"]
    if gaps.empty or gaps.max() <= 0.01:
        return ""
    row = measured.loc[gaps.idxmax()]
    return (f" A thief that distils the answers would make {setting_name(row)} look stronger: it reaches "
            f"{pct(row.agreement, row.agreement_sd, row.n)}, the {row.strongest} thief with the same budget "
            f"{pct(row.worst, row.worst_sd, row.n)}.")


def _repeat_text(defended: pd.DataFrame) -> str:
    """How the thief that asks again fared, on the settings whose answers are drawn anew for every query."""
    measured = defended[defended["repeat"].notna() & defended["adaptive"]]
    if measured.empty:
        return ""
    behind = 100 * (measured["worst"] - measured["repeat"])
    settings = f"{'the' if len(measured) == 1 else 'all'} {counted(len(measured), 'setting')} it applies to"
    who = f" Asking each of {REPEATS} times fewer images {REPEATS} times (the repeat thief)"
    if (behind > 0).all():
        return f"{who} trails the strongest thief on {settings}, by {behind.min():.1f} to {behind.max():.1f} points."
    return f"{who} is the strongest on {int((behind <= 0).sum())} of {settings}."


def _detection_text(defended: pd.DataFrame) -> str:
    prada = defended[defended["defence"] == "prada"]
    parts = [f"{setting_name(row)} flagged the thief in {row.detected} of {seeds(row.n)}"
             + (f" (median {row.detected_at:,.0f} queries)" if row.detected else "")
             + f" and {100 * row.false_alarm_rate:.0f}% of honest clients" for row in prada.itertuples()]
    return f" {'; '.join(parts)}." if parts else ""


def _watermark_text(defended: pd.DataFrame) -> str:
    marks = defended[defended["defence"] == "watermark"]
    parts = [f"{setting_name(row)} convicted the stolen copy in "
             f"{_conviction_text(row.thief_convicted, row.n, row.thief_log10_p)} and an innocent model in "
             f"{_conviction_text(row.innocent_convicted, row.n, row.innocent_log10_p)}" for row in marks.itertuples()]
    return f" Ownership test (p < {CONVICTION_P:g} convicts): {'; '.join(parts)}." if parts else ""


def _conviction_text(convicted: int, n: int, log10_p: float) -> str:
    """"1 of 3 seeds (smallest p-value 2.5e-03)"."""
    return f"{convicted} of {seeds(n)} (smallest p-value {p_text(log10_p)})"


def p_text(log10_p: float) -> str:
    """A p-value from its log10: "0.79"; "2.5e-03" where two decimals would read 0.00; "10^-412" where a float
    would underflow."""
    if log10_p > -2:
        return f"{10 ** log10_p:.2f}"
    return f"{10 ** log10_p:.1e}" if log10_p > -300 else f"10^{log10_p:.0f}"


def summary_rows(cells: pd.DataFrame) -> list[list]:
    """The whole grid as table rows (SUMMARY_HEADERS), every figure with its spread and n."""
    summary = defence_summary(cells)
    summary = summary.assign(kind_order=summary["victim_kind"].map(list(KINDS).index),
                             defended=summary["defence"] != "none")
    out = []
    for row in summary.sort_values(["kind_order", "output", "defended", "defence", "defence_params"]).itertuples():
        flagged = f"{row.detected} of {seeds(row.n)}"
        detection = "" if row.defence != "prada" else (
            f"{row.detected_at:,.0f} (median, {flagged})" if row.detected else f"never ({flagged})")
        alarms = "" if row.false_alarm_rate != row.false_alarm_rate else f"{100 * row.false_alarm_rate:.0f}%"
        watermark = "" if row.thief_log10_p != row.thief_log10_p else (
            f"{_conviction_text(row.thief_convicted, row.n, row.thief_log10_p)} / "
            f"{_conviction_text(row.innocent_convicted, row.n, row.innocent_log10_p)}")
        out.append([f"{row.victim_label} ({SHORT[row.victim_kind]})", output_name(row.output),
                    setting_name(row), pct(row.protected, row.protected_sd, row.n) if row.adaptive else "",
                    pct(row.agreement, row.agreement_sd, row.n),
                    f"{100 * row.utility_lost:.2f}" + (f" ± {100 * row.utility_lost_sd:.2f}" if row.n > 1 else ""),
                    f"{100 * row.answers_changed:.1f}%", detection, alarms, watermark])
    return out
