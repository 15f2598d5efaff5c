"""Fidelity beyond top-1 agreement: the definitions on hand-made answers, and the evaluation on real CIFAR-10."""

from __future__ import annotations

import json
import math

import torch
from evaluation_fixtures import drain, lp_context  # noqa: F401

from fmsteal.engine.data import ImageSet
from fmsteal.evaluation.fidelity import kl_divergence, topk_agreement, topk_overlap
from fmsteal.evaluation.metrics import agreement
from fmsteal.evaluation.registry import EVALUATIONS, EvaluationContext


def run_fidelity(ctx, **params):
    entry = EVALUATIONS.get("fidelity")
    return drain(entry.fn(ctx, entry.validate(params)))


def answers_context(victim_probs, thief_probs, labels, output="label") -> EvaluationContext:
    """A context of given answers only (fidelity reads no model)."""
    images = torch.zeros(len(labels), 3, 2, 2, dtype=torch.uint8)
    return EvaluationContext(test=ImageSet(images, labels, ["a", "b", "c", "d"]), victim=None, thief=None,
                             victim_test=victim_probs.argmax(1), thief_test=thief_probs.argmax(1),
                             victim_probs=victim_probs, thief_probs=thief_probs, pool=None, output=output,
                             queries_spent=0, num_classes=4, device=torch.device("cpu"), seed=0)


def test_definitions_on_hand_made_answers():
    victim = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.1, 0.6, 0.3, 0.0], [0.5, 0.1, 0.0, 0.4], [0.0, 0.1, 0.2, 0.7]])
    thief = torch.tensor([[0.6, 0.3, 0.1, 0.0], [0.2, 0.1, 0.6, 0.1], [0.1, 0.2, 0.0, 0.7], [0.0, 0.05, 0.15, 0.8]])
    labels = torch.tensor([0, 2, 3, 3])  # the victim errs on images 1 and 2
    result = run_fidelity(answers_context(victim, thief, labels), k=2)
    assert result["victim_mistakes"] == 2
    assert result["mistake_agreement"] == 0.0  # on its mistakes the thief never repeats the victim's class...
    assert result["thief_right_on_mistakes"] == 1.0  # ...it gives the true one
    assert result["agreement_on_correct"] == 1.0
    assert result["top1_agreement"] == 0.5
    assert result["topk_agreement"] == 1.0  # each thief top-1 is in the victim's top-2
    assert result["topk_overlap"] == (1 + 0.5 + 0.5 + 1) / 4  # top-2 sets {0,1}|{0,1}, {1,2}|{2,0}, {0,3}|{3,1}, {3,2}|{3,2}
    assert result["victim_answers_probabilities"] is False
    assert run_fidelity(answers_context(victim, thief, labels, output="rounded"))["victim_answers_probabilities"]


def test_kl_divergence_values():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    assert kl_divergence(p, p) == 0.0
    q = torch.tensor([[0.25, 0.75], [0.9, 0.1]])
    expected = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)) / 2
    assert math.isclose(kl_divergence(p, q), expected, rel_tol=1e-9)
    assert math.isfinite(kl_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])))


def test_topk_with_k_one_is_top1_agreement():
    victim, thief = torch.rand(50, 10), torch.rand(50, 10)
    assert topk_agreement(victim, thief.argmax(1), 1) == agreement(thief.argmax(1), victim.argmax(1))
    assert topk_overlap(victim, thief, 1) == agreement(thief.argmax(1), victim.argmax(1))
    assert topk_agreement(victim, thief.argmax(1), 10) == topk_overlap(victim, thief, 10) == 1.0


def test_fidelity_on_real_cifar(lp_context):
    result = run_fidelity(lp_context)
    json.dumps(result)
    assert result["top1_agreement"] == agreement(lp_context.thief_test, lp_context.victim_test)
    assert result["top1_agreement"] <= result["topk_agreement"] <= 1
    assert result["victim_mistakes"] == int((lp_context.victim_test != lp_context.test.labels).sum())
    assert 0 <= result["mistake_agreement"] <= 1 and 0 <= result["thief_right_on_mistakes"] <= 1
    assert result["mistake_agreement"] + result["thief_right_on_mistakes"] <= 1
    assert 0 <= result["topk_overlap"] <= 1 and result["kl_victim_thief"] >= 0
