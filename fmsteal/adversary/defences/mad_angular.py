"""`mad-angular`: fmsteal's variant of MAD (Orekondy et al., ICLR 2020), Maximizing Angular Deviation by the
angle itself. The authors' code picks its target by another rule (`mad`, `fmsteal.adversary.defences.mad`):
this variant's target may be any class, so it changes more top-1 answers at the same budget.

The defender perturbs each answer y to y~ with ||y~ - y||_1 <= epsilon so that the gradient the thief
takes on y~ points as far as possible from the one it would take on y. The gradient of a thief's
cross-entropy with respect to its last linear layer is (y - p) h^T, with p its current prediction and
h its penultimate features, so the angle between the two gradients is the angle between y~ - p and
y - p: h drops out, and the defender needs only its surrogate's prediction p (`DefenceContext.surrogate`,
e.g. `random_head_surrogate` on the victim's own backbone, as the paper's randomly initialised
surrogate; without one, p is uniform, the prediction of a fresh zero head).

The candidates are the K vertices e_k of the simplex, each approached from y as far as the budget
allows (y~ = (1 - a) y + a e_k, a = min(1, epsilon / ||e_k - y||_1)); the candidate whose angle is
largest is answered (the reference ranks the vertices before the step, by a norm the surrogate drops out
of). `keep_argmax` also caps a so that the victim's top-1 class stays on top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmsteal.adversary.defences.base import DEFENCES, Defence
from fmsteal.adversary.defences.mad import PARAMS, acts_on_labels, surrogate_predictions

if TYPE_CHECKING:
    import torch

__all__ = ["AngularMAD", "mad_perturb"]

ARGMAX_MARGIN = 0.99  # share of the largest argmax-preserving step taken, so the top-1 stays strictly ahead
CHUNK_ELEMENTS = 2**22  # rows are processed in chunks of at most this many n x K x K candidate entries


@DEFENCES.register(
    "mad-angular", help="fmsteal's variant of MAD: of the budget's steps toward each class, the one that turns "
                        "a surrogate thief's gradient most",
    params=PARAMS, acts_on_labels=acts_on_labels, surrogate=True)
class AngularMAD(Defence):
    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        predicted = surrogate_predictions(self.context, images, probs)
        return mad_perturb(probs, predicted, self.params["epsilon"], self.params["keep_argmax"])


def mad_perturb(probs: "torch.Tensor", surrogate: "torch.Tensor", epsilon: float, keep_argmax: bool) -> "torch.Tensor":
    """`probs` (n x K) moved within L1 `epsilon` to maximise the angle between y~ - p and y - p, p = `surrogate`."""
    import torch

    rows = max(1, CHUNK_ELEMENTS // probs.shape[1] ** 2)
    parts = [_perturb(y.double(), p.double(), epsilon, keep_argmax)
             for y, p in zip(probs.split(rows), surrogate.split(rows))]
    return torch.cat(parts).to(probs.dtype)


def _perturb(y: "torch.Tensor", p: "torch.Tensor", epsilon: float, keep_argmax: bool) -> "torch.Tensor":
    n, k = y.shape
    step = y.new_zeros(k, k).fill_diagonal_(1).unsqueeze(0) - y.unsqueeze(1)  # n x K x K: row j is e_j - y
    alpha = (epsilon / step.abs().sum(2).clamp(min=1e-12)).clamp(max=1)  # n x K, the budget's step toward e_j
    if keep_argmax:
        top = y.argmax(1, keepdim=True)
        gap = y.gather(1, top) - y  # e_j overtakes the top-1 class from a = gap / (1 + gap) on
        alpha = alpha.minimum((ARGMAX_MARGIN * gap / (1 + gap)).scatter(1, top, 1.0))
    candidates = y.unsqueeze(1) + alpha.unsqueeze(2) * step
    honest, moved = y - p, candidates - p.unsqueeze(1)
    cosine = (moved * honest.unsqueeze(1)).sum(2) / (moved.norm(dim=2) * honest.norm(dim=1, keepdim=True)).clamp(min=1e-12)
    best = cosine.argmin(1)
    return candidates.gather(1, best.view(n, 1, 1).expand(n, 1, k)).squeeze(1)
