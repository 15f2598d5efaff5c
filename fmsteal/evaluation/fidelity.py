"""Fidelity beyond top-1 agreement: does the copy reproduce the victim's errors, its ranking, its confidence?

Definitions (all on the test set, fractions in [0, 1]):
- `mistake_agreement`: on the images the victim gets wrong, the share where the thief gives the
  same wrong class; `thief_right_on_mistakes`: the share where the thief gives the true class.
- `topk_agreement`: the thief's top-1 is among the victim's top-k classes.
- `topk_overlap`: |victim top-k ∩ thief top-k| / k, averaged over images.
- `kl_victim_thief`: mean KL(victim || thief) of the full softmax outputs, in nats. It is the
  experimenter's view and always computed, whatever the attack's output mode; `victim_answers_probabilities`
  says whether the thief could have seen probabilities at all.
"""

from __future__ import annotations

from collections.abc import Generator

import torch

from fmsteal.evaluation.metrics import agreement
from fmsteal.evaluation.registry import EVALUATIONS, EvaluationContext
from fmsteal.fields import Field

__all__ = ["fidelity", "kl_divergence", "topk_agreement", "topk_overlap"]

PARAMS = (Field("k", "int", 3, "how many of the victim's best classes count for top-k agreement",
                label="Top-k", minimum=1, maximum=100),)


@EVALUATIONS.register("fidelity", help="Agreement on the victim's mistakes, top-k agreement and KL(victim || thief)",
                      params=PARAMS, default_on=True, label="Fidelity",
                      columns=lambda result: {key: result[key] for key in ("mistake_agreement", "topk_agreement",
                                                                           "kl_victim_thief")})
def fidelity(ctx: EvaluationContext, params: dict) -> Generator[dict, None, dict]:
    """The fidelity figures defined in the module docstring."""
    k = min(params["k"], ctx.num_classes)
    victim, thief, labels = ctx.victim_test, ctx.thief_test, ctx.test.labels
    wrong = victim != labels
    mistakes = int(wrong.sum())
    result = {
        "k": k,
        "top1_agreement": agreement(thief, victim),
        "agreement_on_correct": agreement(thief[~wrong], victim[~wrong]) if mistakes < len(labels) else None,
        "victim_mistakes": mistakes,
        "mistake_agreement": agreement(thief[wrong], victim[wrong]) if mistakes else None,
        "thief_right_on_mistakes": agreement(thief[wrong], labels[wrong]) if mistakes else None,
        "topk_agreement": topk_agreement(ctx.victim_probs, thief, k),
        "topk_overlap": topk_overlap(ctx.victim_probs, ctx.thief_probs, k),
        "kl_victim_thief": kl_divergence(ctx.victim_probs, ctx.thief_probs),
        "victim_answers_probabilities": ctx.output in ("probs", "rounded"),
    }
    yield {"kind": "progress", "phase": "evaluate", "done": 1, "total": 1, "message": "Fidelity beyond top-1 agreement"}
    return result


def topk_agreement(victim_probs: torch.Tensor, thief_top1: torch.Tensor, k: int) -> float:
    """Share of images whose thief top-1 is among the victim's `k` most probable classes."""
    top = victim_probs.topk(k, dim=1).indices
    return (top == thief_top1[:, None]).any(1).double().mean().item()


def topk_overlap(victim_probs: torch.Tensor, thief_probs: torch.Tensor, k: int) -> float:
    """Mean share of the victim's top-k classes that are also in the thief's top-k."""
    victim_top = victim_probs.topk(k, dim=1).indices
    thief_top = thief_probs.topk(k, dim=1).indices
    shared = (victim_top[:, :, None] == thief_top[:, None, :]).any(2).sum(1)
    return (shared.double() / k).mean().item()


def kl_divergence(p: torch.Tensor, q: torch.Tensor, floor: float = 1e-12) -> float:
    """Mean over rows of KL(p || q) in nats; probabilities below `floor` are lifted to it."""
    p, q = p.double().clamp(min=floor), q.double().clamp(min=floor)
    p, q = p / p.sum(1, keepdim=True), q / q.sum(1, keepdim=True)
    return (p * (p.log() - q.log())).sum(1).mean().item()
