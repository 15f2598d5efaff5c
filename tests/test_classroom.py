"""Classroom scenarios compare like with like, and their sentences are read off the precomputed grids."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fmsteal.experiment.config import ExperimentConfig
from fmsteal.service import classroom, scenario_findings
from fmsteal.service.confound_results import confound_summary
from fmsteal.service.results import grid_table

REPO = Path(__file__).resolve().parents[1]
FORM = {"victim": "tf_efficientnet_lite0", "thief": "tf_efficientnet_lite0", "budget": 5000, "data_dir": "x.tar.gz"}
# What each scenario is about: the only fields its runs may differ in.
ABOUT = {"contrast": {"victim"}, "outputs": {"output"}, "bigger-thief": {"thief"}, "defence": {"defence"}}


@pytest.mark.parametrize("name", sorted(ABOUT))
def test_each_scenario_varies_only_what_it_is_about_at_equal_training_and_resolution(name):
    for form in (FORM, {**FORM, "victim": "scratch_cnn", "thief": "tf_efficientnet_lite2", "image_size": 64}):
        configs = [ExperimentConfig.from_inputs(run["values"]).to_dict()
                   for run in classroom.SCENARIOS.get(name).fn(form)]
        assert len(configs) == 2
        differ = {key for key in configs[0] if configs[0][key] != configs[1][key]}
        assert differ == ABOUT[name], f"{name} also changes {differ - ABOUT[name]}"


def test_the_contrast_fine_tunes_both_victims_at_the_confound_grids_size():
    runs = [ExperimentConfig.from_inputs(run["values"]) for run in classroom.paper_contrast(FORM)]
    assert [(c.victim, c.victim_mode, c.image_size) for c in runs] == [
        ("tf_efficientnet_lite0", "fft", 32), ("scratch_cnn", "fft", 32)]
    assert {c.thief for c in runs} == {"tf_efficientnet_lite0"}


def test_the_contrast_sentence_states_the_confound_grids_numbers():
    summary = confound_summary(grid_table("confound-cifar10", REPO / "precomputed"), 5000)
    text = classroom.look_for("contrast", REPO / "precomputed")
    for key in (("tf_efficientnet_lite0", "fft"), ("scratch_cnn", "fft"), ("tf_efficientnet_lite0", "lp")):
        mean, sd, n = summary[key]["agreement"]
        assert f"{100 * mean:.1f}% ± {100 * sd:.1f} (n={n})" in text
    assert text.startswith("**The paper's contrast.** Look for ")
    assert classroom.look_for("bigger-thief", REPO / "precomputed").startswith("**Does a bigger thief help?** Look")
    assert "far more closely" not in text  # the old hand-written claim the grid contradicted


def _grid_with(tmp_path: Path, grid: str, change) -> Path:
    """A copy of the precomputed folder whose `grid` table is changed by `change(table)`."""
    root = tmp_path / "precomputed"
    shutil.copytree(REPO / "precomputed" / grid, root / grid, ignore=shutil.ignore_patterns("cards"))
    path = root / grid / f"{grid}.csv"
    table = pd.read_csv(path)
    change(table)
    table.to_csv(path, index=False)
    return root


def test_the_sentences_follow_the_data_when_it_changes(tmp_path):
    def scratch_far_ahead(table):
        table.loc[table["victim"] == "scratch_cnn", "agreement"] += 0.2

    text = scenario_findings.contrast_finding(_grid_with(tmp_path, "confound-cifar10", scratch_far_ahead))
    gap = float(re.search(r"scratch CNN [^:]+: ([+-]\d+\.\d) points", text).group(1))
    assert gap < -15 and ", a clear difference" in text

    def labels_equal_probabilities(table):
        table.loc[table["output"] == "probs", "agreement"] = table.loc[table["output"] == "label", "agreement"].values

    text = scenario_findings.outputs_finding(_grid_with(tmp_path / "b", "offline-cifar10", labels_equal_probabilities))
    assert "+0.0 points, not a clear difference" in text


def test_the_defence_sentence_names_the_thief_that_was_strongest(tmp_path):
    def simulate_strongest(table):
        table["strongest_thief"] = table["strongest_thief"].where(table["defence"] != "reverse-sigmoid", "simulate")

    table = grid_table("defences-cifar10", REPO / "precomputed")
    cells = table[(table["defence"] == "reverse-sigmoid") & (table["defence_params"] == "beta=1.0")
                  & (table["victim"] == "tf_efficientnet_lite0") & (table["output"] == "probs")
                  & (table["budget"] == 5000)]
    strongest = " or ".join(f"the {name} thief" for name in sorted(set(cells["strongest_thief"])))
    assert f"with the same budget ({strongest}):" in scenario_findings.defence_finding(REPO / "precomputed")
    text = scenario_findings.defence_finding(_grid_with(tmp_path, "defences-cifar10", simulate_strongest))
    assert "with the same budget (the simulate thief):" in text


def test_a_grid_that_is_not_shipped_gives_no_finding(tmp_path):
    for name in ABOUT:
        assert classroom.look_for(name, tmp_path).endswith(scenario_findings.NOT_MEASURED)


def test_compare_calls_a_difference_clear_only_when_the_seeds_show_it():
    small = scenario_findings.compare((0.484, 0.005, 3), (0.476, 0.002, 3), "a", "b")  # the confound grid's gap
    assert "+0.8 points, not a clear difference (Welch's t-test p = 0.094; 3 seeds" in small
    large = scenario_findings.compare((0.878, 0.002, 3), (0.838, 0.001, 3), "a", "b")
    assert "+4.0 points, a clear difference (Welch's t-test p = " in large
    assert ": +0.0 points" in scenario_findings.compare((0.7654, 0.002, 3), (0.7658, 0.002, 3), "a", "b")
    single = scenario_findings.compare((0.5, float("nan"), 1), (0.49, float("nan"), 1), "a", "b")
    assert "+1.0 points (one seed: too few" in single


def test_every_scenario_queues_demo_sized_runs_and_keeps_smaller_settings():
    values = {"victim": "tf_efficientnet_lite0", "thief": "tf_efficientnet_lite1", "budget": 5000,
              "train_per_class": None, "test_per_class": 20, "evaluations": "default"}
    for entry in classroom.SCENARIOS:
        runs = classroom.scenario_runs(entry.name, values)
        assert len(runs) == 2, entry.name
        for run in runs:
            assert {key: run["values"][key] for key in ("budget", "train_per_class", "test_per_class", "evaluations")} \
                == {"budget": 500, "train_per_class": 100, "test_per_class": 20, "evaluations": "examples"}
    assert classroom.demo_sized({"budget": 200})["budget"] == 200
    assert "Demo-sized: at most 500 queries" in classroom.look_for("outputs", REPO / "precomputed")
