"""`adaptive-misinformation`: Kariyappa & Qureshi, "Defending against model stealing attacks with adaptive
misinformation" (CVPR 2020), as the authors' code answers (sanjaykariyappa/adaptive_misinformation,
`admis/utils/defense.py`, `selectiveMisinformation`).

A query's in-distribution score is its maximum probability (the MSP out-of-distribution detector). The answer is
(1 - a) y + a y^, a = 1 / (1 + exp(-nu (tau - score))) with their nu = 10,000 (a near step at tau): queries at or below
`tau` get the misinformation y^, confident ones the true answer. y^ is the softmax of a misinformation function
trained to put little mass on the correct class (`fmsteal.engine.misinformation`); the run trains it beside the
victim (`DefenceContext.misinformation`). fmsteal's earlier variant, which derives y^ from the victim itself, is
`adaptive-misinformation-reversed`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmsteal.adversary.defences.base import DEFENCES, Defence, DefenceContext
from fmsteal.errors import ConfigError
from fmsteal.fields import Field

if TYPE_CHECKING:
    import torch

__all__ = ["AdaptiveMisinformation", "PARAMS", "switch_weight"]

# both variants' parameters; nu's default is the reference's
PARAMS = (Field("tau", "float", 0.5, "in-distribution threshold on the maximum probability", minimum=0, maximum=1),
          Field("nu", "float", 10_000.0, "sharpness of the switch to misinformation around tau", minimum=0,
                maximum=100_000))


def switch_weight(score: "torch.Tensor", params: dict) -> "torch.Tensor":
    """a = 1 / (1 + exp(-nu (tau - score))): near 1 below tau, near 0 above it."""
    return (params["nu"] * (params["tau"] - score)).sigmoid()


@DEFENCES.register(
    "adaptive-misinformation",
    help="Kariyappa & Qureshi 2020 (their code): queries that look out of distribution get a trained misinformation "
         "function's answer",
    params=PARAMS, acts_on_labels=lambda p: True, misinformer=True)
class AdaptiveMisinformation(Defence):
    def __init__(self, params: dict, context: DefenceContext) -> None:
        super().__init__(params, context)
        if context.misinformation is None:
            raise ConfigError("adaptive-misinformation answers with a trained misinformation function, which a run "
                              "trains beside a victim it trains: use adaptive-misinformation-reversed where there is "
                              "none.")
        self.queries = self.below_tau = self.misinformation_agrees = 0

    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        score = probs.max(1, keepdim=True).values
        misinformation = self.context.misinformation(images).to(probs)
        self.queries += len(probs)
        self.below_tau += int((score <= self.params["tau"]).sum())
        self.misinformation_agrees += int((misinformation.argmax(1) == probs.argmax(1)).sum())
        weight = switch_weight(score, self.params)
        return (1 - weight) * probs + weight * misinformation

    def report(self) -> dict:
        """How many queries scored at or below tau (treated as out of distribution), and how often the
        misinformation function's top class was the victim's (the reference's miss_correct_ratio)."""
        share = (lambda count: count / self.queries if self.queries else 0.0)
        return {"out_of_distribution": self.below_tau, "out_of_distribution_fraction": share(self.below_tau),
                "misinformation_agreement": share(self.misinformation_agrees)}
