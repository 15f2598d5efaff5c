"""Query strategies: which pool images the thief sends next, as a registry.

A strategy is `fn(selection) -> list[int]` returning `selection.count` new pool indices; register
one with `@STRATEGIES.register("name", help=..., cost=...)` and it appears in the CLI, the app, the
sweep and the estimate. `cost(pricing)` is the seconds it spends looking at the pool before a rung,
priced with `fmsteal.experiment.pricing.Pricing` (the plan is `pricing.plan`).
This module imports torch only inside the strategies, so configurations validate without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fmsteal.registry import Registry

if TYPE_CHECKING:
    import torch

    from fmsteal.attack.thief import Thief

__all__ = ["STRATEGIES", "Selection", "select"]

KCENTER_DIMS = 128
KCENTER_CHUNK = 4096  # pool rows per distance block: memory stays O(chunk x chosen), not O(pool x chosen)


@dataclass
class Selection:
    """What a strategy may look at: the thief as it is now, the pool, what was already queried."""

    thief: "Thief"
    pool: "torch.Tensor"  # uint8 images
    chosen: list[int]
    order: "torch.Tensor"  # a seeded permutation of the pool (the random order)
    count: int
    generator: "torch.Generator"

    def untaken(self) -> "torch.Tensor":
        import torch

        taken = torch.zeros(len(self.pool), dtype=torch.bool)
        taken[self.chosen] = True
        return torch.nonzero(~taken).flatten()


STRATEGIES: Registry[Callable[[Selection], list[int]]] = Registry("query strategy")


@STRATEGIES.register("random", help="uniformly random pool images (the paper's default)", cost=lambda p: 0.0)
def random_order(selection: Selection) -> list[int]:
    taken = set(selection.chosen)
    return [i for i in selection.order.tolist() if i not in taken][:selection.count]


def _thief_pass_over_pool(p) -> float:
    """The thief's predictions on the whole pool: cached features for an LP thief, a forward pass otherwise."""
    plan = p.plan
    if plan.config.thief_mode == "lp":
        return p.hashing(plan.n_pool)
    return p.forward(plan.config.thief, plan.thief_size, plan.n_pool)


@STRATEGIES.register("entropy", help="the images the current thief is least sure about", cost=_thief_pass_over_pool)
def entropy(selection: Selection) -> list[int]:
    candidates = selection.untaken()
    probs = selection.thief.logits(selection.pool[candidates]).softmax(1)
    scores = -(probs * probs.clamp(min=1e-12).log()).sum(1)
    return candidates[scores.topk(selection.count).indices].tolist()


@STRATEGIES.register("kcenter", help="greedy k-center: images farthest from everything queried, in thief features",
                     cost=lambda p: p.hashing(p.plan.n_pool))
def k_center(selection: Selection) -> list[int]:
    import math

    import torch

    features = selection.thief.embedder.features_of(selection.pool)
    dims = min(KCENTER_DIMS, features.shape[1])
    projection = torch.randn(features.shape[1], dims, generator=selection.generator) / math.sqrt(dims)
    points = features @ projection
    anchors = points[selection.chosen]
    distance = torch.cat([torch.cdist(points[start:start + KCENTER_CHUNK], anchors).min(1).values
                          for start in range(0, len(points), KCENTER_CHUNK)])
    picked = []
    for _ in range(selection.count):
        index = int(distance.argmax())
        picked.append(index)
        distance = torch.minimum(distance, (points - points[index]).norm(dim=1))
    return picked


def select(strategy: str, selection: Selection) -> list[int]:
    """`selection.count` new pool indices by `strategy`; random until the thief has been trained once."""
    name = strategy if selection.thief.network is not None else "random"
    return STRATEGIES.get(name).fn(selection)
