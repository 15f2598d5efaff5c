"""`BlackBoxVictim`: the only door through which an attacker reaches a victim, and its answers.

Inside the box: the victim's probabilities -> the defence (optional, `fmsteal.adversary.defences`) -> the
output mode (`fmsteal.adversary.outputs`) -> `Answers`. The box counts every image as one query, refuses
queries past the budget, and keeps defender-side statistics that only the experimenter reads
(`defence_report`); `api_predictions` / `api_accuracy` measure what honest clients of the defended API get.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import torch

from fmsteal.adversary.defences import Defence
from fmsteal.adversary.outputs import OUTPUT_MODES, Answers
from fmsteal.errors import BudgetExceeded, QueryRefused

__all__ = ["Answers", "BlackBoxVictim", "OutputMode", "VictimAPI", "api_accuracy", "api_predictions"]

OutputMode = Literal["label", "topk", "probs", "rounded"]

REFUSED = -1  # the label `api_predictions` gives a query the API refused


class VictimAPI(Protocol):
    """The contract the thief relies on: raw [0, 1] images in (n x 3 x H x W), answers out."""

    output: OutputMode
    num_classes: int

    def __call__(self, images: torch.Tensor) -> Answers: ...


class BlackBoxVictim:
    """A prediction API: counts every image as one query, refuses queries past the budget, and
    answers only in its output mode, after its `defence` (if any) has altered the probabilities.
    Wrap any `images -> probabilities` function, e.g. a client of a remote API (an API that only
    returns labels can return one-hot rows). One instance is one client: a stateful defence
    (e.g. `prada`) sees this client's queries only.
    """

    def __init__(self, probabilities: Callable[[torch.Tensor], torch.Tensor], num_classes: int,
                 output: OutputMode = "label", budget: int = 5000, top_k: int = 3, decimals: int = 2,
                 defence: Defence | None = None):
        mode = OUTPUT_MODES.get(output)
        given = {"top_k": min(top_k, num_classes), "decimals": decimals}
        self.__probabilities = probabilities
        self.__defence = defence
        self.__answer = mode.fn
        self.__output_params = mode.validate({f.name: given[f.name] for f in mode.params})
        self.__answered = self.__changed = 0
        self.__l1 = 0.0
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
        probs = self.__probabilities(images).detach().float().cpu()
        defended = probs if self.__defence is None else self.__defence.answer(images, probs).float()
        answers = self.__answer(defended, self.__output_params)
        self.queries_used += len(images)  # a refused batch (QueryRefused above) is not spent
        self.__answered += len(images)
        self.__changed += int((answers.labels != probs.argmax(1)).sum())
        if answers.probs is not None:
            self.__l1 += float((answers.probs - probs).abs().sum())
        return answers

    def defence_report(self) -> dict:
        """The defender's view, for the experimenter (attack code never calls it): of the answered queries,
        the share whose top-1 differs from the undefended victim's (`answers_changed`), the mean L1
        distance between the answered and the undefended probability vectors (`mean_l1`; None when
        the answers carry no vectors), and the defence's own `report()`."""
        answered = self.__answered
        has_vectors = self.output in ("probs", "rounded")
        return {"queries_answered": answered,
                "answers_changed": self.__changed / answered if answered else 0.0,
                "mean_l1": (self.__l1 / answered if answered else 0.0) if has_vectors else None,
                **(self.__defence.report() if self.__defence is not None else {})}


    def defence_evidence(self):
        """What the defence kept as evidence, for the experimenter (a watermark's marked queries and their
        labels, for `verify_watermark`); None when the defence keeps none."""
        marks = getattr(self.__defence, "marks", None)
        return marks() if marks is not None else None


def api_predictions(probabilities: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                    defence: Defence | None = None, batch_size: int = 100) -> torch.Tensor:
    """The top-1 labels an honest client gets from the (defended) API for `images`, spending no attack
    budget. Pass a fresh defence instance (a client of its own, so a stateful defence does not mix
    this stream with the thief's); queries it refuses get the label -1 (`REFUSED`)."""
    labels = []
    for batch in images.split(batch_size):
        probs = probabilities(batch).detach().float().cpu()
        try:
            labels.append((probs if defence is None else defence.answer(batch, probs)).argmax(1))
        except QueryRefused:
            labels.append(torch.full((len(batch),), REFUSED, dtype=torch.long))
    return torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)


def api_accuracy(probabilities: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
                 defence: Defence | None = None, batch_size: int = 100) -> float:
    """Accuracy honest users get from the (defended) API on labelled `images` (a refused query counts as wrong)."""
    if len(labels) == 0:
        return 0.0
    return float((api_predictions(probabilities, images, defence, batch_size) == labels.cpu()).float().mean())
