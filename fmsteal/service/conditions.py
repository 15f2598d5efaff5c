"""What a results view measured, in words: source, dataset, victim mode, output, strategy, budget,
resolution, query pool, recipe and seeds. Every results title and finding is built from these, so a
view never shows a number without the conditions it was measured under. No torch here.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["DATASETS", "OUTPUTS", "MODES", "STRATEGIES", "dataset_name", "source_name", "mode_name",
           "output_name", "strategy_name", "pool_name", "preset_name", "sizes_text", "seeds_text", "counted", "seeds",
           "pct", "describe"]

DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "indoor67": "Indoor-67", "caltech256": "Caltech-256",
            "tiny-imagenet": "Tiny ImageNet"}
OUTPUTS = {"label": "top-1 labels", "topk": "top-k labels", "probs": "probabilities",
           "rounded": "rounded probabilities"}
MODES = {"lp": "LP victims", "fft": "FFT victims", "all": "LP and FFT victims"}
STRATEGIES = {"random": "random selection", "entropy": "entropy selection", "kcenter": "k-center selection"}
POOLS = {"imagenet32": "ImageNet32 (downsampled ImageNet)", "imagenet": "ImageNet", "cifar100": "CIFAR-100",
         "tiny-imagenet": "Tiny ImageNet"}
PRESETS = {"fast": "fast preset (AdamW, 30 epochs on cached features for linear heads)",
           "paper": "paper preset", "authors": "the authors' recipe"}


def dataset_name(dataset: str) -> str:
    return DATASETS.get(dataset, dataset)


def source_name(source: str, grid: str | None = None) -> str:
    """"paper (published table)" or "measured here (grid NAME)"."""
    if source == "paper":
        return "paper (Raj et al. 2024, published table)"
    return "measured here" + (f" (grid {grid})" if grid else "")


def mode_name(mode: str) -> str:
    return MODES.get(mode, mode)


def output_name(output: str) -> str:
    return OUTPUTS.get(output, output)


def strategy_name(strategy: str) -> str:
    return STRATEGIES.get(strategy, strategy)


def pool_name(pool: str, dataset: str) -> str:
    """The query pool in words; "heldout" is the half of the train split the victim never trains on."""
    if pool == "heldout":
        return f"held-out half of the {dataset_name(dataset)} train split"
    return POOLS.get(pool, pool)


def preset_name(preset: str) -> str:
    return PRESETS.get(preset, f"{preset} preset")


def sizes_text(rows: pd.DataFrame) -> str:
    """Input resolution of victims and thieves, e.g. "victims 96 px (Lite0), 32 px (Scratch CNN); thief 96 px"."""
    parts = []
    for role in ("victim", "thief"):
        sizes = rows[[f"{role}_label", f"{role}_size"]].dropna().drop_duplicates()
        if sizes.empty:
            parts.append(f"{role} resolution not recorded")
            continue
        plural = {"victim": "victims", "thief": "thieves"}[role] if rows[role].nunique() > 1 else role
        by_size = sizes.groupby(f"{role}_size", sort=False)[f"{role}_label"].apply(list)
        if len(by_size) == 1:
            parts.append(f"{plural} {int(by_size.index[0])} px")
        else:
            parts.append(f"{plural} " + ", ".join(f"{int(size)} px ({'/'.join(names)})" for size, names in by_size.items()))
    return "; ".join(parts)


def seeds_text(rows: pd.DataFrame, by: list[str]) -> str:
    """How many seeds each number averages and what the ± means."""
    seeds = rows["seed"].dropna()
    if seeds.empty:
        return "one published run per cell (the authors' configs use seed 1); the paper reports no spread"
    counts = rows.dropna(subset=["seed"]).groupby(by)["seed"].nunique()
    low, high = int(counts.min()), int(counts.max())
    n = f"n={low}" if low == high else f"n={low}-{high}"
    listed = ", ".join(str(int(s)) for s in sorted(seeds.unique()))
    if high == 1:
        return f"one run per cell ({n}, seed {listed}); no spread"
    return f"mean ± 1 sd (sample sd) over {n} seeds ({listed})"


def counted(n: int, noun: str) -> str:
    """"1 cell", "3 cells"."""
    return f"{n} {noun}" + "s" * (n != 1)


def seeds(n: int) -> str:
    """"1 seed", "3 seeds"."""
    return counted(n, "seed")


def pct(mean: float, sd: float = float("nan"), n: int = 1, with_n: bool = True) -> str:
    """"83.8% ± 0.1 (n=3)" for a mean over seeds, "94.3% (n=1)" for a single run."""
    text = f"{100 * mean:.1f}%"
    if n > 1 and sd == sd:
        text += f" ± {100 * sd:.1f}"
    return text + (f" (n={n})" if with_n else "")


def describe(rows: pd.DataFrame, by: list[str], budget: str) -> str:
    """One line of conditions for the rows of a view: everything a reader needs to recompute its numbers."""
    first = rows.iloc[0]
    pools = sorted(rows["query_pool"].dropna().unique()) or ["not recorded"]
    presets = sorted(rows["preset"].dropna().unique()) or ["not recorded"]
    modes = sorted(rows["victim_mode"].unique())
    return " · ".join([
        source_name(first["source"], first["grid"] if first["source"] != "paper" else None),
        dataset_name(first["dataset"]),
        mode_name(modes[0] if len(modes) == 1 else "all"),
        output_name(first["output"]),
        strategy_name(first["strategy"]),
        budget,
        sizes_text(rows),
        "query pool: " + ", ".join(pool_name(p, first["dataset"]) for p in pools),
        ", ".join(preset_name(p) for p in presets),
        seeds_text(rows, by),
    ])
