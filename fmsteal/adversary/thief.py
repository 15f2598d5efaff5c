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
from fmsteal.adversary.thieves import THIEVES
from fmsteal.engine.embed import Embedder
from fmsteal.engine.recipes import Recipe
from fmsteal.engine.train import fit, predict, soft_cross_entropy
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
    bought: tuple[torch.Tensor, Answers] | None = None  # the queried pool images and their answers (set by `steal`)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The thief's logits for uint8 images."""
        if self.mode == "lp":
            return predict(self.network, self.embedder.features_of(images), feature_transform(self.device), self.device,
                           fp32=self.recipe.fp32)
        return predict(self.network, images, self._image_transform(False), self.device, fp32=self.recipe.fp32)

    def train(self, images: torch.Tensor, targets: torch.Tensor, validation: tuple[torch.Tensor, torch.Tensor] | None,
              label: str, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = soft_cross_entropy
              ) -> Generator[dict, None, None]:
        """(Re)train on queried images to minimise `loss`: LP from a fresh head, FFT warm-started from the last rung."""
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
                                      self.num_classes, validation, phase="steal", label=label, loss=loss)

    def learn(self, images: torch.Tensor, answers: Answers, learns: str = "distil",
              defence=None) -> Generator[dict, None, None]:
        """Train on bought answers as the registered thief `learns` reads them (knowing the API's `defence`, a
        `DefencePlan`), every 10th kept for validation (against the labels it recovers, for a thief that undoes
        a defence; else the answers' top classes)."""
        entry = THIEVES.get(learns)
        targets = entry.fn(answers, self.num_classes, defence)
        labels = targets.argmax(1) if entry.meta.get("recovers") else answers.labels
        is_val = torch.arange(len(images)) % VALIDATION_EVERY == VALIDATION_EVERY - 1
        validation = (images[is_val], labels[is_val]) if is_val.any() else None
        self.bought = (images, answers)
        how = "" if learns == "distil" else f" ({learns})"
        loss = entry.meta["loss"](defence, self.seed) if "loss" in entry.meta else soft_cross_entropy
        yield from self.train(images[~is_val], targets[~is_val], validation,
                              label=f"Training the {self.spec.label} thief{how} on {len(images):,} answers", loss=loss)

    def _image_transform(self, train: bool):
        return image_transform(self.spec, self.image_size, self.device, self.recipe.augment and train,
                               self.recipe.rotate if train else 0.0)


def random_order(pool_size: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """The seeded permutation of the pool `steal` draws random queries from (the "random" strategy sends its
    first `budget` images), and the generator the other strategies go on with."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(pool_size, generator=generator), generator


def steal(victim: VictimAPI, pool: torch.Tensor, thief: Thief, budget: int, strategy: str, seed: int,
          evaluate: Callable[[Thief], dict]) -> Generator[dict, None, None]:
    """Spend `budget` queries on images of `pool` (uint8), retraining and evaluating at each rung."""
    order, generator = random_order(len(pool), seed)
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
        yield from thief.learn(pool[chosen], merged)
        yield {"kind": "checkpoint", "queries": len(chosen), "queries_spent": len(chosen), **evaluate(thief)}
