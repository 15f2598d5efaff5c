"""`BlackBoxVictim`: the only door through which an attacker reaches a victim, and its answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from fmsteal.adversary.outputs import OUTPUT_MODES
from fmsteal.errors import BudgetExceeded

OutputMode = Literal["label", "topk", "probs", "rounded"]


@dataclass(frozen=True)
class Answers:
    """What a victim answers for a batch of images. Label mode fills only `labels`."""

    labels: torch.Tensor  # top-1 class per image
    topk: torch.Tensor | None = None  # n x k classes, best first (topk mode)
    probs: torch.Tensor | None = None  # n x K probabilities (probs and rounded modes)


class VictimAPI(Protocol):
    """The contract the thief relies on: raw [0, 1] images in (n x 3 x H x W), answers out."""

    output: OutputMode
    num_classes: int

    def __call__(self, images: torch.Tensor) -> Answers: ...


class BlackBoxVictim:
    """A prediction API: counts every image as one query, refuses queries past the budget, and
    answers only in its output mode. Wrap any `images -> probabilities` function, e.g. a client
    of a remote API (an API that only returns labels can return one-hot rows).
    """

    def __init__(self, probabilities: Callable[[torch.Tensor], torch.Tensor], num_classes: int,
                 output: OutputMode = "label", budget: int = 5000, top_k: int = 3, decimals: int = 2):
        self.__probabilities = probabilities
        self.num_classes = num_classes
        self.output = output
        self.budget = budget
        self.top_k = min(top_k, num_classes)
        self.decimals = decimals
        self.queries_used = 0

    @property
    def remaining(self) -> int:
        return self.budget - self.queries_used

    def __call__(self, images: torch.Tensor) -> Answers:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"The victim takes images shaped n x 3 x H x W, got {tuple(images.shape)}.")
        if len(images) > self.remaining:
            raise BudgetExceeded(
                f"Query budget exhausted: {len(images)} more images asked, {self.remaining} of "
                f"{self.budget} queries left."
            )
        self.queries_used += len(images)
        probs = self.__probabilities(images).detach().float().cpu()
        return OUTPUT_MODES.get(self.output).fn(probs, self.top_k, self.decimals)
