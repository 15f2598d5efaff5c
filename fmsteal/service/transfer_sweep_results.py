"""The epsilon-sweep grid (`transfer-sweep-cifar10`: the consequences grid's thefts): adversarial transfer from
the stolen copy and from an independent model at each L-inf budget, per victim, and a finding read over the
budgets where the attack is not saturated.

Reads the `sweep_<attack>_<eps>` columns the `transfer-sweep` evaluation gives a cell (fractions of correctly
classified test images the victim gets wrong). At a saturated budget both models fool the victim on nearly every
image, so it cannot rank them and the finding leaves it out. Every number is a mean ± sd over the seeds with n
beside it; the finding is computed from the table. No torch here.
"""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fmsteal.evaluation.saturation import SATURATED, signed_span
from fmsteal.service.conditions import pct, seeds
from fmsteal.service.consequence_results import VICTIM, theft_cells, victim_name
from fmsteal.service.plots import placeholder

__all__ = ["SWEEP_GRID", "load_sweep_cells", "sweep_budgets", "sweep_figure", "sweep_grid_finding"]

SWEEP_GRID = "transfer-sweep-cifar10"

COLUMN = re.compile(r"sweep_(thief|independent)_(fgsm|pgd)_(\d+)$")
ATTACKS = {"fgsm": "FGSM", "pgd": "PGD"}
SIDES = {"thief": ("the stolen copy", "solid"), "independent": ("an independent model", "dash")}


def load_sweep_cells(precomputed_dir: str = "precomputed") -> pd.DataFrame:
    """One row per finished cell of the sweep grid (its last checkpoint), keyed as the consequences grid's."""
    return theft_cells(SWEEP_GRID, None, precomputed_dir)


def sweep_budgets(cells: pd.DataFrame) -> list[int]:
    """The budgets (pixel levels of 255) at which the table holds the sweep, ascending."""
    return sorted({int(match[3]) for column in cells.columns if (match := COLUMN.match(column))})


def _victims(cells: pd.DataFrame):
    """(name, that victim's cells with the sweep measured, sorted by seed) per victim."""
    budgets = sweep_budgets(cells)
    if not budgets:
        return
    measured = cells.dropna(subset=[f"sweep_thief_fgsm_{budgets[0]}"])
    for _, group in measured.groupby(VICTIM, sort=False):
        yield victim_name(group.iloc[0]), group.sort_values("seed")


def _panel_title(name: str) -> str:
    """"Scratch CNN<br>(from scratch)": a panel's title on two lines, so side-by-side titles never meet."""
    return name.replace(" (", "<br>(", 1)


def sweep_figure(cells: pd.DataFrame) -> go.Figure:
    """Victim fooled % against epsilon, one panel per victim: FGSM and PGD from the copy (solid) and from the
    independent model (dashed), random sign noise dotted; mean ± 1 sd over seeds."""
    victims = list(_victims(cells))
    if not victims:
        return placeholder(go.Figure(), f"No precomputed epsilon sweep (grid {SWEEP_GRID}).")
    budgets = sweep_budgets(cells)
    figure = make_subplots(rows=1, cols=len(victims), shared_yaxes=True, horizontal_spacing=0.08,
                           subplot_titles=[_panel_title(name) for name, _ in victims])
    colours = {"fgsm": "#1f77b4", "pgd": "#d62728"}
    for col, (_, group) in enumerate(victims, start=1):
        lines = [(f"sweep_{side}_{attack}", f"{ATTACKS[attack]} on {who}", colours[attack], dash)
                 for attack in ATTACKS for side, (who, dash) in SIDES.items()]
        lines.append(("sweep_noise", "random sign noise", "grey", "dot"))
        for prefix, name, colour, dash in lines:
            values = group[[f"{prefix}_{eps}" for eps in budgets]]
            figure.add_trace(go.Scatter(
                x=budgets, y=100 * values.mean(), error_y={"array": 100 * values.std().fillna(0), "thickness": 1},
                mode="lines+markers", name=name, legendgroup=name, showlegend=col == 1,
                line={"color": colour, "dash": dash}, hovertemplate=f"{name}<br>%{{x}}/255: %{{y:.1f}}% fooled"
                                                                      "<extra></extra>"), row=1, col=col)
        figure.update_xaxes(title_text="ε (/255)", type="log", tickvals=budgets, row=1, col=col)
    n = min(len(group) for _, group in victims)
    figure.update_yaxes(title_text="victim fooled %", range=[0, 102], row=1, col=1)
    figure.update_layout(title=f"Transfer over epsilons<br><sup>measured here (grid {SWEEP_GRID}) · mean ± 1 sd, "
                               f"n={seeds(n)}</sup>",
                         height=560, margin={"t": 140}, legend={"orientation": "h", "yanchor": "top", "y": -0.22})
    return figure


def sweep_grid_finding(cells: pd.DataFrame) -> str:
    """Per victim and attack, the copy against the independent model, paired by seed, at the unsaturated budgets."""
    victims = list(_victims(cells))
    if not victims:
        return "No precomputed epsilon sweep."
    budgets, paragraphs = sweep_budgets(cells), []
    for name, group in victims:
        parts = []
        for attack, label in ATTACKS.items():
            copy = {eps: group[f"sweep_thief_{attack}_{eps}"] for eps in budgets}
            independent = {eps: group[f"sweep_independent_{attack}_{eps}"] for eps in budgets}
            open_budgets = [eps for eps in budgets if min(copy[eps].mean(), independent[eps].mean()) < SATURATED]
            if not open_budgets:
                parts.append(f"{label} is saturated at every budget")
                continue
            gains = {eps: 100 * (copy[eps] - independent[eps]) for eps in open_budgets}
            pairs = pd.concat(gains.values())
            at = ", ".join(f"{eps}/255 {pct(copy[eps].mean(), copy[eps].std(), len(group), with_n=False)} vs "
                           f"{pct(independent[eps].mean(), independent[eps].std(), len(group), with_n=False)}"
                           for eps in open_budgets)
            higher, lower = int((pairs > 0).sum()), int((pairs < 0).sum())
            ties = f", equal in {len(pairs) - higher - lower}" if higher + lower < len(pairs) else ""
            budgets_text = ", ".join(map(str, open_budgets))
            parts.append(f"{label} (unsaturated at {budgets_text}/255; copy vs independent: {at}): "
                         f"the copy adds {signed_span([g.mean() for g in gains.values()])} points, higher in {higher}"
                         f"{ties} and lower in {lower} of {len(pairs)} seed-budget pairs")
        paragraphs.append(f"{name}, n={seeds(len(group))}: " + "; ".join(parts) + ".")
    return " ".join(paragraphs)
