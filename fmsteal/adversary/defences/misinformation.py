"""`adaptive-misinformation`: Kariyappa & Qureshi, "Defending against model stealing attacks with
adaptive misinformation" (CVPR 2020).

A query's in-distribution score is its maximum probability (the MSP out-of-distribution detector).
The answer is (1 - a) y + a y^, with a = sigmoid(nu * (tau - score)): queries well below `tau` get the
misinformation y^, confident ones the true answer, `nu` sets how sharp the switch is. The paper trains
a misinformation network to put little mass on the correct class; here y^ is derived from the victim
itself, softmax(-log y): the victim's own ranking reversed, its least likely class most likely.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmsteal.adversary.defences.base import DEFENCES, Defence, DefenceContext
from fmsteal.fields import Field

if TYPE_CHECKING:
    import torch

__all__ = ["AdaptiveMisinformation", "misinformation"]

FLOOR = 1e-6  # probabilities are floored here before the log, so a zero does not take all the mass


@DEFENCES.register(
    "adaptive-misinformation",
    help="Kariyappa & Qureshi 2020: queries that look out of distribution get misleading answers",
    params=(Field("tau", "float", 0.5, "in-distribution threshold on the maximum probability", minimum=0, maximum=1),
            Field("nu", "float", 50.0, "sharpness of the switch to misinformation around tau", minimum=0, maximum=10_000)),
    acts_on_labels=lambda p: True)
class AdaptiveMisinformation(Defence):
    def __init__(self, params: dict, context: DefenceContext) -> None:
        super().__init__(params, context)
        self.queries = self.below_tau = 0

    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        score = probs.max(1, keepdim=True).values
        self.queries += len(probs)
        self.below_tau += int((score < self.params["tau"]).sum())
        weight = (self.params["nu"] * (self.params["tau"] - score)).sigmoid()
        return (1 - weight) * probs + weight * misinformation(probs)

    def report(self) -> dict:
        """How many queries scored below tau (treated as out of distribution)."""
        return {"out_of_distribution": self.below_tau,
                "out_of_distribution_fraction": self.below_tau / self.queries if self.queries else 0.0}


def misinformation(probs: "torch.Tensor") -> "torch.Tensor":
    """softmax(-log y): the victim's ranking reversed."""
    return (-probs.clamp(min=FLOOR).log()).softmax(1)
