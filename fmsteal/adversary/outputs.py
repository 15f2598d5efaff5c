"""Output modes: what the black box returns for a batch of class probabilities, as a registry.

Each mode is `fn(probs, params) -> Answers`: `label` (top-1 only, as in the paper), `topk` (the k best
classes, best first), `probs` (the full vector) and `rounded` (the vector rounded to `decimals`).
Importing this module imports no torch (the experiment's config validates names against it):
the modes use tensor methods only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fmsteal.fields import Field
from fmsteal.registry import Registry

if TYPE_CHECKING:
    import torch

__all__ = ["Answers", "OUTPUT_MODES", "OutputModeFn"]


@dataclass(frozen=True)
class Answers:
    """What a victim answers for a batch of images. Label mode fills only `labels`."""

    labels: "torch.Tensor"  # top-1 class per image
    topk: "torch.Tensor | None" = None  # n x k classes, best first (topk mode)
    probs: "torch.Tensor | None" = None  # n x K probabilities (probs and rounded modes)


OutputModeFn = Callable[["torch.Tensor", dict], Answers]

OUTPUT_MODES: Registry[OutputModeFn] = Registry("output mode")

TOP_K = Field("top_k", "int", 3, "how many classes a top-k answer lists", label="Top-k", minimum=1, maximum=100)
DECIMALS = Field("decimals", "int", 2, "decimals kept in rounded probabilities", minimum=0, maximum=8)


@OUTPUT_MODES.register("label", help="the top-1 class only (the paper's setting)")
def label(probs: "torch.Tensor", params: dict) -> Answers:
    return Answers(labels=probs.argmax(1))


@OUTPUT_MODES.register("topk", help="the k most likely classes, best first, without scores", params=(TOP_K,))
def topk(probs: "torch.Tensor", params: dict) -> Answers:
    k = min(params["top_k"], probs.shape[1])
    return Answers(labels=probs.argmax(1), topk=probs.topk(k, dim=1).indices)


@OUTPUT_MODES.register("probs", help="the full probability vector")
def probabilities(probs: "torch.Tensor", params: dict) -> Answers:
    return Answers(labels=probs.argmax(1), probs=probs)


@OUTPUT_MODES.register("rounded", help="the probability vector rounded to a few decimals", params=(DECIMALS,))
def rounded(probs: "torch.Tensor", params: dict) -> Answers:
    return Answers(labels=probs.argmax(1), probs=probs.round(decimals=params["decimals"]))
