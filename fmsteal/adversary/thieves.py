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
with. `repeat` buys answers of its own from an API that draws each answer anew (`fresh_draws` in the defence's
entry, e.g. Gaussian noise): the same budget spent on a `repeats`-th as many images, each asked `repeats` times,
and the mean answer distilled (`mean_answers`). `applies(defence)` says whether a thief has anything of its own to
learn. A defended run trains every thief that applies (on the default thief's answers, or, with `repeats`, on the
first of its images asked again) and reports the strongest (the defender's worst case). Importing this module
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

__all__ = ["REPEATS", "THIEVES", "TargetsFn", "applicable", "mean_answers", "repeats", "simulated_cross_entropy",
           "targets_from", "trained_apart"]

TargetsFn = Callable[["Answers", int, "DefencePlan | None"], "torch.Tensor"]

THIEVES: Registry[TargetsFn] = Registry("thief")
REPEATS = 4  # asks per image of the repeat thief: a Gaussian noise's sd halves, at a quarter of the images


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


def _fresh(defence: "DefencePlan | None") -> bool:
    """Whether asking `defence`'s API again gives another draw (a plan for label answers is one whose draws can
    change the label: `plan_defence` refuses the others)."""
    from fmsteal.adversary.defences import DEFENCES

    return defence is not None and bool(DEFENCES.get(defence.name).meta.get("fresh_draws"))


def applicable(name: str, defence: "DefencePlan | None") -> bool:
    """Whether thief `name` learns anything of its own from answers of an API with `defence`."""
    return THIEVES.get(name).meta.get("applies", lambda plan: True)(defence)


def repeats(name: str) -> int | None:
    """How many times thief `name` asks each image, buying answers of its own (`repeats` in its entry); None for a
    thief that learns from the default thief's answers."""
    return THIEVES.get(name).meta.get("repeats")


def trained_apart(defence: "DefencePlan") -> list[str]:
    """The thieves besides the default one that train a copy of their own on a defended API's answers: those that
    apply, unless the API answers labels (then each learns the labels the default one does) and they buy no answers
    of their own."""
    return [name for name in THIEVES.names() if name != "distil" and applicable(name, defence)
            and (defence.output != "label" or repeats(name))]


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


# Learns the answers as given (`targets_from`): its loss, not its targets, undoes the defence.
THIEVES.register("simulate", help="knows the defence's rule (reverse sigmoid, Gaussian noise) and fits a model whose "
                                  "answers, passed through it, match those it bought",
                 applies=lambda defence: _simulator(defence) is not None, loss=simulated_cross_entropy)(targets_from)


def mean_answers(answers: "Answers", asks: int, num_classes: int) -> "Answers":
    """One answer per image from `asks` answers to each (image i answered in rows i, i + n, ...): the mean of
    the rows `distil` learns (probabilities, rank-weighted top-k, one-hot labels: then the share of asks naming
    each class), as probabilities with their top class as the label."""
    from torch import nn

    from fmsteal.adversary.outputs import Answers

    rows = targets_from(answers, num_classes)
    rows = nn.functional.one_hot(rows, num_classes).float() if rows.ndim == 1 else rows
    mean = rows.view(asks, -1, num_classes).mean(0)
    return Answers(labels=mean.argmax(1), topk=None, probs=mean)


# Learns the answers as given (`targets_from`): they are already means over repeated asks (`mean_answers`).
THIEVES.register("repeat", help=f"asks each image {REPEATS} times of an API that draws every answer anew (Gaussian "
                                "noise) and distils the mean answer: the same budget on fewer images",
                 applies=_fresh, repeats=REPEATS)(targets_from)

