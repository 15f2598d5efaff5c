"""One experiment end to end: the phases of `fmsteal.experiment.phases`, as a stream of events.

`run(config)` yields plain-data events (see docs/architecture.md) and ends with the run card,
which records the estimate made before the run beside the measured time of every phase.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import torch
import torch._dynamo  # noqa: F401  torch.optim loads it on first use (2.4 s): a server pays it at launch instead

from fmsteal.cancel import cancel_scope, check
from fmsteal.errors import Cancelled, DeviceUnavailable
from fmsteal.experiment.config import ExperimentConfig
from fmsteal.experiment.estimate import price
from fmsteal.experiment.phases import PHASES, RunState, card_of

__all__ = ["ExperimentConfig", "run", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when present, else CPU; `cuda` where there is none is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("CUDA was asked for, but this machine has no usable GPU. Use device 'cpu' or 'auto'.")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def run(config: ExperimentConfig, cancel: threading.Event | None = None,
        skip: threading.Event | None = None) -> Iterator[dict]:
    """Run `config`, yielding events; `{"kind": "stolen", "card": ...}` as soon as the steal ends (the card
    without the evaluations), the last one `{"kind": "result", "card": ...}`. Once `skip` is set the
    evaluations stop (within a batch) and the card lists those left out under `evaluations_skipped`."""
    started = time.perf_counter()
    with cancel_scope(cancel):
        device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        seconds, _, plan = price(config, device.type)
        state = RunState(config, device, {"phases": seconds, "total": round(sum(seconds.values()), 2)})
        yield {"kind": "plan", "image_size": {"victim": plan.victim_size, "thief": plan.thief_size},
               "estimate": state.estimate, "elapsed_s": round(time.perf_counter() - started, 3)}
        for phase in PHASES:
            phase_started = time.perf_counter()
            yield {"kind": "phase", "phase": phase.name, "message": phase.message(config),
                   "elapsed_s": round(phase_started - started, 3)}
            events = _skippable(phase.run(state), state, cancel, skip) if phase.name == "evaluate" else phase.run(state)
            for event in events:
                check()
                event["elapsed_s"] = round(time.perf_counter() - started, 3)
                yield event
            state.timings[phase.name] = round(time.perf_counter() - phase_started, 3)
            if phase.name == "steal":  # the result is known: show it while the evaluations run
                card = card_of(state)
                yield {"kind": "stolen", "card": {**card, "timings": dict(state.timings)},  # no total yet
                       "elapsed_s": round(time.perf_counter() - started, 3)}
        state.timings["total"] = round(time.perf_counter() - started, 3)
        yield {"kind": "result", "card": state.card, "elapsed_s": state.timings["total"]}


class _Either:
    """Set once either event is: what `cancel_scope` watches while the evaluations may be skipped."""

    def __init__(self, *events: threading.Event | None):
        self.events = [event for event in events if event is not None]

    def is_set(self) -> bool:
        return any(event.is_set() for event in self.events)


def _skippable(events: Iterator[dict], state, cancel: threading.Event | None,
               skip: threading.Event | None) -> Iterator[dict]:
    """The evaluate phase's events, cut short once `skip` is set (a cancel still cancels the run)."""
    if skip is None:
        yield from events
        return
    either = _Either(cancel, skip)
    while True:
        try:
            with cancel_scope(either):  # only while the evaluations run: the caller's checks see `cancel` alone
                check()
                event = next(events)
        except StopIteration:
            return
        except Cancelled:
            if not skip.is_set() or (cancel is not None and cancel.is_set()):
                raise
            break
        yield event
    events.close()
    wanted = (["defence"] if state.config.defence != "none" else []) + list(state.config.evaluation_names())
    state.results["evaluations_skipped"] = skipped = [name for name in wanted if name not in state.results]
    yield {"kind": "log", "level": "info", "message": f"Evaluations skipped: {', '.join(skipped) or 'none left'}"}
