"""Classroom and conference mode: one-press scenarios and the comparison of a session's runs.

A scenario is a registered function from the page's current field values to the runs it queues
(`{"label": ..., "values": {...}}`), demo-sized by `scenario_runs` (CLASSROOM: a lesson's budget and images,
each scenario in under two minutes on a 2-core CPU), with what to look for and a `finding` computed from the
precomputed grids (`scenario_findings`), so its sentence cannot contradict them. `comparison_figure`
overlays a session's curves, each labelled victim, thief, output and budget, with the precomputed
curve of the same pair drawn faintly where the shipped grids have it. Imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import plotly.graph_objects as go

from fmsteal.registry import Registry
from fmsteal.service import scenario_findings
from fmsteal.service.plots import placeholder

__all__ = ["CLASSROOM", "SCENARIOS", "demo_sized", "look_for", "run_label", "comparison_figure", "reference_curve",
           "scenario_runs"]

PALETTE = ("#4C51BF", "#DD6B20", "#2F855A", "#C53030", "#6B46C1", "#2B6CB0", "#B7791F", "#97266D")
LITE0, LITE2, SCRATCH = "tf_efficientnet_lite0", "tf_efficientnet_lite2", "scratch_cnn"
CONTRAST_SIZE = 32  # the confound grid's size: the scratch CNN's native one, where Lite0 fine-tunes fast
# A scenario's runs at most: queries, training and test images per class (bench/bench_classroom.py times the
# contrast's two fully trained victims at these sizes). Smaller settings on the form are kept.
CLASSROOM = {"budget": 500, "train_per_class": 100, "test_per_class": 50}
CLASSROOM_EVALUATIONS = "examples"  # the scenarios' lessons are the curves: the costly evaluations are left out

SCENARIOS: Registry[Callable[[dict], list[dict]]] = Registry("scenario")


@SCENARIOS.register("contrast", "The paper's contrast",
                    look_for="how far apart the two curves end: a victim fine-tuned from the thief's public backbone "
                             "and one trained from scratch, both fully trained at 32 px, so only the pretrained start "
                             "differs", finding=scenario_findings.contrast_finding)
def paper_contrast(values: dict) -> list[dict]:
    thief = values.get("thief", LITE0) if values.get("thief") != SCRATCH else LITE0
    same = {**values, "thief": thief, "thief_mode": None, "image_size": CONTRAST_SIZE}
    return [{"values": {**same, "victim": thief, "victim_mode": "fft"}},
            {"values": {**same, "victim": SCRATCH, "victim_mode": "fft"}}]


@SCENARIOS.register("outputs", "Labels vs probabilities",
                    look_for="how much closer the copy gets for the same budget when the API answers full "
                             "probability vectors instead of top-1 labels", finding=scenario_findings.outputs_finding)
def labels_vs_probabilities(values: dict) -> list[dict]:
    return [{"values": {**values, "output": "label"}}, {"values": {**values, "output": "probs"}}]


@SCENARIOS.register("bigger-thief", "Does a bigger thief help?",
                    look_for="whether the larger thief (Lite2) or the one that shares the victim's backbone (Lite0) "
                             "ends closer to the victim", finding=scenario_findings.bigger_thief_finding)
def bigger_thief(values: dict) -> list[dict]:
    victim = values.get("victim", LITE0) if values.get("victim") != SCRATCH else LITE0
    return [{"values": {**values, "victim": victim, "thief": LITE0, "victim_mode": None}},
            {"values": {**values, "victim": victim, "thief": LITE2, "victim_mode": None}}]


@SCENARIOS.register("defence", "Defended vs undefended",
                    look_for="how far the defence pushes the thief's curve down, against what it costs honest users "
                             "(the summary of the defended run states both)", finding=scenario_findings.defence_finding)
def defended_vs_undefended(values: dict) -> list[dict]:
    plain = {**values, "output": "probs", "defence": "none", "defence_params": ""}
    return [{"values": plain}, {"values": {**plain, "defence": "reverse-sigmoid"}}]


def demo_sized(values: dict) -> dict:
    """`values` with the budget and the images per class capped at CLASSROOM (None, "all", counts as above)
    and only the cheap evaluations."""
    capped = {key: min(values.get(key) or cap, cap) for key, cap in CLASSROOM.items()}
    return {**values, **capped, "evaluations": CLASSROOM_EVALUATIONS}


def scenario_runs(name: str, values: dict) -> list[dict]:
    """The runs the scenario `name` queues for the page's `values`, demo-sized."""
    return SCENARIOS.get(name).fn(demo_sized(values))


def look_for(name: str, precomputed_dir: str | Path = "precomputed") -> str:
    """A scenario's sentence for the page: what to look for, then what the precomputed grids found."""
    entry = SCENARIOS.get(name)
    title = entry.help if entry.help.endswith("?") else f"{entry.help}."
    sized = (f"Demo-sized: at most {CLASSROOM['budget']:,} queries, {CLASSROOM['train_per_class']} training and "
             f"{CLASSROOM['test_per_class']} test images per class and no costly evaluations, so the live curves "
             "are noisier than the grids.")
    return f"**{title}** Look for {entry.meta['look_for']}. {sized} {entry.meta['finding'](precomputed_dir)}"


def run_label(config: dict, names: dict[str, str]) -> str:
    """'Lite0 victim ← Lite0 thief · label · 2,000 q': what a legend entry must say."""
    victim, thief = names.get(config["victim"], config["victim"]), names.get(config["thief"], config["thief"])
    defended = f" · {config['defence']} defence" if config.get("defence", "none") != "none" else ""
    return f"{victim} victim ← {thief} thief · {config['output']} · {config['budget']:,} q{defended}"


def reference_curve(table, config: dict, sizes: dict | None = None) -> tuple[list[int], list[float], int] | None:
    """(budgets, mean agreement %, seeds) of a shipped measured grid for this pair, victim training mode, output
    and (when `sizes` {"victim", "thief"} px are known) resolutions, or None."""
    if table is None or table.empty:
        return None
    rows = table[(table["source"] == "fmsteal") & (table["victim"] == config["victim"])
                 & (table["thief"] == config["thief"]) & (table["output"] == config["output"])
                 & (table["victim_mode"] == config.get("victim_mode"))]  # a probe and a fine-tuned net differ
    if sizes:
        rows = rows[(rows["victim_size"] == sizes["victim"]) & (rows["thief_size"] == sizes["thief"])]
    if "strategy" in rows:
        rows = rows[rows["strategy"] == config.get("strategy", "random")]
    rows = rows[rows["budget"] <= max(config["budget"], 1)]
    if rows.empty:
        return None
    means = rows.groupby("budget")["agreement"].mean()
    return list(means.index), [100 * v for v in means.values], int(rows["seed"].nunique())


def comparison_figure(runs: list[dict], names: dict[str, str], table=None, hidden: frozenset = frozenset()) -> go.Figure:
    """The session's curves over one another; `runs` are {"id", "config", "points"} (points: queries, agreement)."""
    figure = go.Figure(layout={"template": "plotly_white"})
    if not runs:
        return placeholder(figure, "This session's runs appear here,<br>one curve each, to compare them.", height=420)
    for index, run in enumerate(runs):
        colour = PALETTE[index % len(PALETTE)]
        label = run_label(run["config"], names)
        reference = reference_curve(table, run["config"], run.get("sizes"))
        if reference is not None:
            budgets, agreement, seeds = reference
            figure.add_trace(go.Scatter(
                x=budgets, y=agreement, mode="lines", line={"color": colour, "width": 1, "dash": "dot"}, opacity=0.45,
                name=f"{label} · precomputed (mean of {seeds} seeds)", legendgroup=run["id"],
                visible="legendonly" if run["id"] in hidden else True))
        points = run["points"]
        figure.add_trace(go.Scatter(
            x=[p["queries"] for p in points], y=[100 * p["agreement"] for p in points], mode="lines+markers",
            line={"color": colour, "width": 3}, marker={"size": 7}, name=label, legendgroup=run["id"],
            visible="legendonly" if run["id"] in hidden else True))
    figure.update_layout(
        template="plotly_white", margin={"l": 60, "r": 20, "t": 70, "b": 50}, height=420,
        title="This session's runs: agreement vs queries<br><sup>solid: measured now; dotted: precomputed here</sup>",
        xaxis={"title": "queries to the victim", "type": "log"}, yaxis={"title": "agreement with the victim (%)"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.22})
    return figure
