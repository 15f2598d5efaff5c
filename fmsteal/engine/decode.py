"""Encoded images -> one uint8 tensor, resized as they are read.

A first pass reads each image's header (its size, never its pixels) to pick the stored size and
refuse images over the pixel cap; the second decodes one image at a time (JPEGs at a reduced scale
when they are shrunk) straight into the preallocated result, so at most one image is ever in memory
at full size. Images already at the stored size (CIFAR's 32x32) are stored exactly as decoded.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from fmsteal import settings
from fmsteal.cancel import check
from fmsteal.errors import DataError

__all__ = ["Encoded", "HEADER_BYTES", "MAX_HEADER_BYTES", "MAX_STORED_SIDE", "decode", "image_size", "stored_size"]

MAX_STORED_SIDE = 128
HEADER_BYTES = 64 * 1024  # enough for an image's header in all but odd files (then up to MAX_HEADER_BYTES are read)
MAX_HEADER_BYTES = 2**20  # a file whose first MB does not reveal an image's size is not an image


@dataclass(frozen=True)
class Encoded:
    """One encoded image: its class, a name for messages and `read(n)`: at least its first n bytes (-1: all)."""

    label: str
    name: str
    read: Callable[[int], bytes]


def image_size(data: bytes, label: str, name: str, max_pixels: int) -> tuple[int, int] | None:
    """(width, height) from an image's header, None when `data` is too short to tell; DataError over the cap."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        width, height = 10**6, 10**6  # PIL refuses it before telling its size: far over any cap
    except Exception:
        return None
    if width * height > max_pixels:
        shape = f"{width}x{height} pixels" if width < 10**6 else "more pixels than PIL will open"
        raise DataError(f"Image {name!r} of class {label!r} has {shape}, over the cap of {max_pixels:,} pixels "
                        "(FMSTEAL_MAX_IMAGE_PIXELS). Resize or remove it.")
    return width, height


def stored_size(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The size every image is stored at: the most common one, capped at MAX_STORED_SIDE (then square)."""
    (width, height), _ = Counter(sizes).most_common(1)[0]
    if max(width, height) <= MAX_STORED_SIDE:
        return width, height
    side = min(MAX_STORED_SIDE, width, height)
    return side, side


def decode(items: Sequence[Encoded], class_names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(images N x 3 x H x W uint8, labels) of `items`, every image resized to `stored_size`."""
    max_pixels = settings.current().max_image_pixels
    sizes = []
    for i, item in enumerate(items):
        if i % 256 == 0:
            check()
        size = image_size(item.read(HEADER_BYTES), item.label, item.name, max_pixels)
        if size is None:
            size = image_size(item.read(MAX_HEADER_BYTES)[:MAX_HEADER_BYTES], item.label, item.name, max_pixels)
        if size is None:
            _fail(item, f"not an image file PIL can read (no image header in its first {MAX_HEADER_BYTES // 2**20} MB)")
        sizes.append(size)
    width, height = stored_size(sizes)
    images = np.empty((len(items), 3, height, width), dtype=np.uint8)
    for i, item in enumerate(items):
        if i % 256 == 0:
            check()
        images[i] = _decode_one(item, (width, height)).transpose(2, 0, 1)
    index = {name: i for i, name in enumerate(class_names)}
    labels = torch.tensor([index[item.label] for item in items], dtype=torch.long)
    return torch.from_numpy(images), labels


def _decode_one(item: Encoded, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(item.read(-1))) as image:
            if image.size != size:
                image.draft(None, size)  # JPEG: decode at 1/2, 1/4 or 1/8 scale, still >= size
            picture = image.convert("RGB")
        if picture.size != size:
            picture = picture.resize(size, Image.BILINEAR)
        return np.asarray(picture)
    except DataError:
        raise
    except Exception as error:
        _fail(item, f"{type(error).__name__}: {error}")


def _fail(item: Encoded, reason: str):
    raise DataError(f"Cannot decode an image of class {item.label!r} ({item.name}): {reason}. "
                    "Remove or fix the file.") from None
