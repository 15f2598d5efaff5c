"""Inherited robustness: victim and thief accuracy, and their agreement, on corrupted test images.

Five common corruptions at Hendrycks & Dietterich's CIFAR-10-C severities 1-5 (ICLR 2019), by the formulas
of their `make_cifar_c.py` (hendrycks/robustness): on [0, 1] pixels, clipped, and truncated to uint8 as its
`np.uint8` does. Gaussian noise adds seeded normal noise (their stream is numpy's, so the pixels differ, not the
law); Gaussian blur is scipy's `gaussian_filter` as skimage calls it (edge pixels repeated, kernel to 4 sigma);
contrast pulls each channel toward its own mean; pixelate is PIL's BOX resize down to int(side x c) and back;
JPEG re-encodes with Pillow at the given quality. Images larger than 32 px keep the same parameters, except
the blur's sigma, which scales with the side.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Generator

import numpy as np
import torch
from PIL import Image

from fmsteal.engine.data import ImageSet
from fmsteal.errors import ConfigError
from fmsteal.evaluation.metrics import accuracy, agreement
from fmsteal.evaluation.registry import EVALUATIONS, EvaluationContext
from fmsteal.fields import Field, parse_int_list

__all__ = ["CORRUPTIONS", "SEVERITIES", "corrupt", "corruptions", "mean_columns", "parse_severities"]

# name -> its parameter at severities 1..5 (CIFAR-10-C)
SEVERITIES = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # noise standard deviation, pixel range [0, 1]
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),  # sigma in pixels of a 32 px image
    "jpeg": (80, 65, 58, 50, 40),  # JPEG quality
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # contrast factor
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # side of the coarse image, as a fraction
}
TRUNCATE = 4.0  # scipy's gaussian_filter: the kernel reaches 4 sigma


def _to_uint8(unit: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats clipped, scaled and truncated to uint8, as `np.uint8(np.clip(x, 0, 1) * 255)`."""
    return (unit.clamp(0, 1) * 255).to(torch.uint8)


def _noise(images: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    return _to_uint8(images.double() / 255 + std * torch.randn(images.shape, generator=generator, dtype=torch.double))


def _blur(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    from scipy.ndimage import gaussian_filter

    sigma = sigma * images.shape[-1] / 32
    blurred = gaussian_filter(images.permute(0, 2, 3, 1).numpy() / 255.0, sigma=(0, sigma, sigma, 0), mode="nearest",
                              truncate=TRUNCATE)
    return _to_uint8(torch.from_numpy(blurred).permute(0, 3, 1, 2))


def _jpeg(images: torch.Tensor, quality: int, generator: torch.Generator) -> torch.Tensor:
    out = torch.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
        out[i] = torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1)
    return out


def _contrast(images: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    x = images.double() / 255
    means = x.mean(dim=(2, 3), keepdim=True)  # each channel's own mean
    return _to_uint8((x - means) * factor + means)


def _pixelate(images: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    height, width = images.shape[-2:]
    small = (max(1, int(width * fraction)), max(1, int(height * fraction)))
    out = torch.empty_like(images)
    for i, image in enumerate(images):
        picture = Image.fromarray(image.permute(1, 2, 0).numpy())
        coarse = picture.resize(small, Image.BOX).resize((width, height), Image.BOX)
        out[i] = torch.from_numpy(np.array(coarse)).permute(2, 0, 1)
    return out


CORRUPTIONS: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": _noise, "gaussian_blur": _blur, "jpeg": _jpeg, "contrast": _contrast, "pixelate": _pixelate,
}


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """uint8 `images` (n x 3 x H x W) with corruption `name` at `severity` (1-5); the same seed gives the same pixels."""
    if name not in CORRUPTIONS:
        raise ConfigError(f"Unknown corruption {name!r}: use one of {', '.join(CORRUPTIONS)}.")
    generator = torch.Generator().manual_seed(seed * 1009 + list(CORRUPTIONS).index(name) * 10 + severity)
    return CORRUPTIONS[name](images, SEVERITIES[name][severity - 1], generator)


def parse_severities(text: str) -> list[int]:
    """"1,3,5" -> [1, 3, 5]; a ConfigError unless every part is an integer from 1 to 5."""
    return parse_int_list(text, 1, 5, "severities", '"3" or "1,3,5"')


PARAMS = (
    Field("n", "int", 500, "test images corrupted (a seeded random subset; all if the test set is smaller)",
          label="Images", minimum=1, optional=True),
    Field("severities", "str", "3", "corruption severities from 1 (mild) to 5 (severe), separated by commas",
          label="Severities"),
)


def cost(p, params: dict) -> float:
    """Seconds: every corrupted copy through the victim's and the thief's backbones, or, when an earlier run
    left their features in the cache, recognising the copies by content."""
    plan = p.plan
    images = len(CORRUPTIONS) * len(parse_severities(params["severities"])) * min(params["n"] or plan.n_test, plan.n_test)
    if p.evaluation_cached("corruptions", params):
        return p.hashing(images)
    config = plan.config
    shared = (config.victim, plan.victim_size, config.victim_mode) == (config.thief, plan.thief_size, "lp") \
        and config.thief_mode == "lp"  # two linear probes on one backbone share its pass (`_predict`)
    return p.forward(plan.config.thief, plan.thief_size, images) + (
        0.0 if shared else p.forward(plan.config.victim, plan.victim_size, images))


def mean_columns(rows: list[dict]) -> dict:
    """Victim and thief accuracy and agreement averaged over every corrupted row (the clean row left out)."""
    corrupted = [row for row in rows if row["severity"] > 0]
    return {f"corrupted_{key}": sum(row[key] for row in corrupted) / len(corrupted) if corrupted else None
            for key in ("victim_accuracy", "thief_accuracy", "agreement")}


@EVALUATIONS.register("corruptions", help="Victim and thief accuracy and agreement under common image corruptions",
                      params=PARAMS, default_on=True, label="Corruptions", cost=cost, columns=mean_columns)
def corruptions(ctx: EvaluationContext, params: dict) -> Generator[dict, None, list[dict]]:
    """A row per (corruption, severity), after a `clean` row (severity 0), on one seeded subset of the test set."""
    severities = parse_severities(params["severities"])
    count = len(ctx.test) if params["n"] is None else min(params["n"], len(ctx.test))
    subset = torch.randperm(len(ctx.test), generator=torch.Generator().manual_seed(ctx.seed))[:count].sort().values
    images, labels = ctx.test.images[subset], ctx.test.labels[subset]
    rows = [_row("clean", 0, ctx.victim_test[subset], ctx.thief_test[subset], labels)]
    cells = [(name, severity) for name in CORRUPTIONS for severity in severities]
    for done, (name, severity) in enumerate(cells, 1):
        what = f"Corruptions: {name.replace('_', ' ')} at severity {severity} on {count:,} images"
        corrupted = ImageSet(corrupt(images, name, severity, ctx.seed), labels, ctx.test.class_names)
        victim, thief = yield from _predict(ctx, corrupted, what)
        rows.append(_row(name, severity, victim, thief, labels))
        yield {"kind": "progress", "phase": "evaluate", "done": done, "total": len(cells), "message": what}
    return rows


def _row(name: str, severity: int, victim: torch.Tensor, thief: torch.Tensor, labels: torch.Tensor) -> dict:
    return {"name": name, "severity": severity, "victim_accuracy": accuracy(victim, labels),
            "thief_accuracy": accuracy(thief, labels), "agreement": agreement(thief, victim)}


def _predict(ctx: EvaluationContext, corrupted: ImageSet, what: str) -> Generator[dict, None, tuple]:
    """Victim and thief top-1 on `corrupted`. A linear probe's features come from its embedder's cache, keyed
    by the images' content (a rerun forwards nothing); two probes on one embedder share them."""
    features, tops = {}, []
    for side in (ctx.victim, ctx.thief):
        if side.mode != "lp":
            tops.append(side.logits(corrupted.images).argmax(1))
            continue
        if side.embedder not in features:
            features[side.embedder] = yield from _as_evaluation(side.embedder.embed(corrupted, what))
        with torch.no_grad():
            tops.append(side.network(features[side.embedder].to(side.device)).argmax(1).cpu())
    return tuple(tops)


def _as_evaluation(events: Generator[dict, None, torch.Tensor]) -> Generator[dict, None, torch.Tensor]:
    """An embedding's events with its progress shown as the evaluate phase's; its features."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        yield {**event, "phase": "evaluate"} if event["kind"] == "progress" else event
