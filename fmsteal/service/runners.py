"""How a job's experiment runs: in the job's own thread here, or through `spaces.GPU` on a ZeroGPU Space.

A runner is `runner(config, cancel, estimate_s)`: it yields plain-data events (they cross ZeroGPU's
process boundary) and stops with `Cancelled` soon after `cancel` is set. On ZeroGPU:
- the duration asked of `spaces.GPU` is the run's own (`gpu_duration`): its estimate with a margin,
  at most FMSTEAL_GPU_SECONDS; `fmsteal.settings.max_run_seconds()` refuses runs that would not fit;
- the call is made in the job's thread, which the job store starts inside the visitor's latest request
  context, so `spaces` reads that visitor's `X-IP-Token` and charges their quota;
- cancel reaches the GPU process as a flag file, which `fmsteal.cancel.check()` reads between batches.
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

Runner = Callable[[dict, threading.Event, "float | None"], Iterator[dict]]


def default_runner(settings: Settings | None = None) -> Runner:
    """The engine's `run` in this process, or through `spaces.GPU` on a ZeroGPU Space."""
    settings = settings or current()
    if settings.zero_gpu and importlib.util.find_spec("spaces") is not None:
        return zero_gpu_runner(settings.gpu_seconds)
    return local_runner


def local_runner(config: dict, cancel: threading.Event, estimate_s: float | None = None) -> Iterator[dict]:
    """The engine's `run` in the calling thread."""
    from fmsteal.experiment.pipeline import ExperimentConfig, run

    yield from run(ExperimentConfig.from_dict(config), cancel=cancel)


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

    def run_on_gpu(config: dict, cancel: threading.Event, estimate_s: float | None = None) -> Iterator[dict]:
        flag, over = FlagFile(flags / secrets.token_hex(8)), threading.Event()
        relay = threading.Thread(target=_relay, args=(cancel, flag, over), daemon=True)
        relay.start()
        events = gpu_events(config, gpu_duration(estimate_s, gpu_seconds), flag.path)
        try:
            for event in events:
                if cancel.is_set():
                    raise Cancelled("The run was cancelled.")
                yield event
        finally:
            over.set()
            events.close()
            relay.join()
            Path(flag.path).unlink(missing_ok=True)

    return run_on_gpu


def _relay(cancel: threading.Event, flag: FlagFile, over: threading.Event) -> None:
    """Set the flag file once `cancel` is set, until the run is over."""
    while not over.is_set():
        if cancel.wait(0.1):
            flag.set()
            return


def _requested_seconds(config: dict, seconds: int, flag: str) -> int:
    """`spaces.GPU`'s dynamic duration: it gets the GPU function's arguments."""
    return seconds


def gpu_process_events(config: dict, seconds: int, flag: str) -> Iterator[dict]:
    """Runs in ZeroGPU's GPU process: plain arguments in, plain events out; cancel through the flag file."""
    from fmsteal.experiment.pipeline import ExperimentConfig, run

    yield from run(ExperimentConfig.from_dict(config), cancel=FlagFile(flag))


if current().zero_gpu and importlib.util.find_spec("spaces") is not None:  # wrapped before launch: see above
    import spaces

    spaces.GPU(duration=_requested_seconds)(gpu_process_events)
