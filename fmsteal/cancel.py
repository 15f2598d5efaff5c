"""Cancellation that reaches into long loops which yield no events (decoding, prediction).

`run` opens a `cancel_scope` in its thread; loops call `check()`, which raises `Cancelled` once the
run's event is set, so a cancelled run stops within a batch instead of at its next event.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fmsteal.errors import Cancelled

_state = threading.local()


@contextmanager
def cancel_scope(event: threading.Event | None) -> Iterator[None]:
    """While open, `check()` in this thread raises `Cancelled` once `event` is set."""
    previous = getattr(_state, "event", None)
    _state.event = event
    try:
        yield
    finally:
        _state.event = previous


def check() -> None:
    """Raise `Cancelled` if the run this thread works for has been cancelled."""
    event = getattr(_state, "event", None)
    if event is not None and event.is_set():
        raise Cancelled("The run was cancelled.")
