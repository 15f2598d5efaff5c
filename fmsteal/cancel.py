"""Cancellation that reaches into long loops which yield no events (decoding, prediction), and into a single
forward or backward pass.

`run` opens a `cancel_scope` in its thread; loops call `check()`, which raises `Cancelled` once the
run's event is set, so a cancelled run stops within a batch instead of at its next event. A backbone made
`cancellable` (every one `load_backbone` builds) checks at every few of its layers, forward and backward, so a
cancel is seen within a few layers of one pass: a training step of 64 images at 224 px (a minute on two busy CPU
cores) or an attack's gradient through 32 images stops within a fraction of a second.
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


CHECK_EVERY = 4  # layers between two checks: hooks on every layer cost 5-7% of a Lite0 pass, on every 4th ~1/4 of that


def cancellable(model):
    """`model` (a torch module), made to call `check()` at every CHECK_EVERY-th convolution or linear layer (the
    first one included): in the forward pass, and again when the layer's gradient arrives in the backward pass
    (training, attacks). The hooks compute nothing, so outputs, gradients and results are those of the model
    without them; outside a cancel scope each costs a thread-local lookup."""
    from torch import nn

    layers = [module for module in model.modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    for module in layers[::CHECK_EVERY]:
        module.register_forward_hook(_forward_check)
    return model


def _forward_check(module, inputs, output) -> None:
    check()
    if getattr(output, "requires_grad", False):
        output.register_hook(_backward_check)


def _backward_check(grad) -> None:
    check()
