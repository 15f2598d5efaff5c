"""Precomputed results as one tidy table, drawn as heatmaps and budget curves, each with its finding.

`precomputed/paper/*.csv` are the paper's tables (percent); every other `precomputed/<grid>/*.csv`
is a table written by `python -m fmsteal sweep` (fractions), whose run cards (`cards/*.json`) give
each cell's resolution, query pool and preset. Both become rows of one frame with agreement,
victim_acc and thief_acc as fractions in [0, 1] (NaN where unknown). Every view's title names what
was measured (see fmsteal.service.conditions); findings come from fmsteal.service.findings. No torch here.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from fmsteal.service.conditions import dataset_name, describe, mode_name, output_name, pct, strategy_name
from fmsteal.service.findings import curve_finding, family, heatmap_finding, paper_effect, paper_effect_sentence
from fmsteal.service.plots import round_log_ticks

__all__ = ["COLUMNS", "KEYS", "ALL_MODES", "precomputed_root", "grid_table", "last_checkpoints", "load_tables", "views", "view_label", "heatmap_figure",
           "budget_curve_figure", "family", "paper_effect", "paper_effect_sentence"]

COLUMNS = ["source", "grid", "dataset", "victim_mode", "victim", "victim_label", "thief", "thief_label", "budget",
           "output", "seed", "strategy", "agreement", "victim_acc", "thief_acc", "macro_f1", "victim_size",
           "thief_size", "query_pool", "preset"]
KEYS = ["source", "grid", "dataset", "victim_mode", "victim", "thief", "budget", "output", "seed", "strategy"]
CELL = ["victim", "victim_mode", "thief", "output", "seed", "strategy"]  # a sweep cell within one grid
ALL_MODES = "all"  # a victim_mode choice that keeps LP and FFT victims side by side
REPORT_BUDGETS = (1_000, 5_000, 10_000, 20_000)  # measured heatmaps: these checkpoints and each grid's largest
REPO = Path(__file__).resolve().parents[2]
PAPER_OUTPUTS = {"top1_label": "label"}
PAPER_POOLS = {"cifar10": "imagenet32"}  # the paper's pool per victim dataset (ImageNet otherwise)
PAPER_SIZE = 224  # the authors resize every image to 224 px for victim and thief
PLOT_HEIGHT, TITLE_TOP, SMALL_PRINT_LINE = 420, 50, 22  # px: a view's plot, its headline, each line of conditions


def precomputed_root(precomputed_dir: str | Path = "precomputed") -> Path:
    """The precomputed folder; a relative one that is not under the working directory is the repo's."""
    root = Path(precomputed_dir)
    return REPO / root if not root.is_absolute() and not root.exists() else root


def grid_table(grid: str, precomputed_dir: str | Path = "precomputed") -> pd.DataFrame:
    """The table a sweep of `grid` wrote under the precomputed folder (empty when there is none)."""
    path = precomputed_root(precomputed_dir) / grid / f"{grid}.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def last_checkpoints(rows: pd.DataFrame, cell: list[str]) -> pd.DataFrame:
    """One row per cell (the `cell` columns, missing values kept as a key): its largest-budget checkpoint."""
    return rows.loc[rows.groupby(cell, dropna=False)["budget"].idxmax()].reset_index(drop=True)


def load_tables(precomputed_dir: str | Path = "precomputed") -> pd.DataFrame:
    """Every table under `precomputed_dir` as one tidy frame (read once, then served from memory)."""
    root = precomputed_root(precomputed_dir)
    files = sorted(root.glob("paper/*.csv")) + sorted(p for p in root.glob("*/*.csv") if p.parent.name != "paper")
    return _load(tuple((str(p), p.stat().st_mtime_ns) for p in files)).copy()


@lru_cache(maxsize=8)
def _load(stamp: tuple[tuple[str, int], ...]) -> pd.DataFrame:
    frames = [frame for frame in (_read(Path(path)) for path, _ in stamp) if not frame.empty]
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
    """One CSV as tidy rows: a sweep table with its cards' conditions, a paper table converted from percent."""
    raw = pd.read_csv(path)
    if "defence" in raw.columns:  # a defence grid: its defended cells share keys; it has a view of its own
        return pd.DataFrame(columns=COLUMNS)
    if "source" in raw.columns:
        raw = raw.assign(strategy=raw.get("strategy", "random"), grid=path.stem)
        cards = _card_conditions(path.parent / "cards")
        if not cards.empty:
            raw = raw.merge(cards, on=CELL, how="left")
        return raw.reindex(columns=COLUMNS)
    dataset = raw["dataset"]
    out = pd.DataFrame({
        "source": "paper", "grid": "paper", "dataset": dataset, "victim_mode": raw["victim_mode"],
        "victim": raw["victim"], "victim_label": raw.get("victim_label"), "thief": raw["thief"],
        "thief_label": raw.get("thief_label"), "budget": raw["budget"],
        "output": raw.get("victim_output", pd.Series("top1_label", index=raw.index)).map(PAPER_OUTPUTS),
        "seed": np.nan, "strategy": raw.get("strategy", "random"), "agreement": raw["agreement"] / 100,
        "victim_acc": raw["victim_acc"] / 100 if "victim_acc" in raw else np.nan,
        "thief_acc": np.nan, "macro_f1": np.nan, "victim_size": PAPER_SIZE, "thief_size": PAPER_SIZE,
        "query_pool": raw["query_pool"] if "query_pool" in raw else dataset.map(PAPER_POOLS).fillna("imagenet"),
        "preset": "authors",
    })
    return out.reindex(columns=COLUMNS)


def _card_conditions(folder: Path) -> pd.DataFrame:
    """Per sweep cell: the resolution each side ran at, the query pool and the preset, from its run card."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        card = json.loads(path.read_text())
        config, sizes = card["config"], card.get("image_size", {})
        rows.append({**{key: config[key] for key in CELL}, "victim_size": sizes.get("victim"),
                     "thief_size": sizes.get("thief"), "query_pool": config.get("query_pool"),
                     "preset": config.get("preset")})
    return pd.DataFrame(rows).drop_duplicates(CELL) if rows else pd.DataFrame()


def views(df: pd.DataFrame) -> dict:
    """The choices that have data: keyword arguments of `heatmap_figure` / `budget_curve_figure`, and defaults."""
    heatmaps, largest = [], df.groupby("grid")["budget"].max()
    for (source, grid, dataset, budget, output, strategy), rows in df.groupby(
            ["source", "grid", "dataset", "budget", "output", "strategy"]):
        if source != "paper" and budget not in REPORT_BUDGETS and budget != largest[grid]:
            continue  # a measured run has a checkpoint per rung: its curve shows them, a heatmap the round ones
        modes = sorted(rows["victim_mode"].unique())
        for mode in modes + ([ALL_MODES] if len(modes) > 1 else []):
            heatmaps.append({"source": source, "grid": grid, "dataset": dataset, "victim_mode": mode,
                             "budget": int(budget), "output": output, "strategy": strategy})
    curves, ours = [], []
    for (grid, dataset, output, thief, strategy), rows in df.groupby(["grid", "dataset", "output", "thief", "strategy"]):
        budgets = rows.groupby(["victim", "victim_mode"])["budget"].nunique()
        modes = sorted(budgets[budgets > 1].index.get_level_values("victim_mode").unique())
        for mode in modes + ([ALL_MODES] if len(modes) > 1 else []):
            curves.append({"grid": grid, "dataset": dataset, "victim_mode": mode, "output": output, "thief": thief,
                           "strategy": strategy})
            ours.append(bool((rows["source"] == "fmsteal").any()))
    ranks = [(view["strategy"] == "random", mine, view["grid"] == "offline-cifar10", view["output"] == "label",
              view["victim_mode"] == ALL_MODES) for view, mine in zip(curves, ours)]
    heatmaps.sort(key=_heatmap_rank, reverse=True)  # the default first (a stable sort: ties keep their order)
    return {
        "sources": sorted(df["source"].unique()), "datasets": sorted(df["dataset"].unique()),
        "outputs": sorted(df["output"].unique()), "strategies": sorted(df["strategy"].unique()),
        "heatmaps": heatmaps, "curves": curves,
        "default_heatmap": heatmaps[0] if heatmaps else None,
        "default_curve": curves[ranks.index(max(ranks))] if curves else None,
    }


def view_label(view: dict, df: pd.DataFrame | None = None) -> str:
    """The chooser label of a view from `views`: distinct for every view (source, grid, dataset, victim mode,
    budget, output and query strategy); `df` supplies the thief's display name for curves."""
    common = [dataset_name(view["dataset"]), mode_name(view["victim_mode"]), output_name(view["output"]),
              strategy_name(view["strategy"])]
    if "budget" in view:
        where = "paper" if view["source"] == "paper" else f"measured here ({view['grid']})"
        return " · ".join([where] + common[:2] + [f"{view['budget']:,} queries"] + common[2:])
    thief = view["thief"]
    if df is not None:
        labels = df.loc[df["thief"] == thief, "thief_label"]
        thief = labels.iloc[0] if len(labels) else thief
    where = "paper" if view["grid"] == "paper" else f"measured here ({view['grid']})"
    return " · ".join([f"{thief} thief", where] + common)


def _heatmap_rank(view: dict) -> tuple:
    """The paper's headline table first (CIFAR-10 linear probes, 5,000 top-1 label queries, random selection),
    then its other tables, then the grids measured here (the offline grid's victims side by side first)."""
    paper = view["source"] == "paper"
    return (paper, view["dataset"] == "cifar10", view["output"] == "label", view["budget"] == 5000,
            view["victim_mode"] == ("lp" if paper else ALL_MODES), view["strategy"] == "random",
            view["grid"] == "offline-cifar10", view["budget"])


def _select(df: pd.DataFrame, victim_mode: str, **equal) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for column, value in equal.items():
        if value is not None:
            mask &= df[column] == value
    if victim_mode != ALL_MODES:
        mask &= df["victim_mode"] == victim_mode
    return df[mask]


def _summary(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, sd and count of agreement over seeds, in the order the rows first appear."""
    grouped = rows.groupby(by, sort=False)["agreement"]
    return pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(), "n": grouped.size()}).reset_index()


def _victim_names(rows: pd.DataFrame, mixed: bool) -> dict:
    """Victim (name, mode) -> display label; the mode is shown when LP and FFT victims are mixed."""
    pairs = rows[["victim", "victim_mode", "victim_label"]].drop_duplicates(["victim", "victim_mode"])
    return {(v, m): f"{label} ({m.upper()})" if mixed else label for v, m, label in pairs.itertuples(index=False)}


def _titled(figure: go.Figure, headline: str, conditions: str) -> None:
    """Title `figure` with a headline and the conditions as small print wrapped at the separators; its top margin
    and height grow with the lines, so the small print never covers the plot."""
    lines, line = [], ""
    for part in conditions.split(" · "):
        if line and len(line) + len(part) > 64:  # fits 1024 px in presenter mode
            lines.append(line)
            line = ""
        line = f"{line} · {part}" if line else part
    lines.append(line)
    figure.update_layout(title={"text": headline + "".join(f"<br><sup>{text}</sup>" for text in lines),
                                "yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 16}},
                         margin={"t": TITLE_TOP + SMALL_PRINT_LINE * len(lines)},
                         height=PLOT_HEIGHT + SMALL_PRINT_LINE * len(lines))


def heatmap_figure(df: pd.DataFrame, dataset: str, victim_mode: str, budget: int, output: str, source: str,
                   strategy: str = "random", grid: str | None = None) -> tuple[go.Figure, str]:
    """Victim x thief agreement (mean over seeds) with the other source's number beside it where known."""
    chosen = dict(dataset=dataset, budget=budget, output=output, strategy=strategy)
    rows = _select(df, victim_mode, source=source, grid=grid, **chosen)
    if rows.empty:
        return _empty(f"No {source} results for {dataset}, {victim_mode}, {budget:,} queries, {output}, {strategy}."), \
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
        text[i, j] = pct(cell.mean, cell.sd, cell.n, with_n=False)
        if (cell.victim, cell.victim_mode, cell.thief) in beside:
            short = "paper" if other_source == "paper" else "measured"
            text[i, j] += f"<br>{short} {pct(beside[(cell.victim, cell.victim_mode, cell.thief)], with_n=False)}"
    figure = go.Figure(go.Heatmap(
        z=z, x=list(thieves.values), y=list(victims.values()), text=text, texttemplate="%{text}",
        zmin=0, zmax=100, colorscale="Viridis", colorbar={"title": {"text": "agreement %", "side": "right"}},
        hovertemplate="victim %{y}<br>thief %{x}<br>agreement %{text}<extra></extra>"))
    conditions = describe(rows, ["victim", "victim_mode", "thief"], f"{budget:,} queries")
    _titled(figure, "Agreement, victim × thief", conditions)
    figure.update_layout(xaxis_title="thief", yaxis_title="victim", yaxis_autorange="reversed")
    plain = rows.drop_duplicates("victim").set_index("victim")["victim_label"]
    finding = heatmap_finding(cells.assign(victim_label=cells["victim"].map(plain),
                                           thief_label=cells["thief"].map(thieves)), budget)
    return figure, f"{finding} Measured under: {conditions}."


def budget_curve_figure(df: pd.DataFrame, dataset: str, victim_mode: str, output: str, thief: str,
                        strategy: str = "random", grid: str | None = None) -> tuple[go.Figure, str]:
    """Agreement vs queries per victim for one thief: mean over seeds, mean ± 1 sd as a labelled band."""
    rows = _select(df, victim_mode, dataset=dataset, output=output, thief=thief, strategy=strategy, grid=grid)
    curve_keys = ["source", "grid", "victim", "victim_mode"]
    rows = rows[rows.groupby(curve_keys)["budget"].transform("nunique") > 1]
    if rows.empty:
        return _empty(f"No budget results for the {thief} thief on {dataset}."), "No results for this choice."
    points = _summary(rows.sort_values("budget", kind="stable"), curve_keys + ["budget"])
    names = _victim_names(rows, rows["victim_mode"].nunique() > 1)
    grids = rows["grid"].nunique() > 1
    figure = go.Figure()
    palette = plotly.colors.qualitative.Plotly
    for i, ((source, grid_name, victim, mode), curve) in enumerate(points.groupby(curve_keys, sort=False)):
        tag = "paper" if source == "paper" else "measured here" + (f", {grid_name}" if grids else "")
        name, color = f"{names[(victim, mode)]} victim · {tag}", palette[i % len(palette)]
        x, y, sd = curve["budget"].to_numpy(), 100 * curve["mean"].to_numpy(), 100 * curve["sd"].fillna(0).to_numpy()
        n = int(curve["n"].min())
        if (curve["n"] > 1).any():
            figure.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([y + sd, (y - sd)[::-1]]),
                                        fill="toself", fillcolor=color, opacity=0.2, line={"width": 0},
                                        name=f"{name}: ±1 sd over n={n} seeds", showlegend=False,
                                        hoverinfo="name", legendgroup=name))
        figure.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines+markers", legendgroup=name,
                                    line={"dash": "dash" if source == "paper" else "solid", "color": color},
                                    hovertemplate="%{x:,} queries: %{y:.1f}%<extra>" + name + "</extra>"))
    thief_label = rows["thief_label"].iloc[0]
    budgets = f"{int(rows['budget'].min()):,}-{int(rows['budget'].max()):,} queries"
    conditions = describe(rows, curve_keys + ["budget"], budgets)
    if (points["n"] > 1).any():
        conditions += f" · shaded band: ±1 sd over n={int(points['n'].max())} seeds"
    _titled(figure, f"{thief_label} thief: agreement vs queries", conditions)
    figure.update_layout(xaxis={"title": "queries", "type": "log", "tickformat": ",",
                                "tickvals": round_log_ticks(rows["budget"].min(), rows["budget"].max())},
                         yaxis={"title": "agreement %"})
    source = "fmsteal" if (points["source"] == "fmsteal").any() else "paper"
    return figure, f"{curve_finding(points[points['source'] == source], names)} Measured under: {conditions}."


def _empty(message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_layout(xaxis={"visible": False}, yaxis={"visible": False})
    return figure
