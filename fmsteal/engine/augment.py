"""Training augmentation: crop + flip or rotation + flip of images, and its linear-probe counterpart,
cached features of a few augmented views per image (`view_features`), one view drawn per image per step."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fmsteal.engine.embed import image_hashes, preprocess
from fmsteal.engine.recipes import Recipe
from fmsteal.engine.train import Transform
from fmsteal.engine.zoo import BackboneSpec

__all__ = ["feature_transform", "random_crop_flip", "augmented_view", "FeatureViews", "view_features",
           "image_transform"]


def feature_transform(device: torch.device) -> Transform:
    """Cached features need no transform, only a move to the device."""
    return lambda features, train: features.to(device)


def _crop_flip(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Each uint8 image padded by size/8, cropped at (dy, dx) and flipped where `flip`."""
    n, _, height, width = images.shape
    pad = max(1, height // 8)
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(height)[None, :])[:, None, :, None].expand(n, 3, height, width + 2 * pad)
    cropped = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(width)[None, :])[:, None, None, :].expand(n, 3, height, width)
    cropped = cropped.gather(3, cols)
    cropped[flip] = cropped[flip].flip(-1)
    return cropped


def random_crop_flip(images: torch.Tensor) -> torch.Tensor:
    """RandomCrop(size, padding=size/8) + horizontal flip, per image, on uint8 batches."""
    n, pad = len(images), max(1, images.shape[2] // 8)
    return _crop_flip(images, torch.randint(0, 2 * pad + 1, (n,)), torch.randint(0, 2 * pad + 1, (n,)),
                      torch.rand(n) < 0.5)


def _rotate_flip(images: torch.Tensor, degrees: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Each uint8 image rotated by `degrees` about its centre (corners filled with black), flipped where `flip`."""
    radians = degrees * math.pi / 180
    cos, sin, zero = radians.cos(), radians.sin(), torch.zeros_like(radians)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    rotated = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    rotated = rotated.round().clamp(0, 255).to(torch.uint8)
    rotated[flip] = rotated[flip].flip(-1)
    return rotated


def augmented_view(images: torch.Tensor, view: int, crop: bool, rotate: float) -> torch.Tensor:
    """View number `view` of each uint8 image: crop + flip (`crop`) or rotation within +-`rotate` degrees + flip.

    The random draws come from each image's content and the view number, so an image has the same views
    in any batch and any run (their features can be computed once and reused)."""
    n, pad = len(images), max(1, images.shape[2] // 8)
    draws = torch.empty(n, 4)
    for row, key in enumerate(image_hashes(images)):
        generator = torch.Generator().manual_seed(int.from_bytes(key[:6], "little") * 1024 + view)
        draws[row] = torch.rand(4, generator=generator)
    flip = draws[:, 0] < 0.5
    if rotate:
        return _rotate_flip(images, (2 * draws[:, 1] - 1) * rotate, flip)
    if crop:
        dy, dx = (draws[:, 2] * (2 * pad + 1)).long(), (draws[:, 3] * (2 * pad + 1)).long()
        return _crop_flip(images, dy, dx, flip)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


class FeatureViews:
    """Features of the same images under several views (V x N x D). Indexing gives one view per image,
    drawn with a seeded generator, so each epoch of a linear probe sees each image augmented anew."""

    def __init__(self, views: torch.Tensor, seed: int):
        self.views = views
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.views.shape[1]

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        picked = torch.randint(len(self.views), (len(index),), generator=self.generator)
        return self.views[picked, index]


def view_features(embedder, images: torch.Tensor, recipe: Recipe, seed: int) -> torch.Tensor | FeatureViews:
    """What a linear probe trains on: the images' cached features, or with `recipe.views` > 0 those and the
    features of `recipe.views` augmented views of each image (remembered by the embedder for later calls)."""
    features = embedder.features_of(images)
    if not recipe.views:
        return features
    views = [features] + [embedder.derived_features(
        images, ("view", view, recipe.augment, recipe.rotate),
        lambda pixels, view=view: augmented_view(pixels, view, recipe.augment, recipe.rotate))
        for view in range(1, recipe.views + 1)]
    return FeatureViews(torch.stack(views), seed)


def image_transform(spec: BackboneSpec, image_size: int, device: torch.device, augment: bool,
                    rotate: float = 0.0) -> Transform:
    """uint8 images -> (when training) crop + flip, or rotation within +-`rotate` degrees + flip -> normalised
    input at `image_size`."""

    def transform(images: torch.Tensor, train: bool) -> torch.Tensor:
        if train and rotate:
            n = len(images)
            images = _rotate_flip(images, (2 * torch.rand(n) - 1) * rotate, torch.rand(n) < 0.5)
        elif train and augment:
            images = random_crop_flip(images)
        return preprocess(images.to(device), image_size, spec.mean, spec.std)

    return transform
