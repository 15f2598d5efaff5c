"""The job store: FIFO worker, ids from configs, cancel, failures, cards on disk, ZeroGPU path."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import threading
import time
import types
from pathlib import Path

from fmsteal.service import jobs
from fmsteal.experiment.config import ExperimentConfig
from fmsteal.errors import Cancelled, DataError
from fmsteal.service.jobs import JobStore, status_line


def config(**overrides) -> ExperimentConfig:
    values = dict(victim="tf_efficientnet_lite0", thief="tf_efficientnet_lite0", budget=100, data_dir="/data/x")
    values.update(overrides)
    return ExperimentConfig(**values)


def fake_card(config_dict: dict) -> dict:
    curve = [{"queries": q, "agreement": q / 200, "thief_accuracy": q / 300, "macro_f1": q / 400} for q in (50, 100)]
    return {"config": config_dict, "curve": curve, "agreement": 0.5, "timings": {"total": 0.1}}


class FakeEngine:
    """Stands in for `experiment.run`: yields plain events; a job can be held until released."""

    def __init__(self, fail_seeds=(), hold_seeds=()):
        self.started: list[int] = []
        self.fail_seeds, self.hold_seeds = set(fail_seeds), set(hold_seeds)
        self.release = threading.Event()

    def __call__(self, config: dict, cancel: threading.Event):
        self.started.append(config["seed"])
        yield {"kind": "phase", "phase": "embed", "message": "embedding", "elapsed_s": 0.0}
        if config["seed"] in self.fail_seeds:
            raise DataError("the data folder vanished")
        while config["seed"] in self.hold_seeds and not self.release.is_set():
            if cancel.is_set():
                raise Cancelled("cancelled")
            yield {"kind": "progress", "phase": "embed", "done": 1, "total": 4, "message": "batch", "elapsed_s": 0.1}
            time.sleep(0.02)
        yield {"kind": "phase", "phase": "steal", "message": "stealing", "elapsed_s": 0.2}
        for q in (50, 100):
            yield {"kind": "checkpoint", "queries": q, "agreement": q / 200, "thief_accuracy": q / 300,
                   "macro_f1": q / 400, "victim_accuracy": 0.9, "queries_spent": q, "elapsed_s": 0.3}
        yield {"kind": "result", "card": fake_card(config), "elapsed_s": 0.4}


def wait_for(store: JobStore, job_id: str, statuses=jobs.TERMINAL, timeout: float = 20) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        snap = store.snapshot(job_id)
        if snap["status"] in statuses:
            return snap
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} stayed {store.snapshot(job_id)['status']}")


def test_jobs_run_in_order_with_positions_and_results(tmp_path):
    engine = FakeEngine(hold_seeds={0})
    store = JobStore(tmp_path, runner=engine)
    first, second, third = (store.submit(config(seed=s)) for s in range(3))
    assert first == config(seed=0).job_id()
    wait_for(store, first, ("running",))
    assert [store.snapshot(j)["position"] for j in (first, second, third)] == [0, 1, 2]
    assert "position 2" in status_line(store.snapshot(third))
    engine.release.set()
    done = wait_for(store, third)
    assert engine.started == [0, 1, 2]
    assert done["status"] == "done" and [c["queries"] for c in done["checkpoints"]] == [50, 100]
    assert done["card"]["agreement"] == 0.5 and done["eta_s"] is None


def test_same_config_joins_or_returns_the_finished_job(tmp_path):
    engine = FakeEngine()
    store = JobStore(tmp_path, runner=engine)
    job_id = store.submit(config())
    assert store.submit(config()) == job_id
    wait_for(store, job_id)
    assert store.submit(config()) == job_id
    assert store.snapshot(job_id)["status"] == "done"
    assert engine.started == [0]


def test_finished_cards_survive_a_restart(tmp_path):
    store = JobStore(tmp_path, runner=FakeEngine())
    job_id = store.submit(config())
    path = wait_for(store, job_id)["card_path"]
    assert json.loads(open(path).read())["curve"][-1]["queries"] == 100
    assert open(path.replace(".json", ".csv")).read().splitlines()[0] == "queries,agreement,thief_accuracy,macro_f1"
    engine = FakeEngine()
    Path(path.replace(".json", ".csv")).unlink()  # e.g. a card written by the CLI
    reloaded = JobStore(tmp_path, runner=engine).snapshot(job_id)  # a page reattaching after a restart
    assert reloaded["status"] == "done" and reloaded["card"]["curve"][0]["queries"] == 50
    assert Path(path.replace(".json", ".csv")).read_text().startswith("queries,")
    restarted = JobStore(tmp_path, runner=engine)
    assert restarted.submit(config()) == job_id
    snap = restarted.snapshot(job_id)
    assert snap["status"] == "done" and snap["card"]["agreement"] == 0.5 and engine.started == []


def test_cancel_a_running_and_a_queued_job_frees_the_worker(tmp_path):
    engine = FakeEngine(hold_seeds={0})
    store = JobStore(tmp_path, runner=engine)
    running, queued, after = (store.submit(config(seed=s)) for s in range(3))
    wait_for(store, running, ("running",))
    assert store.cancel(queued)
    assert store.snapshot(after)["position"] == 1
    started = time.time()
    assert store.cancel(running)
    assert wait_for(store, running)["status"] == "cancelled"
    assert time.time() - started < 2
    assert wait_for(store, after)["status"] == "done"
    assert store.snapshot(queued)["status"] == "cancelled" and engine.started == [0, 2]
    assert not store.cancel(after) and not store.cancel("nope")
    assert store.submit(config(seed=1)) == queued and wait_for(store, queued)["status"] == "done"


def test_cancel_lets_go_of_a_job_stuck_between_events(tmp_path):
    engine = FakeEngine()
    unblock = threading.Event()

    def runner(config, cancel):
        if config["seed"] == 0:
            yield {"kind": "phase", "phase": "victim", "message": "a long training step", "elapsed_s": 0.0}
            unblock.wait(10)  # one long step without events, as torch can take
            yield {"kind": "phase", "phase": "steal", "message": "too late", "elapsed_s": 9.0}
        yield from engine(config, cancel)

    store = JobStore(tmp_path, runner=runner)
    stuck, next_job = store.submit(config(seed=0)), store.submit(config(seed=1))
    while store.snapshot(stuck)["phase"] != "victim":  # inside its long step
        time.sleep(0.02)
    started = time.time()
    store.cancel(stuck)
    assert wait_for(store, next_job)["status"] == "done" and time.time() - started < 2
    unblock.set()
    time.sleep(0.2)
    snap = store.snapshot(stuck)
    assert snap["status"] == "cancelled" and snap["phase"] == "victim"


def test_a_failed_job_keeps_its_error_and_the_worker_goes_on(tmp_path):
    store = JobStore(tmp_path, runner=FakeEngine(fail_seeds={0}))
    failed, ok = store.submit(config(seed=0)), store.submit(config(seed=1))
    snap = wait_for(store, failed)
    assert snap["status"] == "failed" and snap["error"] == "the data folder vanished"
    assert "the data folder vanished" in status_line(snap)
    assert wait_for(store, ok)["status"] == "done"


def test_running_snapshot_reports_phase_progress_and_eta(tmp_path):
    engine = FakeEngine(hold_seeds={0})
    store = JobStore(tmp_path, runner=engine)
    job_id = store.submit(config(), estimate_s=30)
    deadline = time.time() + 10
    while (store.snapshot(job_id)["progress"] is None) and time.time() < deadline:
        time.sleep(0.02)
    snap = store.snapshot(job_id)
    assert snap["phase"] == "embed" and snap["progress"] == {"done": 1, "total": 4, "message": "batch"}
    assert snap["eta_s"] is not None and snap["eta_s"] >= 0
    assert "phase **embed**" in status_line(snap) and "batch 25%" in status_line(snap)
    engine.release.set()
    wait_for(store, job_id)


def test_zero_gpu_runs_through_spaces_gpu(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("spaces")
    fake.__spec__ = importlib.machinery.ModuleSpec("spaces", None)

    def gpu(duration):
        def wrap(function):
            def in_gpu_process(config):
                calls.append(duration)
                for event in function(config):
                    yield json.loads(json.dumps(event))  # what crosses the process boundary
            return in_gpu_process
        return wrap

    fake.GPU = gpu
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    engine = FakeEngine()
    monkeypatch.setattr(jobs, "_zero_gpu_events", lambda config: engine(config, threading.Event()))
    store = JobStore(tmp_path)
    snap = wait_for(store, store.submit(config()))
    assert snap["status"] == "done" and len(calls) == 1 and engine.started == [0]


def test_real_engine_run_through_the_store(tiny_config, tmp_path):
    store = JobStore(tmp_path)
    snap = wait_for(store, store.submit(tiny_config(seed=3)), timeout=300)
    assert snap["status"] == "done", snap["error"]
    queries = [c["queries"] for c in snap["checkpoints"]]
    assert queries == sorted(queries) and queries[-1] == 200 and len(queries) >= 5
    assert snap["card"]["curve"] == [{k: c[k] for k in ("queries", "agreement", "thief_accuracy", "macro_f1")}
                                     for c in snap["checkpoints"]]
    json.dumps(store._jobs[snap["id"]].events)  # events are plain data


def test_real_engine_cancel_is_quick(tiny_config, tmp_path):
    store = JobStore(tmp_path)
    job_id = store.submit(tiny_config(seed=4, thief_mode="fft", victim_mode="fft"))
    deadline = time.time() + 120
    while store.snapshot(job_id)["progress"] is None and time.time() < deadline:
        time.sleep(0.05)
    started = time.time()
    store.cancel(job_id)
    snap = wait_for(store, job_id, timeout=10)
    latency = time.time() - started
    print(f"cancel latency {latency:.2f} s")
    assert snap["status"] == "cancelled" and latency < 5
    store.close(timeout=30)  # what the server does at exit: the cancelled run's thread stops too
    assert not [t for t in threading.enumerate() if t.name == f"fmsteal-job-{job_id}"]
