"""The victim: a classifier trained as a linear probe (LP) or fully fine-tuned (FFT).

Attackers never get a `TrainedVictim`; they get a `BlackBoxVictim` around its `probabilities`.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import torch
from torch import nn

from fmsteal.engine.augment import feature_transform, image_transform, view_features
from fmsteal.engine.cache import atomic_save, keyed_file, load_or_none
from fmsteal.engine.data import ImageSet
from fmsteal.engine.embed import Embedder, to_uint8
from fmsteal.engine.recipes import Recipe
from fmsteal.engine.train import fit, predict
from fmsteal.engine.zoo import BackboneSpec, load_backbone


class TrainedVictim:
    """The victim's private side: its weights. Only experiment code (for evaluation) touches it."""

    def __init__(self, spec: BackboneSpec, mode: str, image_size: int, device: torch.device,
                 network: nn.Module, embedder: Embedder | None, cache_file: Path | None = None, fp32: bool = False):
        self.spec = spec
        self.mode = mode
        self.image_size = image_size
        self.device = device
        self.network = network.eval()  # the head (LP, on cached features) or the whole classifier (FFT)
        self.embedder = embedder
        self.cache_file = cache_file  # where its weights are cached
        self.fp32 = fp32  # predicts without CUDA's bf16 autocast (the `paper` preset)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        if self.embedder is not None:
            return predict(self.network, self.embedder.features_of(images), feature_transform(self.device), self.device,
                           fp32=self.fp32)
        transform = image_transform(self.spec, self.image_size, self.device, augment=False)
        return predict(self.network, to_uint8(images), transform, self.device, fp32=self.fp32)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """What the victim's head reads for [0, 1] or uint8 images: the frozen backbone's features (LP) or the
        trained body's (FFT), float32 on the CPU."""
        if self.embedder is not None:
            return self.embedder.features_of(images)
        transform = image_transform(self.spec, self.image_size, self.device, augment=False)
        return predict(self.network[0], to_uint8(images), transform, self.device, fp32=self.fp32)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax over classes for [0, 1] or uint8 images."""
        return self.logits(images).softmax(1)


def train_victim(spec: BackboneSpec, mode: str, train: ImageSet, embedder: Embedder | None, recipe: Recipe,
                 image_size: int, device: torch.device, seed: int) -> Generator[dict, None, TrainedVictim]:
    """Train (or load from the cache) a victim on `train`."""
    num_classes = len(train.class_names)
    key = {"backbone": spec.name, "weights": embedder.weights_fingerprint if embedder else spec.weight_source,
           "mode": mode, "data": train.fingerprint, "size": image_size, "recipe": recipe.to_dict(), "seed": seed}
    file = keyed_file("victims", key, ".pt")
    torch.manual_seed(seed)
    if mode == "lp":
        network: nn.Module = nn.Linear(spec.feature_dim, num_classes)
    else:
        network = nn.Sequential(load_backbone(spec, image_size), nn.Linear(spec.feature_dim, num_classes))
    stored = load_or_none(file)
    if stored is not None and stored.get("key") == key:
        network.load_state_dict(stored["state"])
        yield {"kind": "log", "level": "info", "message": "Victim loaded from the cache."}
        return TrainedVictim(spec, mode, image_size, device, network.to(device), embedder, file, recipe.fp32)
    if mode == "lp":
        inputs, transform = view_features(embedder, train.images, recipe, seed), feature_transform(device)
    else:
        inputs, transform = train.images, image_transform(spec, image_size, device, recipe.augment, recipe.rotate)
    network = yield from fit(network, inputs, train.labels, recipe, transform, device, seed, num_classes,
                             phase="victim", label=f"Training the {spec.label} victim ({mode.upper()})")
    atomic_save({"key": key, "state": network.state_dict()}, file)
    return TrainedVictim(spec, mode, image_size, device, network, embedder, file, recipe.fp32)
