"""Pixel-space models: a victim or thief as one differentiable map from [0, 1] images to logits.

The engine predicts LP models from cached features; attacks need gradients with respect to the
pixels, so here the frozen backbone, the resize and the normalisation are chained end to end.
fp32 throughout (no autocast): gradients of bf16 models are too coarse for small perturbations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from fmsteal.engine.embed import preprocess
from fmsteal.engine.zoo import BackboneSpec

if TYPE_CHECKING:
    from fmsteal.adversary.thief import Thief
    from fmsteal.engine.victim import TrainedVictim

__all__ = ["PixelModel", "pixel_model"]


class PixelModel(nn.Module):
    """[0, 1] float images (n x 3 x H x W, any stored size) -> logits, through resize + normalisation.

    `backbone` is the frozen feature extractor of a linear probe (None when `network` is the whole
    classifier, as in full fine-tuning). The modules are shared with the model they come from, not copied.
    """

    def __init__(self, spec: BackboneSpec, image_size: int, network: nn.Module, backbone: nn.Module | None = None):
        super().__init__()
        self.spec = spec
        self.image_size = image_size
        self.backbone = backbone
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess(images, self.image_size, self.spec.mean, self.spec.std)
        if self.backbone is not None:
            x = self.backbone(x)
        return self.network(x)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device


def pixel_model(model: TrainedVictim | Thief) -> PixelModel:
    """The pixel-space model of a trained victim or thief (LP: its embedder's backbone + head; FFT: its network)."""
    if model.network is None:
        raise ValueError("This thief has not been trained yet: train it before building its pixel-space model.")
    backbone = model.embedder.model if model.mode == "lp" else None
    return PixelModel(model.spec, model.image_size, model.network, backbone).eval()

