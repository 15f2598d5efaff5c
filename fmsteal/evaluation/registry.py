"""The evaluation registry: what a run measures after the theft, each result under its own name.

An evaluation is a generator function `fn(context, params)` that may yield progress events and
returns a plain-data result; the run card stores it as `card[name]`. Register one with
`@EVALUATIONS.register("name", help=..., params=(Field(...), ...), default_on=True, cost=...)`, and
add its module to `modules` below; `cost(pricing, params)` is its seconds on this machine (see
`fmsteal.experiment.pricing`); `columns(result)` is its summary as flat columns of a sweep's table. The
experiment runs every evaluation its config enables, the estimate adds their costs, the CLI and app
list them from here and a sweep tabulates their columns.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fmsteal.registry import Registry

if TYPE_CHECKING:
    import torch

    from fmsteal.adversary.thief import Thief
    from fmsteal.engine.data import ImageSet
    from fmsteal.engine.victim import TrainedVictim

__all__ = ["EVALUATIONS", "EvaluationContext", "Evaluation"]


@dataclass
class EvaluationContext:
    """Everything an evaluation may read. The victim's internals are the experimenter's privilege:
    evaluations measure, they never feed anything back to the thief."""

    test: "ImageSet"  # test images (uint8) and true labels
    victim: "TrainedVictim"  # white-box access, for baselines labelled as the defender's view
    thief: "Thief"
    victim_test: "torch.Tensor"  # the victim's top-1 on the test images
    thief_test: "torch.Tensor"  # the thief's top-1 on the test images
    victim_probs: "torch.Tensor"  # the victim's probabilities on the test images
    thief_probs: "torch.Tensor"  # the thief's probabilities on the test images
    pool: "ImageSet"  # the query pool (with its true labels, which the thief never saw)
    output: str  # the attack's output mode
    queries_spent: int
    num_classes: int
    device: "torch.device"
    seed: int


Evaluation = Callable[[EvaluationContext, dict], Generator[dict, None, Any]]

EVALUATIONS: Registry[Evaluation] = Registry("evaluation", modules=(
    "fmsteal.evaluation.fidelity", "fmsteal.evaluation.transfer", "fmsteal.evaluation.corruptions",
    "fmsteal.evaluation.examples", "fmsteal.evaluation.transfer_sweep", "fmsteal.evaluation.adversarial_fidelity"))
