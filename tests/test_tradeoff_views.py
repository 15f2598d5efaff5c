"""The defence grid (protection vs utility) and the consequences grid (stealability vs transferability):
tiny sweeps on real CIFAR-10, their tables, and the Results views and findings computed from them."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from fmsteal.adversary.thieves import THIEVES
from fmsteal.evaluation.registry import EVALUATIONS
from fmsteal.experiment.cards import read_card
from fmsteal.service import consequence_results, defence_results, results
from fmsteal.service.conditions import pct
from fmsteal.service.sweep import DEFENCE_COLUMNS, card_path, run_sweep, write_table

DEFENDED = ["none", "gaussian-noise:sigma=0.5", "watermark:rate=0.2", "prada:delta=0.9,block=true"]


@pytest.fixture(scope="module")
def defence_sweep(tiny_grid, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A finished tiny defence grid under `<tmp>/precomputed/defences-cifar10`, and the grid."""
    grid = tiny_grid(defence_results.DEFENCE_GRID, victims=["tf_efficientnet_lite0"], outputs=["label", "probs"],
                     defences=DEFENDED, budgets=[140])
    grid = replace(grid, fixed={**grid.fixed, "evaluations": "none"})
    root = tmp_path_factory.mktemp("precomputed")
    summary = run_sweep(grid, root / grid.name)
    assert summary["failed"] == []
    return root, grid


def test_the_defence_table_holds_each_cells_trade_off_from_its_card(defence_sweep) -> None:
    root, grid = defence_sweep
    table = pd.read_csv(root / grid.name / f"{grid.name}.csv")
    table["defence_params"] = table["defence_params"].fillna("")
    assert set(DEFENCE_COLUMNS) <= set(table.columns)
    assert len(grid.cells()) == 8  # every defence here acts on labels and on probabilities
    for config in grid.cells():
        card = read_card(card_path(root / grid.name, config))
        rows = table[(table["defence"] == config.defence) & (table["defence_params"] == config.defence_params)
                     & (table["output"] == config.output)]
        assert rows["budget"].tolist() == [point["queries"] for point in card["curve"]]
        if config.defence == "none":
            assert "defence" not in card and rows["api_accuracy"].isna().all()
            continue
        assert rows["api_accuracy"].iloc[0] == pytest.approx(card["defence"]["api_accuracy"])
        assert rows["answers_changed"].iloc[0] == pytest.approx(card["defence"]["answers_changed"])
        thieves = card["defence"]["thieves"]  # the default, the argmax thief and those that apply: a column each
        for name in set(THIEVES.names()) - {"distil"}:
            value = rows[f"{name}_agreement"].iloc[0]
            assert value == pytest.approx(thieves[name]["agreement"]) if name in thieves else pd.isna(value)
        assert rows["worst_case_agreement"].iloc[0] == max(t["agreement"] for t in thieves.values())
        if config.output == "label":  # label answers teach every thief the same targets
            assert thieves["argmax"] == thieves["distil"]
        if config.defence == "watermark":
            assert rows["watermark_thief_log10_p"].iloc[0] == pytest.approx(
                card["defence"]["watermark_thief"]["log10_p_value"])
        if config.defence == "prada":
            assert rows["false_alarm_rate"].iloc[0] == pytest.approx(card["defence"]["false_alarm_rate"])


def test_protection_view_and_finding_follow_the_measured_cells(defence_sweep) -> None:
    root, _ = defence_sweep
    cells = defence_results.load_defence_cells(root)
    assert cells["budget"].max() <= 140 and cells["utility_lost"].notna().all()
    noise = cells[(cells["defence"] == "gaussian-noise") & (cells["output"] == "label")].iloc[0]
    assert noise["utility_lost"] == pytest.approx(noise["victim_acc"] - noise["api_accuracy"])
    assert noise["utility_lost"] > 0  # sigma 0.5 noise on the probabilities flips honest users' answers too
    figure = defence_results.protection_figure(cells, "label")
    points = {trace.name: trace for trace in figure.data}
    assert set(points) == {"undefended", "gaussian-noise", "watermark", "prada"}
    assert points["gaussian-noise"].y[0] == pytest.approx(100 * noise["worst_case_agreement"])
    assert "n=1 seed ·" in figure.layout.title.text
    finding = defence_results.protection_finding(cells, "label")
    base = cells[(cells["defence"] == "none") & (cells["output"] == "label")].iloc[0]
    assert f"the thief reaches {100 * base['agreement']:.1f}% (n=1)" in finding
    defended = cells[(cells["defence"] != "none") & (cells["output"] == "label")]
    lowest = defended.sort_values("worst_case_agreement").iloc[0]
    assert f"The largest drop is {lowest['defence']}" in finding
    strongest = {"distil": "distilling"}.get(lowest["strongest_thief"], lowest["strongest_thief"])
    assert f"for the strongest thief with the same budget (the {strongest} thief)" in finding
    assert "not yet run" not in finding
    older = cells.assign(worst_case_agreement=cells["worst_case_agreement"].where(cells["defence"] == "none"))
    assert "for the distilling thief (the argmax thief not yet run on these cells)" in \
        defence_results.protection_finding(older, "label")
    mark = cells[(cells["defence"] == "watermark") & (cells["output"] == "label")].iloc[0]
    convicted = int(mark["watermark_thief_log10_p"] < -2)  # p < 0.01
    assert (f"Ownership test (p < 0.01 convicts): watermark (rate=0.2) convicted the stolen copy in {convicted} of "
            f"1 seed (smallest p-value {defence_results.p_text(mark['watermark_thief_log10_p'])})") in finding
    assert "honest clients" in finding
    behind = 100 * (noise["worst_case_agreement"] - noise["repeat_agreement"])  # the one setting it applies to
    told = (f"trails the strongest thief on the 1 setting it applies to, by {behind:.1f} to {behind:.1f} points"
            if behind > 0 else "is the strongest on 1 of the 1 setting it applies to")
    assert f"(the repeat thief) {told}" in finding
    rows = defence_results.summary_rows(cells)
    assert len(rows) == 8 and all(len(row) == len(defence_results.SUMMARY_HEADERS) for row in rows)
    assert "measured for this victim so far" not in finding  # every setting was measured
    fewer = cells[~((cells["defence"] == "watermark") & (cells["output"] == "label"))]
    other = cells.assign(victim="scratch_cnn", victim_label="Scratch CNN", victim_mode="fft", victim_kind="fft")
    partial = defence_results.protection_finding(pd.concat([other, fewer]), "label")
    assert partial.count("Only 2 of the 3 defence settings are measured for this victim so far") == 1
    assert [paragraph.split(" victim (")[0] for paragraph in partial.split("\n\n")] == ["Scratch CNN", "EfficientNet-Lite0"]


def test_a_defence_grid_stays_out_of_the_undefended_results(defence_sweep) -> None:
    root, grid = defence_sweep
    assert results.load_tables(root).empty  # its defended cells share keys with the undefended ones


def consequence_cells(evaluated_grid, tiny_sweep: Path, root: Path) -> pd.DataFrame:
    """The tiny sweep's cards as a consequences grid under `root`, read back as the Results view reads it."""
    grid = replace(evaluated_grid, name=consequence_results.CONSEQUENCE_GRID)
    shutil.copytree(tiny_sweep / "cards", root / grid.name / "cards")
    write_table(grid, root / grid.name)
    return consequence_results.load_consequence_cells(root)


def test_stealability_vs_transferability_from_a_swept_consequences_grid(evaluated_grid, tiny_sweep: Path,
                                                                         tmp_path: Path) -> None:
    cells = consequence_cells(evaluated_grid, tiny_sweep, tmp_path)
    assert len(cells) == 4 and cells["transfer_thief_pgd"].between(0, 1).all()
    summary = consequence_results.consequence_summary(cells)
    assert set(summary["n"]) == {2}
    figure = consequence_results.transfer_scatter(cells)
    thief = next(trace for trace in figure.data if trace.name == "PGD on the stolen copy")
    assert sorted(thief.y) == pytest.approx(sorted(100 * summary["transfer_thief_pgd"]))
    low, high = figure.layout.xaxis.range  # every victim's name has room beside its point
    assert low <= 100 * summary["agreement"].min() - 3 and high >= 100 * summary["agreement"].max() + 3
    steps = EVALUATIONS.get("transfer").defaults()["steps"]
    assert f"L∞ 8/255, FGSM and {steps}-step PGD" in figure.layout.title.text  # the setting its cards record
    cells.loc[cells.index[0], "transfer_steps"] = steps + 1
    assert "FGSM and PGD" in consequence_results.transfer_scatter(cells).layout.title.text  # no one count to name
    finding = consequence_results.transfer_finding(cells)
    for row in summary.itertuples():
        for attack in ("fgsm", "pgd"):
            copy = pct(getattr(row, f"transfer_thief_{attack}"), getattr(row, f"transfer_thief_{attack}_sd"), 2, False)
            assert f"the copy's examples fool it on {copy}" in finding
    assert finding.count("paired by seed") + finding.count("saturated (") == 4


def test_the_transfer_finding_leaves_saturated_attacks_out_of_its_verdict(evaluated_grid, tiny_sweep: Path,
                                                                         tmp_path: Path) -> None:
    cells = consequence_cells(evaluated_grid, tiny_sweep, tmp_path)
    cells[["transfer_thief_pgd", "transfer_independent_pgd"]] = 1.0  # PGD fools every victim from both models
    cells["transfer_thief_fgsm"] = cells["transfer_independent_fgsm"] + 0.05  # the copy's FGSM 5 points ahead
    finding = consequence_results.transfer_finding(cells)
    steps = EVALUATIONS.get("transfer").defaults()["steps"]  # the tiny sweep's cells ran the default setting
    assert finding.count(f"{steps}-step PGD: the copy's examples fool it on 100.0% ± 0.0") == 2
    assert finding.count("saturated (") == 2
    assert finding.count("+5.0 ± 0.0 points paired by seed, higher in 2 and lower in 0 of 2 seeds") == 2
    assert "stealing adds +5.0 points of transfer" in finding
    cells["transfer_thief_fgsm"] = cells["transfer_independent_fgsm"] = 1.0
    assert "Every attack is saturated" in consequence_results.transfer_finding(cells)
