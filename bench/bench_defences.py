"""Benchmark: per-query cost of each defence, relative to the undefended black-box answer.

A thief's budget of 5,000 queries (real 32 x 32 CIFAR-10 training images when the shared archive is
there, random pixels otherwise) is answered in batches of 500 by a `BlackBoxVictim` in `probs` mode
whose victim returns precomputed 10-class probabilities (so only the box and its defence are timed),
once undefended and once per defence (default parameters, a fresh instance per run, best of
`--repeats`). Prints microseconds per query, the ratio to the undefended answer, and the ratio to one
forward pass of the Lite0 backbone at 64 px (what a real victim spends per query anyway).
Usage: python bench/bench_defences.py [--queries N] [--repeats R]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
BATCH = 500
CLASSES = 10


def query_stream(count: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(uint8 images, probabilities a confident victim would give them, where the images came from)."""
    generator = torch.Generator().manual_seed(0)
    if ARCHIVE.exists():
        from fmsteal.engine.data import load_splits

        train = load_splits(str(ARCHIVE)).train
        pick = torch.randperm(len(train), generator=generator)[:count]
        images, labels, source = train.images[pick], train.labels[pick], "CIFAR-10 train images"
    else:
        images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
        labels, source = torch.randint(0, CLASSES, (count,), generator=generator), "random pixels (no archive)"
    logits = 4 * torch.nn.functional.one_hot(labels, CLASSES) + torch.randn(count, CLASSES, generator=generator)
    return images, logits.softmax(1), source


class Precomputed:
    """A victim that answers the stream's probabilities in order (its own cost is a slice)."""

    def __init__(self, probs: torch.Tensor) -> None:
        self.probs, self.position = probs, 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.position += len(batch)
        return self.probs[self.position - len(batch):self.position]


def time_answers(images: torch.Tensor, probs: torch.Tensor, defence_name: str | None, repeats: int) -> float:
    """Best seconds over `repeats` to answer the whole stream in batches of BATCH, as the thief sends it."""
    from fmsteal.adversary.blackbox import BlackBoxVictim
    from fmsteal.adversary.defences import DefenceContext, build_defence

    batches = [images[start:start + BATCH].float() / 255 for start in range(0, len(images), BATCH)]
    best = float("inf")
    for _ in range(repeats):
        defence = build_defence(defence_name, {}, DefenceContext(CLASSES, 0)) if defence_name else None
        victim = BlackBoxVictim(Precomputed(probs), CLASSES, "probs", len(images), defence=defence)
        started = time.perf_counter()
        for batch in batches:
            victim(batch)
        best = min(best, time.perf_counter() - started)
    return best


def backbone_seconds_per_image(repeats: int) -> float:
    """One forward pass of Lite0 at 64 px, per image (batch 64)."""
    from fmsteal.engine.zoo import get_backbone, load_backbone

    model = load_backbone(get_backbone("tf_efficientnet_lite0"), 64).eval()
    batch = torch.rand(64, 3, 64, 64)
    best = float("inf")
    with torch.inference_mode():
        model(batch)
        for _ in range(repeats):
            started = time.perf_counter()
            model(batch)
            best = min(best, time.perf_counter() - started)
    return best / len(batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from fmsteal.adversary.defences import DEFENCES

    images, probs, source = query_stream(args.queries)
    print(f"{args.queries:,} queries of {source}, {CLASSES} classes, batches of {BATCH}, "
          f"{torch.get_num_threads()} threads; best of {args.repeats}")
    baseline = time_answers(images, probs, None, 3 * args.repeats)  # the smallest figure: its noise matters most
    forward = backbone_seconds_per_image(args.repeats)
    print(f"undefended answer: {baseline / args.queries * 1e6:.2f} us/query; "
          f"Lite0 forward at 64 px: {forward * 1e6:.0f} us/image\n")
    print(f"{'defence':<26}{'us/query':>10}{'x undefended':>14}{'x Lite0 forward':>17}")
    for entry in DEFENCES:
        seconds = time_answers(images, probs, entry.name, args.repeats)
        per_query = seconds / args.queries
        print(f"{entry.name:<26}{per_query * 1e6:>10.2f}{seconds / baseline:>14.1f}{per_query / forward:>17.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
