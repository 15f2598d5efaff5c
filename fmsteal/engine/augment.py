"""Input transforms for training: cached features pass through; images get crop, flip, resize."""

from __future__ import annotations

import torch

from fmsteal.engine.embed import preprocess
from fmsteal.engine.train import Transform
from fmsteal.engine.zoo import BackboneSpec


def feature_transform(device: torch.device) -> Transform:
    """Cached features need no transform, only a move to the device."""
    return lambda features, train: features.to(device)


def random_crop_flip(images: torch.Tensor) -> torch.Tensor:
    """RandomCrop(size, padding=size/8) + horizontal flip, per image, on uint8 batches."""
    n, _, height, width = images.shape
    pad = max(1, height // 8)
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,))
    dx = torch.randint(0, 2 * pad + 1, (n,))
    rows = (dy[:, None] + torch.arange(height)[None, :])[:, None, :, None].expand(n, 3, height, width + 2 * pad)
    cropped = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(width)[None, :])[:, None, None, :].expand(n, 3, height, width)
    cropped = cropped.gather(3, cols)
    flip = torch.rand(n) < 0.5
    cropped[flip] = cropped[flip].flip(-1)
    return cropped


def image_transform(spec: BackboneSpec, image_size: int, device: torch.device, augment: bool) -> Transform:
    """uint8 images -> (augmented when training) normalised input at `image_size`."""

    def transform(images: torch.Tensor, train: bool) -> torch.Tensor:
        if train and augment:
            images = random_crop_flip(images)
        return preprocess(images.to(device), image_size, spec.mean, spec.std)

    return transform
