"""`prada`: attack detection, Juuti et al., "PRADA: Protecting against DNN Model Stealing Attacks" (EuroS&P 2019),
as the authors' code does it (SSGAalto/prada-protecting-against-dnn-model-stealing-attacks, `growing_set.py`).

For one client's stream: each query x predicted as class c is compared with the growing set G_c of that class's
earlier queries; its minimum L2 distance (in [0, 1] pixel space) joins the class's distances, and x joins G_c when
that distance exceeds the class's threshold T_c = max(T_c, mean - std of the distances that grew G_c, the founding
query counting as 0). At the 1st, 11th, 21st, ... query the distances of every class holding at least 10 of them
are pooled, values 3 standard deviations or more from their mean are dropped and, when more than 100 remain, a
Shapiro-Wilk test runs on them: natural queries give roughly normal distances, synthetic or crafted ones do not.
The client is flagged while W < `delta`: each test revises the verdict, as the reference server perturbs its
answers only while it holds. In `block` mode the API refuses the client's queries while it is flagged
(`QueryRefused`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from fmsteal.adversary.defences.base import DEFENCES, Defence, DefenceContext, as_unit_float
from fmsteal.errors import QueryRefused
from fmsteal.fields import Field

if TYPE_CHECKING:
    import torch

__all__ = ["Prada", "PradaDetector", "false_alarms"]

BENIGN_QUERIES = 1000  # honest clients measured on `DefenceContext.benign` send this many queries each
BENIGN_CLIENTS = 10  # at most this many of them
TEST_EVERY = 10  # the reference tests at queries_processed % 10 == 0: the 1st, 11th, 21st, ... query
CLASS_MINIMUM = 10  # a class's distances join the test once it has this many
OUTLIER_SIGMAS = 3  # pooled distances this many standard deviations from their mean are left out
MIN_DISTANCES = 100  # the test runs on more than this many pooled distances


@DEFENCES.register(
    "prada", help="Juuti et al. 2019: flags a client whose query distances stop looking normal (Shapiro-Wilk)",
    params=(Field("delta", "float", 0.9, "flag the client when the Shapiro-Wilk W of its distances falls below this",
                  minimum=0, maximum=1),
            Field("block", "bool", False, "refuse the client's queries while it is flagged")),
    acts_on_labels=lambda p: True, benign=True)
class Prada(Defence):
    def __init__(self, params: dict, context: DefenceContext) -> None:
        super().__init__(params, context)
        self.detector = PradaDetector(params["delta"])
        self.refused = 0
        self.benign: dict | None = None  # false alarms on the context's benign stream, measured once

    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        self.detector.observe(images, probs.argmax(1))
        if self.params["block"] and self.detector.flagged:
            self.refused += len(images)
            raise QueryRefused(f"The API stopped answering this client: its queries were flagged as a model-stealing "
                               f"attack after {self.detector.detected_at:,} queries.")
        return probs

    def report(self) -> dict:
        """When the client was first flagged (None: never), whether it is flagged now, the last test's W,
        refused queries and, given a benign stream in the context, the false-alarm rate on honest clients."""
        out = {"detected_at": self.detector.detected_at, "flagged": self.detector.flagged,
               "queries_seen": self.detector.seen, "shapiro_w": self.detector.statistic, "refused": self.refused}
        if self.context.benign is not None and self.benign is None:
            self.benign = false_alarms(*self.context.benign, self.params["delta"], seed=self.context.seed)
        return {**out, **(self.benign or {})}


class PradaDetector:
    """The state of one client's stream: growing sets and thresholds per class, each class's distances."""

    def __init__(self, delta: float) -> None:
        self.delta = delta
        self.growing: dict[int, "torch.Tensor"] = {}  # class -> (capacity x pixels) buffer of G_c
        self.sizes: dict[int, int] = {}
        self.grown: dict[int, list[float]] = {}  # class -> [count, sum, sum of squares] of the distances that grew G_c
        self.thresholds: dict[int, float] = {}
        self.distances: dict[int, list[float]] = {}  # class -> its queries' minimum distances
        self.seen = 0
        self.statistic: float | None = None  # W of the last test that ran
        self.flagged = False
        self.detected_at: int | None = None  # the query at which the client was first flagged

    def observe(self, images: "torch.Tensor", classes: "torch.Tensor") -> None:
        """Take the next queries (images with their predicted classes) in order. Distances to the growing
        sets as they stood before the batch, and within the batch, are computed per class up front, so
        the query-by-query walk of the algorithm is scalar work."""
        import torch

        flat, classes = as_unit_float(images).flatten(1).cpu(), classes.tolist()
        rows: dict[int, list[int]] = {}
        for i, c in enumerate(classes):
            rows.setdefault(c, []).append(i)
        to_grown, within = {}, {}
        for c, members in rows.items():
            x = flat[members]
            to_grown[c] = torch.cdist(x, self.growing[c][: self.sizes[c]]).min(1).values.tolist() if c in self.sizes else None
            within[c] = torch.cdist(x, x)
        position = dict.fromkeys(rows, 0)
        joined: dict[int, list[int]] = {c: [] for c in rows}  # positions in the batch's class rows that joined G_c
        for c in classes:
            j = position[c]
            position[c] += 1
            nearest = [to_grown[c][j]] if to_grown[c] is not None else []
            if joined[c]:
                nearest.append(float(within[c][j, joined[c]].min()))
            if not nearest:  # the class's first query founds its growing set
                joined[c].append(j)
                self._grow(c, 0.0)
            else:
                distance = min(nearest)
                self.distances.setdefault(c, []).append(distance)
                if distance > self.thresholds[c]:
                    joined[c].append(j)
                    self._grow(c, distance)
            self.seen += 1
            if (self.seen - 1) % TEST_EVERY == 0:
                self._test()
        for c, members in rows.items():
            self._store(c, flat[[members[j] for j in joined[c]]])

    def _test(self) -> None:
        """Shapiro-Wilk on the pooled distances of the classes with enough of them, outliers left out."""
        import numpy as np

        pooled = np.asarray([d for found in self.distances.values() if len(found) >= CLASS_MINIMUM for d in found])
        if len(pooled):
            pooled = pooled[np.abs(pooled - pooled.mean()) < OUTLIER_SIGMAS * pooled.std()]
        if len(pooled) <= MIN_DISTANCES:
            return
        from scipy.stats import shapiro

        with warnings.catch_warnings():  # above 5,000 values scipy warns about the p-value; W is what is used
            warnings.simplefilter("ignore")
            self.statistic = float(shapiro(pooled).statistic)
        self.flagged = self.statistic < self.delta
        if self.flagged and self.detected_at is None:
            self.detected_at = self.seen

    def _grow(self, c: int, distance: float) -> None:
        """A query joined G_c at `distance` (0 for the first): T_c = max(T_c, mean - std of those distances)."""
        stats = self.grown.setdefault(c, [0, 0.0, 0.0])
        stats[0] += 1
        stats[1] += distance
        stats[2] += distance * distance
        mean = stats[1] / stats[0]
        std = max(0.0, stats[2] / stats[0] - mean * mean) ** 0.5  # the population std, as numpy's default
        self.thresholds[c] = max(self.thresholds.get(c, 0.0), mean - std)

    def _store(self, c: int, new: "torch.Tensor") -> None:
        """Append rows to G_c's buffer (its capacity doubles when full)."""
        buffer, size = self.growing.get(c), self.sizes.get(c, 0)
        if buffer is None or size + len(new) > len(buffer):
            bigger = new.new_empty(max(16, 2 * (size + len(new))), new.shape[1])
            if buffer is not None:
                bigger[:size] = buffer[:size]
            self.growing[c] = buffer = bigger
        buffer[size:size + len(new)] = new
        self.sizes[c] = size + len(new)


def false_alarms(images: "torch.Tensor", probs: "torch.Tensor", delta: float, queries: int = BENIGN_QUERIES,
                 clients: int = BENIGN_CLIENTS, seed: int | None = None) -> dict:
    """PRADA on honest clients: up to `clients` consecutive runs of `queries` images (fewer when the
    stream is short) of a benign stream (images with the victim's probabilities for them), in the
    given order or, with `seed`, in a seeded random order (an image folder's order is by class).
    Returns the share of clients flagged, how many there were, their length and where each was flagged."""
    import torch

    if seed is not None:
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        images, probs = images[order], probs[order]
    size = min(queries, len(images))
    count = min(clients, len(images) // size) if size else 0
    flagged = []
    for start in range(0, size * count, size):
        detector = PradaDetector(delta)
        detector.observe(images[start:start + size], probs[start:start + size].argmax(1))
        flagged.append(detector.detected_at)
    return {"false_alarm_rate": sum(f is not None for f in flagged) / count if count else None,
            "benign_clients": count, "benign_queries_per_client": size, "benign_flagged_at": flagged}
