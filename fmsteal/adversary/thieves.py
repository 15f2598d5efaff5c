"""What a thief learns from the answers it bought: one registered rule per kind of thief.

Each is `fn(answers, num_classes, defence) -> targets`, `defence` the API's `DefencePlan` (None undefended):
the thief knows the mechanism it faces, as Kerckhoffs would have it. `distil` (the default) learns each answer
as given: probabilities, ranked top-k or labels. `argmax` learns only each answer's top class, as an attacker
does who expects the probabilities to be poisoned: a defence that perturbs probabilities but keeps their argmax
(MAD, reverse sigmoid or noise with keep_argmax) teaches it exactly what the undefended API would. `invert`
undoes a defence that registers an inverse (`invert` in its registry entry, e.g. MAD without keep_argmax) and
distils what it recovers (and validates against the labels it recovers, `recovers`); `simulate` fits its model
through the defence's own rule (`simulate` in its registry entry, e.g. reverse sigmoid, or Gaussian noise averaged
over `draws` draws): a thief's `loss(defence, seed)`, where it has one, replaces the soft cross-entropy it trains
with. `applies(defence)` says whether a thief has anything of its own to learn. A defended run trains every thief
that applies on the same answers and reports the strongest (the defender's worst case). Importing this module
imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fmsteal.registry import Registry

if TYPE_CHECKING:
    import torch

    from fmsteal.adversary.defences.base import DefencePlan
    from fmsteal.adversary.outputs import Answers

__all__ = ["THIEVES", "TargetsFn", "applicable", "simulated_cross_entropy", "targets_from", "trained_apart"]

TargetsFn = Callable[["Answers", int, "DefencePlan | None"], "torch.Tensor"]

THIEVES: Registry[TargetsFn] = Registry("thief")


def _inverse(defence: "DefencePlan | None"):
    """The registered inverse of `defence` with its parameters, or None where it has none."""
    from fmsteal.adversary.defences import DEFENCES

    if defence is None or defence.output not in ("probs", "rounded"):
        return None
    entry = DEFENCES.get(defence.name)
    invertible = entry.meta.get("invertible", lambda params: False)
    return entry.meta["invert"] if invertible(defence.params) else None


def _simulator(defence: "DefencePlan | None"):
    """The registry entry of `defence` when it registers a differentiable `simulate` of its probability answers."""
    from fmsteal.adversary.defences import DEFENCES

    if defence is None or defence.output != "probs":
        return None
    entry = DEFENCES.get(defence.name)
    return entry if "simulate" in entry.meta else None


def applicable(name: str, defence: "DefencePlan | None") -> bool:
    """Whether thief `name` learns anything of its own from answers of an API with `defence`."""
    return THIEVES.get(name).meta.get("applies", lambda plan: True)(defence)


def trained_apart(defence: "DefencePlan") -> list[str]:
    """The thieves besides the default one that train a copy of their own on a defended API's answers: those that
    apply, unless the API answers labels (then each learns the labels the default one does)."""
    if defence.output == "label":
        return []
    return [name for name in THIEVES.names() if name != "distil" and applicable(name, defence)]


@THIEVES.register("distil", help="learns each answer as given: probabilities, ranked top-k or labels (the default)")
def targets_from(answers: "Answers", num_classes: int, defence: "DefencePlan | None" = None) -> "torch.Tensor":
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
def argmax_targets(answers: "Answers", num_classes: int, defence: "DefencePlan | None" = None) -> "torch.Tensor":
    """Class indices: the top-1 class of every answer, whatever else it carried."""
    return answers.labels


@THIEVES.register("invert", help="undoes a defence it knows to be invertible (e.g. MAD without keep_argmax), then "
                                 "distils the probabilities it recovers",
                  applies=lambda defence: _inverse(defence) is not None, recovers=True)
def inverted_targets(answers: "Answers", num_classes: int, defence: "DefencePlan | None" = None) -> "torch.Tensor":
    """The victim's probabilities as the defence's inverse recovers them from each answer."""
    from dataclasses import replace

    inverse = _inverse(defence)
    if inverse is None or answers.probs is None:
        raise ValueError(f"The invert thief needs probability answers of an invertible defence; got {defence}.")
    return targets_from(replace(answers, probs=inverse(answers.probs, defence.params)), num_classes)


def simulated_cross_entropy(defence: "DefencePlan",
                            seed: int) -> Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]:
    """The loss of a thief who knows `defence`'s rule: the cross-entropy of the bought answers against the model's
    probabilities passed through the rule (for a random rule, the mean answer over its registered `draws`, seeded),
    so the model learns the probabilities the defence was given, not the ones it answered."""
    import torch

    entry = _simulator(defence)
    if entry is None:
        raise ValueError(f"The simulate thief needs probability answers of a defence that registers `simulate`; "
                         f"got {defence}.")
    simulate, draws = entry.meta["simulate"], entry.meta.get("draws", 1)
    generator = torch.Generator().manual_seed(seed)

    def loss(logits: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        probs = logits.softmax(1)
        answered = sum(simulate(probs, defence.params, generator) for _ in range(draws)) / draws
        return -(targets * answered.clamp(min=1e-12).log()).sum(1).mean()

    return loss


@THIEVES.register("simulate", help="knows the defence's rule (reverse sigmoid, Gaussian noise) and fits a model whose "
                                   "answers, passed through it, match those it bought",
                  applies=lambda defence: _simulator(defence) is not None, loss=simulated_cross_entropy)
def simulated_targets(answers: "Answers", num_classes: int, defence: "DefencePlan | None" = None) -> "torch.Tensor":
    """The answers as given: the loss, not the targets, undoes the defence."""
    return targets_from(answers, num_classes, defence)
