"""Peak memory of a run, estimated from its plan beside its time, so runs that would not fit are refused.

A coarse model of the largest things a run holds at once: the decoded images (uint8 at their stored
size), the cached features of every embedding backbone, the backbones' weights (with gradients and
optimiser state when fine-tuned) and the activations of one batch at the run's resolution. It errs on
the high side. Imports no torch.
"""

from __future__ import annotations

import os

from fmsteal.experiment.plan import Plan

__all__ = ["peak_bytes", "available_bytes"]

ACTIVATIONS_PER_PIXEL = 40  # floats kept per input pixel and channel by a forward pass (a generous ResNet/ViT figure)
TRAINING_FACTOR = 3  # backward keeps the forward's activations and as many gradients again
BATCH = 64  # the embedder's and the training loop's CPU batch


def peak_bytes(plan: Plan, stored_pixels: int = 32 * 32 * 3) -> int:
    """Bytes the run may hold at its peak (decoded images, features, weights, one batch's activations)."""
    from fmsteal.engine.zoo import get_backbone

    config = plan.config
    images = plan.n_decoded * stored_pixels
    features = sum(plan.n_embedded * get_backbone(name).feature_dim * 4 for name, _ in plan.embeddings)
    largest = 0
    for role, size in (("victim", plan.victim_size), ("thief", plan.thief_size)):
        spec, training = get_backbone(config.backbone(role)), getattr(config, f"{role}_mode") == "fft"
        weights = spec.params_m * 1e6 * 4 * (4 if training else 1)  # weights, gradients, momentum, a best copy
        batch = BATCH * 3 * size * size * 4 * ACTIVATIONS_PER_PIXEL * (TRAINING_FACTOR if training else 1)
        largest = max(largest, weights + batch)
    return int(images + features + largest)


def available_bytes() -> int | None:
    """Memory this machine can give a run (MemAvailable on Linux), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None
