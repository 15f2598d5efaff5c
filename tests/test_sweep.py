"""Sweeps on tiny grids of real CIFAR-10: cells, cards, table, resume, skipping, failures, processes, Ray."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from fmsteal.cli import main
from fmsteal.experiment.cards import read_card
from fmsteal.errors import Cancelled, ConfigError
from fmsteal.service.sweep import TABLE_COLUMNS, Grid, card_path, run_sweep, warm_first


def test_cells_cross_every_axis_and_resolve_auto_modes() -> None:
    grid = Grid.from_dict("g", {"victims": ["tf_efficientnet_lite0", "scratch_cnn"],
                                "thieves": ["tf_efficientnet_lite0", "tf_efficientnet_lite1"],
                                "budgets": [100, 200], "seeds": [0, 1], "outputs": ["label", "probs"],
                                "fixed": {"image_size": 64, "data_dir": "data.tar.gz"}})
    cells = grid.cells()
    assert len(cells) == len({c.job_id() for c in cells}) == 2 * 2 * 2 * 2 * 2
    assert {c.victim_mode for c in cells if c.victim == "scratch_cnn"} == {"fft"}
    assert {c.victim_mode for c in cells if c.victim != "scratch_cnn"} == {"lp"}
    assert {c.image_size for c in cells} == {64}
    assert [c.victim for c in cells] == ["tf_efficientnet_lite0"] * 16 + ["scratch_cnn"] * 16


def test_grid_files_yaml_and_json_resolve_paths_against_their_folder(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text("victims: [tf_efficientnet_lite0]\nthieves: tf_efficientnet_lite0\n"
                                     "fixed: {data_dir: data/cifar.tar.gz, query_pool: pools/x.tar.gz}\n")
    (tmp_path / "g.json").write_text(json.dumps({"victims": ["scratch_cnn"], "thieves": ["tf_efficientnet_lite0"],
                                                 "budgets": [300], "name": "named"}))
    yaml_grid, json_grid = Grid.from_file(tmp_path / "g.yaml"), Grid.from_file(tmp_path / "g.json")
    cell = yaml_grid.cells()[0]
    assert yaml_grid.name == "g" and cell.data_dir == "data/cifar.tar.gz"
    resolved = yaml_grid.resolved(cell)
    assert resolved.data_dir == str(tmp_path / "data" / "cifar.tar.gz")
    assert resolved.query_pool == str(tmp_path / "pools" / "x.tar.gz")
    assert json_grid.name == "named" and [(c.victim_mode, c.budget) for c in json_grid.cells()] == [("fft", 300)]


def test_defences_are_crossed_only_with_the_outputs_they_fit() -> None:
    grid = Grid.from_dict("g", {"victims": ["tf_efficientnet_lite0"], "thieves": ["tf_efficientnet_lite0"],
                                "outputs": ["label", "probs"],
                                "defences": ["none", "top1", "gaussian-noise:sigma=0.2",
                                             "gaussian-noise:sigma=0.2,keep_argmax=true", "watermark:rate=0.1"]})
    cells = {(c.defence, c.defence_params, c.output) for c in grid.cells()}
    assert cells == {("none", "", "label"), ("none", "", "probs"), ("top1", "", "probs"),
                     ("gaussian-noise", "sigma=0.2", "label"), ("gaussian-noise", "sigma=0.2", "probs"),
                     ("gaussian-noise", "sigma=0.2,keep_argmax=true", "probs"),
                     ("watermark", "rate=0.1", "label"), ("watermark", "rate=0.1", "probs")}
    assert grid.defended and not Grid.from_dict("g", {"victims": ["scratch_cnn"], "thieves": ["scratch_cnn"]}).defended


@pytest.mark.parametrize("spec, message", [
    ({"victims": ["scratch_cnn"], "thieves": ["scratch_cnn"], "defences": ["no-such-defence"]}, "gaussian-noise"),
    ({"victims": ["scratch_cnn"], "thieves": ["scratch_cnn"], "defences": ["mad:epsilon=7"]}, "epsilon"),
    ({"victims": ["scratch_cnn"], "thieves": ["scratch_cnn"], "defences": ["mad:epsilon"]}, "KEY=VALUE"),
    ({"victims": ["scratch_cnn"], "thieves": ["scratch_cnn"], "fixed": {"defence": "top1"}}, "axis"),
    ({"victims": ["scratch_cnn"], "thieves": ["scratch_cnn"], "budget": [1]}, "Unknown grid keys"),
    ({"victims": [], "thieves": ["scratch_cnn"]}, "victims"),
    ({"victims": ["scratch_cnn"], "thieves": ["scratch_cnn"], "fixed": {"seed": 3}}, "axis"),
    ({"victims": ["no_such_net"], "thieves": ["scratch_cnn"]}, "no_such_net"),
])
def test_bad_grids_say_what_to_change(spec: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Grid.from_dict("bad", spec).cells()


def test_warm_first_runs_each_new_victim_and_thief_alone() -> None:
    grid = Grid.from_dict("g", {"victims": ["tf_efficientnet_lite0", "tf_efficientnet_lite1"],
                                "thieves": ["tf_efficientnet_lite0", "tf_efficientnet_lite1"],
                                "outputs": ["label", "probs"]})
    warm, rest = warm_first(grid.cells())
    assert [(c.victim, c.thief, c.output) for c in warm] == [
        ("tf_efficientnet_lite0", "tf_efficientnet_lite0", "label"),
        ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "label"),
        ("tf_efficientnet_lite1", "tf_efficientnet_lite0", "label")]
    assert len(rest) == 5


def test_sweep_writes_cards_and_a_tidy_table(evaluated_grid, tiny_sweep: Path) -> None:
    grid = evaluated_grid
    cells = grid.cells()
    cards = [read_card(card_path(tiny_sweep, c)) for c in cells]
    assert [card["config"] for card in cards] == [c.to_dict() for c in cells]
    table = pd.read_csv(tiny_sweep / "tiny.csv")
    assert list(table.columns[:len(TABLE_COLUMNS)]) == TABLE_COLUMNS
    assert len(table) == sum(len(card["curve"]) for card in cards)
    assert set(table["source"]) == {"fmsteal"} and set(table["seed"]) == {0, 1}
    assert table["agreement"].between(0, 1).all() and table["thief_acc"].between(0, 1).all()
    for (victim, seed), rows in table.groupby(["victim", "seed"]):
        card = next(k for k in cards if (k["config"]["victim"], k["seed"]) == (victim, seed))
        assert rows["budget"].tolist() == [p["queries"] for p in card["curve"]]
        assert rows["agreement"].tolist() == pytest.approx([p["agreement"] for p in card["curve"]])
        assert rows["victim_acc"].tolist() == pytest.approx([card["victim_accuracy"]] * len(rows))
    assert set(table.loc[table["victim"] == "scratch_cnn", "victim_mode"]) == {"fft"}
    for card in cards:  # every default evaluation's summary columns, from the card
        rows = table[(table["victim"] == card["config"]["victim"]) & (table["seed"] == card["seed"])]
        assert rows["transfer_thief_pgd"].tolist() == pytest.approx([card["transfer"]["thief_pgd"]] * len(rows))
        corrupted = [row["agreement"] for row in card["corruptions"] if row["severity"] > 0]
        assert rows["corrupted_agreement"].iloc[0] == pytest.approx(sum(corrupted) / len(corrupted))
        assert rows["topk_agreement"].iloc[0] == pytest.approx(card["fidelity"]["topk_agreement"])
    provenance = (tiny_sweep / "PROVENANCE.md").read_text()
    assert "4 run cards" in provenance and "local x1" in provenance


def test_a_finished_sweep_is_skipped_entirely(evaluated_grid, tiny_sweep: Path) -> None:
    grid = evaluated_grid
    before = {c.job_id(): card_path(tiny_sweep, c).stat().st_mtime_ns for c in grid.cells()}
    table = (tiny_sweep / "tiny.csv").read_text()
    events: list[dict] = []
    summary = run_sweep(grid, tiny_sweep, progress=events.append)
    assert (summary["ran"], summary["skipped"], summary["failed"]) == (0, 4, [])
    assert [e["status"] for e in events if e["kind"] == "cell"] == ["skipped"] * 4
    assert {c.job_id(): card_path(tiny_sweep, c).stat().st_mtime_ns for c in grid.cells()} == before
    assert (tiny_sweep / "tiny.csv").read_text() == table
    assert len((tiny_sweep / "sweep_log.jsonl").read_text().splitlines()) >= 2


def test_an_interrupted_cell_is_redone_and_finished_ones_are_not(tiny_grid, tmp_path: Path) -> None:
    grid = tiny_grid(outputs=["label", "probs"])
    first, second = grid.cells()[:2]
    cancel = threading.Event()

    def interrupt_second(event: dict) -> None:
        if event.get("status") == "started" and event["job_id"] == second.job_id():
            cancel.set()

    with pytest.raises(Cancelled):
        run_sweep(grid, tmp_path, progress=interrupt_second, cancel=cancel)
    assert card_path(tmp_path, first).exists() and not card_path(tmp_path, second).exists()
    assert "(interrupted: 3 cells left)" in (tmp_path / "PROVENANCE.md").read_text()
    first_written = card_path(tmp_path, first).stat().st_mtime_ns
    assert set(pd.read_csv(tmp_path / "tiny.csv")["output"]) == {"label"}

    events: list[dict] = []
    summary = run_sweep(grid, tmp_path, progress=events.append)
    assert (summary["skipped"], summary["ran"]) == (1, 3)
    assert [e["job_id"] for e in events if e.get("status") == "started"][0] == second.job_id()
    assert card_path(tmp_path, first).stat().st_mtime_ns == first_written
    assert len(pd.read_csv(tmp_path / "tiny.csv").groupby(["victim", "output"])) == 4


def test_a_time_limit_starts_no_new_cell_and_a_rerun_resumes(tiny_grid, tmp_path: Path) -> None:
    grid = tiny_grid(victims=["tf_efficientnet_lite0"], outputs=["label", "probs"])
    first, second = grid.cells()
    limit_s = 2.0

    def outlast_the_limit(event: dict) -> None:  # the first cell ends after the limit, however fast it ran
        if event.get("status") == "done":
            time.sleep(limit_s)

    summary = run_sweep(grid, tmp_path, progress=outlast_the_limit, stop_after_s=limit_s)
    assert (summary["ran"], summary["left"], summary["failed"]) == (1, 1, [])
    assert card_path(tmp_path, first).exists() and not card_path(tmp_path, second).exists()
    assert "time limit of 0.0333333 min reached: 1 cell left" in (tmp_path / "PROVENANCE.md").read_text()
    summary = run_sweep(grid, tmp_path)
    assert (summary["skipped"], summary["ran"], summary["left"]) == (1, 1, 0)
    assert "note" not in json.loads((tmp_path / "sweep_log.jsonl").read_text().splitlines()[-1])


def test_sweep_time_limit_from_the_cli(tiny_grid, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps({"victims": ["tf_efficientnet_lite0"], "thieves": ["tf_efficientnet_lite0"],
                                     "budgets": [100], "fixed": tiny_grid().fixed}))
    out = tmp_path / "out"
    assert main(["sweep", "--grid", str(grid_file), "--out", str(out), "--stop-after", "0"]) == 0
    assert "1 cell left; rerun the same command to resume." in capsys.readouterr().out
    assert not (out / "cards").exists() or not any((out / "cards").iterdir())
    for bad in (["--stop-after", "-1"], ["--stop-after", "5", "--executor", "ray"]):
        assert main(["sweep", "--grid", str(grid_file), "--out", str(tmp_path / "bad"), *bad]) != 0
        assert "A time limit needs the local executor" in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def test_ctrl_c_in_the_cli_keeps_what_ran_notes_it_and_says_how_to_resume(tiny_grid, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from fmsteal.service import sweep

    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps({"victims": ["tf_efficientnet_lite0"], "thieves": ["tf_efficientnet_lite0"],
                                     "budgets": [100], "fixed": tiny_grid().fixed}))

    def pressed(config: dict, cancel=None) -> dict:  # Ctrl-C lands while the first cell runs
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_cell", pressed)
    assert main(["sweep", "--grid", str(grid_file), "--out", str(tmp_path / "out")]) == 130
    assert "Interrupted: the finished cells are kept" in capsys.readouterr().err
    assert "(interrupted: 1 cell left)" in (tmp_path / "out" / "PROVENANCE.md").read_text()


def test_a_failing_cell_is_reported_and_the_rest_still_run(tiny_grid, tmp_path: Path, cifar_mini: Path) -> None:
    grid_file = tmp_path / "failing.json"
    grid_file.write_text(json.dumps({"victims": ["tf_efficientnet_lite0"], "thieves": ["tf_efficientnet_lite0"],
                                     "budgets": [100, 100000], "fixed": tiny_grid().fixed}))
    assert main(["sweep", "--grid", str(grid_file), "--out", str(tmp_path / "out")]) == 1
    small, huge = Grid.from_file(grid_file).cells()
    assert card_path(tmp_path / "out", small).exists() and not card_path(tmp_path / "out", huge).exists()
    assert pd.read_csv(tmp_path / "out" / "failing.csv")["budget"].max() == 100


def test_parallel_processes_run_every_cell(tiny_grid, tmp_path: Path) -> None:
    grid = tiny_grid(victims=["tf_efficientnet_lite0"], outputs=["label", "probs", "rounded"])
    summary = run_sweep(grid, tmp_path, jobs=2)
    assert (summary["ran"], summary["failed"]) == (3, [])
    table = pd.read_csv(tmp_path / "tiny.csv")
    assert set(table["output"]) == {"label", "probs", "rounded"}
    assert "local x2" in (tmp_path / "PROVENANCE.md").read_text()


def test_ray_executor_on_a_one_cpu_local_cluster(tiny_grid, tmp_path: Path) -> None:
    """Ray >= 2.x dropped local_mode, so this starts a real one-CPU local Ray instance."""
    ray = pytest.importorskip("ray")
    grid = tiny_grid(victims=["tf_efficientnet_lite0"], outputs=["label", "probs"])
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_sweep(grid, tmp_path, executor="ray")
    finally:
        ray.shutdown()
    assert (summary["ran"], summary["failed"]) == (2, [])
    assert all(card_path(tmp_path, c).exists() for c in grid.cells())


def test_ray_executor_without_ray_says_how_to_install_it(tiny_grid, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match="pip install ray"):
        run_sweep(tiny_grid(), tmp_path, executor="ray")
