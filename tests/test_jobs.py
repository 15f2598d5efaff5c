"""The job store: visitors' own jobs, limits, cancel that waits for the run to stop, files, ZeroGPU."""

from __future__ import annotations

import contextvars
import dataclasses
import importlib.machinery
import json
import os
import sys
import threading
import time
import types
from types import SimpleNamespace

import pytest
from gradio.context import LocalContext

from app_fixtures import memory_mb
from fmsteal import settings as fmsteal_settings
from fmsteal.errors import Cancelled, ConfigError, DataError
from fmsteal.experiment.config import ExperimentConfig
from fmsteal.service import runners
from fmsteal.service.job_files import browser_secret, owner_hash
from fmsteal.service.jobs import ABANDONED, TERMINAL, Busy, JobStore, new_owner_token, status_line

A, B, C = (new_owner_token() for _ in range(3))


def config(**overrides) -> ExperimentConfig:
    values = dict(victim="tf_efficientnet_lite0", thief="tf_efficientnet_lite0", budget=100, data_dir="/data/x")
    values.update(overrides)
    return ExperimentConfig(**values)


def settings(**overrides) -> fmsteal_settings.Settings:
    """Local-mode settings with roomy limits unless a test narrows them."""
    values = dict(public=False, zero_gpu=False, max_jobs_per_visitor=10, max_queue=50, runs_ttl_hours=0,
                  job_memory_minutes=30, abandon_seconds=0, max_seconds=7200, gpu_seconds=600)
    values.update(overrides)
    return dataclasses.replace(fmsteal_settings.current(), **values)


def fake_card(config_dict: dict) -> dict:
    curve = [{"queries": q, "agreement": q / 200, "thief_accuracy": q / 300, "macro_f1": q / 400} for q in (50, 100)]
    return {"config": config_dict, "curve": curve, "agreement": 0.5, "timings": {"total": 0.1}}


class FakeEngine:
    """Stands in for the engine's `run`: yields plain events; a seed can be held until released, another
    can sit in one long step without events (as torch can) until `unblock` is set. Counts runs at once."""

    def __init__(self, fail_seeds=(), hold_seeds=(), stuck_seeds=()):
        self.started: list[int] = []
        self.fail_seeds, self.hold_seeds, self.stuck_seeds = set(fail_seeds), set(hold_seeds), set(stuck_seeds)
        self.release, self.unblock, self.in_step = threading.Event(), threading.Event(), threading.Event()
        self.active = self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, config: dict, cancel, estimate_s=None, skip=None):
        with self._lock:
            self.active += 1
            self.most_at_once = max(self.most_at_once, self.active)
        try:
            self.started.append(config["seed"])
            yield {"kind": "phase", "phase": "embed", "message": "embedding", "elapsed_s": 0.0}
            if config["seed"] in self.fail_seeds:
                raise DataError("the data folder vanished")
            if config["seed"] in self.stuck_seeds:
                self.in_step.set()
                self.unblock.wait(20)  # a long step that checks for cancellation only at its end
            while config["seed"] in self.hold_seeds and not self.release.is_set():
                if cancel.is_set():
                    raise Cancelled("cancelled")
                yield {"kind": "progress", "phase": "embed", "done": 1, "total": 4, "message": "batch",
                       "elapsed_s": 0.1}
                time.sleep(0.02)
            yield {"kind": "phase", "phase": "steal", "message": "stealing", "elapsed_s": 0.2}
            for q in (50, 100):
                yield {"kind": "checkpoint", "queries": q, "agreement": q / 200, "thief_accuracy": q / 300,
                       "macro_f1": q / 400, "victim_accuracy": 0.9, "queries_spent": q, "elapsed_s": 0.3}
            yield {"kind": "result", "card": fake_card(config), "elapsed_s": 0.4}
        finally:
            with self._lock:
                self.active -= 1


def store_for(tmp_path, engine=None, **overrides) -> JobStore:
    return JobStore(tmp_path, runner=engine or FakeEngine(), settings=settings(**overrides))


def wait_for(store: JobStore, job_id: str, owner: str = A, statuses=TERMINAL, timeout: float = 20) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        snap = store.snapshot(job_id, owner)
        if snap["status"] in statuses:
            return snap
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} stayed {store.snapshot(job_id, owner)['status']}")


def test_jobs_run_in_order_with_positions_and_results(tmp_path):
    engine = FakeEngine(hold_seeds={0})
    store = store_for(tmp_path, engine)
    first, second, third = (store.submit(config(seed=s), A) for s in range(3))
    wait_for(store, first, statuses=("running",))
    assert [store.snapshot(j, A)["position"] for j in (first, second, third)] == [0, 1, 2]
    assert "next up" in status_line(store.snapshot(second, A))
    assert "you are 2nd in line" in status_line(store.snapshot(third, A))
    engine.release.set()
    done = wait_for(store, third)
    assert engine.started == [0, 1, 2] and engine.most_at_once == 1
    assert done["status"] == "done" and [c["queries"] for c in done["checkpoints"]] == [50, 100]
    assert done["card"]["agreement"] == 0.5 and done["eta_s"] is None


def test_each_visitor_gets_a_job_of_their_own(tmp_path):
    engine = FakeEngine(hold_seeds={0})
    store = store_for(tmp_path, engine)
    mine = store.submit(config(), A)
    assert store.submit(config(), A) == mine  # the owner's repeat joins the queued/running job
    theirs = store.submit(config(), B)
    assert theirs != mine and len(mine) >= 24 and config().job_id() not in (mine, theirs)
    engine.release.set()
    wait_for(store, mine), wait_for(store, theirs, B)
    assert engine.started == [0, 0]
    assert store.submit(config(), A) == mine and engine.started == [0, 0]  # finished: its result at once


def test_another_visitor_cannot_poll_cancel_or_download(tmp_path):
    engine = FakeEngine(hold_seeds={0})
    store = store_for(tmp_path, engine)
    job_id = store.submit(config(), A)
    wait_for(store, job_id, statuses=("running",))
    for snooper in (B, "", None, "x"):
        snap = store.snapshot(job_id, snooper)
        assert snap["status"] == "lost" and snap["config"] is None and snap["card"] is None
        assert not store.cancel(job_id, snooper)
    assert store.snapshot(job_id, A)["status"] == "running"
    engine.release.set()
    wait_for(store, job_id)
    card, csv = store.files(job_id, A)
    assert json.loads(card.read_text())["agreement"] == 0.5 and csv.read_text().startswith("queries,")
    assert store.files(job_id, B) is None and store.files("../../etc/passwd", A) is None
    assert store.snapshot("../" + job_id, A)["status"] == "lost"


def test_finished_cards_survive_a_restart_for_their_owner_only(tmp_path):
    store = store_for(tmp_path)
    job_id = store.submit(config(), A)
    wait_for(store, job_id)
    written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert A not in written and owner_hash(A) in written  # only the token's hash is stored
    card, csv = store.files(job_id, A)
    csv.unlink()  # e.g. a card written by an older version
    engine = FakeEngine()
    restarted = store_for(tmp_path, engine)
    snap = restarted.snapshot(job_id, A)  # a page reattaching after a restart
    assert snap["status"] == "done" and snap["card"]["curve"][0]["queries"] == 50
    assert "restarted" in status_line(restarted.snapshot(job_id, B))
    assert restarted.files(job_id, A)[1].read_text().startswith("queries,")
    again = store_for(tmp_path, engine)
    assert again.submit(config(), A) == job_id and engine.started == []
    assert again.submit(config(), B) != job_id


def test_a_lost_job_says_so(tmp_path):
    store = store_for(tmp_path)
    assert store.snapshot(None, A) is None and store.snapshot("", A) is None  # nothing started yet
    snap = store.snapshot(new_owner_token(), A)  # an id from before a restart, never saved
    assert snap["status"] == "lost" and snap["status"] in TERMINAL
    line = status_line(snap)
    assert "lost when the server restarted" in line and "Start it again" in line


def test_limits_per_visitor_and_on_the_server(tmp_path):
    engine = FakeEngine(hold_seeds={0, 1})
    store = store_for(tmp_path, engine, max_jobs_per_visitor=1, max_queue=2)
    first = store.submit(config(seed=0), A)
    with pytest.raises(Busy, match="You already have 1 run"):
        store.submit(config(seed=5), A)
    second = store.submit(config(seed=1), B)
    wait_for(store, first, statuses=("running",))
    assert "next up" in status_line(store.snapshot(second, B))
    with pytest.raises(Busy, match=r"queue is full \(2 runs.*Try again in a few minutes"):
        store.submit(config(seed=2), C)
    with pytest.raises(ConfigError, match="reload the page"):
        store.submit(config(seed=2), "short")
    assert store.cancel(first, A)
    third = store.submit(config(seed=2), C)
    engine.release.set()
    assert wait_for(store, third, C)["status"] == "done"


def test_cancel_then_start_never_runs_two_jobs_at_once(tmp_path):
    engine = FakeEngine(stuck_seeds={0})
    store = store_for(tmp_path, engine)
    stuck = store.submit(config(seed=0), A)
    assert engine.in_step.wait(10)  # inside its long step
    began = time.time()
    assert store.cancel(stuck, A)
    assert time.time() - began < 5  # cancel answers at once (the stuck step would block until unblocked)
    assert store.snapshot(stuck, A)["status"] == "cancelled"
    following = store.submit(config(seed=1), A)
    time.sleep(0.5)
    snap = store.snapshot(following, A)
    assert snap["status"] == "queued" and engine.started == [0]  # waits for the cancelled run's thread
    assert "waiting for a cancelled run to stop" in status_line(snap)
    engine.unblock.set()
    assert wait_for(store, following)["status"] == "done"
    assert engine.most_at_once == 1 and engine.started == [0, 1]
    assert store.snapshot(stuck, A)["phase"] == "embed"  # nothing recorded after the cancel


def test_cancel_a_running_and_a_queued_job(tmp_path):
    engine = FakeEngine(hold_seeds={0})
    store = store_for(tmp_path, engine)
    running, queued, after = (store.submit(config(seed=s), A) for s in range(3))
    wait_for(store, running, statuses=("running",))
    assert store.cancel(queued, A)
    assert store.snapshot(after, A)["position"] == 1
    began = time.time()
    assert store.cancel(running, A)
    assert wait_for(store, after)["status"] == "done" and time.time() - began < 10  # the held job holds for ever
    assert store.snapshot(queued, A)["status"] == "cancelled" and engine.started == [0, 2]
    assert "before it started" in status_line(store.snapshot(queued, A))
    assert "Cancelled** after" in status_line(store.snapshot(running, A))
    assert not store.cancel(after, A) and not store.cancel(new_owner_token(), A)
    assert store.submit(config(seed=1), A) != queued  # a cancelled job is not reused


def test_a_failed_job_keeps_its_error_and_the_worker_goes_on(tmp_path):
    store = store_for(tmp_path, FakeEngine(fail_seeds={0}))
    failed, ok = store.submit(config(seed=0), A), store.submit(config(seed=1), A)
    snap = wait_for(store, failed)
    assert snap["status"] == "failed" and snap["error"] == "the data folder vanished"
    assert "the data folder vanished" in status_line(snap)
    assert wait_for(store, ok)["status"] == "done"


def test_unexpected_errors_keep_their_details_off_a_public_page(tmp_path):
    def broken(config, cancel, estimate_s=None, skip=None):
        yield {"kind": "phase", "phase": "data", "message": "loading", "elapsed_s": 0.0}
        raise OSError("[Errno 13] Permission denied: '/proc/self/cwd/secret'")

    store = store_for(tmp_path, broken, public=True, abandon_seconds=0)
    snap = wait_for(store, store.submit(config(), A))
    assert snap["status"] == "failed" and "/proc" not in snap["error"] and "OSError" in snap["error"]


def test_zero_gpu_refusals_reach_the_page_as_they_are(tmp_path):
    import gradio as gr

    quota = "You have exceeded your free ZeroGPU quota (120s requested vs. 30s left). Try again in 1:00:00."

    def refused(config, cancel, estimate_s=None, skip=None):  # what spaces.GPU raises before the run starts
        raise gr.Error(quota, title="ZeroGPU quota exceeded", print_exception=False)
        yield

    store = store_for(tmp_path, refused, public=True)
    assert wait_for(store, store.submit(config(), A))["error"] == quota


def test_snapshots_hold_no_server_paths(tmp_path):
    folder = tmp_path / "uploads" / "visitor-1" / "images"

    def runner(config, cancel, estimate_s=None, skip=None):
        yield {"kind": "log", "level": "info", "message": f"Loaded {config['data_dir']} and {config['query_pool']}"}
        yield {"kind": "result", "card": fake_card(config), "elapsed_s": 0.1}

    store = store_for(tmp_path / "runs", runner, public=True)
    job_id = store.submit(config(data_dir=str(folder), query_pool=str(tmp_path / "pool")), A)
    snap = wait_for(store, job_id)
    shown = json.dumps(snap)
    assert snap["status"] == "done" and str(tmp_path) not in shown and "card_path" not in shown
    assert snap["config"]["data_dir"] == "images" and snap["logs"] == ["Loaded images and pool"]
    assert snap["has_files"] and str(tmp_path) not in store.files(job_id, A)[0].read_text()


def test_run_files_expire_and_finished_jobs_leave_memory(tmp_path):
    store = store_for(tmp_path, runs_ttl_hours=1, job_memory_minutes=1)
    job_id = store.submit(config(), A)
    wait_for(store, job_id)
    store.housekeep(now=time.time() + 90)
    assert job_id not in store._jobs and store.snapshot(job_id, A)["status"] == "done"  # back from disk
    store.housekeep(now=time.time() + 3700)
    assert store.snapshot(job_id, A)["status"] == "lost" and store.files(job_id, A) is None
    assert not (tmp_path / job_id).exists()


def test_files_of_killed_runs_are_removed_at_start(tmp_path):
    store = store_for(tmp_path)
    kept = store.submit(config(), A)
    wait_for(store, kept)
    killed, other = tmp_path / new_owner_token(), tmp_path / "my_own_results_folder"
    for folder in (killed, other):
        folder.mkdir()
        (folder / "half.json").write_text("{")
    (killed / ".fmsteal-run").touch()  # a run's folder, killed before its meta was written
    (tmp_path / kept / "card.tmp").write_text("half")
    store_for(tmp_path)
    assert not killed.exists() and not (tmp_path / kept / "card.tmp").exists()
    assert (other / "half.json").exists()  # folders that are not runs' are left alone
    assert store_for(tmp_path).snapshot(kept, A)["status"] == "done"


def test_browser_secret_outlives_a_restart(tmp_path):
    secret = browser_secret(tmp_path)
    assert len(secret) >= 32 and browser_secret(tmp_path) == secret
    assert (tmp_path / ".browser-secret").stat().st_mode & 0o777 == 0o600


def test_a_run_whose_page_went_away_is_dropped_when_its_turn_comes(tmp_path):
    engine = FakeEngine(hold_seeds={0})
    store = store_for(tmp_path, engine, abandon_seconds=0.3)
    first = store.submit(config(seed=0), A)
    left = store.submit(config(seed=1), B)  # B never polls again
    for _ in range(30):
        store.snapshot(first, A)  # A keeps watching
        time.sleep(0.02)
    engine.release.set()
    wait_for(store, first)
    time.sleep(0.2)  # the worker's turn for B's job (looking at it now would count as watching)
    snap = store.snapshot(left, B)
    assert snap["status"] == "cancelled" and snap["error"] == ABANDONED and engine.started == [0]
    assert "page was closed" in status_line(snap)


def test_a_public_run_past_its_time_limit_is_stopped(tmp_path):
    engine = FakeEngine(hold_seeds={0})
    store = store_for(tmp_path, engine, public=True, max_seconds=0.2)
    snap = wait_for(store, store.submit(config(), A), timeout=10)
    assert snap["status"] == "cancelled" and "time limit" in snap["error"]


def test_a_new_owner_token_does_not_reset_a_visitors_limit(tmp_path):
    engine = FakeEngine(hold_seeds={0, 1, 2})
    store = store_for(tmp_path, engine, max_jobs_per_visitor=1, max_queue=10)
    first = store.submit(config(seed=0), A, visitor="203.0.113.7")
    with pytest.raises(Busy, match="You already have 1 run"):  # the same address behind another token
        store.submit(config(seed=1), B, visitor="203.0.113.7")
    other = store.submit(config(seed=2), C, visitor="198.51.100.2")  # another visitor is served
    assert store.cancel(first, A)
    again = store.submit(config(seed=1), B, visitor="203.0.113.7")  # a slot of theirs is free again
    engine.release.set()
    assert wait_for(store, again, B)["status"] == "done" and wait_for(store, other, C)["status"] == "done"


def test_the_app_keys_a_visitor_by_the_address_it_sees(monkeypatch):
    from types import SimpleNamespace

    from gradio.context import LocalContext

    import app

    request = SimpleNamespace(headers={"x-forwarded-for": "10.0.0.9, 203.0.113.7"},
                              client=SimpleNamespace(host="127.0.0.1"))
    token = LocalContext.request.set(request)
    try:
        monkeypatch.delenv("SPACE_ID", raising=False)
        assert app.visitor_address() == "127.0.0.1"  # off a Space, a client-set header is not believed
        monkeypatch.setenv("SPACE_ID", "user/fmsteal")
        assert app.visitor_address() == "203.0.113.7"  # the hop the Space's proxy appended
    finally:
        LocalContext.request.reset(token)
    assert app.visitor_address() is None  # outside a request (a script calling submit)


def test_running_snapshot_reports_phase_progress_and_eta(tmp_path):
    engine = FakeEngine(hold_seeds={0})
    store = store_for(tmp_path, engine)
    job_id = store.submit(config(), A, estimate_s=30)
    deadline = time.time() + 10
    while store.snapshot(job_id, A)["progress"] is None and time.time() < deadline:
        time.sleep(0.02)
    snap = store.snapshot(job_id, A)
    assert snap["phase"] == "embed" and snap["progress"] == {"done": 1, "total": 4, "message": "batch"}
    assert snap["eta_s"] is not None and snap["eta_s"] >= 0
    assert "phase **embed**" in status_line(snap) and "batch 25%" in status_line(snap)
    engine.release.set()
    wait_for(store, job_id)


def test_the_result_shows_while_the_evaluations_run_and_they_count_in_the_time_left(tmp_path):
    steps = {name: threading.Event() for name in ("stealing", "evaluating", "go_on", "finish")}

    def engine(config: dict, cancel, estimate_s=None, skip=None):
        yield {"kind": "plan", "image_size": {"victim": 32, "thief": 32}, "elapsed_s": 0.0,
               "estimate": {"phases": {"steal": 4.0, "evaluate": 50.0}, "total": 54.0}}
        yield {"kind": "phase", "phase": "steal", "message": "stealing", "elapsed_s": 0.0}
        yield {"kind": "checkpoint", "queries": 50, "agreement": 0.25, "thief_accuracy": 0.2, "macro_f1": 0.1,
               "victim_accuracy": 0.9, "queries_spent": 50, "elapsed_s": 0.0}
        steps["stealing"].set()
        steps["go_on"].wait(10)
        yield {"kind": "stolen", "card": fake_card(config), "elapsed_s": 0.0}
        yield {"kind": "phase", "phase": "evaluate", "message": "evaluating", "elapsed_s": 0.0}
        steps["evaluating"].set()
        steps["finish"].wait(10)
        yield {"kind": "result", "card": {**fake_card(config), "transfer": {}}, "elapsed_s": 0.0}

    store = store_for(tmp_path, engine)
    job_id = store.submit(config(budget=100), A)
    assert steps["stealing"].wait(10)
    snap = store.snapshot(job_id, A)
    assert snap["stolen"] is None and snap["eta_s"] >= 50  # half the queries to go, then the evaluations
    assert "(the evaluations included)" in status_line(snap)
    steps["go_on"].set()
    assert steps["evaluating"].wait(10)
    snap = store.snapshot(job_id, A)
    assert snap["card"] is None and snap["stolen"]["agreement"] == 0.5  # the result, before the evaluations end
    assert 0 < snap["eta_s"] <= 50 and "for the evaluations (the result is above)" in status_line(snap)
    steps["finish"].set()
    done = wait_for(store, job_id)
    assert done["card"]["transfer"] == {} and done["stolen"] is None


# --- ZeroGPU ---

@pytest.fixture
def fake_spaces(monkeypatch) -> list[dict]:
    """A stand-in for `spaces` (its GPU path needs ZeroGPU's device API): like spaces/zero/wrappers.py,
    `GPU(duration=f)` reads the visitor's request from Gradio's LocalContext in the calling thread and
    asks f(*args) for the duration; only plain data crosses into the (here simulated) GPU process."""
    calls: list[dict] = []

    def gpu(task=None, *, duration=None):
        def wrap(function):
            def handler(*args):
                request = LocalContext.request.get(None)
                calls.append({"token": request.headers.get("x-ip-token") if request else None,
                              "duration": duration(*args) if callable(duration) else duration})
                for event in function(*json.loads(json.dumps(args))):
                    yield json.loads(json.dumps(event))
            return handler
        return wrap

    module = types.ModuleType("spaces")
    module.__spec__ = importlib.machinery.ModuleSpec("spaces", None)
    module.GPU = gpu
    monkeypatch.setitem(sys.modules, "spaces", module)
    return calls


def as_visitor(token: str, call, *args):
    """`call(*args)` as a Gradio handler of the visitor with this X-IP-Token would make it."""
    def handler():
        LocalContext.request.set(SimpleNamespace(headers={"x-ip-token": token}))
        return call(*args)
    return contextvars.Context().run(handler)


def test_max_run_seconds_fits_the_gpu_call():
    zero = settings(zero_gpu=True, gpu_seconds=600)
    longest = fmsteal_settings.max_run_seconds(zero)
    assert longest == (600 - fmsteal_settings.GPU_OVERHEAD_SECONDS) / fmsteal_settings.GPU_MARGIN
    assert runners.gpu_duration(longest, 600) <= 600 and runners.gpu_duration(None, 600) == 600
    assert runners.gpu_duration(10, 600) == 45
    assert fmsteal_settings.max_run_seconds(settings(max_seconds=50)) == 50


def test_on_zero_gpu_importing_the_runners_wraps_the_gpu_function(fake_spaces, monkeypatch):
    """ZeroGPU reports the wrapped functions when the app launches: the wrap cannot wait for the store."""
    import importlib

    wrapped = []
    monkeypatch.setattr(sys.modules["spaces"], "GPU",
                        lambda duration=None: lambda f: wrapped.append((f.__name__, duration({}, 90, "", ""))))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    try:
        importlib.reload(runners)
        assert wrapped == [("gpu_process_events", 90)]
    finally:
        monkeypatch.delenv("SPACES_ZERO_GPU")
        importlib.reload(runners)


def test_zero_gpu_runs_in_the_visitors_latest_request(tmp_path, fake_spaces, monkeypatch):
    engine = FakeEngine(hold_seeds={0})
    monkeypatch.setattr(runners, "gpu_process_events",
                        lambda config, seconds, flag, skip_flag: engine(config, runners.FlagFile(flag)))
    store = JobStore(tmp_path, settings=settings(zero_gpu=True))
    first = as_visitor("token-a", store.submit, config(seed=0), A, 100)
    later = as_visitor("token-b-at-start", store.submit, config(seed=1), B, 20)
    as_visitor("token-a", wait_for, store, first, A, ("running",))  # A's page polls
    as_visitor("token-b-polling", store.snapshot, later, B)  # B's page polls with a fresh token
    engine.release.set()
    assert as_visitor("token-b-polling", wait_for, store, later, B)["status"] == "done"
    assert fake_spaces == [{"token": "token-a", "duration": runners.gpu_duration(100, 600)},
                           {"token": "token-b-polling", "duration": runners.gpu_duration(20, 600)}]


def test_zero_gpu_cancel_reaches_the_gpu_side_within_a_step(tmp_path, fake_spaces, monkeypatch):
    from fmsteal.cancel import cancel_scope, check

    stopped = threading.Event()

    def gpu_side(config, seconds, flag, skip_flag):  # sees only a file path, as across the process boundary
        with cancel_scope(runners.FlagFile(flag)):
            yield {"kind": "phase", "phase": "embed", "message": "embedding", "elapsed_s": 0.0}
            try:
                for _ in range(2000):  # one long step of batches, no events
                    check()
                    time.sleep(0.01)
            except Cancelled:
                stopped.set()
                raise

    monkeypatch.setattr(runners, "gpu_process_events", gpu_side)
    store = JobStore(tmp_path, settings=settings(zero_gpu=True))
    job_id = store.submit(config(), A)
    wait_for(store, job_id, statuses=("running",))
    time.sleep(0.2)
    began = time.time()
    store.cancel(job_id, A)
    assert stopped.wait(5) and time.time() - began < 5
    assert not list(tmp_path.parent.glob("fmsteal-cancel-*/*"))  # no flag files left behind


def test_zero_gpu_through_a_real_gradio_server(tmp_path, fake_spaces, monkeypatch):
    """Two clients with their own X-IP-Token start the same settings: separate jobs, each GPU call on
    its own visitor's token (what ZeroGPU's quota is keyed on)."""
    import gradio as gr
    from gradio_client import Client

    engine = FakeEngine()
    monkeypatch.setattr(runners, "gpu_process_events",
                        lambda config, seconds, flag, skip_flag: engine(config, runners.FlagFile(flag)))
    store = JobStore(tmp_path, settings=settings(zero_gpu=True))

    def start(owner: str) -> str:
        return store.submit(config(), owner, estimate_s=20)

    def poll(owner: str, job_id: str) -> str:
        return store.snapshot(job_id, owner)["status"]

    with gr.Blocks() as demo:
        gr.api(start, api_name="start")
        gr.api(poll, api_name="poll")
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        clients = {token: Client(demo.local_url, headers={"X-IP-Token": token}, verbose=False)
                   for token in ("visitor-a", "visitor-b")}
        jobs = {token: clients[token].predict(owner, api_name="/start")
                for token, owner in (("visitor-a", A), ("visitor-b", B))}
        assert jobs["visitor-a"] != jobs["visitor-b"]
        for token, owner in (("visitor-a", A), ("visitor-b", B)):
            deadline = time.time() + 20
            while clients[token].predict(owner, jobs[token], api_name="/poll") != "done":
                assert time.time() < deadline
                time.sleep(0.1)
        assert clients["visitor-b"].predict(B, jobs["visitor-a"], api_name="/poll") == "lost"
    finally:
        demo.close()
    assert sorted(call["token"] for call in fake_spaces) == ["visitor-a", "visitor-b"]


# --- the real engine ---

def test_real_engine_run_through_the_store(tiny_config, tmp_path):
    store = JobStore(tmp_path, settings=settings())
    snap = wait_for(store, store.submit(tiny_config(seed=3), A), timeout=600)  # a cold cache on a shared machine
    assert snap["status"] == "done", snap["error"]
    queries = [c["queries"] for c in snap["checkpoints"]]
    assert queries == sorted(queries) and queries[-1] == 200 and len(queries) >= 5
    assert snap["card"]["curve"] == [{k: c[k] for k in ("queries", "agreement", "thief_accuracy", "macro_f1")}
                                     for c in snap["checkpoints"]]
    json.dumps(store._jobs[snap["id"]].events)  # events are plain data


def test_real_engine_cancel_is_quick_and_the_next_run_waits_for_it(tiny_config, tmp_path):
    active, most = [0], [0]

    def counted(config, cancel, estimate_s=None, skip=None):
        active[0] += 1
        most[0] = max(most[0], active[0])
        try:
            yield from runners.local_runner(config, cancel)
        finally:
            active[0] -= 1

    store = JobStore(tmp_path, runner=counted, settings=settings())
    job_id = store.submit(tiny_config(seed=4, thief_mode="fft", victim_mode="fft"), A)
    deadline = time.time() + 120
    while store.snapshot(job_id, A)["progress"] is None and time.time() < deadline:
        time.sleep(0.05)
    began = time.time()
    assert store.cancel(job_id, A) and time.time() - began < 5  # the caller gets its answer at once
    following = store.submit(tiny_config(seed=5, budget=100), A)
    while True:
        status = store.snapshot(following, A)["status"]
        if not [t for t in threading.enumerate() if t.name == f"fmsteal-job-{job_id}"]:
            break
        assert status == "queued"  # seen while the cancelled run's thread was alive: the next run waits
        assert time.time() - began < 60, "the cancelled run's thread did not stop within a minute"
        time.sleep(0.05)
    print(f"the cancelled run's thread exited {time.time() - began:.2f} s after the cancel")
    assert store.snapshot(job_id, A)["status"] == "cancelled"
    assert wait_for(store, following, timeout=300)["status"] == "done"
    assert most[0] == 1
    store.close(timeout=30)


def test_a_public_server_refuses_runs_estimated_past_a_fair_share(monkeypatch):
    monkeypatch.delenv("FMSTEAL_MAX_SECONDS", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("FMSTEAL_PUBLIC", "0")
    assert fmsteal_settings.max_run_seconds(fmsteal_settings.current()) == 2 * 3600  # a local user's own machine
    monkeypatch.setenv("FMSTEAL_PUBLIC", "1")
    assert fmsteal_settings.max_run_seconds(fmsteal_settings.current()) == fmsteal_settings.PUBLIC_MAX_SECONDS == 900
    monkeypatch.setenv("FMSTEAL_MAX_SECONDS", "1200")  # an operator's own choice wins
    assert fmsteal_settings.max_run_seconds(fmsteal_settings.current()) == 1200


_SURVIVORS: list = []  # small allocations that outlive a run (as caches and logs do), pinning its heap


def fragmenting_engine(config: dict, cancel, estimate_s=None, skip=None):
    """A run that holds ~750 MB in 128 KB tensors, each followed by a small one that outlives the run."""
    import torch

    held = []
    for _ in range(6000):
        held.append(torch.ones(32768))
        _SURVIVORS.append(torch.ones(8))
    yield {"kind": "result", "card": fake_card(config), "elapsed_s": 0.1}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status; trims glibc's heap")
def test_a_servers_memory_returns_near_idle_after_a_run(tmp_path):
    import torch  # noqa: F401  (loaded before idle is measured: its libraries are not the run's memory)

    store = store_for(tmp_path, fragmenting_engine)
    idle = memory_mb(os.getpid())
    job = store.submit(config(seed=1), A)
    assert wait_for(store, job)["status"] == "done"
    deadline = time.time() + 10
    while memory_mb(os.getpid()) - idle > 200 and time.time() < deadline:
        time.sleep(0.05)
    left = memory_mb(os.getpid()) - idle
    store.close()
    _SURVIVORS.clear()
    assert left <= 200, f"{left:.0f} MB above idle after the run (it held ~750 MB)"
