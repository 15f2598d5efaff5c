"""Precomputed results as one tidy table, drawn as heatmaps and budget curves, each with its finding.

`precomputed/paper/*.csv` are the paper's tables (percent); every other `precomputed/<grid>/*.csv`
is a table written by `python -m fmsteal sweep` (fractions). Both become rows of one frame with
agreement, victim_acc and thief_acc as fractions in [0, 1] (NaN where unknown). No torch here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from fmsteal.service.plots import round_log_ticks

COLUMNS = ["source", "dataset", "victim_mode", "victim", "victim_label", "thief", "thief_label", "budget",
           "output", "seed", "strategy", "agreement", "victim_acc", "thief_acc", "macro_f1"]
KEYS = ["source", "dataset", "victim_mode", "victim", "thief", "budget", "output", "seed", "strategy"]
ALL_MODES = "all"  # a victim_mode choice that keeps LP and FFT victims side by side
REPO = Path(__file__).resolve().parents[2]
PAPER_OUTPUTS = {"top1_label": "label"}


def load_tables(precomputed_dir: str | Path = "precomputed") -> pd.DataFrame:
    """Every table under `precomputed_dir` as one tidy frame (read once, then served from memory)."""
    root = Path(precomputed_dir)
    if not root.is_absolute() and not root.exists():
        root = REPO / root
    files = sorted(root.glob("paper/*.csv")) + sorted(p for p in root.glob("*/*.csv") if p.parent.name != "paper")
    return _load(tuple((str(p), p.stat().st_mtime_ns) for p in files)).copy()


@lru_cache(maxsize=8)
def _load(stamp: tuple[tuple[str, int], ...]) -> pd.DataFrame:
    frames = [_read(Path(path)) for path, _ in stamp]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat(frames, ignore_index=True)[COLUMNS]
    labels = pd.concat([df[["victim", "victim_label"]].set_axis(["name", "label"], axis=1),
                        df[["thief", "thief_label"]].set_axis(["name", "label"], axis=1)]).dropna()
    label_of = labels.drop_duplicates("name").set_index("name")["label"]
    for role in ("victim", "thief"):
        df[f"{role}_label"] = df[f"{role}_label"].fillna(df[role].map(label_of)).fillna(df[role])
    return df.drop_duplicates(KEYS, keep="first").reset_index(drop=True)


def _read(path: Path) -> pd.DataFrame:
    """One CSV as tidy rows: a sweep table as is, a paper table converted from percent."""
    raw = pd.read_csv(path)
    if "source" in raw.columns:
        raw = raw.assign(strategy=raw.get("strategy", "random"))
        return raw.reindex(columns=COLUMNS)
    out = pd.DataFrame({
        "source": "paper", "dataset": raw["dataset"], "victim_mode": raw["victim_mode"],
        "victim": raw["victim"], "victim_label": raw.get("victim_label"), "thief": raw["thief"],
        "thief_label": raw.get("thief_label"), "budget": raw["budget"],
        "output": raw.get("victim_output", pd.Series("top1_label", index=raw.index)).map(PAPER_OUTPUTS),
        "seed": np.nan, "strategy": raw.get("strategy", "random"), "agreement": raw["agreement"] / 100,
        "victim_acc": raw["victim_acc"] / 100 if "victim_acc" in raw else np.nan,
        "thief_acc": np.nan, "macro_f1": np.nan,
    })
    return out.reindex(columns=COLUMNS)


def family(name: str) -> str:
    """foundation / conventional / scratch, from the backbone's zoo name (no torch import)."""
    if "scratch" in name:
        return "scratch"
    return "foundation" if name.startswith("vit") else "conventional"


def views(df: pd.DataFrame) -> dict:
    """The choices that have data: keyword arguments of `heatmap_figure` / `budget_curve_figure`, and defaults."""
    heatmaps = []
    for (source, dataset, budget, output, strategy), rows in df.groupby(
            ["source", "dataset", "budget", "output", "strategy"]):
        modes = sorted(rows["victim_mode"].unique())
        for mode in modes + ([ALL_MODES] if len(modes) > 1 else []):
            heatmaps.append({"source": source, "dataset": dataset, "victim_mode": mode,
                             "budget": int(budget), "output": output, "strategy": strategy})
    curves, ours = [], []
    for (dataset, output, thief, strategy), rows in df.groupby(["dataset", "output", "thief", "strategy"]):
        budgets = rows.groupby(["source", "victim", "victim_mode"])["budget"].nunique()
        modes = sorted(budgets[budgets > 1].index.get_level_values("victim_mode").unique())
        for mode in modes + ([ALL_MODES] if len(modes) > 1 else []):
            curves.append({"dataset": dataset, "victim_mode": mode, "output": output, "thief": thief,
                           "strategy": strategy})
            ours.append(bool((rows["source"] == "fmsteal").any()))
    ranks = [(view["strategy"] == "random", mine, view["output"] == "label", view["victim_mode"] == ALL_MODES)
             for view, mine in zip(curves, ours)]
    return {
        "sources": sorted(df["source"].unique()), "datasets": sorted(df["dataset"].unique()),
        "outputs": sorted(df["output"].unique()), "strategies": sorted(df["strategy"].unique()),
        "heatmaps": heatmaps, "curves": curves,
        "default_heatmap": max(heatmaps, key=_heatmap_rank, default=None),
        "default_curve": curves[ranks.index(max(ranks))] if curves else None,
    }


def _heatmap_rank(view: dict) -> tuple:
    """Our grid first (LP and scratch victims side by side), else the paper's CIFAR-10 LP table."""
    ours = view["source"] == "fmsteal"
    return (view["strategy"] == "random", ours, view["dataset"] == "cifar10", view["output"] == "label",
            view["budget"] == 5000, view["victim_mode"] == (ALL_MODES if ours else "lp"), view["budget"])


def _select(df: pd.DataFrame, victim_mode: str, **equal) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for column, value in equal.items():
        mask &= df[column] == value
    if victim_mode != ALL_MODES:
        mask &= df["victim_mode"] == victim_mode
    return df[mask]


def _summary(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, sd and count of agreement over seeds, in the order the rows first appear."""
    grouped = rows.groupby(by, sort=False)["agreement"]
    return pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(), "n": grouped.size()}).reset_index()


def _pct(mean: float, sd: float = np.nan, n: int = 1) -> str:
    return f"{100 * mean:.1f}%" + (f" ± {100 * sd:.1f}" if n > 1 and not np.isnan(sd) else "")


def _victim_names(rows: pd.DataFrame, mixed: bool) -> dict:
    """Victim (name, mode) -> display label; the mode is shown when LP and FFT victims are mixed."""
    pairs = rows[["victim", "victim_mode", "victim_label"]].drop_duplicates(["victim", "victim_mode"])
    return {(v, m): f"{label} ({m.upper()})" if mixed else label for v, m, label in pairs.itertuples(index=False)}


def heatmap_figure(df: pd.DataFrame, dataset: str, victim_mode: str, budget: int, output: str, source: str,
                   strategy: str = "random") -> tuple[go.Figure, str]:
    """Victim x thief agreement (mean over seeds) with the other source's number beside it where known."""
    chosen = dict(dataset=dataset, budget=budget, output=output, strategy=strategy)
    rows = _select(df, victim_mode, source=source, **chosen)
    if rows.empty:
        return _empty(f"No {source} results for {dataset}, {victim_mode}, {budget:,} queries, {output}."), \
            "No results for this choice."
    cells = _summary(rows, ["victim", "victim_mode", "thief"])
    other_source = "paper" if source != "paper" else "fmsteal"
    other = _summary(_select(df, victim_mode, source=other_source, **chosen), ["victim", "victim_mode", "thief"])
    beside = {(v, m, t): mean
              for v, m, t, mean in other[["victim", "victim_mode", "thief", "mean"]].itertuples(index=False)}
    victims = _victim_names(rows, rows["victim_mode"].nunique() > 1)
    thieves = rows.drop_duplicates("thief").set_index("thief")["thief_label"]
    z = np.full((len(victims), len(thieves)), np.nan)
    text = np.full(z.shape, "", dtype=object)
    row_of = {key: i for i, key in enumerate(victims)}
    col_of = {name: j for j, name in enumerate(thieves.index)}
    for cell in cells.itertuples(index=False):
        i, j = row_of[(cell.victim, cell.victim_mode)], col_of[cell.thief]
        z[i, j] = 100 * cell.mean
        text[i, j] = _pct(cell.mean, cell.sd, cell.n)
        if (cell.victim, cell.victim_mode, cell.thief) in beside:
            text[i, j] += f"<br>{other_source} {_pct(beside[(cell.victim, cell.victim_mode, cell.thief)])}"
    figure = go.Figure(go.Heatmap(
        z=z, x=list(thieves.values), y=list(victims.values()), text=text, texttemplate="%{text}",
        zmin=0, zmax=100, colorscale="Viridis", colorbar={"title": "agreement %"},
        hovertemplate="victim %{y}<br>thief %{x}<br>agreement %{text}<extra></extra>"))
    seeds = int(cells["n"].max())
    figure.update_layout(
        title=f"{source}: {dataset}, {budget:,} {output} queries" + (f", mean of {seeds} seeds" if seeds > 1 else ""),
        xaxis_title="thief", yaxis_title="victim", yaxis_autorange="reversed", margin={"t": 50})
    plain = rows.drop_duplicates("victim").set_index("victim")["victim_label"]
    return figure, _heatmap_finding(cells.assign(victim_label=cells["victim"].map(plain),
                                                 thief_label=cells["thief"].map(thieves)), budget)


def _heatmap_finding(cells: pd.DataFrame, budget: int) -> str:
    """One sentence: own-backbone vs from-scratch victim, else foundation vs conventional, else the range."""
    cells = cells.assign(family=cells["victim"].map(family))
    own = cells[cells["victim"] == cells["thief"]]
    scratch = cells[cells["family"] == "scratch"]
    both = [t for t in own["thief"] if t in set(scratch["thief"])]
    if both:
        mine, theirs = own[own["thief"] == both[0]].iloc[0], scratch[scratch["thief"] == both[0]].iloc[0]
        return (f"At {budget:,} queries, the {mine.thief_label} thief copies a victim built on its own public "
                f"backbone with {_pct(mine['mean'], mine.sd, mine.n)} agreement, a from-scratch victim "
                f"({theirs.victim_label}) with {_pct(theirs['mean'], theirs.sd, theirs.n)}.")
    top, low = cells.loc[cells["mean"].idxmax()], cells.loc[cells["mean"].idxmin()]
    extremes = (f"the highest is the {top.thief_label} thief on the {top.victim_label} victim ({_pct(top['mean'])}), "
                f"the lowest the {low.thief_label} thief on the {low.victim_label} victim ({_pct(low['mean'])}).")
    by_family = cells.groupby("family")["mean"].mean()
    if {"foundation", "conventional"} <= set(by_family.index):
        thieves = cells["thief"].nunique()
        over = f"averaged over {thieves} thieves" if thieves > 1 else f"for the {cells['thief_label'].iloc[0]} thief"
        return (f"At {budget:,} queries, {over}, victims fine-tuned from "
                f"foundation models are copied with {_pct(by_family['foundation'])} agreement, conventional "
                f"victims with {_pct(by_family['conventional'])}; {extremes}")
    return f"At {budget:,} queries, {extremes}"


def budget_curve_figure(df: pd.DataFrame, dataset: str, victim_mode: str, output: str, thief: str,
                        strategy: str = "random") -> tuple[go.Figure, str]:
    """Agreement vs queries per victim for one thief: mean over seeds, mean ± sd as a band."""
    rows = _select(df, victim_mode, dataset=dataset, output=output, thief=thief, strategy=strategy)
    curve_keys = ["source", "victim", "victim_mode"]
    rows = rows[rows.groupby(curve_keys)["budget"].transform("nunique") > 1]
    if rows.empty:
        return _empty(f"No budget results for the {thief} thief on {dataset}."), "No results for this choice."
    points = _summary(rows.sort_values("budget", kind="stable"), curve_keys + ["budget"])
    names = _victim_names(rows, rows["victim_mode"].nunique() > 1)
    figure = go.Figure()
    palette = plotly.colors.qualitative.Plotly
    for i, ((source, victim, mode), curve) in enumerate(points.groupby(curve_keys, sort=False)):
        name, color = names[(victim, mode)] + (" · paper" if source == "paper" else ""), palette[i % len(palette)]
        x, y, sd = curve["budget"].to_numpy(), 100 * curve["mean"].to_numpy(), 100 * curve["sd"].fillna(0).to_numpy()
        if (curve["n"] > 1).any():
            figure.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([y + sd, (y - sd)[::-1]]),
                                        fill="toself", fillcolor=color, opacity=0.2, line={"width": 0},
                                        showlegend=False, hoverinfo="skip", legendgroup=name))
        figure.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines+markers", legendgroup=name,
                                    line={"dash": "dash" if source == "paper" else "solid", "color": color},
                                    hovertemplate="%{x:,} queries: %{y:.1f}%<extra>" + name + "</extra>"))
    thief_label = rows["thief_label"].iloc[0]
    figure.update_layout(title=f"{thief_label} thief on {dataset}: agreement vs queries ({output})",
                         xaxis={"title": "queries", "type": "log", "tickformat": ",",
                                "tickvals": round_log_ticks(rows["budget"].min(), rows["budget"].max())},
                         yaxis={"title": "agreement %"},
                         margin={"t": 50})
    source = "fmsteal" if (points["source"] == "fmsteal").any() else "paper"
    return figure, _curve_finding(points[points["source"] == source], names, thief, thief_label)


def _curve_finding(points: pd.DataFrame, names: dict, thief: str, thief_label: str) -> str:
    """One sentence on how agreement grows with the budget, per victim."""
    ends = points.groupby(["victim", "victim_mode"], sort=False).agg(
        b0=("budget", "first"), b1=("budget", "last"), a0=("mean", "first"), a1=("mean", "last")).reset_index()
    ends["gain"] = ends["a1"] - ends["a0"]
    ends["name"] = [names[(v, m)] for v, m in zip(ends["victim"], ends["victim_mode"])]

    def rise(row: pd.Series) -> str:
        return f"{_pct(row.a0)} at {int(row.b0):,} to {_pct(row.a1)} at {int(row.b1):,} queries"

    own, scratch = ends[ends["victim"] == thief], ends[ends["victim"].map(family) == "scratch"]
    if len(own) and len(scratch):
        return (f"The {thief_label} thief's agreement with a victim on its own backbone goes from {rise(own.iloc[0])}; "
                f"with the {scratch.iloc[0]['name']} victim, trained from scratch, from {rise(scratch.iloc[0])}.")
    most, least = ends.loc[ends["gain"].idxmax()], ends.loc[ends["gain"].idxmin()]
    return (f"More queries help the {thief_label} thief most against the {most['name']} victim "
            f"({rise(most)}, {100 * most.gain:+.1f} points) and least against the {least['name']} victim "
            f"({rise(least)}, {100 * least.gain:+.1f} points).")


def _empty(message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_layout(xaxis={"visible": False}, yaxis={"visible": False})
    return figure
