"""How a job's experiment runs: in the job's own thread here, or through `spaces.GPU` on a ZeroGPU Space.

A runner is `runner(config, cancel, estimate_s, skip)`: it yields plain-data events (they cross ZeroGPU's
process boundary), stops with `Cancelled` soon after `cancel` is set and cuts the evaluations short once
`skip` is. On ZeroGPU:
- the duration asked of `spaces.GPU` is the run's own (`gpu_duration`): its estimate with a margin,
  at most FMSTEAL_GPU_SECONDS; `fmsteal.settings.max_run_seconds()` refuses runs that would not fit;
- the call is made in the job's thread, which the job store starts inside the visitor's latest request
  context, so `spaces` reads that visitor's `X-IP-Token` and charges their quota;
- cancel and skip reach the GPU process as flag files, which `fmsteal.cancel.check()` reads between batches.
`spaces.GPU` must wrap the GPU function before the app launches (ZeroGPU's start-up report lists the
wrapped functions), so importing this module on ZeroGPU wraps it, however late the store is made.
"""

from __future__ import annotations

import importlib.util
import math
import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from fmsteal.errors import Cancelled
from fmsteal.settings import GPU_MARGIN, GPU_OVERHEAD_SECONDS, Settings, current

__all__ = ["Runner", "FlagFile", "default_runner", "local_runner", "zero_gpu_runner", "gpu_duration",
           "gpu_process_events"]

Runner = Callable[[dict, threading.Event, "float | None", "threading.Event | None"], Iterator[dict]]


def default_runner(settings: Settings | None = None) -> Runner:
    """The engine's `run` in this process, or through `spaces.GPU` on a ZeroGPU Space."""
    settings = settings or current()
    if settings.zero_gpu and importlib.util.find_spec("spaces") is not None:
        return zero_gpu_runner(settings.gpu_seconds)
    return local_runner


def local_runner(config: dict, cancel: threading.Event, estimate_s: float | None = None,
                 skip: threading.Event | None = None) -> Iterator[dict]:
    """The engine's `run` in the calling thread."""
    from fmsteal.experiment.pipeline import ExperimentConfig, run

    yield from run(ExperimentConfig.from_dict(config), cancel=cancel, skip=skip)


def gpu_duration(estimate_s: float | None, gpu_seconds: int) -> int:
    """Seconds to ask of `spaces.GPU` for a run estimated at `estimate_s`: less asked, sooner served
    and less of the visitor's quota held; never more than `gpu_seconds`."""
    if estimate_s is None:
        return int(gpu_seconds)
    return int(min(gpu_seconds, math.ceil(estimate_s * GPU_MARGIN + GPU_OVERHEAD_SECONDS)))


class FlagFile:
    """A cancel flag another process sees: `set` creates the file, `is_set` (what `cancel.check` calls) tests it."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def set(self) -> None:
        Path(self.path).touch()

    def is_set(self) -> bool:
        return os.path.exists(self.path)


def zero_gpu_runner(gpu_seconds: int) -> Runner:
    """A runner that sends each run through `spaces.GPU`, asking for `gpu_duration` of its estimate."""
    import spaces

    gpu_events = spaces.GPU(duration=_requested_seconds)(gpu_process_events)
    flags = Path(tempfile.mkdtemp(prefix="fmsteal-cancel-"))

    def run_on_gpu(config: dict, cancel: threading.Event, estimate_s: float | None = None,
                   skip: threading.Event | None = None) -> Iterator[dict]:
        over = threading.Event()
        pairs = [(event, FlagFile(flags / secrets.token_hex(8))) for event in (cancel, skip or threading.Event())]
        relays = [threading.Thread(target=_relay, args=(event, flag, over), daemon=True) for event, flag in pairs]
        for relay in relays:
            relay.start()
        events = gpu_events(config, gpu_duration(estimate_s, gpu_seconds), *(flag.path for _, flag in pairs))
        try:
            for event in events:
                if cancel.is_set():
                    raise Cancelled("The run was cancelled.")
                yield event
        finally:
            over.set()
            events.close()
            for relay in relays:
                relay.join()
            for _, flag in pairs:
                Path(flag.path).unlink(missing_ok=True)

    return run_on_gpu


def _relay(event: threading.Event, flag: FlagFile, over: threading.Event) -> None:
    """Set the flag file once `event` is set, until the run is over."""
    while not over.is_set():
        if event.wait(0.1):
            flag.set()
            return


def _requested_seconds(config: dict, seconds: int, flag: str, skip_flag: str) -> int:
    """`spaces.GPU`'s dynamic duration: it gets the GPU function's arguments."""
    return seconds


def gpu_process_events(config: dict, seconds: int, flag: str, skip_flag: str) -> Iterator[dict]:
    """Runs in ZeroGPU's GPU process: plain arguments in, plain events out; cancel and skip through flag files."""
    from fmsteal.experiment.pipeline import ExperimentConfig, run

    yield from run(ExperimentConfig.from_dict(config), cancel=FlagFile(flag), skip=FlagFile(skip_flag))


if current().zero_gpu and importlib.util.find_spec("spaces") is not None:  # wrapped before launch: see above
    import spaces

    spaces.GPU(duration=_requested_seconds)(gpu_process_events)
