"""Training recipes: the paper's hyperparameters (`paper`) and a CPU-friendly preset (`fast`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

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
    step_every: int = 30
    step_gamma: float = 0.1
    augment: bool = True  # random crop + flip of the images (networks only; cached features have none)

    def to_dict(self) -> dict:
        return asdict(self)


# As read from the authors' configs (../shared/reference/README.md).
PAPER_VICTIM = Recipe("sgd", 0.002, 0.9, 5e-4, 64, 100, "step", 30, 0.1)
PAPER_THIEF = Recipe("sgd", 1e-3, 0.9, 5e-4, 128, 100, "constant")

FAST_LINEAR = Recipe("adamw", 1e-3, 0.9, 1e-4, 256, 30, "cosine")
FAST_FINETUNE = Recipe("sgd", 0.01, 0.9, 5e-4, 64, 5, "cosine")
FAST_SCRATCH = Recipe("sgd", 0.05, 0.9, 5e-4, 128, 12, "cosine")
PAPER_SCRATCH = Recipe("sgd", 0.05, 0.9, 5e-4, 128, 100, "cosine")


def recipe_for(preset: Preset, role: Role, mode: str, scratch: bool) -> Recipe:
    """The recipe of a victim or thief in LP or FFT mode; scratch networks need a higher rate."""
    if scratch:
        return PAPER_SCRATCH if preset == "paper" else FAST_SCRATCH
    if preset == "paper":
        return PAPER_VICTIM if role == "victim" else PAPER_THIEF
    return FAST_LINEAR if mode == "lp" else FAST_FINETUNE
