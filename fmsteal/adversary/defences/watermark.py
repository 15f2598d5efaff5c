"""`watermark`: DAWN (Szyller et al., "DAWN: Dynamic Adversarial Watermarking of Neural Networks", ACM MM 2021).

An HMAC-SHA256 of each query's pixels under the defender's `key` picks a fraction `rate` of the queries
and, for each of them, a wrong class (never the victim's top-1). The answer swaps the probabilities of
the top-1 and that class, so it still looks like an ordinary answer, and the same image always gets
the same answer. A thief that learns the marks betrays itself: `verify_watermark` tests a suspect
model on the marked images against chance (exact binomial tail, in log space).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from fmsteal.adversary.defences.base import DEFENCES, Defence, DefenceContext, as_uint8
from fmsteal.fields import Field

if TYPE_CHECKING:
    import torch

__all__ = ["Watermark", "binomial_log10_tail", "verify_watermark", "watermark_label"]


@DEFENCES.register(
    "watermark", help="Szyller et al. 2021 (DAWN): a keyed share of queries gets a wrong label, to prove theft later",
    params=(Field("rate", "float", 0.02, "share of the queries answered with a watermark label", minimum=0, maximum=0.5),
            Field("key", "str", "fmsteal-watermark", "the defender's secret key: which queries are marked, and how")),
    acts_on_labels=lambda p: p["rate"] > 0)
class Watermark(Defence):
    def __init__(self, params: dict, context: DefenceContext) -> None:
        super().__init__(params, context)
        self.queries = 0
        self.marked: list[tuple["torch.Tensor", int]] = []  # (uint8 image, its watermark label)

    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        pixels, top, out = as_uint8(images).cpu(), probs.argmax(1).tolist(), probs.clone()
        key = self.params["key"].encode()
        for i, picture in enumerate(pixels):
            mark = watermark_label(key, picture, top[i], probs.shape[1], self.params["rate"])
            if mark is not None:
                out[i, [top[i], mark]] = probs[i, [mark, top[i]]]
                self.marked.append((picture.clone(), mark))
        self.queries += len(probs)
        return out

    def marks(self) -> tuple["torch.Tensor", "torch.Tensor"]:
        """The marked images (uint8, m x 3 x H x W) and their watermark labels: the evidence for `verify_watermark`."""
        import torch

        if not self.marked:
            return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
        return torch.stack([m[0] for m in self.marked]), torch.tensor([m[1] for m in self.marked])

    def report(self) -> dict:
        return {"marked": len(self.marked), "marked_fraction": len(self.marked) / self.queries if self.queries else 0.0}


def watermark_label(key: bytes, picture: "torch.Tensor", top: int, num_classes: int, rate: float) -> int | None:
    """The watermark label of one uint8 image whose honest top-1 is `top`, or None when it is not marked."""
    digest = hmac.new(key, str(tuple(picture.shape)).encode() + picture.contiguous().numpy().tobytes(),
                      hashlib.sha256).digest()
    if int.from_bytes(digest[:8], "big") >= rate * 2**64:
        return None
    return (top + 1 + int.from_bytes(digest[8:16], "big") % (num_classes - 1)) % num_classes


def verify_watermark(predict: Callable[["torch.Tensor"], "torch.Tensor"], marked_images: "torch.Tensor",
                     marked_labels: "torch.Tensor", num_classes: int) -> dict:
    """Does a suspect model (`predict`: images -> top-1 labels) reproduce the watermark labels more
    often than a model independent of the key could? Such a model matches a mark with probability at
    most 1/(K-1) (the mark is uniform over the K-1 classes other than the victim's top-1), so the
    p-value is the binomial tail P(X >= matches) at that chance. Returns marks, matches, chance,
    p_value and log10_p_value (the p-value may underflow a float; its log does not)."""
    chance = 1 / (num_classes - 1)
    if len(marked_labels) == 0:
        return {"marks": 0, "matches": 0, "chance": chance, "p_value": 1.0, "log10_p_value": 0.0}
    matches = int((predict(marked_images).cpu() == marked_labels.cpu()).sum())
    log10_p = binomial_log10_tail(matches, len(marked_labels), chance)
    return {"marks": len(marked_labels), "matches": matches, "chance": chance,
            "p_value": 10**log10_p, "log10_p_value": log10_p}


def binomial_log10_tail(successes: int, trials: int, chance: float) -> float:
    """log10 P(X >= successes) for X ~ Binomial(trials, chance), summed in log space."""
    if successes <= 0 or chance >= 1:
        return 0.0
    terms = [math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
             + k * math.log(chance) + (trials - k) * math.log1p(-chance) for k in range(successes, trials + 1)]
    peak = max(terms)
    return min(0.0, (peak + math.log(sum(math.exp(t - peak) for t in terms))) / math.log(10))
