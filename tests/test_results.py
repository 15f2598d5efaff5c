"""Precomputed results: every file loads and renders, numbers stay true, findings follow the data, fast."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmsteal.service import results
from fmsteal.service.presets import PRESETS
from fmsteal.service.sweep import Grid, card_path, table_rows
from fmsteal.engine.zoo import get_backbone

REPO = Path(__file__).resolve().parents[1]
PRECOMPUTED = REPO / "precomputed"
REFERENCE = REPO.parent / "shared" / "reference"


def _render_every_view(df: pd.DataFrame) -> int:
    """Draw every heatmap and curve `views` offers; returns how many were drawn."""
    choices = results.views(df)
    drawn = 0
    for view in choices["heatmaps"]:
        figure, sentence = results.heatmap_figure(df, **view)
        assert figure.data and "%" in sentence
        drawn += 1
    for view in choices["curves"]:
        figure, sentence = results.budget_curve_figure(df, **view)
        assert len(figure.data) >= 2 and "%" in sentence
        drawn += 1
    return drawn


def test_every_precomputed_table_loads_and_every_view_renders() -> None:
    df = results.load_tables(PRECOMPUTED)
    assert list(df.columns) == results.COLUMNS
    assert df["agreement"].between(0, 1).all() and df["victim_acc"].dropna().between(0, 1).all()
    tables = sorted(PRECOMPUTED.glob("*/*.csv"))
    assert tables, "precomputed/ holds no tables"
    for path in tables:
        raw = pd.read_csv(path)
        paper = "source" not in raw.columns
        if paper:
            raw = raw.assign(strategy=raw.get("strategy", "random"), agreement=raw["agreement"] / 100)
        keys = ["dataset", "victim_mode", "victim", "thief", "budget", "strategy"]
        keys += [] if paper else ["output", "seed"]
        loaded = df[df["source"] == ("paper" if paper else "fmsteal")]
        merged = raw.merge(loaded, on=keys, suffixes=("", "_loaded"), validate="one_to_one")
        assert len(merged) == len(raw), f"rows of {path} are missing from the loaded table"
        assert np.allclose(merged["agreement"], merged["agreement_loaded"])
    assert _render_every_view(df) > len(tables)


def test_every_precomputed_folder_says_where_it_came_from() -> None:
    assert (PRECOMPUTED / "README.md").exists()
    for folder in (p for p in PRECOMPUTED.iterdir() if p.is_dir()):
        assert (folder / "PROVENANCE.md").exists(), f"{folder} has no PROVENANCE.md"
    provenance = (PRECOMPUTED / "paper" / "PROVENANCE.md").read_text()
    assert "2502.18077" in provenance and "rajankita/foundation_model_stealing" in provenance


def test_the_offline_grid_is_its_preset_complete_and_its_table_is_made_from_its_cards() -> None:
    folder = PRECOMPUTED / "offline-cifar10"
    grid = Grid.from_preset("offline-cifar10")
    cells = grid.cells()
    assert all(card_path(folder, cell).exists() for cell in cells)
    assert len(list((folder / "cards").glob("*.json"))) == len(cells)
    written = pd.read_csv(folder / "offline-cifar10.csv")
    rebuilt = pd.DataFrame(table_rows(grid, folder), columns=written.columns)
    pd.testing.assert_frame_equal(written, rebuilt, check_dtype=False)
    assert "python -m fmsteal sweep --preset offline-cifar10" in (folder / "PROVENANCE.md").read_text()


def test_the_papers_numbers_are_the_shared_reference_unchanged() -> None:
    if not REFERENCE.exists():
        pytest.skip(f"needs the shared reference tables at {REFERENCE}")
    for source in REFERENCE.glob("*.csv"):
        assert (PRECOMPUTED / "paper" / source.name).read_bytes() == source.read_bytes()


def test_family_by_name_agrees_with_the_zoo() -> None:
    names = set(results.load_tables(PRECOMPUTED)[["victim", "thief"]].stack())
    names |= {n for preset in PRESETS.values() for n in preset["victims"] + preset["thieves"]}
    for name in names:
        assert results.family(name) == get_backbone(name).family, name


def _rows(source: str, victim: str, thief: str, agreements: dict[int, list[float]], mode: str = "lp") -> list[dict]:
    labels = {"tf_efficientnet_lite0": "Lite0", "scratch_cnn": "Scratch CNN", "tf_efficientnet_lite1": "Lite1"}
    return [{"source": source, "dataset": "cifar10", "victim_mode": mode, "victim": victim,
             "victim_label": labels[victim], "thief": thief, "thief_label": labels[thief], "budget": budget,
             "output": "label", "seed": seed, "strategy": "random", "agreement": value, "victim_acc": 0.8,
             "thief_acc": 0.7, "macro_f1": 0.7}
            for budget, values in agreements.items() for seed, value in enumerate(values)]


def _grid(own: list[float], scratch: list[float], paper: float) -> pd.DataFrame:
    return pd.DataFrame(
        _rows("fmsteal", "tf_efficientnet_lite0", "tf_efficientnet_lite0", {500: [0.4, 0.5], 5000: own})
        + _rows("fmsteal", "scratch_cnn", "tf_efficientnet_lite0", {500: [0.3, 0.3], 5000: scratch}, mode="fft")
        + _rows("paper", "tf_efficientnet_lite0", "tf_efficientnet_lite0", {5000: [paper]}))


@pytest.mark.parametrize("own, scratch, paper", [([0.9, 0.8], [0.5, 0.6], 0.7), ([0.62, 0.66], [0.71, 0.75], 0.4)])
def test_heatmap_means_over_seeds_shows_the_paper_beside_and_states_the_finding(own, scratch, paper) -> None:
    df = _grid(own, scratch, paper)
    figure, sentence = results.heatmap_figure(df, "cifar10", results.ALL_MODES, 5000, "label", "fmsteal")
    heat = figure.data[0]
    assert list(heat.y) == ["Lite0 (LP)", "Scratch CNN (FFT)"] and list(heat.x) == ["Lite0"]
    assert np.allclose(np.asarray(heat.z, dtype=float)[:, 0], [100 * np.mean(own), 100 * np.mean(scratch)])
    assert f"paper {100 * paper:.1f}%" in heat.text[0][0] and "paper" not in heat.text[1][0]
    own_text = f"{100 * np.mean(own):.1f}% ± {100 * np.std(own, ddof=1):.1f}"
    scratch_text = f"{100 * np.mean(scratch):.1f}% ± {100 * np.std(scratch, ddof=1):.1f}"
    assert own_text in sentence and scratch_text in sentence and "5,000" in sentence
    assert sentence.index(own_text) < sentence.index(scratch_text)


def test_budget_curve_has_a_spread_band_over_seeds_and_a_finding_from_the_data() -> None:
    df = _grid([0.9, 0.8], [0.5, 0.6], 0.7)
    figure, sentence = results.budget_curve_figure(df, "cifar10", results.ALL_MODES, "label", "tf_efficientnet_lite0")
    bands = [trace for trace in figure.data if trace.fill == "toself"]
    lines = [trace for trace in figure.data if trace.fill != "toself"]
    assert len(bands) == 2 and [t.name for t in lines] == ["Lite0 (LP)", "Scratch CNN (FFT)"]
    assert np.allclose(lines[0].y, [45.0, 85.0]) and np.allclose(lines[1].y, [30.0, 55.0])
    assert [band.fillcolor for band in bands] == [line.line.color for line in lines]
    assert lines[0].line.color != lines[1].line.color
    assert "45.0%" in sentence and "85.0%" in sentence and "30.0%" in sentence and "55.0%" in sentence
    single = df[df["seed"] == 0]
    figure, _ = results.budget_curve_figure(single, "cifar10", results.ALL_MODES, "label", "tf_efficientnet_lite0")
    assert not [trace for trace in figure.data if trace.fill == "toself"]


def test_paper_finding_compares_foundation_and_conventional_victims() -> None:
    table = pd.read_csv(PRECOMPUTED / "paper" / "paper_agreement.csv")
    cifar = table[(table["dataset"] == "cifar10") & (table["victim_mode"] == "lp")]
    vit = cifar[cifar["victim"].str.startswith("vit")]["agreement"].mean()
    resnet = cifar[cifar["victim"].str.startswith("resnet")]["agreement"].mean()
    top = cifar.loc[cifar["agreement"].idxmax()]
    _, sentence = results.heatmap_figure(results.load_tables(PRECOMPUTED), "cifar10", "lp", 5000, "label", "paper")
    assert f"{vit:.1f}%" in sentence and f"{resnet:.1f}%" in sentence and f"({top['agreement']:.1f}%)" in sentence


def test_a_sweep_table_in_precomputed_becomes_the_default_view(tiny_sweep: Path, tmp_path: Path) -> None:
    shutil.copytree(PRECOMPUTED / "paper", tmp_path / "paper")
    shutil.copytree(tiny_sweep, tmp_path / "tiny")
    df = results.load_tables(tmp_path)
    ours = df[df["source"] == "fmsteal"]
    assert len(ours) == len(pd.read_csv(tiny_sweep / "tiny.csv")) and set(ours["seed"]) == {0, 1}
    choices = results.views(df)
    default = choices["default_heatmap"]
    assert (default["source"], default["victim_mode"]) == ("fmsteal", results.ALL_MODES)
    _, sentence = results.heatmap_figure(df, **default)
    at = ours[ours["budget"] == default["budget"]].groupby("victim")["agreement"]
    for victim in ("tf_efficientnet_lite0", "scratch_cnn"):
        assert f"{100 * at.mean()[victim]:.1f}% ± {100 * at.std()[victim]:.1f}" in sentence
    assert choices["default_curve"]["thief"] == "tf_efficientnet_lite0"
    assert _render_every_view(df) > 0


def test_results_tab_renders_in_a_fresh_process_under_two_seconds() -> None:
    script = (
        "import sys, time; t = time.perf_counter(); from fmsteal.service import results\n"
        f"df = results.load_tables({str(PRECOMPUTED)!r}); v = results.views(df)\n"
        "results.heatmap_figure(df, **v['default_heatmap']); results.budget_curve_figure(df, **v['default_curve'])\n"
        "print(time.perf_counter() - t, 'torch' in sys.modules)\n")
    seconds, torch_loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                           check=True, cwd=REPO).stdout.split()
    assert float(seconds) < 2.0 and torch_loaded == "False"


def test_tables_are_read_once_and_served_from_memory() -> None:
    first = results.load_tables(PRECOMPUTED)
    first.loc[:, "agreement"] = -1.0
    second = results.load_tables(PRECOMPUTED)
    assert second["agreement"].between(0, 1).all()
    assert results._load.cache_info().hits >= 1
