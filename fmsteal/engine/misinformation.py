"""The misinformation function of adaptive misinformation (Kariyappa & Qureshi, CVPR 2020), trained as the authors'
code trains it (sanjaykariyappa/adaptive_misinformation, `admis/utils/model.py`, `train_step`): beside the victim,
on the victim's training images and true labels, with the same optimiser and epochs, to minimise the cross-entropy of
log(1 - softmax(f^(x)) + 1e-7), so that it puts little mass on the correct class.

Their f^ has the victim's architecture. For a linear-probe victim that is what fmsteal trains: a linear head on the
same frozen features. For a fine-tuned victim fmsteal trains a linear head on the victim's own trained body (a second
whole network would double the victim's training). They also expose the victim to an outlier dataset while training
(outlier exposure); fmsteal's victims are trained without one. The head is cached like a victim.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import torch
import torch.nn.functional as F
from torch import nn

from fmsteal.engine.augment import feature_transform, view_features
from fmsteal.engine.cache import atomic_save, keyed_file, load_or_none
from fmsteal.engine.data import ImageSet
from fmsteal.engine.recipes import Recipe
from fmsteal.engine.train import fit, predict
from fmsteal.engine.victim import TrainedVictim

__all__ = ["COMPLEMENT_EPS", "complement_cross_entropy", "train_misinformation"]

COMPLEMENT_EPS = 1e-7  # the reference's constant inside log(1 - p + eps)


def complement_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference's misinformation loss: cross-entropy of log(1 - softmax(logits) + 1e-7) against `labels`."""
    return F.cross_entropy(torch.log(1 - logits.softmax(1) + COMPLEMENT_EPS), labels)


def train_misinformation(victim: TrainedVictim, train: ImageSet, recipe: Recipe,
                         seed: int) -> Generator[dict, None, Callable[[torch.Tensor], torch.Tensor]]:
    """Train (or load from the cache) the misinformation head for `victim` on its training set `train` with
    `recipe` (a linear probe's); returns images -> its softmax probabilities."""
    num_classes, device = len(train.class_names), victim.device
    key = {"misinformation_for": victim.cache_file.stem if victim.cache_file else None, "data": train.fingerprint,
           "recipe": recipe.to_dict(), "seed": seed}
    file = keyed_file("victims", key, ".pt", prefix="misinformation-")
    torch.manual_seed(seed)
    head = nn.Linear(victim.spec.feature_dim, num_classes)
    stored = load_or_none(file) if victim.cache_file else None
    if stored is not None and stored.get("key") == key:
        head.load_state_dict(stored["state"])
        yield {"kind": "log", "level": "info", "message": "Misinformation function loaded from the cache."}
    else:
        inputs = (view_features(victim.embedder, train.images, recipe, seed) if victim.embedder is not None
                  else victim.features(train.images))
        head = yield from fit(head, inputs, train.labels, recipe, feature_transform(device), device, seed, num_classes,
                              phase="victim", label="Training the misinformation function",
                              loss=complement_cross_entropy)
        if victim.cache_file:
            atomic_save({"key": key, "state": head.state_dict()}, file)
    head = head.to(device).eval()

    def misinformation(images: torch.Tensor) -> torch.Tensor:
        return predict(head, victim.features(images), feature_transform(device), device).softmax(1)

    return misinformation
