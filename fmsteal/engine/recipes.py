"""Training recipes per preset, role and backbone: the authors' hyperparameters (`paper`) and a
CPU-friendly preset (`fast`).

`paper` follows the authors' released code (rajankita/foundation_model_stealing at 2b0bc9a): the
victim's command line in their README, the thief's `cfgs/cifar10/*.yaml` (SGD, lr 0.001, batch 128,
100 epochs, MultiStepLR milestones [50, 120, ...] x0.1, which within 100 epochs is one drop at epoch
50), and the configs' per-backbone exceptions for the thief (ResNet-101: lr 0.01; ViT-L/16: batch 64).
`paper` recipes run fp32 and augment as the authors do (linear probes: a few cached augmented views per
image). Per-side input scaling and the authors' weights are config fields and zoo entries (the `paper`
sweep presets set them); what none can express (BatchNorm statistics that keep updating under a linear
probe) is listed in docs/paper_vs_code.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

__all__ = ["Recipe", "recipe_for", "full_precision", "PAPER_VICTIM", "PAPER_THIEF", "PAPER_THIEF_EXCEPTIONS",
           "PAPER_SCRATCH", "FAST_LINEAR", "FAST_FINETUNE", "FAST_SCRATCH", "VIEWS"]

Preset = Literal["fast", "paper"]
Role = Literal["victim", "thief"]


@dataclass(frozen=True)
class Recipe:
    """Optimiser and schedule for one training run."""

    optimizer: Literal["sgd", "adamw"]
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    epochs: int
    schedule: Literal["step", "cosine", "constant"]
    step_every: int = 30  # epochs between learning-rate drops ("step" schedule)
    step_gamma: float = 0.1
    augment: bool = True  # random crop + flip of the images (networks only; cached features have none)
    fp32: bool = False  # no bf16 autocast on CUDA (CPUs run fp32 either way)
    rotate: float = 0.0  # instead of the crop: rotation within +-rotate degrees (+ flip)
    views: int = 0  # linear probes: cached features of this many augmented views per image, besides the image

    def to_dict(self) -> dict:
        """The recipe as data (a cache key); fields added later only when set, so earlier keys stay valid."""
        values = asdict(self)
        for name in ADDED_LATER:
            if values[name] == getattr(Recipe, name):
                del values[name]
        return values


ADDED_LATER = ("fp32", "rotate", "views")  # fields left out of a recipe's key at their defaults
VIEWS = 4  # augmented views per image when the `paper` preset trains a linear probe on cached features


# Victim: the authors' README command (SGD lr 0.002, momentum 0.9, batch 64, 100 epochs, StepLR 30 x0.1).
# Both augment every epoch in the authors' code (victim: crop + flip; thief: rotation 5 degrees + flip, its
# 224-px crop being a no-op); a linear probe here draws one of VIEWS cached augmented views per image per step.
PAPER_VICTIM = Recipe("sgd", 0.002, 0.9, 5e-4, 64, 100, "step", 30, 0.1, fp32=True, views=VIEWS)
# Thief: the authors' thief configs; the lr drops x0.1 at epoch 50 (their milestones [50, 120, ...]).
PAPER_THIEF = Recipe("sgd", 1e-3, 0.9, 5e-4, 128, 100, "step", 50, 0.1, augment=False, fp32=True, rotate=5.0,
                     views=VIEWS)
# Per-backbone thief settings in the authors' configs (cfgs/cifar10/resnet101.yaml, vitl16.yaml).
PAPER_THIEF_EXCEPTIONS: dict[str, dict] = {
    "resnet101": {"lr": 0.01},
    "vit_large_patch16_224": {"batch_size": 64},
}
# Not in the paper: the project's scratch CNN.
PAPER_SCRATCH = Recipe("sgd", 0.05, 0.9, 5e-4, 128, 100, "cosine", fp32=True)

FAST_LINEAR = Recipe("adamw", 1e-3, 0.9, 1e-4, 256, 30, "cosine")
FAST_FINETUNE = Recipe("sgd", 0.01, 0.9, 5e-4, 64, 5, "cosine")
FAST_SCRATCH = Recipe("sgd", 0.05, 0.9, 5e-4, 128, 12, "cosine")


def full_precision(preset: Preset) -> bool:
    """fp32 on CUDA too: the authors' code runs its models in fp32 (autocast wraps only the loss), so `paper`
    does; `fast` uses bf16 autocast on CUDA. Frozen features follow the preset like the training."""
    return preset == "paper"


def recipe_for(preset: Preset, role: Role, mode: str, scratch: bool, backbone: str | None = None) -> Recipe:
    """The recipe of a victim or thief in LP or FFT mode; scratch networks need a higher rate.

    `backbone` (a timm architecture) applies the authors' per-backbone thief settings under the `paper` preset.
    """
    if scratch:
        return PAPER_SCRATCH if preset == "paper" else FAST_SCRATCH
    if preset == "paper":
        if role == "victim":
            return PAPER_VICTIM
        return replace(PAPER_THIEF, **PAPER_THIEF_EXCEPTIONS.get(backbone or "", {}))
    return FAST_LINEAR if mode == "lp" else FAST_FINETUNE
