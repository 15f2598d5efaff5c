"""Precomputed results: every file loads and renders, numbers stay true, every view says what was measured,
findings follow the data."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmsteal.service import results
from fmsteal.service.findings import STRONG_GAP
from fmsteal.service.presets import PRESETS
from fmsteal.service.sweep import Grid, card_path, table_rows
from fmsteal.engine.zoo import get_backbone

REPO = Path(__file__).resolve().parents[1]
PRECOMPUTED = REPO / "precomputed"
REFERENCE = REPO.parent / "shared" / "reference"
GRIDS = [p.name for p in PRECOMPUTED.iterdir() if p.is_dir() and p.name in PRESETS]


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
        assert len(figure.data) >= 1 and "%" in sentence
        drawn += 1
    return drawn


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return results.load_tables(PRECOMPUTED)


def test_every_precomputed_table_loads_and_every_view_renders(table: pd.DataFrame) -> None:
    assert list(table.columns) == results.COLUMNS
    assert table["agreement"].between(0, 1).all() and table["victim_acc"].dropna().between(0, 1).all()
    tables = sorted(PRECOMPUTED.glob("*/*.csv"))
    assert tables, "precomputed/ holds no tables"
    for path in tables:
        raw = pd.read_csv(path)
        if "defence" in raw.columns:  # defended cells share keys: the grid has a view of its own
            assert (table["grid"] != path.stem).all()
            continue
        paper = "source" not in raw.columns
        if paper:
            raw = raw.assign(strategy=raw.get("strategy", "random"), agreement=raw["agreement"] / 100)
        keys = ["dataset", "victim_mode", "victim", "thief", "budget", "strategy"]
        keys += [] if paper else ["output", "seed"]
        loaded = table[table["grid"] == ("paper" if paper else path.stem)]
        merged = raw.merge(loaded, on=keys, suffixes=("", "_loaded"), validate="one_to_one")
        assert len(merged) == len(raw), f"rows of {path} are missing from the loaded table"
        assert np.allclose(merged["agreement"], merged["agreement_loaded"])
    assert _render_every_view(table) > len(tables)


def test_measured_rows_carry_the_resolution_pool_and_preset_of_their_run_cards(table: pd.DataFrame) -> None:
    ours = table[table["source"] == "fmsteal"]
    assert ours[["victim_size", "thief_size", "query_pool", "preset"]].notna().all().all()
    offline = ours[ours["grid"] == "offline-cifar10"]
    sizes = offline.groupby("victim")["victim_size"].unique()
    assert list(sizes["scratch_cnn"]) == [32] and list(sizes["tf_efficientnet_lite0"]) == [96]
    assert set(offline["thief_size"]) == {96} and set(offline["query_pool"]) == {"heldout"}
    paper = table[table["source"] == "paper"]
    assert set(paper["victim_size"]) == {224} and set(paper.loc[paper["dataset"] == "cifar10", "query_pool"]) == \
        {"imagenet32"}


def test_every_precomputed_folder_says_where_it_came_from() -> None:
    assert (PRECOMPUTED / "README.md").exists()
    for folder in (p for p in PRECOMPUTED.iterdir() if p.is_dir()):
        assert (folder / "PROVENANCE.md").exists(), f"{folder} has no PROVENANCE.md"
    provenance = (PRECOMPUTED / "paper" / "PROVENANCE.md").read_text()
    assert "2502.18077" in provenance and "rajankita/foundation_model_stealing" in provenance


@pytest.mark.parametrize("name", GRIDS)
def test_a_measured_grids_cards_are_cells_of_its_preset_and_its_table_is_made_from_them(name: str) -> None:
    folder = PRECOMPUTED / name
    grid = Grid.from_preset(name)
    ids = {cell.job_id() for cell in grid.cells()}
    cards = {path.stem for path in (folder / "cards").glob("*.json")}
    assert cards and cards <= ids, f"{folder} holds run cards that are not cells of the preset {name}"
    written = pd.read_csv(folder / f"{name}.csv")
    rebuilt = pd.DataFrame(table_rows(grid, folder), columns=written.columns)
    rebuilt = pd.read_csv(io.StringIO(rebuilt.to_csv(index=False)))  # as a CSV holds it ("" reads as NaN)
    pd.testing.assert_frame_equal(written, rebuilt, check_dtype=False)
    assert "python -m fmsteal sweep" in (folder / "PROVENANCE.md").read_text()


def test_the_offline_grid_is_complete() -> None:
    folder = PRECOMPUTED / "offline-cifar10"
    cells = Grid.from_preset("offline-cifar10").cells()
    assert all(card_path(folder, cell).exists() for cell in cells)
    assert len(list((folder / "cards").glob("*.json"))) == len(cells)
    assert "python -m fmsteal sweep --preset offline-cifar10" in (folder / "PROVENANCE.md").read_text()


def test_the_papers_numbers_are_the_shared_reference_unchanged() -> None:
    if not REFERENCE.exists():
        pytest.skip(f"needs the shared reference tables at {REFERENCE}")
    for source in REFERENCE.glob("*.csv"):
        assert (PRECOMPUTED / "paper" / source.name).read_bytes() == source.read_bytes()


def test_family_by_name_agrees_with_the_zoo(table: pd.DataFrame) -> None:
    names = set(table[["victim", "thief"]].stack())
    names |= {n for preset in PRESETS.values() for n in preset["victims"] + preset["thieves"]}
    for name in names:
        assert results.family(name) == get_backbone(name).family, name


# ---- every view says what was measured ----------------------------------------------------------------

def _plain(text: str) -> str:
    return re.sub(r"<br>|</?sup>", " ", text)


def _conditions_in(text: str, rows: pd.DataFrame, budget: str) -> None:
    """The fields a reader needs: source, dataset, victim mode, output, strategy, budget, resolution, pool, seeds."""
    first = rows.iloc[0]
    expected = ["paper (Raj et al. 2024" if first["source"] == "paper" else f"measured here (grid {first['grid']})",
                {"cifar10": "CIFAR-10", "indoor67": "Indoor-67", "caltech256": "Caltech-256"}.get(first["dataset"],
                                                                                                  first["dataset"]),
                {"lp": "LP victims", "fft": "FFT victims"}[first["victim_mode"]] if rows["victim_mode"].nunique() == 1
                else "LP and FFT victims",
                {"label": "top-1 labels", "probs": "probabilities"}[first["output"]],
                {"random": "random selection", "entropy": "entropy selection", "kcenter": "k-center selection"}[
                    first["strategy"]],
                budget, " px", "query pool: "]
    if first["source"] == "paper":
        expected.append("one published run per cell")
    else:
        counts = rows.groupby(["victim", "victim_mode", "thief", "budget"])["seed"].nunique()
        low, high = int(counts.min()), int(counts.max())
        expected.append("one run per cell" if high == 1 else f"n={low} seeds" if low == high else f"n={low}-{high} seeds")
    for field in expected:
        assert field in text, f"{field!r} missing from {text!r}"


def _extremes_differ(sentence: str) -> None:
    most = re.search(r"Most copied victim[^:]*: (.+?) \(\d", sentence)
    least = re.search(r"least copied: (.+?) \(\d", sentence)
    if most or least:
        assert most and least and most.group(1) != least.group(1), sentence
    helped = re.search(r"most against the (.+?) victim .* least against the (.+?) victim", sentence)
    if helped:
        assert helped.group(1) != helped.group(2), sentence


def test_every_heatmap_title_and_finding_state_the_conditions(table: pd.DataFrame) -> None:
    for view in results.views(table)["heatmaps"]:
        figure, sentence = results.heatmap_figure(table, **view)
        rows = table[(table["grid"] == view["grid"]) & (table["dataset"] == view["dataset"])
                     & (table["budget"] == view["budget"]) & (table["output"] == view["output"])
                     & (table["strategy"] == view["strategy"])]
        if view["victim_mode"] != results.ALL_MODES:
            rows = rows[rows["victim_mode"] == view["victim_mode"]]
        for text in (_plain(figure.layout.title.text), sentence):
            _conditions_in(text, rows, f"{view['budget']:,} queries")
        _extremes_differ(sentence)
        if view["source"] == "fmsteal" and rows["seed"].nunique() > 1:
            assert re.search(r"\d+\.\d% ± \d+\.\d \(n=\d\)", sentence), sentence


def test_every_curve_tags_its_traces_labels_its_band_and_states_the_conditions(table: pd.DataFrame) -> None:
    for view in results.views(table)["curves"]:
        figure, sentence = results.budget_curve_figure(table, **view)
        rows = table[(table["grid"] == view["grid"]) & (table["dataset"] == view["dataset"])
                     & (table["output"] == view["output"]) & (table["thief"] == view["thief"])
                     & (table["strategy"] == view["strategy"])]
        if view["victim_mode"] != results.ALL_MODES:
            rows = rows[rows["victim_mode"] == view["victim_mode"]]
        rows = rows[rows.groupby(["victim", "victim_mode"])["budget"].transform("nunique") > 1]
        budgets = f"{int(rows['budget'].min()):,}-{int(rows['budget'].max()):,} queries"
        title = _plain(figure.layout.title.text)
        for text in (title, sentence):
            _conditions_in(text, rows, budgets)
        _extremes_differ(sentence)
        for trace in figure.data:
            assert ("· paper" in trace.name) != ("· measured here" in trace.name), trace.name
            if trace.fill == "toself":
                assert re.search(r"±1 sd over n=\d seeds", trace.name)
        if any(trace.fill == "toself" for trace in figure.data):
            assert re.search(r"shaded band: ±1 sd over n=\d seeds", title)


def test_view_labels_are_distinct_and_name_the_query_strategy(table: pd.DataFrame) -> None:
    found = results.views(table)
    labels = [results.view_label(view, table) for view in found["heatmaps"] + found["curves"]]
    assert len(labels) == len(set(labels))
    selection = [results.view_label(v, table) for v in found["heatmaps"]
                 if v["source"] == "paper" and v["dataset"] == "indoor67" and v["victim_mode"] == "lp"
                 and v["budget"] == 5000]
    assert {"random selection", "entropy selection", "k-center selection"} <= \
        {part for label in selection for part in label.split(" · ")}
    curve = results.view_label(found["default_curve"], table)
    assert curve.startswith("EfficientNet-Lite0 thief · measured here (offline-cifar10)")


def test_measured_heatmaps_are_offered_at_round_budgets_only(table: pd.DataFrame) -> None:
    """A measured run has a checkpoint per rung (13 of them to 20,000): the chooser offers its heatmap at the
    report budgets and at the grid's largest, the curves show every checkpoint; the paper's tables all."""
    found = results.views(table)
    measured = {(v["grid"], v["budget"]) for v in found["heatmaps"] if v["source"] != "paper"}
    for grid, rows in table[table["source"] != "paper"].groupby("grid"):
        present = set(rows["budget"].astype(int))
        expected = (present & set(results.REPORT_BUDGETS)) | {max(present)}
        assert {budget for g, budget in measured if g == grid} == expected, grid
    paper = table[table["source"] == "paper"]
    assert {v["budget"] for v in found["heatmaps"] if v["source"] == "paper"} == set(paper["budget"].astype(int))


# ---- findings follow the data -----------------------------------------------------------------------

LABELS = {"tf_efficientnet_lite0": "Lite0", "scratch_cnn": "Scratch CNN", "tf_efficientnet_lite1": "Lite1",
          "vit_base_patch16_224": "ViT-B/16", "resnet18": "ResNet-18"}


def _rows(source: str, victim: str, thief: str, agreements: dict[int, list[float]], mode: str = "lp",
          grid: str = "toy") -> list[dict]:
    return [{"source": source, "grid": "paper" if source == "paper" else grid, "dataset": "cifar10",
             "victim_mode": mode, "victim": victim, "victim_label": LABELS[victim], "thief": thief,
             "thief_label": LABELS[thief], "budget": budget, "output": "label",
             "seed": np.nan if source == "paper" else seed, "strategy": "random", "agreement": value,
             "victim_acc": 0.8, "thief_acc": 0.7, "macro_f1": 0.7, "victim_size": 32 if "scratch" in victim else 96,
             "thief_size": 96, "query_pool": "heldout", "preset": "fast"}
            for budget, values in agreements.items() for seed, value in enumerate(values)]


def _grid(own: list[float], scratch: list[float], paper: float) -> pd.DataFrame:
    return pd.DataFrame(
        _rows("fmsteal", "tf_efficientnet_lite0", "tf_efficientnet_lite0", {500: [0.4, 0.5], 5000: own})
        + _rows("fmsteal", "scratch_cnn", "tf_efficientnet_lite0", {500: [0.3, 0.3], 5000: scratch}, mode="fft")
        + _rows("paper", "tf_efficientnet_lite0", "tf_efficientnet_lite0", {5000: [paper]}))


@pytest.mark.parametrize("own, scratch, paper", [([0.9, 0.8], [0.5, 0.6], 0.7), ([0.62, 0.66], [0.71, 0.75], 0.4)])
def test_heatmap_means_over_seeds_shows_the_paper_beside_and_states_the_finding(own, scratch, paper) -> None:
    df = _grid(own, scratch, paper)
    figure, sentence = results.heatmap_figure(df, "cifar10", results.ALL_MODES, 5000, "label", "fmsteal", grid="toy")
    heat = figure.data[0]
    assert list(heat.y) == ["Lite0 (LP)", "Scratch CNN (FFT)"] and list(heat.x) == ["Lite0"]
    assert np.allclose(np.asarray(heat.z, dtype=float)[:, 0], [100 * np.mean(own), 100 * np.mean(scratch)])
    assert f"paper {100 * paper:.1f}%" in heat.text[0][0] and "paper" not in heat.text[1][0]
    own_text = f"{100 * np.mean(own):.1f}% ± {100 * np.std(own, ddof=1):.1f} (n=2)"
    scratch_text = f"{100 * np.mean(scratch):.1f}% ± {100 * np.std(scratch, ddof=1):.1f} (n=2)"
    assert own_text in sentence and scratch_text in sentence and "5,000" in sentence
    assert sentence.index(own_text) < sentence.index(scratch_text)
    assert f"{100 * (np.mean(own) - np.mean(scratch)):+.1f} points" in sentence
    assert "not foundation vs conventional" in sentence
    most = "Lite0 (LP)" if np.mean(own) > np.mean(scratch) else "Scratch CNN (FFT)"
    assert re.search(rf"Most copied victim: {re.escape(most)} ", sentence)
    _extremes_differ(sentence)


def test_the_confound_layout_separates_pretrained_features_from_training_mode() -> None:
    df = pd.DataFrame(
        _rows("fmsteal", "tf_efficientnet_lite0", "tf_efficientnet_lite0", {5000: [0.80, 0.82, 0.81]})
        + _rows("fmsteal", "tf_efficientnet_lite0", "tf_efficientnet_lite0", {5000: [0.70, 0.72, 0.71]}, mode="fft")
        + _rows("fmsteal", "scratch_cnn", "tf_efficientnet_lite0", {5000: [0.60, 0.62, 0.61]}, mode="fft"))
    _, sentence = results.heatmap_figure(df, "cifar10", results.ALL_MODES, 5000, "label", "fmsteal", grid="toy")
    assert "linear probe with 81.0% ± 1.0 (n=3)" in sentence and "fully fine-tuned with 71.0% ± 1.0 (n=3)" in sentence
    assert "trained from scratch (FFT) with 61.0% ± 1.0 (n=3)" in sentence
    assert "same training mode (FFT): +10.0 points" in sentence and "same pretrained backbone: +10.0 points" in sentence
    flipped = df.assign(agreement=np.where(df["victim"] == "scratch_cnn", df["agreement"] + 0.2, df["agreement"]))
    _, sentence = results.heatmap_figure(flipped, "cifar10", results.ALL_MODES, 5000, "label", "fmsteal", grid="toy")
    assert "same training mode (FFT): -10.0 points" in sentence


def test_budget_curve_has_a_labelled_spread_band_and_a_finding_from_the_data() -> None:
    df = _grid([0.9, 0.8], [0.5, 0.6], 0.7)
    figure, sentence = results.budget_curve_figure(df, "cifar10", results.ALL_MODES, "label", "tf_efficientnet_lite0",
                                                   grid="toy")
    bands = [trace for trace in figure.data if trace.fill == "toself"]
    lines = [trace for trace in figure.data if trace.fill != "toself"]
    assert [t.name for t in lines] == ["Lite0 (LP) victim · measured here", "Scratch CNN (FFT) victim · measured here"]
    assert [b.name for b in bands] == [f"{t.name}: ±1 sd over n=2 seeds" for t in lines]
    assert np.allclose(lines[0].y, [45.0, 85.0]) and np.allclose(lines[1].y, [30.0, 55.0])
    assert [band.fillcolor for band in bands] == [line.line.color for line in lines]
    assert "45.0% ± 7.1 (n=2) at 500 to 85.0% ± 7.1 (n=2)" in sentence
    assert "30.0% ± 0.0 (n=2) at 500 to 55.0% ± 7.1 (n=2)" in sentence
    assert "most against the Lite0 (LP) victim (+40.0 points) and least against the Scratch CNN (FFT) victim" in sentence
    single = df[df["seed"] == 0]
    figure, sentence = results.budget_curve_figure(single, "cifar10", results.ALL_MODES, "label",
                                                   "tf_efficientnet_lite0", grid="toy")
    assert not [trace for trace in figure.data if trace.fill == "toself"]
    assert "one run per cell (n=1, seed 0)" in sentence


def test_one_victim_findings_say_so_instead_of_naming_it_twice() -> None:
    df = pd.DataFrame(_rows("fmsteal", "scratch_cnn", "tf_efficientnet_lite0", {500: [0.3, 0.4], 5000: [0.6, 0.7]},
                            mode="fft")
                      + _rows("fmsteal", "scratch_cnn", "tf_efficientnet_lite1", {500: [0.2, 0.3], 5000: [0.5, 0.5]},
                              mode="fft"))
    _, curve = results.budget_curve_figure(df, "cifar10", "fft", "label", "tf_efficientnet_lite0", grid="toy")
    assert curve.startswith("Only the Scratch CNN victim has a curve here") and "least" not in curve
    _, heat = results.heatmap_figure(df, "cifar10", "fft", 5000, "label", "fmsteal", grid="toy")
    assert "This table has one victim (Scratch CNN)" in heat and "Most copied" not in heat
    assert "the Lite0 thief copies it best (65.0% ± 7.1 (n=2)), the Lite1 thief worst (50.0% ± 0.0 (n=2))" in heat
    _, cell = results.heatmap_figure(df[df["thief"] == "tf_efficientnet_lite1"], "cifar10", "fft", 5000, "label",
                                     "fmsteal", grid="toy")
    assert "single cell" in cell


def test_paper_finding_computes_the_foundation_gap_and_its_verdict(table: pd.DataFrame) -> None:
    raw = pd.read_csv(PRECOMPUTED / "paper" / "paper_agreement.csv")
    cifar = raw[(raw["dataset"] == "cifar10") & (raw["victim_mode"] == "lp")]
    vit = cifar[cifar["victim"].str.startswith("vit")]["agreement"]
    resnet = cifar[cifar["victim"].str.startswith("resnet")]["agreement"]
    _, sentence = results.heatmap_figure(table, "cifar10", "lp", 5000, "label", "paper", grid="paper")
    assert f"{vit.mean():.1f}% ± {vit.std():.1f} (sd over {len(vit)} cells)" in sentence
    assert f"{resnet.mean():.1f}% ± {resnet.std():.1f} (sd over {len(resnet)} cells)" in sentence
    assert f"gap of {vit.mean() - resnet.mean():+.1f} points" in sentence and "strong" in sentence
    assert "ViT-L/16 thief on the ViT-L/16 victim, 94.3% (n=1) (thief backbone = victim backbone)" in sentence
    # lower the foundation victims' cells: the verdict follows the data
    paper = table.copy()
    lowered = (paper["source"] == "paper") & paper["victim"].str.startswith("vit")
    paper.loc[lowered, "agreement"] -= 0.12
    _, sentence = results.heatmap_figure(paper, "cifar10", "lp", 5000, "label", "paper", grid="paper")
    assert "effect is reversed in this table" in sentence


def test_paper_effect_per_table_is_the_mean_gap_of_its_cells(table: pd.DataFrame) -> None:
    raw = pd.read_csv(PRECOMPUTED / "paper" / "paper_agreement.csv")
    raw["foundation"] = raw["victim"].str.startswith("vit")
    means = raw.groupby(["dataset", "victim_mode", "foundation"])["agreement"].mean().unstack()
    expected = (means[True] - means[False]).sort_index()
    effect = results.paper_effect(table).set_index(["dataset", "victim_mode"]).sort_index()
    assert np.allclose(effect["gap"], expected)
    for gap, word in zip(effect["gap"], effect["verdict"]):
        assert word == ("reversed" if gap < 0 else "strong" if gap >= STRONG_GAP else "weak")
    sentence = results.paper_effect_sentence(table)
    assert "strong in CIFAR-10 LP (+9.5)" in sentence and "reversed in" in sentence and "Caltech-256 FFT (-2.3)" in sentence
    split = results.paper_effect(table, by_thief_family=True).set_index(["dataset", "victim_mode", "thief_family"])
    raw["thief_family"] = raw["thief"].map(results.family)
    for (dataset, mode, kind), cells in raw.groupby(["dataset", "victim_mode", "thief_family"]):
        found, conv = cells.loc[cells["foundation"], "agreement"], cells.loc[~cells["foundation"], "agreement"]
        assert split.loc[(dataset, mode, kind), "gap"] == pytest.approx(found.mean() - conv.mean())
    view = {"source": "paper", "grid": "paper", "dataset": "indoor67", "victim_mode": "lp", "budget": 5000,
            "output": "label", "strategy": "random"}  # its finding says what the average over thieves hides
    _, finding = results.heatmap_figure(table, **view)
    assert "By the thief's family: -16.1 with conventional thieves (1 thief, reversed); +7.5 with foundation model " \
           "thieves (3 thieves, strong)." in finding


def test_a_sweep_table_in_precomputed_becomes_the_first_measured_view(tiny_sweep: Path, tmp_path: Path) -> None:
    shutil.copytree(PRECOMPUTED / "paper", tmp_path / "paper")
    shutil.copytree(tiny_sweep, tmp_path / "tiny")
    df = results.load_tables(tmp_path)
    ours = df[df["source"] == "fmsteal"]
    assert len(ours) == len(pd.read_csv(tiny_sweep / "tiny.csv")) and set(ours["seed"]) == {0, 1}
    assert ours[["victim_size", "thief_size", "query_pool", "preset"]].notna().all().all()
    choices = results.views(df)
    headline = {"source": "paper", "grid": "paper", "dataset": "cifar10", "victim_mode": "lp", "budget": 5000,
                "output": "label", "strategy": "random"}  # the paper's headline table opens the tab, listed first
    assert choices["default_heatmap"] == headline == choices["heatmaps"][0]
    measured = next(view for view in choices["heatmaps"] if view["source"] == "fmsteal")
    assert (measured["grid"], measured["victim_mode"]) == ("tiny", results.ALL_MODES)  # both victims side by side
    _, sentence = results.heatmap_figure(df, **measured)
    at = ours[ours["budget"] == measured["budget"]].groupby("victim")["agreement"]
    for victim in ("tf_efficientnet_lite0", "scratch_cnn"):
        assert f"{100 * at.mean()[victim]:.1f}% ± {100 * at.std()[victim]:.1f} (n=2)" in sentence
    assert choices["default_curve"]["thief"] == "tf_efficientnet_lite0"
    assert _render_every_view(df) > 0


def test_results_views_render_in_a_fresh_process_without_importing_torch() -> None:
    script = (
        "import sys; from fmsteal.service import consequence_results, defence_results, results\n"
        f"df = results.load_tables({str(PRECOMPUTED)!r}); v = results.views(df)\n"
        "results.heatmap_figure(df, **v['default_heatmap']); results.budget_curve_figure(df, **v['default_curve'])\n"
        f"cells = defence_results.load_defence_cells({str(PRECOMPUTED)!r})\n"
        "defence_results.protection_figure(cells, 'label'); defence_results.summary_rows(cells)\n"
        f"consequence_results.transfer_scatter(consequence_results.load_consequence_cells({str(PRECOMPUTED)!r}))\n"
        "print('torch' in sys.modules)\n")
    torch_loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                  cwd=REPO).stdout.split()
    assert torch_loaded == ["False"]


def test_tables_are_read_once_and_served_from_memory() -> None:
    first = results.load_tables(PRECOMPUTED)
    first.loc[:, "agreement"] = -1.0
    second = results.load_tables(PRECOMPUTED)
    assert second["agreement"].between(0, 1).all()
    assert results._load.cache_info().hits >= 1


# ---- the README and the About text quote only numbers from stored files ------------------------------

def _measured(grid: str) -> pd.DataFrame:
    return pd.read_csv(PRECOMPUTED / grid / f"{grid}.csv")


def _cell(rows: pd.DataFrame) -> str:
    return f"{100 * rows['agreement'].mean():.1f} ± {100 * rows['agreement'].std():.1f}"


def test_readme_quotes_the_papers_headline_and_per_table_effect_from_its_table(table: pd.DataFrame) -> None:
    readme = (REPO / "README.md").read_text()
    raw = pd.read_csv(PRECOMPUTED / "paper" / "paper_agreement.csv")
    cifar = raw[(raw["dataset"] == "cifar10") & (raw["victim_mode"] == "lp") & (raw["thief"] == "vit_large_patch16_224")]
    headline = cifar.set_index("victim")["agreement"]
    assert f"**{headline['vit_large_patch16_224']:.2f}%**" in readme and f"**{headline['resnet18']:.2f}%**" in readme
    effect = results.paper_effect(table).set_index(["dataset", "victim_mode"])
    names = {"cifar10": "CIFAR-10", "indoor67": "Indoor-67", "caltech256": "Caltech-256"}
    for dataset, name in names.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| {name} |"))
        for mode in ("lp", "fft"):
            gap = effect.loc[(dataset, mode)]
            assert f"{gap['gap']:+.1f} ({gap['verdict']})" in row, (row, mode)
    split = results.paper_effect(table, by_thief_family=True).set_index(["dataset", "victim_mode", "thief_family"])
    for dataset, name in names.items():
        row = [line for line in readme.splitlines() if line.startswith(f"| {name} |")][1]  # the per-family table
        cells = [split.loc[(dataset, mode, kind)] for mode in ("lp", "fft") for kind in ("conventional", "foundation")]
        assert row == f"| {name} | " + " | ".join(f"{c['gap']:+.1f} ({c['verdict']})" for c in cells) + " |", row
    gaps = split["gap"].unstack("thief_family")  # the README's sentence about the two families
    assert "foundation-model thieves copy foundation-model victims better in every table" in readme
    assert (gaps["foundation"] > 0).all() and (gaps["conventional"] < 0).sum() > len(gaps) / 2
    about = (REPO / "fmsteal" / "service" / "about.md").read_text()
    assert "**94.28% agreement**" in about and "**73.20%**" in about
    assert f"**{effect.loc[('cifar10', 'lp'), 'gap']:+.1f} points**" in about
    weak = effect[effect["verdict"] == "weak"]["gap"]
    assert f"{weak.min():+.1f} to {weak.max():+.1f} points" in about
    for dataset, mode in effect[effect["verdict"] == "reversed"].index:
        assert f"{names[dataset]} {mode.upper()} ({effect.loc[(dataset, mode), 'gap']:.1f})" in about


def test_readme_and_about_quote_the_measured_grid_from_its_table() -> None:
    readme = (REPO / "README.md").read_text()
    about = (REPO / "fmsteal" / "service" / "about.md").read_text()
    grid = _measured("offline-cifar10")
    at = grid[grid["budget"] == 5000]
    short = {"tf_efficientnet_lite0": "Lite0", "tf_efficientnet_lite1": "Lite1", "tf_efficientnet_lite2": "Lite2"}
    for victim, label in [*((v, f"EfficientNet-{s}") for v, s in short.items()), ("scratch_cnn", "Scratch CNN")]:
        row = next(line for line in readme.splitlines() if line.startswith(f"| {label} ("))
        for thief in short:
            cell = at[(at["output"] == "label") & (at["victim"] == victim) & (at["thief"] == thief)]
            assert len(cell) == 3 and _cell(cell) in row, (victim, thief, row)
    label = at[at["output"] == "label"]
    own = label[(label["victim"] == "tf_efficientnet_lite0") & (label["thief"] == "tf_efficientnet_lite0")]
    scratch = label[(label["victim"] == "scratch_cnn") & (label["thief"] == "tf_efficientnet_lite0")]
    assert f"{_cell(own).replace(' ±', '% ±')} against a Lite0 victim" in about
    assert f"({_cell(scratch).replace(' ±', '% ±')})" in about
    accuracy = grid.groupby(["victim", "seed"])["victim_acc"].first().groupby("victim").agg(["mean", "std"]) * 100
    for victim in ("tf_efficientnet_lite0", "scratch_cnn"):
        assert f"{accuracy.loc[victim, 'mean']:.1f}% ± {accuracy.loc[victim, 'std']:.1f}" in readme
    probs = grid[(grid["output"] == "probs") & (grid["thief"] == "tf_efficientnet_lite0")]
    for victim, budget in (("tf_efficientnet_lite0", 5000), ("tf_efficientnet_lite0", 20000), ("scratch_cnn", 5000)):
        rows = probs[(probs["victim"] == victim) & (probs["budget"] == budget)]
        assert _cell(rows).replace(" ±", "% ±") in readme, (victim, budget)
    from fmsteal.service.confound_results import VICTIMS, confound_finding, confound_summary

    assert "training mode\nmatters most" in about and "Training mode moves agreement most" in confound_finding()

    confound = confound_summary(_measured("confound-cifar10"), 5000)
    quoted = [f"{100 * mean:.1f}% ± {100 * sd:.1f}" for mean, sd, _ in (confound[key]["agreement"] for key in VICTIMS)]
    assert re.search(".*".join(map(re.escape, quoted)), about.replace("\n", " ")), quoted  # in the order of VICTIMS
    assert {confound[key]["agreement"][2] for key in VICTIMS} == {3} and "(n=3 seeds each)" in about
    provenance = (PRECOMPUTED / "offline-cifar10" / "PROVENANCE.md").read_text()
    minutes = re.search(r"\| ([\d.]+) min \|", provenance).group(1)
    assert f"{minutes} min of wall time" in readme
    assert "about 4 min per backbone" not in readme


def _confound_rows(cells: list[tuple[str, str, int, float, float]]) -> pd.DataFrame:
    """A confound-style table: (victim, mode, seed, agreement at 5k, victim accuracy) per cell."""
    return pd.DataFrame([{"victim": v, "victim_mode": m, "seed": s, "budget": 5000, "output": "label",
                          "agreement": a, "victim_acc": acc} for v, m, s, a, acc in cells])


def test_the_confound_table_and_finding_state_only_what_was_measured(tmp_path) -> None:
    from fmsteal.service.confound_results import confound_finding, confound_table

    folder = tmp_path / "confound-cifar10"
    folder.mkdir()
    _confound_rows([("tf_efficientnet_lite0", "lp", s, 0.70 + s / 100, 0.5) for s in range(3)]).to_csv(
        folder / "confound-cifar10.csv", index=False)
    table, finding = confound_table(tmp_path), confound_finding(tmp_path)
    assert "| EfficientNet-Lite0, linear probe | 71.0% ± 1.0 (n=3) | not measured yet | 50.0% ± 0.0 (n=3) |" in table
    assert table.count("not measured yet") == 1 + 2 * 3  # no 20k rows; two victims without cells
    assert finding.count("not measured yet") == 3  # no 96-px grid in tmp_path either
    _confound_rows([("tf_efficientnet_lite0", "lp", 0, 0.70, 0.5), ("tf_efficientnet_lite0", "fft", 0, 0.60, 0.8),
                    ("scratch_cnn", "fft", 0, 0.65, 0.75), ("scratch_cnn", "fft", 1, 0.67, 0.77)]).to_csv(
        folder / "confound-cifar10.csv", index=False)
    finding = confound_finding(tmp_path)
    assert "fine-tuned Lite0 with 60.0% (n=1) agreement and the scratch CNN with 66.0% ± 1.4 (n=2), -6.0 points" in finding
    assert "linear probe is copied with 70.0% (n=1), the fine-tuned network with 60.0% (n=1), +10.0 points" in finding
    assert finding.count("not measured yet") == 1  # only the resolution comparison lacks its grid
    assert finding.endswith("Training mode moves agreement most (10.0 points), then pretrained features (6.0).")


def test_the_defence_grids_undefended_cells_reproduce_the_offline_grids_checkpoints_exactly() -> None:
    """Runs measured many changes apart agree to the last digit: the undefended 5,000-query cells of
    defences-cifar10 (current code) are the 5,000-query checkpoints of offline-cifar10's 20,000-query runs,
    for the linear-probe victims. (A scratch victim trained again is not bit-identical on CPU: its
    convolutions' summation order follows the thread count; its cells are left out here.)"""
    defended, offline = Grid.from_preset("defences-cifar10"), Grid.from_preset("offline-cifar10")
    earlier = {}
    for cell in offline.cells():
        path = card_path(PRECOMPUTED / "offline-cifar10", cell)
        card = json.loads(path.read_text())
        point = next(p for p in card["curve"] if p["queries"] == 5000)
        earlier[(cell.victim, cell.thief, cell.output, cell.seed)] = (point["agreement"], point["thief_accuracy"],
                                                                     card["victim_accuracy"])
    compared = 0
    for cell in defended.cells():
        path = card_path(PRECOMPUTED / "defences-cifar10", cell)
        if cell.defence != "none" or cell.victim_mode != "lp" or not path.exists():
            continue
        card = json.loads(path.read_text())
        last = card["curve"][-1]
        assert last["queries"] == 5000
        assert (last["agreement"], last["thief_accuracy"], card["victim_accuracy"]) == \
            earlier[(cell.victim, cell.thief, cell.output, cell.seed)], cell.job_id()
        compared += 1
    assert compared >= 2
