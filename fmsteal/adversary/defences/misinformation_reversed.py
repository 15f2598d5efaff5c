"""`adaptive-misinformation-reversed`: fmsteal's earlier variant of adaptive misinformation (Kariyappa & Qureshi,
CVPR 2020; the reference port is `adaptive-misinformation`).

The same switch, a = sigmoid(nu (tau - score)) on the maximum probability, with a softer default nu = 50, and no
trained misinformation function: y^ = softmax(-log y), the victim's own ranking reversed, its least likely class most
likely. It needs nothing but the victim's answer, so it serves any victim.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from fmsteal.adversary.defences.base import DEFENCES, Defence, DefenceContext
from fmsteal.adversary.defences.misinformation import PARAMS, switch_weight

if TYPE_CHECKING:
    import torch

__all__ = ["ReversedMisinformation", "reversed_ranking"]

FLOOR = 1e-6  # probabilities are floored here before the log, so a zero does not take all the mass


@DEFENCES.register(
    "adaptive-misinformation-reversed",
    help="fmsteal's variant of adaptive misinformation: unconfident queries get the victim's own ranking reversed",
    params=(PARAMS[0], replace(PARAMS[1], default=50.0)), acts_on_labels=lambda p: True)
class ReversedMisinformation(Defence):
    def __init__(self, params: dict, context: DefenceContext) -> None:
        super().__init__(params, context)
        self.queries = self.below_tau = 0

    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        score = probs.max(1, keepdim=True).values
        self.queries += len(probs)
        self.below_tau += int((score < self.params["tau"]).sum())
        weight = switch_weight(score, self.params)
        return (1 - weight) * probs + weight * reversed_ranking(probs)

    def report(self) -> dict:
        """How many queries scored below tau (treated as out of distribution)."""
        return {"out_of_distribution": self.below_tau,
                "out_of_distribution_fraction": self.below_tau / self.queries if self.queries else 0.0}


def reversed_ranking(probs: "torch.Tensor") -> "torch.Tensor":
    """softmax(-log y): the victim's ranking reversed."""
    return (-probs.clamp(min=FLOOR).log()).softmax(1)
