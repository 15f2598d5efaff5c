"""The attack: choose query images, ask the victim, train a thief on its answers.

This module never imports the victim's implementation: it sees the victim only as a `VictimAPI`
(raw images in, `Answers` out), so every number it reports was reachable by a real attacker.
One run walks up a ladder of budgets (`curve_checkpoints`), spending queries incrementally and
retraining the thief at each rung, so it yields the whole agreement-vs-queries curve.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import torch
from torch import nn

from fmsteal.engine.augment import feature_transform, image_transform, view_features
from fmsteal.adversary.blackbox import Answers, VictimAPI
from fmsteal.adversary.budget import curve_checkpoints
from fmsteal.adversary.strategies import Selection, select
from fmsteal.engine.embed import Embedder
from fmsteal.engine.recipes import Recipe
from fmsteal.engine.train import fit, predict
from fmsteal.engine.zoo import BackboneSpec, load_backbone
from fmsteal.errors import QueryRefused

VALIDATION_EVERY = 10  # every 10th query is kept as the victim-labelled validation set (10%)


@dataclass
class Thief:
    """The attacker's model: a public pretrained backbone with a new head, LP or FFT."""

    spec: BackboneSpec
    mode: str
    image_size: int
    device: torch.device
    embedder: Embedder
    recipe: Recipe
    num_classes: int
    seed: int
    network: nn.Module | None = None

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The thief's logits for uint8 images."""
        if self.mode == "lp":
            return predict(self.network, self.embedder.features_of(images), feature_transform(self.device), self.device,
                           fp32=self.recipe.fp32)
        return predict(self.network, images, self._image_transform(False), self.device, fp32=self.recipe.fp32)

    def train(self, images: torch.Tensor, targets: torch.Tensor, validation: tuple[torch.Tensor, torch.Tensor] | None,
              label: str) -> Generator[dict, None, None]:
        """(Re)train on queried images: LP from a fresh head, FFT warm-started from the last rung."""
        torch.manual_seed(self.seed)
        if self.mode == "lp":
            network = nn.Linear(self.spec.feature_dim, self.num_classes)
            inputs = view_features(self.embedder, images, self.recipe, self.seed)
            transform = feature_transform(self.device)
            if validation is not None:
                validation = (self.embedder.features_of(validation[0]), validation[1])
        else:
            network = self.network or nn.Sequential(load_backbone(self.spec, self.image_size),
                                                    nn.Linear(self.spec.feature_dim, self.num_classes))
            inputs, transform = images, self._image_transform(True)
        self.network = yield from fit(network, inputs, targets, self.recipe, transform, self.device, self.seed,
                                      self.num_classes, validation, phase="steal", label=label)

    def _image_transform(self, train: bool):
        return image_transform(self.spec, self.image_size, self.device, self.recipe.augment and train,
                               self.recipe.rotate if train else 0.0)


def targets_from(answers: Answers, num_classes: int) -> torch.Tensor:
    """Training targets: class indices for labels, rank-weighted rows for top-k, probabilities otherwise."""
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


def steal(victim: VictimAPI, pool: torch.Tensor, thief: Thief, budget: int, strategy: str, seed: int,
          evaluate: Callable[[Thief], dict]) -> Generator[dict, None, None]:
    """Spend `budget` queries on images of `pool` (uint8), retraining and evaluating at each rung."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pool), generator=generator)
    chosen: list[int] = []
    answers: list[Answers] = []
    for rung in curve_checkpoints(budget):
        new = select(strategy, Selection(thief, pool, chosen, order, rung - len(chosen), generator))
        images = pool[new]
        try:
            answers.append(victim(images.float() / 255))
        except QueryRefused as refusal:  # a detector cut the thief off: it keeps what it has
            if not chosen:
                raise
            yield {"kind": "log", "level": "warning", "message": f"The victim stopped answering after "
                   f"{len(chosen):,} queries ({refusal}); the thief keeps the copy it has."}
            return
        chosen.extend(new)
        merged = Answers(*(torch.cat(parts) if parts[0] is not None else None
                           for parts in zip(*((a.labels, a.topk, a.probs) for a in answers))))
        targets = targets_from(merged, thief.num_classes)
        is_val = torch.arange(len(chosen)) % VALIDATION_EVERY == VALIDATION_EVERY - 1
        queried = pool[chosen]
        validation = (queried[is_val], merged.labels[is_val]) if is_val.any() else None
        yield from thief.train(queried[~is_val], targets[~is_val], validation,
                               label=f"Training the {thief.spec.label} thief on {len(chosen):,} answers")
        yield {"kind": "checkpoint", "queries": len(chosen), "queries_spent": len(chosen), **evaluate(thief)}
