"""The defence registry, the context a defence is built with, and the plan that fits it to an output mode.

A defence is a class registered with `@DEFENCES.register(name, help=..., params=(Field, ...), acts_on_labels=...)`
and built per attack as `cls(params, context)`. It has `answer(images, probs) -> probs` (it may keep
state across batches: one instance serves one client) and `report() -> dict` (its own results, read
by the experimenter only). Optional registry entries: `surrogate=True` (the run builds the defender a
surrogate model, `DefenceContext.surrogate`), `benign=True` (it is given honest clients' streams,
`DefenceContext.benign`, to measure its false alarms on), `misinformer=True` (the run trains it a
misinformation function beside the victim, `DefenceContext.misinformation`), `invert(answers, params)` with
`invertible(params)` (a thief who knows the defence can undo it: `fmsteal.adversary.thieves`),
`simulate(probs, params, generator)` with `draws` (the rule itself, differentiable in `probs`, which a thief who
knows it fits through; a random rule by its mean over `draws`), `fresh_draws=True` (every answer is a new draw,
so asking again tells a thief more). Importing this module, or any defence module, imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fmsteal.adversary.outputs import OUTPUT_MODES
from fmsteal.errors import ConfigError
from fmsteal.registry import Registry

if TYPE_CHECKING:
    import torch

__all__ = ["DEFENCES", "Defence", "DefenceContext", "DefencePlan", "build_defence", "plan_defence",
           "as_uint8", "as_unit_float"]

@dataclass(frozen=True)
class DefenceContext:
    """What a defence is built with, besides its parameters: all of it is the defender's own knowledge."""

    num_classes: int
    seed: int = 0
    # MAD: the defender's stand-in for the thief's model, images -> probabilities (None: a fresh head, uniform)
    surrogate: Callable[["torch.Tensor"], "torch.Tensor"] | None = None
    # detectors: an honest client's stream (images in natural order, the victim's probabilities for them),
    # on which they measure their false-alarm rate for `report()`
    benign: tuple["torch.Tensor", "torch.Tensor"] | None = None
    # adaptive misinformation: images -> probabilities of a function trained to mislead (`fmsteal.engine.misinformation`)
    misinformation: Callable[["torch.Tensor"], "torch.Tensor"] | None = None


class Defence:
    """Base of every defence: probabilities in, defended probabilities out; results for the experimenter."""

    def __init__(self, params: dict, context: DefenceContext) -> None:
        self.params = params
        self.context = context

    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        """Defended probabilities (n x K, rows summing to 1) for `images` whose undefended answer is `probs`."""
        raise NotImplementedError

    def report(self) -> dict:
        """The defence's own results (plain data), e.g. when it detected the attack."""
        return {}


DEFENCES: Registry[type[Defence]] = Registry("defence")  # filled by the modules the package imports


@dataclass(frozen=True)
class DefencePlan:
    """A validated defence and the output mode (with its top_k and decimals) the defended API answers in."""

    name: str
    params: dict
    output: str
    top_k: int
    decimals: int


def plan_defence(name: str, params: dict | None, output: str, top_k: int = 3, decimals: int = 2) -> DefencePlan:
    """Check defence `name` with `params` (text values are coerced) against the API's output mode.

    `top1`, `topk` and `rounding` are the output modes `label`, `topk` and `rounded` listed as defences:
    they truncate a full probability answer, so they need `output="probs"` and replace it with their mode.
    A defence that never changes the top-1 class cannot act on a label answer and is refused there.
    Raises ConfigError naming the valid choices.
    """
    entry = DEFENCES.get(name)
    values = entry.validate(params)
    OUTPUT_MODES.get(output)
    mode = entry.meta.get("output_mode")
    if mode is not None:
        if output != "probs":
            raise ConfigError(f"Defence {name!r} truncates a probability answer to the output mode {mode!r}: "
                              f"use it with output 'probs', or use output {mode!r} with defence 'none'.")
        return DefencePlan(name, values, mode, values.get("top_k", top_k), values.get("decimals", decimals))
    if output == "label" and not entry.meta["acts_on_labels"](values):
        fitting = [e.name for e in DEFENCES if e.name != "none" and e.meta.get("output_mode") is None
                   and e.meta["acts_on_labels"](e.defaults())]
        raise ConfigError(f"Defence {name!r} with {values} never changes the top-1 class, so it leaves a label answer "
                          f"as it is: use output probs, rounded or topk, or one of {', '.join(fitting)} "
                          "(with keep_argmax false where it has one).")
    return DefencePlan(name, values, output, top_k, decimals)


def build_defence(name: str, params: dict | None, context: DefenceContext) -> Defence:
    """A fresh instance of defence `name` (one per client) with validated `params`."""
    entry = DEFENCES.get(name)
    return entry.fn(entry.validate(params), context)


def as_unit_float(images: "torch.Tensor") -> "torch.Tensor":
    """Images as float in [0, 1], whether they came as uint8 or as [0, 1] floats."""
    return images.float() / 255 if not images.is_floating_point() else images.float()


def as_uint8(images: "torch.Tensor") -> "torch.Tensor":
    """Images as uint8 (the same picture gives the same bytes whether sent as uint8 or as [0, 1] floats)."""
    return images if not images.is_floating_point() else images.mul(255).round().clamp(0, 255).byte()
