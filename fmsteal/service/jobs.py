"""Background jobs: one worker thread runs experiments in FIFO order while the UI polls their state.

A job's id is its config's `job_id()`, so a repeated config joins the queued/running job or gets the
finished result at once (also after a restart: finished run cards are JSON files in `output_dir`).
Cancel marks the job cancelled at once, so the worker moves on, and sets its `threading.Event`,
which stops its thread at the next event. A failed job keeps its error and the worker goes on.
On a ZeroGPU Space the run goes through `spaces.GPU`; its events are plain dicts, so they cross
the process boundary.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fmsteal.errors import Cancelled, FmstealError
from fmsteal.experiment.estimate import duration

TERMINAL = ("done", "failed", "cancelled")
Runner = Callable[[dict, threading.Event], Iterator[dict]]
log = logging.getLogger(__name__)


@dataclass
class Job:
    """One experiment's state as the worker sees it."""

    id: str
    config: dict
    estimate_s: float | None = None
    status: str = "queued"
    events: list[dict] = field(default_factory=list)
    error: str | None = None
    card: dict | None = None
    card_path: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float | None = None
    finished: float | None = None
    version: int = 0  # bumped on every change, so pollers can skip redrawing


class JobStore:
    """A FIFO queue of experiments served by a single worker thread."""

    def __init__(self, output_dir: str | Path, runner: Runner | None = None) -> None:
        self.output_dir = Path(output_dir)
        self._runner = runner or default_runner()
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job] = queue.Queue()
        self._waiting: list[str] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []  # job threads, including cancelled ones still stopping
        self._worker = threading.Thread(target=self._work, name="fmsteal-worker", daemon=True)
        self._worker.start()
        atexit.register(self.close)  # a thread killed inside torch at exit aborts the interpreter

    def submit(self, config, estimate_s: float | None = None) -> str:
        """Queue an ExperimentConfig (or return the id of its queued, running or finished job)."""
        job_id = config.job_id()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.status not in ("failed", "cancelled"):
                return job_id
            if self._from_disk(job_id) is None:
                job = self._jobs[job_id] = Job(job_id, config.to_dict(), estimate_s)
                self._waiting.append(job_id)
                self._queue.put(job)
        return job_id

    def cancel(self, job_id: str) -> bool:
        """Stop a queued or running job at once (the worker moves on); False when it is unknown or over."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status in TERMINAL:
                return False
            job.cancel.set()
            if job.status == "queued":
                self._waiting.remove(job_id)
            self._finish(job, "cancelled", "Cancelled before it started." if job.status == "queued" else "Cancelled.")
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Cancel every job and wait up to `timeout` seconds for their threads to stop."""
        with self._lock:
            active = [job.id for job in self._jobs.values() if job.status not in TERMINAL]
        for job_id in active:
            self.cancel(job_id)
        deadline = time.time() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.time()))

    def snapshot(self, job_id: str | None) -> dict | None:
        """The job's state as plain data (None for an unknown id): see `_snapshot`."""
        with self._lock:
            job = self._jobs.get(job_id or "") or self._from_disk(job_id or "")
            return None if job is None else _snapshot(job, self._position(job_id))

    def _position(self, job_id: str) -> int:
        """1 for the next job to run, 0 when not waiting."""
        return self._waiting.index(job_id) + 1 if job_id in self._waiting else 0

    def _from_disk(self, job_id: str) -> Job | None:
        """A finished job whose run card is in `output_dir` (from an earlier run of the server)."""
        path = next(iter(sorted(self.output_dir.glob(f"*__{job_id}.json"))), None) if job_id.isalnum() else None
        if path is None:
            return None
        from fmsteal.experiment.cards import curve_csv, read_card

        card = read_card(path)
        if not path.with_suffix(".csv").exists():
            path.with_suffix(".csv").write_text(curve_csv(card))
        job = self._jobs[job_id] = Job(job_id, card["config"], status="done", card=card, card_path=str(path))
        return job

    def _work(self) -> None:
        """Run queued jobs one at a time; a cancelled job is let go at once (its thread stops at its next event)."""
        while True:
            job = self._queue.get()
            with self._lock:
                if job.status != "queued":
                    continue
                self._waiting.remove(job.id)
                job.status, job.started = "running", time.time()
                job.version += 1
            over = threading.Event()
            thread = threading.Thread(target=self._run, args=(job, over), name=f"fmsteal-job-{job.id}", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
            while not over.wait(0.05):
                if job.status in TERMINAL:  # cancelled: its thread stops at its next event
                    break

    def _run(self, job: Job, over: threading.Event) -> None:
        try:
            for event in self._runner(job.config, job.cancel):
                with self._lock:
                    if job.status != "running":
                        return
                    job.events.append(event)
                    job.version += 1
                if event["kind"] == "result":
                    path = self._save(event["card"])
                    with self._lock:
                        job.card, job.card_path = event["card"], str(path)
                        self._finish(job, "done")
            if job.status == "running":
                raise FmstealError("The run ended without a result.")
        except Cancelled:
            with self._lock:
                self._finish(job, "cancelled", "Cancelled.")
        except FmstealError as error:
            with self._lock:
                self._finish(job, "failed", str(error))
        except Exception as error:  # a bug or a library failure: report it, keep serving
            log.exception("job %s failed", job.id)
            with self._lock:
                self._finish(job, "failed", f"Unexpected error: {type(error).__name__}: {error}")
        finally:
            over.set()

    def _save(self, card: dict) -> Path:
        """The run card as JSON and its curve as CSV beside it, in `output_dir`."""
        from fmsteal.experiment.cards import card_name, curve_csv, write_card

        path = write_card(card, self.output_dir / card_name(card))
        path.with_suffix(".csv").write_text(curve_csv(card))
        return path

    @staticmethod
    def _finish(job: Job, status: str, error: str | None = None) -> None:
        """Mark a job over (the first verdict wins: a job cancelled while finishing stays cancelled)."""
        if job.status in TERMINAL:
            return
        job.status, job.finished = status, time.time()
        job.error = error if status != "done" else None
        job.version += 1


def _snapshot(job: Job, position: int) -> dict:
    """Plain data for the UI: status, position, phase, progress, ETA, curve points, logs, card."""
    phase, phase_start, progress, checkpoints, logs = None, 0.0, None, [], []
    for event in job.events:
        kind = event["kind"]
        if kind == "phase":
            phase, phase_start, progress = event["phase"], event["elapsed_s"], None
        elif kind == "progress":
            progress = event
        elif kind == "checkpoint":
            checkpoints.append(event)
        elif kind == "log":
            logs.append(event["message"])
    elapsed = (job.finished or time.time()) - job.started if job.started else 0.0
    return {
        "id": job.id, "status": job.status, "position": position, "config": job.config, "error": job.error,
        "phase": phase, "progress": progress and {k: progress[k] for k in ("done", "total", "message")},
        "checkpoints": checkpoints, "logs": logs, "card": job.card, "card_path": job.card_path,
        "elapsed_s": round(elapsed, 1), "estimate_s": job.estimate_s, "version": job.version,
        "eta_s": _eta(job, phase, phase_start, progress, checkpoints, elapsed),
    }


def _eta(job: Job, phase, phase_start: float, progress, checkpoints: list[dict], elapsed: float) -> float | None:
    """Seconds left: from the queries spent while stealing, from batch progress while embedding,
    else from the up-front estimate."""
    if job.status != "running":
        return None
    in_phase = max(elapsed - phase_start, 0.0)
    if phase == "steal" and checkpoints:
        spent, budget = checkpoints[-1]["queries"], job.config["budget"]
        return round(in_phase * (budget - spent) / max(spent, 1), 1)
    if phase == "embed" and progress and progress["done"]:
        return round(in_phase * (progress["total"] - progress["done"]) / progress["done"], 1)
    if job.estimate_s:
        return round(max(job.estimate_s - elapsed, 0.0), 1)
    return None


def status_line(snapshot: dict | None) -> str:
    """One line of markdown: status, queue position, phase, progress and time left."""
    if snapshot is None:
        return "Pick a victim and a thief, then press **Start**."
    status = snapshot["status"]
    if status == "queued":
        ahead = snapshot["position"] - 1
        return (f"**Queued**: position {snapshot['position']} "
                f"({'next up' if ahead == 0 else f'{ahead} job(s) ahead'}).")
    if status == "failed":
        return f"**Failed**: {snapshot['error']}"
    if status == "cancelled":
        return f"**Cancelled** after {duration(snapshot['elapsed_s'])}."
    if status == "done":
        took = snapshot["card"]["timings"].get("total", snapshot["elapsed_s"])
        return f"**Done** in {duration(took)}."
    parts = [f"**Running** · phase **{snapshot['phase'] or 'starting'}**"]
    progress = snapshot["progress"]
    if progress and progress["total"]:
        parts.append(f"{progress['message']} {100 * progress['done'] / progress['total']:.0f}%")
    if snapshot["checkpoints"]:
        last = snapshot["checkpoints"][-1]
        parts.append(f"{last['queries']:,}/{snapshot['config']['budget']:,} queries")
    parts.append(f"{duration(snapshot['elapsed_s'])} elapsed")
    if snapshot["eta_s"] is not None:
        scope = {"embed": " in this step", "steal": " to the last query"}.get(snapshot["phase"], "")
        parts.append(f"~{duration(snapshot['eta_s'])} left{scope}")
    return " · ".join(parts)


def default_runner() -> Runner:
    """The engine's `run`, through `spaces.GPU` on a ZeroGPU Space."""
    if os.environ.get("SPACES_ZERO_GPU") and importlib.util.find_spec("spaces") is not None:
        import spaces

        gpu_events = spaces.GPU(duration=int(os.environ.get("FMSTEAL_GPU_SECONDS", 600)))(_zero_gpu_events)

        def run_on_gpu(config: dict, cancel: threading.Event) -> Iterator[dict]:
            events = gpu_events(config)
            try:
                for event in events:
                    if cancel.is_set():
                        raise Cancelled("The run was cancelled.")
                    yield event
            finally:
                events.close()

        return run_on_gpu
    return _local_events


def _local_events(config: dict, cancel: threading.Event) -> Iterator[dict]:
    from fmsteal.experiment.pipeline import ExperimentConfig, run

    yield from run(ExperimentConfig.from_dict(config), cancel=cancel)


def _zero_gpu_events(config: dict) -> Iterator[dict]:
    """Runs in ZeroGPU's GPU process: no threading.Event crosses over, so cancel is checked outside."""
    from fmsteal.experiment.pipeline import ExperimentConfig, run

    yield from run(ExperimentConfig.from_dict(config))
