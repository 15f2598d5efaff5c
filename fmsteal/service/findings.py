"""One-sentence findings computed from the numbers of a results view, never written by hand.

Every number carries its spread and count (mean ± sd (n)); a table with one victim or one cell says
so instead of naming the same victim as best and worst; foundation-vs-conventional gaps come with
the verdict the data supports (strong / weak / reversed). No torch here.
"""

from __future__ import annotations

import pandas as pd

from fmsteal.service.conditions import dataset_name, pct

__all__ = ["STRONG_GAP", "family", "verdict", "family_gap", "heatmap_finding", "curve_finding", "paper_effect",
           "paper_effect_sentence"]

STRONG_GAP = 5.0  # points of agreement: a foundation-vs-conventional gap at least this large is "strong"


def family(name: str) -> str:
    """foundation / conventional / scratch, from the backbone's zoo name (no torch import)."""
    if "scratch" in name:
        return "scratch"
    return "foundation" if name.startswith("vit") else "conventional"


def verdict(gap_points: float) -> str:
    """"strong" (>= STRONG_GAP points), "weak" (0 to STRONG_GAP) or "reversed" (< 0)."""
    if gap_points < 0:
        return "reversed"
    return "strong" if gap_points >= STRONG_GAP else "weak"


def _spread(values: pd.Series) -> str:
    n = len(values)
    sd = f" ± {100 * values.std():.1f}" if n > 1 else ""
    return f"{100 * values.mean():.1f}%{sd} (sd over {n} cells)" if n > 1 else f"{100 * values.mean():.1f}% (1 cell)"


def family_gap(cells: pd.DataFrame) -> dict | None:
    """Foundation vs conventional victims over the cells' means: both families' cell means and the gap in points."""
    fam = cells["victim"].map(family)
    found, conv = cells.loc[fam == "foundation", "mean"], cells.loc[fam == "conventional", "mean"]
    if found.empty or conv.empty:
        return None
    gap = 100 * (found.mean() - conv.mean())
    return {"foundation": found, "conventional": conv, "gap": gap, "verdict": verdict(gap),
            "thieves": cells["thief"].nunique()}


def _gap_sentence(gap: dict) -> str:
    meaning = {"strong": f"the paper's effect is strong in this table (gap of at least {STRONG_GAP:g} points)",
               "weak": f"the paper's effect is weak in this table (gap under {STRONG_GAP:g} points)",
               "reversed": "the paper's effect is reversed in this table (conventional victims are copied more)"}
    over = f"across {gap['thieves']} thieves" if gap["thieves"] > 1 else "for this one thief"
    return (f"Victims built on foundation models average {_spread(gap['foundation'])}, conventional victims "
            f"{_spread(gap['conventional'])} {over}: a gap of {gap['gap']:+.1f} points; {meaning[gap['verdict']]}.")


def _by_thief_family(cells: pd.DataFrame) -> str:
    """The same gap for each family of thieves, when the table has thieves of more than one: an average over
    thieves can hide gaps of opposite signs."""
    gaps = {name: family_gap(group) for name, group in cells.groupby(cells["thief"].map(family), sort=True)}
    gaps = {name: gap for name, gap in gaps.items() if gap is not None}
    if len(gaps) < 2:
        return ""
    listed = "; ".join(f"{gap['gap']:+.1f} with {name}{' model' if name == 'foundation' else ''} thieves "
                       f"({gap['thieves']} thie{'ves' if gap['thieves'] > 1 else 'f'}, {gap['verdict']})"
                       for name, gap in gaps.items())
    return f" By the thief's family: {listed}."


def _cell(row: pd.Series) -> str:
    return pct(row["mean"], row["sd"], int(row["n"]))


def _victim_name(row: pd.Series, modes: bool) -> str:
    return f"{row.victim_label} ({row.victim_mode.upper()})" if modes else row.victim_label


def _own_vs_scratch(cells: pd.DataFrame) -> str | None:
    """The measured grid's contrast: a victim on the thief's own public backbone vs a from-scratch victim."""
    scratch = cells[cells["victim"].map(family) == "scratch"]
    for thief in cells["thief"].unique():
        own = cells[(cells["victim"] == thief) & (cells["thief"] == thief)]
        theirs = scratch[scratch["thief"] == thief]
        if own.empty or theirs.empty:
            continue
        other, label = theirs.iloc[0], own.iloc[0].thief_label
        lp, fft = own[own["victim_mode"] == "lp"], own[own["victim_mode"] == "fft"]
        if len(lp) and len(fft):
            lp, fft = lp.iloc[0], fft.iloc[0]
            return (f"The same {label} thief copies the {label} victim trained as a linear probe with {_cell(lp)}, "
                    f"the {label} victim fully fine-tuned with {_cell(fft)}, and the {other.victim_label} victim "
                    f"trained from scratch ({other.victim_mode.upper()}) with {_cell(other)}. Pretrained features vs "
                    f"scratch at the same training mode ({fft.victim_mode.upper()}): "
                    f"{100 * (fft['mean'] - other['mean']):+.1f} points; linear probe vs fine-tuning of the same "
                    f"pretrained backbone: {100 * (lp['mean'] - fft['mean']):+.1f} points.")
        mine = own.iloc[0]
        return (f"The {label} thief copies a victim built on its own public backbone ({mine.victim_label}, "
                f"{mine.victim_mode.upper()}) with {_cell(mine)}, the {other.victim_label} victim trained from scratch "
                f"({other.victim_mode.upper()}) with {_cell(other)}: {100 * (mine['mean'] - other['mean']):+.1f} points.")
    return None


def _extremes(cells: pd.DataFrame) -> str:
    """Most and least copied victims (mean over thieves), or what a one-victim table shows."""
    modes = cells["victim_mode"].nunique() > 1
    thieves = cells["thief"].nunique()
    per_victim = cells.groupby(["victim", "victim_mode"], sort=False).agg(
        mean=("mean", "mean"), sd=("sd", "first"), n=("n", "first"), victim_label=("victim_label", "first"),
        victim_mode_=("victim_mode", "first")).reset_index()
    if len(per_victim) == 1:
        row = per_victim.iloc[0]
        best, worst = cells.loc[cells["mean"].idxmax()], cells.loc[cells["mean"].idxmin()]
        return (f"This table has one victim ({_victim_name(row, modes)}): the {best.thief_label} thief copies it best "
                f"({_cell(best)}), the {worst.thief_label} thief worst ({_cell(worst)}).")
    top = per_victim.loc[per_victim["mean"].idxmax()]
    rest = per_victim.drop(index=top.name)
    low = rest.loc[rest["mean"].idxmin()]
    if thieves > 1:
        over = f" (mean over {thieves} thieves)"
        top_text, low_text = f"{100 * top['mean']:.1f}%", f"{100 * low['mean']:.1f}%"
    else:
        over, top_text, low_text = "", _cell(top), _cell(low)
    text = (f"Most copied victim{over}: {_victim_name(top, modes)} ({top_text}); least copied: "
            f"{_victim_name(low, modes)} ({low_text}).")
    if thieves > 1:
        best = cells.loc[cells["mean"].idxmax()]
        same = " (thief backbone = victim backbone)" if best.thief == best.victim else ""
        text += f" Best cell: the {best.thief_label} thief on the {_victim_name(best, modes)} victim, {_cell(best)}{same}."
    return text


def heatmap_finding(cells: pd.DataFrame, budget: int) -> str:
    """Cells: victim, victim_mode, thief, mean, sd, n, victim_label, thief_label (one row per victim x thief)."""
    at = f"At {budget:,} queries: "
    if len(cells) == 1:
        row = cells.iloc[0]
        return (at + f"this table has a single cell, the {row.thief_label} thief on the {row.victim_label} "
                f"victim ({_cell(row)}).")
    parts = [text for text in (_own_vs_scratch(cells),) if text]
    gap = family_gap(cells)
    if gap is not None:
        parts.append(_gap_sentence(gap) + _by_thief_family(cells))
    elif parts:
        parts.append("No victim here is a foundation model: this contrasts features shared with the thief against "
                     "features learned from scratch, not foundation vs conventional models.")
    parts.append(_extremes(cells))
    return at + " ".join(parts)


def curve_finding(points: pd.DataFrame, names: dict) -> str:
    """Points: victim, victim_mode, budget, mean, sd, n (sorted by budget); names: (victim, mode) -> label."""
    ends = points.groupby(["victim", "victim_mode"], sort=False).agg(
        b0=("budget", "first"), b1=("budget", "last"), a0=("mean", "first"), a1=("mean", "last"),
        s0=("sd", "first"), s1=("sd", "last"), n0=("n", "first"), n1=("n", "last")).reset_index()
    ends["gain"] = ends["a1"] - ends["a0"]
    ends["name"] = [names[(v, m)] for v, m in zip(ends["victim"], ends["victim_mode"])]

    def rise(row: pd.Series) -> str:
        return (f"{pct(row.a0, row.s0, int(row.n0))} at {int(row.b0):,} to {pct(row.a1, row.s1, int(row.n1))} "
                f"at {int(row.b1):,} queries")

    if len(ends) == 1:
        row = ends.iloc[0]
        return f"Only the {row['name']} victim has a curve here: agreement goes from {rise(row)}."
    ranked = ends.sort_values("a1", ascending=False)
    listed = "; ".join(f"the {row['name']} victim from {rise(row)}" for _, row in ranked.iterrows())
    most = ends.loc[ends["gain"].idxmax()]
    rest = ends.drop(index=most.name)
    least = rest.loc[rest["gain"].idxmin()]
    return (f"Agreement (highest last value first): {listed}. More queries help most against the {most['name']} "
            f"victim ({100 * most.gain:+.1f} points) and least against the {least['name']} victim "
            f"({100 * least.gain:+.1f} points).")


def paper_effect(df: pd.DataFrame, by_thief_family: bool = False) -> pd.DataFrame:
    """Per paper table (dataset x victim mode, 5,000 top-1-label random queries), and per thief family within it
    when `by_thief_family`: foundation vs conventional victims, mean and sd over the cells (percent), the gap in
    points and its verdict."""
    rows = df[(df["source"] == "paper") & (df["budget"] == 5000) & (df["output"] == "label")
              & (df["strategy"] == "random")]
    rows = rows.assign(thief_family=rows["thief"].map(family))
    keys = ["dataset", "victim_mode"] + (["thief_family"] if by_thief_family else [])
    out = []
    for key, table in rows.groupby(keys):
        gap = family_gap(table.rename(columns={"agreement": "mean"}))
        if gap is None:
            continue
        out.append({**dict(zip(keys, key)),
                    "foundation_mean": 100 * gap["foundation"].mean(), "foundation_sd": 100 * gap["foundation"].std(),
                    "foundation_n": len(gap["foundation"]), "conventional_mean": 100 * gap["conventional"].mean(),
                    "conventional_sd": 100 * gap["conventional"].std(), "conventional_n": len(gap["conventional"]),
                    "thieves": gap["thieves"], "gap": gap["gap"], "verdict": gap["verdict"]})
    return pd.DataFrame(out)


def paper_effect_sentence(df: pd.DataFrame) -> str:
    """Where the paper's own tables show its effect strong, weak or reversed (gap = mean foundation-victim cell
    minus mean conventional-victim cell, in points)."""
    effect = paper_effect(df)
    if effect.empty:
        return "No paper tables are installed."
    groups = []
    for word in ("strong", "weak", "reversed"):
        chosen = effect[effect["verdict"] == word].sort_values("gap", ascending=False)
        if len(chosen):
            tables = ", ".join(f"{dataset_name(r.dataset)} {r.victim_mode.upper()} ({r.gap:+.1f})"
                               for r in chosen.itertuples())
            groups.append(f"{word} in {tables}")
    return ("In the paper's own tables (5,000 top-1-label queries; gap = mean agreement over foundation-model victim "
            "cells minus mean over conventional victim cells, in points), the effect is " + "; ".join(groups) + ".")
