"""`mad` against a small port of the authors' code (tribhuvanesh/prediction-poisoning, defenses/victim/bb_mad.py:
compute_jacobian_nll, oracle_extreme, oracle_argmax_preserving, its greedy approximation, the closed-form
linesearch), run per query on a small proxy network as theirs is; and `mad-angular`, fmsteal's variant, beside it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fmsteal.adversary.defences import DefenceContext, build_defence
from fmsteal.adversary.defences.mad import mad_reference
from fmsteal.adversary.defences.mad_angular import mad_perturb


# ---- the port: their functions, one query at a time ----

def jacobian_nll(x, proxy, k):
    z = proxy(x)
    nlls = -F.log_softmax(z, dim=1).mean(dim=0)
    weight = list(proxy.parameters())[-2]  # their w_idx = -2: the last linear layer's weight
    return torch.stack([torch.autograd.grad(nlls[i], weight, retain_graph=True)[0].flatten() for i in range(k)])


def surrogate_objective(ytilde, y, g):
    return (g.t() @ ytilde - g.t() @ y).norm() ** 2


def oracle_extreme(g, y):
    best_k, best = -1, -1.0
    for k in range(len(y)):
        yk = torch.zeros_like(y)
        yk[k] = 1.0
        value = surrogate_objective(yk, y, g)
        if value > best:
            best, best_k = value, k
    return F.one_hot(torch.tensor(best_k), len(y)).to(y)


def oracle_argmax_preserving(g, y):
    top, g_np, y_np = y.argmax(), g.numpy(), y.numpy()
    vertices = np.asarray(list(itertools.product([0, 1], repeat=len(y))), dtype=np.float32)
    best, ystar = -1.0, None
    for extreme in vertices[vertices[:, top] > 0]:
        extreme[top] += 1e-5
        extreme = extreme / extreme.sum()
        value = np.linalg.norm(g_np.T @ extreme - g_np.T @ y_np) ** 2
        if value > best:
            best, ystar = value, extreme
    return torch.tensor(ystar)


def oracle_argmax_greedy(g, y, max_iters=1024):
    k, top = len(y), y.argmax().item()
    y = (y + 1e-8) / (y + 1e-8).sum()
    fixed, best, ystar, tried = [top], -1.0, None, 0
    while tried < max_iters and len(fixed) < k:  # (theirs stops with an error when every class is in the set)
        base = torch.zeros(k)
        base[fixed] = 1.0
        candidates = sorted(set(range(k)) - set(fixed))
        batch = []
        for c in candidates:
            extreme = base.clone()
            extreme[c] = 1.0
            extreme[top] += 1e-5
            batch.append(extreme / extreme.sum())
        batch = torch.stack(batch).t()
        u = g.t() @ batch
        v = (g.t() @ y).unsqueeze(1)
        values = (u / u.norm(dim=0) - v / v.norm(dim=0)).norm(dim=0) ** 2
        i = values.argmax().item()
        if values[i] > best:
            best, ystar = values[i].item(), batch[:, i]
        fixed.append(candidates[i])
        tried += len(candidates)
    return ystar


def linesearch(y, ystar, epsilon):
    alpha = (epsilon / ((y - ystar).norm(p=1) + 1e-7)).clamp(min=0.0, max=1.0)
    return (1 - alpha) * y + alpha * ystar


def reference_mad(x, y, proxy, epsilon, keep_argmax):
    g = jacobian_nll(x, proxy, len(y))
    if not keep_argmax:
        ystar = oracle_extreme(g, y)
    elif len(y) <= 10:
        ystar = oracle_argmax_preserving(g, y)
    else:
        ystar = oracle_argmax_greedy(g, y)
    return linesearch(y, ystar, epsilon)


# ---- the checks ----

def queries(k: int, n: int = 40, seed: int = 0):
    """n fixed inputs, a small proxy network (their model_adv_proxy), and n victim probability vectors."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    proxy = nn.Sequential(nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, k))
    x = torch.randn(n, 16, generator=generator)
    y = torch.distributions.Dirichlet(torch.full((k,), 0.4)).sample((n,))
    return proxy, x, y


@pytest.mark.parametrize("k, keep_argmax", [(10, False), (10, True), (15, True), (15, False)])
@pytest.mark.parametrize("epsilon", [0.1, 0.5, 1.2])
def test_mad_answers_as_the_authors_code_does(k, keep_argmax, epsilon):
    proxy, x, y = queries(k)
    expected = torch.stack([reference_mad(x[i:i + 1], y[i], proxy, epsilon, keep_argmax) for i in range(len(y))])
    with torch.no_grad():
        predicted = proxy(x).softmax(1)
    surrogate = (lambda images: predicted)
    answered = build_defence("mad", {"epsilon": epsilon, "keep_argmax": keep_argmax},
                             DefenceContext(k, 0, surrogate=surrogate)).answer(x, y)
    assert torch.allclose(answered, expected.detach(), atol=1e-5)
    if keep_argmax:
        assert torch.equal(answered.argmax(1), y.argmax(1))


def test_the_reference_target_does_not_depend_on_the_surrogate_for_ten_classes():
    _, _, y = queries(10)
    assert torch.equal(mad_reference(y, 0.5, True, torch.full_like(y, 0.1)), mad_reference(y, 0.5, True, y.flip(1)))


def test_the_angular_variant_is_its_own_entry_and_changes_more_top1_answers():
    _, _, y = queries(10, n=2000, seed=3)
    uniform = torch.full_like(y, 0.1)
    reference, angular = mad_reference(y, 0.5, False), mad_perturb(y, uniform, 0.5, False)
    flipped = [(answer.argmax(1) != y.argmax(1)).float().mean().item() for answer in (reference, angular)]
    assert flipped[0] < flipped[1]
    assert torch.allclose(build_defence("mad-angular", {"epsilon": 0.5}, DefenceContext(10, 0)).answer(y, y), angular)


@pytest.mark.parametrize("concentration", [0.3, 0.1])
@pytest.mark.parametrize("epsilon", [0.1, 0.5, 1.0, 1.5])
def test_a_thief_who_knows_mad_recovers_the_victims_probabilities(concentration, epsilon):
    from fmsteal.adversary.defences import plan_defence
    from fmsteal.adversary.outputs import Answers
    from fmsteal.adversary.thieves import THIEVES, applicable

    torch.manual_seed(1)
    y = torch.distributions.Dirichlet(torch.full((10,), concentration)).sample((2000,))
    answered = mad_reference(y, epsilon, False)
    plan = plan_defence("mad", {"epsilon": epsilon}, "probs")
    targets = THIEVES.get("invert").fn(Answers(labels=answered.argmax(1), probs=answered), 10, plan)
    recovered = ((targets - y).abs().max(1).values < 1e-4).double().mean()
    assert recovered > 0.95 and (targets - y).abs().sum(1).mean() < (answered - y).abs().sum(1).mean() / 20
    assert not applicable("invert", plan_defence("mad", {"epsilon": epsilon, "keep_argmax": True}, "probs"))
    assert not applicable("invert", plan_defence("mad", {"epsilon": epsilon}, "label"))
