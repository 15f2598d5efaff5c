"""Victim output modes: how much of its probabilities the API reveals, as a registry.

Each mode is `fn(probs, top_k, decimals) -> Answers`. Imports no torch (tensor methods only).
"""

from __future__ import annotations

from fmsteal.registry import Registry

__all__ = ["OUTPUT_MODES"]

OUTPUT_MODES = Registry("output mode")


def _answers(**parts):
    from fmsteal.adversary.blackbox import Answers

    return Answers(**parts)


@OUTPUT_MODES.register("label", help="the top-1 class only (the paper's setting)")
def label(probs, top_k: int, decimals: int):
    return _answers(labels=probs.argmax(1))


@OUTPUT_MODES.register("topk", help="the k most likely classes, best first")
def topk(probs, top_k: int, decimals: int):
    return _answers(labels=probs.argmax(1), topk=probs.topk(top_k, dim=1).indices)


@OUTPUT_MODES.register("probs", help="the full probability vector")
def probabilities(probs, top_k: int, decimals: int):
    return _answers(labels=probs.argmax(1), probs=probs)


@OUTPUT_MODES.register("rounded", help="probabilities rounded to a few decimals")
def rounded(probs, top_k: int, decimals: int):
    return _answers(labels=probs.argmax(1), probs=probs.round(decimals=decimals))
