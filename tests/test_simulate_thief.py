"""The thief who knows a defence's rule and fits through it (`simulate`): its model of the defence is the defence, it
applies where a rule is registered, and it learns what reverse sigmoid hides (a real defended run trains it:
test_defended_run)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fmsteal.adversary.defences import DEFENCES
from fmsteal.adversary.defences.base import DefenceContext, build_defence, plan_defence
from fmsteal.adversary.thieves import applicable, simulated_cross_entropy, trained_apart
from fmsteal.engine.recipes import Recipe
from fmsteal.engine.train import fit, soft_cross_entropy


FULL_BATCH = Recipe("adamw", 0.05, 0.9, 0.0, 1000, 60, "constant", augment=False)  # near convergence on 1,000 rows


def _probabilities(rows: int, scale: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(rows, 10, generator=generator)).softmax(1)


@pytest.mark.parametrize("name, params", [
    ("reverse-sigmoid", {}), ("reverse-sigmoid", {"beta": 1.0, "gamma": 0.3}),
    ("gaussian-noise", {"sigma": 0.3}), ("gaussian-noise", {"sigma": 0.3, "keep_argmax": True}),
])
def test_the_thiefs_simulation_answers_as_the_defence_does(name, params):
    """Given the draws the API made (the same seed), the registered simulation gives the API's answers exactly."""
    plan = plan_defence(name, params, "probs")
    probs = _probabilities(500, 3.0)
    defence = build_defence(name, plan.params, DefenceContext(num_classes=10, seed=7))
    answered = defence.answer(torch.zeros(500, 3, 8, 8), probs)
    simulated = DEFENCES.get(name).meta["simulate"](probs, plan.params, torch.Generator().manual_seed(7))
    assert torch.equal(simulated, answered) and not torch.equal(answered, probs)


def test_the_simulate_thief_applies_only_to_probability_answers_of_a_rule_it_knows():
    assert applicable("simulate", plan_defence("reverse-sigmoid", {}, "probs"))
    assert "simulate" in trained_apart(plan_defence("gaussian-noise", {"sigma": 0.1}, "probs"))
    assert not applicable("simulate", plan_defence("reverse-sigmoid", {}, "label"))
    assert not applicable("simulate", plan_defence("mad", {"epsilon": 0.5}, "probs"))  # no rule registered
    assert not applicable("simulate", plan_defence("rounding", {"decimals": 1}, "probs"))  # answers rounded
    with pytest.raises(ValueError, match="registers `simulate`"):
        simulated_cross_entropy(plan_defence("mad", {"epsilon": 0.5}, "probs"), seed=0)


def _student_agreement(features: torch.Tensor, targets: torch.Tensor, loss, test: torch.Tensor,
                       teacher: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = yield_result(fit(nn.Linear(features.shape[1], 10), features, targets, FULL_BATCH,
                             lambda x, train: x, torch.device("cpu"), 0, 10, loss=loss))
    with torch.no_grad():
        return (model(test).argmax(1) == teacher).float().mean().item()


def yield_result(generator):
    """The value a generator returns, its events dropped."""
    try:
        while True:
            next(generator)
    except StopIteration as stop:
        return stop.value


def test_fitting_through_reverse_sigmoid_learns_what_the_flattened_answers_hide():
    """A linear teacher's unconfident answers through reverse sigmoid (beta 1): distilling them copies the teacher
    worse than its bare labels do, while fitting through the rule recovers nearly all of it."""
    generator = torch.Generator().manual_seed(1)
    weights = 0.5 * torch.randn(32, 10, generator=generator)
    features, test = torch.randn(1000, 32, generator=generator), torch.randn(4000, 32, generator=generator)
    teacher = (test @ weights).argmax(1)
    plan = plan_defence("reverse-sigmoid", {"beta": 1.0}, "probs")
    answers = DEFENCES.get(plan.name).meta["simulate"]((features @ weights).softmax(1), plan.params, None)
    distilled = _student_agreement(features, answers, soft_cross_entropy, test, teacher)
    labelled = _student_agreement(features, answers.argmax(1), soft_cross_entropy, test, teacher)
    simulated = _student_agreement(features, answers, simulated_cross_entropy(plan, seed=0), test, teacher)
    assert simulated > max(distilled, labelled) + 0.05 and simulated > 0.95

