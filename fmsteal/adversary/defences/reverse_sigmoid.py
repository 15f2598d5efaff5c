"""`reverse-sigmoid`: Lee et al., "Defending against NN model stealing attacks using deceptive
perturbations" (IEEE S&P Workshops 2019), in the form of IBM ART's `ReverseSigmoid` postprocessor.

Each probability p moves by r = beta * (sigmoid(gamma * logit(p)) - 1/2), i.e. y = p - r, clipped to
[0, 1] and renormalised. Classes below 1/2 gain mass, confident ones lose it, so the answer's
log-probabilities stop being the logits a thief would fit. The map is not monotone: a near-zero
probability rises to about beta * (1/2 - sigmoid(-20.7 * gamma)) (0.39 at the defaults), so an
unconfident answer's top-1 class can be overtaken even at the defaults (31 of 20,000 random 10-class
vectors; more as beta grows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmsteal.adversary.defences.base import DEFENCES, Defence
from fmsteal.fields import Field

if TYPE_CHECKING:
    import torch

__all__ = ["ReverseSigmoid", "reverse_sigmoid"]

CLIP = 1e-9  # probabilities are kept in [CLIP, 1 - CLIP] for the logit


@DEFENCES.register(
    "reverse-sigmoid", help="Lee et al. 2019: a reverse-sigmoid perturbation of the probabilities (as ART's)",
    params=(Field("beta", "float", 1.0, "magnitude of the perturbation", minimum=1e-6, maximum=10),
            Field("gamma", "float", 0.1, "convergence: how fast the perturbation saturates in the logit",
                  minimum=1e-6, maximum=10)),
    acts_on_labels=lambda p: True,
    simulate=lambda probs, params, generator: reverse_sigmoid(probs, params["beta"], params["gamma"]))
class ReverseSigmoid(Defence):
    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        return reverse_sigmoid(probs, self.params["beta"], self.params["gamma"])


def reverse_sigmoid(probs: "torch.Tensor", beta: float, gamma: float) -> "torch.Tensor":
    """The perturbed, renormalised probabilities (rows of `probs` sum to 1; at least one entry is
    <= 1/2 and only gains mass, so a row never sums to zero)."""
    wide = probs.double()  # 1 - 1e-9 is 1 in float32
    clipped = wide.clamp(CLIP, 1 - CLIP)
    shift = beta * ((gamma * (clipped / (1 - clipped)).log()).sigmoid() - 0.5)
    perturbed = (wide - shift).clamp(0, 1)
    return (perturbed / perturbed.sum(1, keepdim=True)).to(probs.dtype)
