"""`prada`: attack detection, Juuti et al., "PRADA: Protecting against DNN Model Stealing Attacks" (EuroS&P 2019).

For one client's stream (Algorithm 1 of the paper): each query x predicted as class c is compared with
the growing set G_c of that class's earlier queries; its minimum L2 distance (in [0, 1] pixel space)
joins the distance set D, and x joins G_c when that distance exceeds the class's threshold T_c
(the running mean minus standard deviation of the distances that grew G_c). Natural queries give
roughly normally distributed distances; synthetic or crafted ones do not. Once D holds `min_queries`
distances, each new query runs a Shapiro-Wilk test on D and the client is flagged the first time
W < `delta`. In `block` mode the API then refuses that client (`QueryRefused`).
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


@DEFENCES.register(
    "prada", help="Juuti et al. 2019: flags a client whose query distances stop looking normal (Shapiro-Wilk)",
    params=(Field("delta", "float", 0.9, "flag the client when the Shapiro-Wilk W of its distances falls below this",
                  minimum=0, maximum=1),
            Field("block", "bool", False, "stop answering the client once it is flagged"),
            Field("min_queries", "int", 100, "distances collected before the first test", minimum=3)),
    acts_on_labels=lambda p: True)
class Prada(Defence):
    def __init__(self, params: dict, context: DefenceContext) -> None:
        super().__init__(params, context)
        self.detector = PradaDetector(params["delta"], params["min_queries"])
        self.refused = 0
        self.benign: dict | None = None  # false alarms on the context's benign stream, measured once

    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        block = self.params["block"]
        if not block or self.detector.detected_at is None:
            self.detector.observe(images, probs.argmax(1))
        if block and self.detector.detected_at is not None:
            self.refused += len(images)
            raise QueryRefused(f"The API stopped answering this client: its queries were flagged as a model-stealing "
                               f"attack after {self.detector.detected_at:,} queries.")
        return probs

    def report(self) -> dict:
        """When the client was flagged (None: never), W at the end, refused queries and, given a benign
        stream in the context, the false-alarm rate on honest clients."""
        out = {"detected_at": self.detector.detected_at, "queries_seen": self.detector.seen,
               "shapiro_w": self.detector.statistic(), "refused": self.refused}
        if self.context.benign is not None and self.benign is None:
            self.benign = false_alarms(*self.context.benign, self.params["delta"], self.params["min_queries"],
                                       seed=self.context.seed)
        return {**out, **(self.benign or {})}


class PradaDetector:
    """The state of one client's stream: growing sets and thresholds per class, the distance set D."""

    def __init__(self, delta: float, min_queries: int) -> None:
        self.delta, self.min_queries = delta, min_queries
        self.growing: dict[int, "torch.Tensor"] = {}  # class -> (capacity x pixels) buffer of G_c
        self.sizes: dict[int, int] = {}
        self.grown: dict[int, list[float]] = {}  # class -> [count, sum, sum of squares] of the distances that grew G_c
        self.thresholds: dict[int, float] = {}
        self.distances: list[float] = []  # D
        self.seen = 0
        self.detected_at: int | None = None

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
            self.seen += 1
            nearest = [to_grown[c][j]] if to_grown[c] is not None else []
            if joined[c]:
                nearest.append(float(within[c][j, joined[c]].min()))
            if not nearest:  # the class's first query founds its growing set
                joined[c].append(j)
                self._record_growth(c, None)
                continue
            distance = min(nearest)
            self.distances.append(distance)
            if distance > self.thresholds[c]:
                joined[c].append(j)
                self._record_growth(c, distance)
            if self.detected_at is None and len(self.distances) >= self.min_queries and self.statistic() < self.delta:
                self.detected_at = self.seen
        for c, members in rows.items():
            self._store(c, flat[[members[j] for j in joined[c]]])

    def statistic(self) -> float | None:
        """Shapiro-Wilk W of the distance set (None before it has 3 distances)."""
        if len(self.distances) < 3:
            return None
        from scipy.stats import shapiro

        with warnings.catch_warnings():  # above 5,000 values scipy warns about the p-value; W is what is used
            warnings.simplefilter("ignore")
            return float(shapiro(self.distances).statistic)

    def _record_growth(self, c: int, distance: float | None) -> None:
        """A query joined G_c at `distance` (None: the first): T_c = max(T_c, mean - std of those distances)."""
        stats = self.grown.setdefault(c, [0, 0.0, 0.0])
        self.thresholds.setdefault(c, 0.0)
        if distance is None:
            return
        stats[0] += 1
        stats[1] += distance
        stats[2] += distance * distance
        if stats[0] >= 2:
            mean = stats[1] / stats[0]
            std = max(0.0, (stats[2] - stats[0] * mean * mean) / (stats[0] - 1)) ** 0.5
            self.thresholds[c] = max(self.thresholds[c], mean - std)

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


def false_alarms(images: "torch.Tensor", probs: "torch.Tensor", delta: float, min_queries: int,
                 queries: int = BENIGN_QUERIES, clients: int = BENIGN_CLIENTS, seed: int | None = None) -> dict:
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
        detector = PradaDetector(delta, min_queries)
        detector.observe(images[start:start + size], probs[start:start + size].argmax(1))
        flagged.append(detector.detected_at)
    return {"false_alarm_rate": sum(f is not None for f in flagged) / count if count else None,
            "benign_clients": count, "benign_queries_per_client": size, "benign_flagged_at": flagged}
