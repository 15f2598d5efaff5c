"""The epsilon-sweep grid's view: a table with the columns the transfer-sweep evaluation gives its cells, read into a
figure and a finding that leaves saturated budgets out (the measured grid is checked in test_readme_findings)."""

from __future__ import annotations

import pandas as pd
import pytest

from fmsteal.evaluation.registry import EVALUATIONS
from fmsteal.service import transfer_sweep_results as view

BUDGETS = (1, 2, 4, 8)


def _cell(victim: str, mode: str, label: str, seed: int, fooled) -> dict:
    """One cell's table row: its sweep result through the evaluation's own `columns`."""
    rows = [{"eps": eps, **{name: fooled(name, eps, seed) for name in
                            ("independent_fgsm", "independent_pgd", "noise", "thief_fgsm", "thief_pgd")}}
            for eps in BUDGETS]
    columns = EVALUATIONS.get("transfer-sweep").meta["columns"]({"rows": rows})
    return {"victim": victim, "victim_mode": mode, "victim_label": label, "thief": "tf_efficientnet_lite0",
            "thief_label": "EfficientNet-Lite0", "output": "label", "budget": 5000, "seed": seed, **columns}


def _fooled(name: str, eps: int, seed: int) -> float:
    """PGD saturates from 4/255 on; the copy leads the independent model by 5 points wherever it can."""
    if name == "noise":
        return 0.01 * eps
    base = min(1.0, 0.3 * eps) if name.endswith("pgd") else 0.1 * eps + 0.01 * seed
    return min(1.0, base + 0.05) if name.startswith("thief") else base


@pytest.fixture
def cells() -> pd.DataFrame:
    return pd.DataFrame([_cell("tf_efficientnet_lite0", "lp", "EfficientNet-Lite0", seed, _fooled) for seed in range(3)]
                        + [_cell("scratch_cnn", "fft", "Scratch CNN", seed, _fooled) for seed in range(2)])


def test_the_finding_reads_only_unsaturated_budgets_paired_by_seed(cells):
    assert view.sweep_budgets(cells) == list(BUDGETS)
    finding = view.sweep_grid_finding(cells)
    lite0, scratch = finding.split(" Scratch CNN")
    assert lite0.startswith("EfficientNet-Lite0 (pretrained, LP), n=3 seeds")
    assert "PGD (unsaturated at 1, 2/255;" in lite0 and "4/255" not in lite0.split("PGD (")[1]
    assert lite0.count("the copy adds +5.0 points, higher in") == 2
    assert "higher in 12 and lower in 0 of 12 seed-budget pairs" in lite0  # FGSM: 4 budgets x 3 seeds
    assert "higher in 6 and lower in 0 of 6 seed-budget pairs" in lite0  # PGD: 2 budgets x 3 seeds
    assert "(from scratch), n=2 seeds" in scratch
    cells[[c for c in cells.columns if "_pgd_" in c]] = 1.0
    assert view.sweep_grid_finding(cells).count("PGD is saturated at every budget") == 2


def test_the_figure_plots_each_victims_means_against_epsilon(cells):
    figure = view.sweep_figure(cells)
    assert [a.text for a in figure.layout.annotations] == ["EfficientNet-Lite0<br>(pretrained, LP)",
                                                           "Scratch CNN<br>(from scratch)"]
    copy_fgsm = [trace for trace in figure.data if trace.name == "FGSM on the stolen copy"]
    assert len(copy_fgsm) == 2 and list(copy_fgsm[0].x) == list(BUDGETS)
    lite0 = cells[cells["victim"] == "tf_efficientnet_lite0"]
    assert list(copy_fgsm[0].y) == pytest.approx([100 * lite0[f"sweep_thief_fgsm_{eps}"].mean() for eps in BUDGETS])
    assert "n=2 seeds" in figure.layout.title.text  # the smaller victim's count
    assert f"measured here (grid {view.SWEEP_GRID})" in figure.layout.title.text


def test_without_a_sweep_the_view_says_so(tmp_path):
    empty = view.load_sweep_cells(str(tmp_path))
    assert empty.empty and view.sweep_grid_finding(empty) == "No precomputed epsilon sweep."
    assert "No precomputed epsilon sweep" in view.sweep_figure(empty).layout.annotations[0].text
