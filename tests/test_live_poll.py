"""The page's poll: what it marks as drawn is what it drew, even when a job finishes in the middle of a poll, and a
run new to the page's comparison is shown there while one the visitor hid stays hidden."""

from __future__ import annotations

import threading
import time

import pytest

import app
from fmsteal.experiment.estimate import duration
from fmsteal.service import classroom
from fmsteal.service.jobs import JobStore, new_owner_token
from test_jobs import settings, wait_for

OWNER = new_owner_token()
MATRIX = [[8, 2, 0], [1, 6, 3], [0, 0, 10]]


def full_card(config: dict) -> dict:
    curve = [{"queries": q, "agreement": q / 200, "thief_accuracy": q / 300, "macro_f1": q / 400} for q in (50, 100)]
    return {"config": config, "curve": curve, "image_size": {"victim": 64, "thief": 64},
            "class_names": ["cat", "dog", "ship"], "confusion": {"labels": ["cat", "dog", "ship"], "matrix": MATRIX},
            "per_class_agreement": [0.8, 0.6, 1.0], "agreement": 0.8, "victim_accuracy": 0.9, "thief_accuracy": 0.7,
            "queries_spent": 100, "test_size": 30, "device": "cpu", "timings": {"total": 1.0}}


class HeldEngine:
    """Holds until `begin` is set (set at once unless asked), yields two checkpoints, then holds the result until
    `release` is set."""

    def __init__(self, begin: bool = True):
        self.begin, self.release = threading.Event(), threading.Event()
        if begin:
            self.begin.set()

    def __call__(self, config: dict, cancel, estimate_s=None, skip=None):
        self.begin.wait(20)
        for q in (50, 100):
            yield {"kind": "checkpoint", "queries": q, "agreement": q / 200, "thief_accuracy": q / 300,
                   "macro_f1": q / 400, "victim_accuracy": 0.9, "queries_spent": q, "elapsed_s": 0.1}
        self.release.wait(20)
        yield {"kind": "result", "card": full_card(config), "elapsed_s": 0.2}


class FinishingStore:
    """The job store as the page's poll sees it, where the job finishes during read number `finish_at`."""

    def __init__(self, store: JobStore, engine: HeldEngine, job_id: str, finish_at: int):
        self.store, self.engine, self.job_id, self.finish_at, self.reads = store, engine, job_id, finish_at, 0

    def snapshot(self, job_id: str, owner: str) -> dict | None:
        self.reads += 1
        if self.reads == self.finish_at:
            self.engine.release.set()
            wait_for(self.store, self.job_id, OWNER)
        return self.store.snapshot(job_id, owner)

    def files(self, job_id: str, owner: str):
        return self.store.files(job_id, owner)


def heatmap_drawn(outputs: dict) -> bool:
    figure = outputs.get("confusion")
    return figure is not None and any(trace.type == "heatmap" for trace in figure.data)


def submit(store: JobStore, tmp_path, seed: int = 0) -> str:
    return store.submit(app.ExperimentConfig(victim="tf_efficientnet_lite0", thief="tf_efficientnet_lite0",
                                             budget=100, seed=seed, data_dir=str(tmp_path)), OWNER)


def wait_for_points(store: JobStore, job_id: str, timeout: float = 20) -> None:
    """Until the job has its two checkpoints (a failure, not a hang, if it never does)."""
    deadline = time.time() + timeout
    while len((store.snapshot(job_id, OWNER) or {}).get("checkpoints") or []) < 2:
        assert time.time() < deadline, f"job {job_id} has no checkpoints after {timeout} s"
        time.sleep(0.01)


@pytest.mark.parametrize("finish_at", [1, 2, 3, 4, 5])
def test_a_job_finishing_mid_poll_is_drawn_by_the_next_tick(tmp_path, monkeypatch, finish_at):
    engine = HeldEngine()
    store = JobStore(tmp_path, runner=engine, settings=settings())
    job_id = submit(store, tmp_path)
    wait_for_points(store, job_id)
    finishing = FinishingStore(store, engine, job_id, finish_at)
    monkeypatch.setattr(app, "store", lambda: finishing)
    drawn, ticks = None, []
    for _ in range(finish_at + 1):  # one tick past the read that saw it finish
        ticks.append(app.poll([job_id], drawn, None, OWNER))
        drawn = ticks[-1].get("drawn", drawn)
    assert "Done" in ticks[-1]["status"]
    assert any(heatmap_drawn(tick) for tick in ticks), "the finished job's confusion was never drawn"
    resting = app.poll([job_id], drawn, None, OWNER)
    assert "confusion" not in resting and resting["timer"].active is False  # drawn once, then the page rests


def shown_in_comparison(outputs: dict) -> set[str]:
    """Labels of the comparison's measured traces that are drawn (not only listed in the legend)."""
    return {t.name for t in outputs["comparison"].data if "precomputed" not in t.name and t.visible is True}


def test_runs_queued_before_they_have_points_are_shown_once_they_do(tmp_path, monkeypatch):
    engine = HeldEngine(begin=False)
    store = JobStore(tmp_path, runner=engine, settings=settings())
    monkeypatch.setattr(app, "store", lambda: store)
    first, second = submit(store, tmp_path, seed=1), submit(store, tmp_path, seed=2)  # as a scenario queues them
    page = app.poll([first, second], None, [], OWNER)  # the page right after queueing: nothing to compare yet
    assert page["shown"].choices == [] and shown_in_comparison(page) == set()
    engine.begin.set()
    wait_for_points(store, first)
    page = app.poll([first, second], page["drawn"], page["shown"].value, OWNER)
    assert page["shown"].value == [first] and len(shown_in_comparison(page)) == 1
    hidden_by_visitor = page["drawn"]
    engine.release.set()
    wait_for_points(store, second)
    wait_for(store, second, OWNER)
    page = app.poll([first, second], hidden_by_visitor, [], OWNER)  # the visitor unticked the first run
    assert page["shown"].value == [second] and len(shown_in_comparison(page)) == 1


def test_the_reference_curve_during_a_run_is_the_finished_runs(tiny_config, tmp_path):
    """The dotted precomputed curve of a 32 px Lite0 run is the confound grid's 32 px cells from the first point on,
    not a mix with the offline grid's 96 px cells of the same pair (the run's sizes come with its plan)."""
    from fmsteal.service import classroom, live, results, runners

    paused, release = threading.Event(), threading.Event()

    def held_after_two_points(config, cancel, estimate_s=None, skip=None):
        points = 0
        for event in runners.local_runner(config, cancel, estimate_s):
            yield event
            points += event["kind"] == "checkpoint"
            if points == 2 and not paused.is_set():
                paused.set()
                release.wait(120)

    store = JobStore(tmp_path, runner=held_after_two_points, settings=settings())
    config = tiny_config(image_size=32, budget=300, seed=7)
    job_id = store.submit(config, OWNER)
    assert paused.wait(300)
    table = results.load_tables()
    (running,) = live.session_runs({job_id: store.snapshot(job_id, OWNER)})
    release.set()
    (finished,) = live.session_runs({job_id: wait_for(store, job_id, OWNER, timeout=300)})
    assert running["status"] == "running" and finished["status"] == "done"
    during = classroom.reference_curve(table, running["config"], running["sizes"])
    assert during is not None and during == classroom.reference_curve(table, finished["config"], finished["sizes"])
    assert during != classroom.reference_curve(table, running["config"], None)  # sizes matter for this pair


def test_each_scenario_button_shows_the_time_its_demo_sized_runs_take(cifar_subset):
    values = {"victim": "tf_efficientnet_lite0", "thief": "tf_efficientnet_lite0", "budget": 100,
              "data_dir": str(cifar_subset), "image_size": 32}  # 150 pool images: the budget must fit
    for entry in classroom.SCENARIOS:
        label = app.scenario_label(entry.name, values)
        total = sum(app.check(run["values"])[1]["seconds"] for run in classroom.scenario_runs(entry.name, values))
        assert label == f"{entry.help} · ~{duration(total)}"  # the sum of its runs' own estimates
    missing = {**values, "data_dir": str(cifar_subset / "nowhere")}
    assert app.scenario_label("outputs", missing) == "Labels vs probabilities (not with these settings)"
