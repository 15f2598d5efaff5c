"""Benchmark: the adversarial-transfer stage's cost at its default setting, against one forward pass.

Builds a small real run (EfficientNet-Lite0 LP victim and thief, CIFAR-10 subset, 96 px: Lite0's CPU
size), then times in the same process:
  (0) one forward pass of the thief's pixel-space model over the N attacked images (the baseline),
  (1) one forward+backward pass (input gradient) over them,
  (2) the independent surrogate's training alone, and (3) the whole `transfer` stage.
Prints seconds, pass counts, ratios to (0), and the N that would fit a minute on this machine now.
Usage: python bench/bench_transfer.py [--size 96] [--n N] [--steps S]

Measured 2026-11-25 (2 cores shared, load average 7.7; n=48 and 10 steps, the defaults then): one forward+backward
pass = 3.8x a forward pass; the stage = 148x one forward pass over the n images (1,536 forward+backward
passes and 288 victim forwards; the LP surrogate's training 0.6x). At the ~210 images/s Lite0@96 forwards
on an idle 2-core CPU, that is about 35 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--n", type=int, default=None, help="images attacked (default: the stage's default)")
    parser.add_argument("--steps", type=int, default=None, help="PGD steps (default: the stage's default)")
    args = parser.parse_args()
    os.environ.setdefault("FMSTEAL_CACHE", tempfile.mkdtemp(prefix="fmsteal-bench-transfer-"))

    from evaluation_fixtures import build_context, drain

    from fmsteal.evaluation.attacks import input_gradient
    from fmsteal.evaluation.pixel_models import pixel_model
    from fmsteal.evaluation.registry import EVALUATIONS
    from fmsteal.evaluation.transfer import correct_images, train_independent

    entry = EVALUATIONS.get("transfer")
    params = entry.validate({k: v for k, v in (("n", args.n), ("steps", args.steps)) if v is not None})
    build_s, ctx = timed(lambda: build_context(str(ARCHIVE), size=args.size))
    chosen = correct_images(ctx, params["n"])
    n = len(chosen)
    x, y = ctx.test.images[chosen].float() / 255, ctx.test.labels[chosen]
    thief = pixel_model(ctx.thief)

    def forward():
        with torch.no_grad():
            for start in range(0, n, 32):
                thief(x[start:start + 32])

    def forward_backward():
        for start in range(0, n, 32):
            input_gradient(thief, x[start:start + 32], y[start:start + 32])

    forward()  # warm-up
    forward_s, _ = timed(forward)
    gradient_s, _ = timed(forward_backward)
    surrogate_s, _ = timed(lambda: drain(train_independent(ctx)))
    stage_s, result = timed(lambda: drain(entry.fn(ctx, params)))
    passes = result["gradient_passes"]
    victim_forwards = n * 6  # the victim's answer to each of the six perturbed sets

    print(f"Lite0 LP victim and thief at {args.size}px, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} (context built in {build_s:.0f}s)")
    print(f"n={n} eps={params['eps']:.4f} step={params['step']:.4f} steps={params['steps']}")
    print(f"(0) one forward pass over n images      {forward_s:8.2f}s  1.00x")
    print(f"(1) one forward+backward pass            {gradient_s:8.2f}s  {gradient_s / forward_s:5.2f}x")
    print(f"(2) independent surrogate training       {surrogate_s:8.2f}s  {surrogate_s / forward_s:5.2f}x")
    print(f"(3) whole transfer stage                 {stage_s:8.2f}s  {stage_s / forward_s:5.2f}x")
    print(f"    = {passes:,} image forward+backward passes + {victim_forwards:,} victim forwards "
          f"({passes / n:.0f} and {victim_forwards / n:.0f} per image)")
    per_image = (stage_s - surrogate_s) / n
    print(f"    {per_image:.2f}s per attacked image: about {int((60 - surrogate_s) / per_image)} images fit in a minute here, now")
    print("rates:", {k: round(result[k], 3) for k in ("thief_fgsm", "thief_pgd", "independent_fgsm",
                                                      "independent_pgd", "noise", "victim_whitebox_pgd")})


if __name__ == "__main__":
    main()
