"""What a thief learns from the answers it bought: one registered rule per kind of thief.

`distil` (the default) learns each answer as given: probabilities, ranked top-k or labels. `argmax` learns
only each answer's top class, as an attacker does who expects the probabilities to be poisoned: a defence
that perturbs probabilities but keeps their argmax (MAD, reverse sigmoid or noise with keep_argmax) teaches
it exactly what the undefended API would. A defended run trains both on the same answers and reports the
stronger (the defender's worst case). Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fmsteal.registry import Registry

if TYPE_CHECKING:
    import torch

    from fmsteal.adversary.outputs import Answers

__all__ = ["THIEVES", "TargetsFn", "targets_from"]

TargetsFn = Callable[["Answers", int], "torch.Tensor"]

THIEVES: Registry[TargetsFn] = Registry("thief")


@THIEVES.register("distil", help="learns each answer as given: probabilities, ranked top-k or labels (the default)")
def targets_from(answers: "Answers", num_classes: int) -> "torch.Tensor":
    """Training targets: class indices for labels, rank-weighted rows for top-k, probabilities otherwise."""
    import torch
    from torch import nn

    if answers.probs is not None:
        probs = answers.probs.clamp(min=0)
        sums = probs.sum(1, keepdim=True)
        one_hot = nn.functional.one_hot(answers.labels, num_classes).float()
        return torch.where(sums > 0, probs / sums.clamp(min=1e-12), one_hot)
    if answers.topk is not None:
        weights = 1.0 / torch.arange(1, answers.topk.shape[1] + 1, dtype=torch.float)
        rows = torch.zeros(len(answers.topk), num_classes)
        rows.scatter_(1, answers.topk, (weights / weights.sum()).expand_as(answers.topk).contiguous())
        return rows
    return answers.labels


@THIEVES.register("argmax", help="learns only each answer's top class, ignoring probabilities a defence may poison")
def argmax_targets(answers: "Answers", num_classes: int) -> "torch.Tensor":
    """Class indices: the top-1 class of every answer, whatever else it carried."""
    return answers.labels
