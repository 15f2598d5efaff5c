"""Background jobs that belong to the visitors who started them.

One worker thread takes jobs in FIFO order and runs each in a thread of its own; it starts the next
only once that thread has exited, a cancelled run's included, so two runs never share the machine.
Every job has an unguessable id and an owner: the token the page keeps per browser. Polling,
cancelling and downloading need both; to anyone else a job looks like a lost one. The owner's repeat
of a queued, running or finished config gets that job back; another visitor gets a job of their own
(the engine's cache makes it cheap).

Limits (`fmsteal.settings`): runs per visitor and on the server (`Busy` past them), a run time limit
in public mode, runs whose page stopped polling dropped when their turn comes; finished jobs leave
memory after a while and their files after FMSTEAL_RUNS_TTL_HOURS. Finished cards outlive a restart
(`job_files`, owner token hashes only). On ZeroGPU each run starts inside the owner's latest request
context (captured at submit and at every poll), so `spaces.GPU` charges that visitor (`runners`).
"""

from __future__ import annotations

import atexit
import contextvars
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fmsteal.errors import Cancelled, ConfigError, FmstealError
from fmsteal.experiment.estimate import duration
from fmsteal.service.job_files import RunFiles, owner_hash, valid_job_id
from fmsteal.service.job_view import (TERMINAL, Describe, default_describe, lost_snapshot, public_config,
                                      snapshot_of, status_line)
from fmsteal.service.runners import Runner, default_runner
from fmsteal.service.release import release_memory
from fmsteal.settings import Settings, current, max_run_seconds

__all__ = ["Busy", "Job", "JobStore", "TERMINAL", "new_owner_token", "status_line"]

ACTIVE = ("queued", "running")
MAX_FINISHED_IN_MEMORY = 500  # beyond this, the oldest finished jobs leave memory early
HOUSEKEEPING_SECONDS = 60.0
ABANDONED = "Nobody was watching this run when its turn came (the page was closed): start it again."
log = logging.getLogger(__name__)


class Busy(FmstealError):
    """The server, or this visitor, already has as many runs as allowed: try again later."""


def new_owner_token() -> str:
    """A fresh owner token for a browser (the page keeps it in `gr.BrowserState`)."""
    return secrets.token_urlsafe(24)


@dataclass
class Job:
    """One experiment's state as the worker sees it."""

    id: str
    owner: str  # owner_hash of the token
    config_id: str  # ExperimentConfig.job_id(): equal configs, equal ids
    config: dict
    estimate_s: float | None = None
    visitor: str | None = None  # the server's own key for the visitor (its address): limits count it too
    status: str = "queued"
    events: list[dict] = field(default_factory=list)
    error: str | None = None
    card: dict | None = None
    saved: bool = False  # its card and CSV are on disk
    cancel: threading.Event = field(default_factory=threading.Event)
    skip: threading.Event = field(default_factory=threading.Event)  # its owner asked to skip the evaluations
    started: float | None = None
    finished: float | None = None
    seen: float = field(default_factory=time.time)  # the owner's latest submit or poll
    context: contextvars.Context | None = None  # the owner's latest request context (ZeroGPU)
    version: int = 0  # bumped on every change, so pollers can skip redrawing


class JobStore:
    """A FIFO queue of visitors' experiments served by a single worker thread."""

    def __init__(self, output_dir: str | Path, runner: Runner | None = None, settings: Settings | None = None,
                 describe: Describe = default_describe, capture_context: bool | None = None) -> None:
        """`settings` None reads `fmsteal.settings.current()` at each use; `describe(path)` is how a data
        folder is shown to its owner; `capture_context` (default: on ZeroGPU) runs each job inside its
        owner's latest request context."""
        self._settings = settings
        self._files = RunFiles(output_dir)
        self._files.remove_partial()
        self._runner = runner or default_runner(self.settings)
        self._capture = self.settings.zero_gpu if capture_context is None else capture_context
        self._describe = describe
        self._jobs: dict[str, Job] = {}
        self._waiting: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._current: Job | None = None  # the job whose thread is alive, even once cancelled
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._swept = 0.0
        self._worker = threading.Thread(target=self._work, name="fmsteal-worker", daemon=True)
        self._worker.start()
        atexit.register(self.close)  # a thread killed inside torch at exit aborts the interpreter

    @property
    def settings(self) -> Settings:
        return self._settings or current()

    def submit(self, config, owner: str, estimate_s: float | None = None, visitor: str | None = None) -> str:
        """Queue an ExperimentConfig for `owner`; the job's id.

        The owner's queued, running or finished job of the same config is returned instead. Raises
        `Busy` when the owner, the `visitor` (the server's own key for the client, e.g. its address: a new
        owner token does not reset it) or the server has as many runs as allowed, ConfigError for a bad token.
        """
        if not _valid_owner(owner):
            raise ConfigError("The visitor token is missing: reload the page (it makes one); API clients pass "
                              "`owner`, a random string of 16 or more characters they keep to poll the run.")
        mine, config_id = owner_hash(owner), config.job_id()
        with self._lock:
            for job in self._jobs.values():
                if job.owner == mine and job.config_id == config_id and (job.status in ACTIVE or job.saved):
                    self._touch(job)
                    return job.id
            found = self._files.find(mine, config_id)
            if found and self._load(found, mine):
                return found
            self._check_limits(mine, visitor)
            job = Job(secrets.token_urlsafe(18), mine, config_id, config.to_dict(), estimate_s, visitor)
            self._touch(job)
            self._jobs[job.id] = job
            self._waiting.append(job.id)
            self._wake.notify_all()
        return job.id

    def snapshot(self, job_id: str | None, owner: str | None) -> dict | None:
        """The owner's job as plain data (see `job_view.snapshot_of`); None without an id; a "lost"
        snapshot for an unknown id or someone else's job."""
        if not job_id:
            return None
        with self._lock:
            job = self._owned(job_id, owner)
            if job is None:
                return lost_snapshot(job_id if valid_job_id(job_id) else "")
            self._touch(job)
            position = self._waiting.index(job.id) + 1 if job.id in self._waiting else 0
            stopping = self._current is not None and self._current.status in TERMINAL
            return snapshot_of(job, position, self._describe, stopping)

    def cancel(self, job_id: str | None, owner: str | None) -> bool:
        """Cancel the owner's queued or running job (returns at once; the worker waits for its thread
        to stop before starting the next); False when it is unknown, someone else's or over."""
        with self._lock:
            job = self._owned(job_id, owner)
            if job is None or job.status in TERMINAL:
                return False
            self._cancel(job)
        return True

    def skip_evaluations(self, job_id: str | None, owner: str | None) -> bool:
        """Have the owner's queued or running job skip its evaluations (its result comes as soon as the steal
        ends); False when it is unknown, someone else's or over."""
        with self._lock:
            job = self._owned(job_id, owner)
            if job is None or job.status in TERMINAL:
                return False
            job.skip.set()
            job.version += 1
        return True

    def files(self, job_id: str | None, owner: str | None) -> tuple[Path, Path] | None:
        """(run card JSON, curve CSV) of the owner's finished job; None for anyone else or no files."""
        with self._lock:
            job = self._owned(job_id, owner)
            if job is None or not job.saved:
                return None
            mine = job.owner
        return self._files.downloads(job.id, mine)

    def housekeep(self, now: float | None = None) -> None:
        """Drop finished jobs from memory after FMSTEAL_JOB_MEMORY_MINUTES (the oldest first past
        MAX_FINISHED_IN_MEMORY) and delete run files older than FMSTEAL_RUNS_TTL_HOURS."""
        now = time.time() if now is None else now
        settings = self.settings
        with self._lock:
            finished = sorted((j for j in self._jobs.values() if j.status in TERMINAL and j.finished is not None
                               and j is not self._current), key=lambda j: j.finished)
            for rank, job in enumerate(finished):
                too_many = len(finished) - rank > MAX_FINISHED_IN_MEMORY
                if too_many or now - job.finished > settings.job_memory_minutes * 60:
                    del self._jobs[job.id]
        if settings.runs_ttl_hours > 0:
            gone = self._files.expire(settings.runs_ttl_hours * 3600, now)
            with self._lock:
                for job_id in gone:
                    if job_id in self._jobs and self._jobs[job_id].status in TERMINAL:
                        del self._jobs[job_id]
        self._swept = now

    def close(self, timeout: float = 10.0) -> None:
        """Cancel every job and wait up to `timeout` seconds for their threads and the worker to stop."""
        with self._lock:
            self._closed = True
            for job in [j for j in self._jobs.values() if j.status in ACTIVE]:
                self._cancel(job)
            self._wake.notify_all()
        deadline = time.time() + timeout
        for thread in [*self._threads, self._worker]:
            thread.join(max(0.0, deadline - time.time()))

    # --- under the lock ---

    def _owned(self, job_id: str | None, owner: str | None) -> Job | None:
        """The job when `owner` owns it (from memory, or its card on disk); else None."""
        if not valid_job_id(job_id) or not _valid_owner(owner):
            return None
        mine = owner_hash(owner)
        job = self._jobs.get(job_id)
        if job is not None:
            return job if hmac.compare_digest(job.owner, mine) else None
        return self._load(job_id, mine)

    def _load(self, job_id: str, mine: str) -> Job | None:
        """A finished job of `mine` from its files (after a restart, or once it left memory)."""
        found = self._files.load(job_id, mine)
        if found is None:
            return None
        run, card = found
        job = Job(job_id, mine, run.config_id, card["config"], status="done", card=card, saved=True,
                  finished=run.finished)
        self._jobs[job_id] = job
        return job

    def _touch(self, job: Job) -> None:
        """The owner is watching: note when, and (on ZeroGPU) the request context to run the job in."""
        job.seen = time.time()
        if self._capture and job.status in ACTIVE:
            job.context = contextvars.copy_context()

    def _check_limits(self, mine: str, visitor: str | None) -> None:
        settings = self.settings
        active = [job for job in self._jobs.values() if job.status in ACTIVE]
        own = sum(job.owner == mine or (visitor is not None and job.visitor == visitor) for job in active)
        if own >= settings.max_jobs_per_visitor:
            raise Busy(f"You already have {own} run(s) queued or running, the most one visitor may have here: "
                       "wait for it to finish or cancel it, then start again.")
        if len(active) >= settings.max_queue:
            raise Busy(f"The server is busy: the queue is full ({len(active)} runs queued or running). "
                       "Try again in a few minutes.")

    def _cancel(self, job: Job, reason: str | None = None) -> None:
        job.cancel.set()
        if job.id in self._waiting:
            self._waiting.remove(job.id)
        self._finish(job, "cancelled", reason)

    @staticmethod
    def _finish(job: Job, status: str, error: str | None = None) -> None:
        """Mark a job over (the first verdict wins: a job cancelled while finishing stays cancelled)."""
        if job.status in TERMINAL:
            return
        job.status, job.finished = status, time.time()
        job.error = error if status != "done" else None
        job.context = None  # let go of the owner's request
        job.version += 1

    # --- the worker ---

    def _work(self) -> None:
        """Run queued jobs one at a time, each to the end of its thread; housekeep in between."""
        while not self._closed:
            try:
                job = self._next_job()
                if job is not None:
                    self._execute(job)
                if time.time() - self._swept > HOUSEKEEPING_SECONDS:
                    self.housekeep()
            except Exception:  # a bad setting or a full disk must not stop the queue for everyone
                log.exception("the job worker hit an error; it goes on")
                time.sleep(1.0)

    def _next_job(self) -> Job | None:
        """The next job to run, marked running (jobs whose page went away are dropped); None after a while."""
        with self._lock:
            if not self._waiting and not self._closed:
                self._wake.wait(HOUSEKEEPING_SECONDS)
            abandon = self.settings.abandon_seconds
            while self._waiting and not self._closed:
                job = self._jobs[self._waiting.pop(0)]
                if abandon > 0 and time.time() - job.seen > abandon:
                    self._cancel(job, ABANDONED)
                    continue
                job.status, job.started = "running", time.time()
                job.version += 1
                self._current = job
                return job
        return None

    def _execute(self, job: Job) -> None:
        """Run `job` in its own thread (inside its owner's request context if captured) and wait until
        that thread has exited; a run past the public time limit is cancelled."""
        context = job.context
        target = (lambda: context.run(self._run, job)) if context is not None else (lambda: self._run(job))
        thread = threading.Thread(target=target, name=f"fmsteal-job-{job.id}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        limit = 2 * max_run_seconds(self.settings) if self.settings.public else None
        while thread.is_alive():
            thread.join(0.25)
            if limit is not None and time.time() - job.started > limit and not job.cancel.is_set():
                with self._lock:
                    self._cancel(job, f"It ran past the time limit of {duration(limit)} and was stopped.")
        with self._lock:
            self._current = None
        release_memory()  # the run's freed pages go back to the system, not kept for the next visitor

    def _run(self, job: Job) -> None:
        """The job's thread: feed its events into the job, save its card, record how it ended."""
        events = iter(())
        try:
            events = self._runner(job.config, job.cancel, job.estimate_s, job.skip)
            for event in events:
                with self._lock:
                    if job.status != "running":
                        return
                    job.events.append(event)
                    job.version += 1
                if event["kind"] == "result":
                    self._save(job, event["card"])
            if job.status == "running":
                raise FmstealError("The run ended without a result.")
        except Cancelled:
            with self._lock:
                self._finish(job, "cancelled")
        except FmstealError as error:
            with self._lock:
                self._finish(job, "failed", str(error))
        except Exception as error:  # a bug or a library failure: report it, keep serving
            log.exception("job %s failed", job.id)
            with self._lock:
                self._finish(job, "failed", self._unexpected(error))
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    def _save(self, job: Job, card: dict) -> None:
        """Write the card (without server paths in public mode) and mark the job done."""
        if job.status != "running":
            return
        shown = {**card, "config": public_config(card["config"], self._describe)} if self.settings.public else card
        self._files.save(job.id, job.owner, job.config_id, shown)
        with self._lock:
            if job.status == "running":
                job.card, job.saved = card, True
                self._finish(job, "done")

    def _unexpected(self, error: Exception) -> str:
        """A failure's message: Gradio errors (e.g. ZeroGPU quota) as they are; details only locally."""
        if type(error).__module__.split(".")[0] in ("gradio", "spaces"):
            return str(getattr(error, "message", None) or error)
        if self.settings.public:
            return f"Unexpected error ({type(error).__name__}); it is in the server's log. Try other settings."
        return f"Unexpected error: {type(error).__name__}: {error}"


def _valid_owner(owner: object) -> bool:
    return isinstance(owner, str) and 16 <= len(owner) <= 256
