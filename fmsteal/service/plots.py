"""Plotly figures and plain words for one run: the agreement curve, the thief-vs-victim confusion,
per-class agreement, and a summary. Inputs are events and run cards (plain data); no torch here."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from fmsteal.service.conditions import dataset_name, pool_name, preset_name, strategy_name

__all__ = ["curve_figure", "confusion_figure", "per_class_figure", "summary_markdown", "run_conditions",
           "placeholder", "round_log_ticks", "spaced_ticks"]

AGREEMENT, THIEF, VICTIM = "#4f46e5", "#f97316", "#64748b"
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), font=dict(size=13))


def curve_figure(checkpoints: list[dict], victim_accuracy: float | None = None, budget: int | None = None) -> go.Figure:
    """Agreement and thief accuracy (%) vs queries, with the victim's accuracy as a reference line."""
    figure = go.Figure(layout=LAYOUT)
    if not checkpoints:
        figure.add_annotation(text="The curve grows here<br>as the thief spends its queries.", showarrow=False,
                              x=0.5, y=0.5, xref="paper", yref="paper", font=dict(color=VICTIM))
    queries = [c["queries"] for c in checkpoints]
    figure.add_trace(go.Scatter(x=queries, y=[100 * c["agreement"] for c in checkpoints], name="agreement with victim",
                                mode="lines+markers", line=dict(color=AGREEMENT, width=3),
                                hovertemplate="%{x:,} queries: %{y:.1f}% agreement<extra></extra>"))
    figure.add_trace(go.Scatter(x=queries, y=[100 * c["thief_accuracy"] for c in checkpoints], name="thief accuracy",
                                mode="lines+markers", line=dict(color=THIEF, dash="dot"),
                                hovertemplate="%{x:,} queries: %{y:.1f}% accurate<extra></extra>"))
    if victim_accuracy is None and checkpoints:
        victim_accuracy = checkpoints[-1].get("victim_accuracy")
    if victim_accuracy is not None:
        figure.add_hline(y=100 * victim_accuracy, line=dict(color=VICTIM, dash="dash"),
                         annotation_text=f"victim accuracy {100 * victim_accuracy:.1f}%",
                         annotation_position="top left")
    low = min(queries, default=10)
    high = max([*queries, budget or 0]) or 100
    figure.update_layout(title="Agreement vs queries", height=380, yaxis=dict(title="%", range=[0, 101]),
                         xaxis=dict(title="queries to the victim", type="log", range=_log_range(low, high),
                                    tickvals=spaced_ticks(queries) or round_log_ticks(low, high), tickformat=","),
                         legend=dict(orientation="h", yanchor="top", y=-0.22))  # two rows on a phone grow down
    return figure


def confusion_figure(card: dict | None) -> go.Figure:
    """Victim's prediction (rows) vs thief's prediction (columns), counts, with class names."""
    figure = go.Figure(layout=LAYOUT)
    if not card:
        return placeholder(figure, "The confusion matrix<br>appears at the end.")
    labels, matrix = card["confusion"]["labels"], card["confusion"]["matrix"]
    row_share = [[100 * v / max(sum(row), 1) for v in row] for row in matrix]
    figure.add_trace(go.Heatmap(z=row_share, x=labels, y=labels, text=matrix, texttemplate="%{text}",
                                colorscale="Purples", zmin=0, zmax=100,
                                colorbar=dict(title=dict(text="% of row", side="right"), thickness=14),
                                hovertemplate="victim says %{y}<br>thief says %{x}<br>%{text} images "
                                              "(%{z:.0f}% of row)<extra></extra>"))
    figure.update_layout(title="Where the thief<br>follows the victim", height=min(900, 260 + 30 * len(labels)),
                         xaxis=dict(title="thief predicts"),
                         yaxis=dict(title="victim predicts", autorange="reversed"))
    return figure


def per_class_figure(card: dict | None) -> go.Figure:
    """Agreement (%) per class of the victim's prediction, with the overall agreement as a line."""
    figure = go.Figure(layout=LAYOUT)
    if not card:
        return placeholder(figure, "Per-class agreement<br>appears at the end.")
    values = [None if v is None else 100 * v for v in card["per_class_agreement"]]  # None: never predicted
    figure.add_trace(go.Bar(x=[v or 0 for v in values], y=card["class_names"], orientation="h", marker_color=AGREEMENT,
                            text=["never predicted" if v is None else f"{v:.0f}%" for v in values], textposition="auto",
                            hovertemplate="%{y}: %{x:.1f}%<extra></extra>"))
    figure.add_vline(x=100 * card["agreement"], line=dict(color=THIEF, dash="dash"),
                     annotation_text=f"overall {100 * card['agreement']:.1f}%", annotation_position="top")
    figure.update_layout(title="Agreement per class", height=440, xaxis=dict(title="%", range=[0, 100]),
                         yaxis=dict(autorange="reversed"))
    return figure


def summary_markdown(card: dict, labels: dict[str, str] | None = None) -> str:
    """The result in plain words; `labels` maps backbone names to display names."""
    labels = labels or {}
    config = card["config"]
    victim, thief = labels.get(config["victim"], config["victim"]), labels.get(config["thief"], config["thief"])
    modes = {"lp": "linear probe", "fft": "fine-tuned"}
    outputs = {"label": "top-1 labels", "topk": f"top-{config['top_k']} labels", "probs": "probabilities",
               "rounded": f"probabilities rounded to {config['decimals']} decimals"}
    agreed = round(card["agreement"] * card["test_size"])
    per_class = {name: value for name, value in zip(card["class_names"], card["per_class_agreement"])
                 if value is not None}  # a class the victim never predicts has no agreement
    worst, best = min(per_class, key=per_class.get), max(per_class, key=per_class.get)
    return (
        f"**The thief copied the victim on {100 * card['agreement']:.1f}% of the test images.** "
        f"The {thief} thief ({modes[config['thief_mode']]}) that only saw the answers ({outputs[config['output']]}) "
        f"to {card['queries_spent']:,} queries now gives the same answer as the {victim} victim "
        f"({modes[config['victim_mode']]}) on {agreed:,} of {card['test_size']:,} test images.\n\n"
        f"The victim itself is right on {100 * card['victim_accuracy']:.1f}% of them, the stolen copy on "
        f"{100 * card['thief_accuracy']:.1f}%. The thief follows the victim best on *{best}* "
        f"({100 * per_class[best]:.0f}%) and worst on *{worst}* ({100 * per_class[worst]:.0f}%). "
        + (f"Run on {card['device']} in {card['timings']['total']:.0f} s.\n\n" if "total" in card["timings"]
           else f"Stolen on {card['device']} in {sum(card['timings'].values()):.0f} s.\n\n") +
        f"*Measured under:* {run_conditions(card)}."
    )


def run_conditions(card: dict) -> str:
    """What one run measured: data, resolution, query pool, strategy, recipe and that it is one seed."""
    config = card["config"]
    sizes = card.get("image_size") or {}
    data = card.get("dataset") or dataset_name(config.get("dataset", "?"))
    parts = [f"{data}, one run (seed {config.get('seed', '?')}, no spread)",
             f"victim {sizes.get('victim', '?')} px, thief {sizes.get('thief', '?')} px",
             "query pool: " + pool_name(config.get("query_pool", "heldout"), config.get("dataset", "?")),
             strategy_name(config.get("strategy", "random")), preset_name(config.get("preset", "fast"))]
    return " · ".join(parts)


def placeholder(figure: go.Figure, text: str, height: int = 440) -> go.Figure:
    """`figure` as a message where its plot will be: no axes, no empty grid (an empty plot's axes read -1..4)."""
    figure.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                          font=dict(color=VICTIM))
    figure.update_layout(xaxis=dict(visible=False), yaxis=dict(visible=False), height=height)
    return figure


def round_log_ticks(low: float, high: float) -> list[int]:
    """1-2-5 ticks between `low` and `high`, for a log axis."""
    return [m * 10**e for e in range(7) for m in (1, 2, 5) if low <= m * 10**e <= high]


def spaced_ticks(queries: list[int], factor: float = 1.3) -> list[int]:
    """`queries` thinned for a log axis: the last kept, each other at least `factor` below the next kept."""
    kept: list[int] = []
    for q in sorted(set(queries), reverse=True):
        if not kept or q * factor <= kept[-1]:
            kept.append(q)
    return kept[::-1]


def _log_range(low: float, high: float) -> list[float]:
    return [math.log10(max(low, 1)) - 0.1, math.log10(max(high, low + 1)) + 0.1]
