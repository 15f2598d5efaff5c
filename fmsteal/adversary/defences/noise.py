"""`gaussian-noise`: Gaussian noise on the probability vector, clipped and renormalised.

With `keep_argmax` a row whose top-1 class the noise changed gets its two leading values swapped
back, so the answer keeps the victim's top-1 and honest users lose nothing in label accuracy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmsteal.adversary.defences.base import DEFENCES, Defence, DefenceContext
from fmsteal.fields import Field

if TYPE_CHECKING:
    import torch

__all__ = ["GaussianNoise", "noisy", "restore_argmax"]


@DEFENCES.register(
    "gaussian-noise", help="Gaussian noise on the probabilities, renormalised",
    params=(Field("sigma", "float", 0.1, "standard deviation of the noise added to each probability",
                  minimum=0, maximum=10),
            Field("keep_argmax", "bool", False, "swap the top-1 class back where the noise changed it")),
    acts_on_labels=lambda p: not p["keep_argmax"] and p["sigma"] > 0,
    simulate=lambda probs, params, generator: noisy(probs, params, generator), draws=8, fresh_draws=True)
class GaussianNoise(Defence):
    def __init__(self, params: dict, context: DefenceContext) -> None:
        import torch

        super().__init__(params, context)
        self.generator = torch.Generator().manual_seed(context.seed)

    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        return noisy(probs, self.params, self.generator)


def noisy(probs: "torch.Tensor", params: dict, generator: "torch.Generator") -> "torch.Tensor":
    """`probs` with one draw of the noise (from the CPU `generator`), clipped and renormalised; differentiable in
    `probs`, so a thief who knows the defence can fit through it (`fmsteal.adversary.thieves`)."""
    import torch

    noise = torch.randn(probs.shape, generator=generator, dtype=probs.dtype).to(probs.device)
    perturbed = (probs + params["sigma"] * noise).clamp(min=0)
    sums = perturbed.sum(1, keepdim=True)
    perturbed = (perturbed / sums.clamp(min=1e-12)).where(sums > 0, probs)  # all mass clipped away: answer as is
    return restore_argmax(perturbed, probs) if params["keep_argmax"] else perturbed


def restore_argmax(perturbed: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
    """`perturbed` with, in each row whose top-1 differs from `probs`'s, the values of the two classes swapped."""
    original, new = probs.argmax(1, keepdim=True), perturbed.argmax(1, keepdim=True)
    out = perturbed.clone()
    out.scatter_(1, original, perturbed.gather(1, new))
    out.scatter_(1, new, perturbed.gather(1, original))
    return out
