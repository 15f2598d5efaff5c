"""Benchmark: the embedding cache vs recomputing backbone features every epoch, as the paper's code does.

Runs one small LP experiment (EfficientNet-Lite0 victim and thief, real CIFAR-10 subset) three ways:
  (a) fmsteal with a cold cache, (a') the same run again with a warm cache,
  (b) the paper's way: every epoch of victim and thief training runs the frozen backbone over
      augmented copies of the images (crop + flip); one run per budget.
Prints wall times, their ratios to (b) and all agreements, and writes them with the machine, load and
library versions to bench/results/bench_cache.json (the README quotes that file).
Usage: python bench/bench_cache.py [--epochs N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import machine  # noqa: E402  (bench/ is the script's own folder)

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
RESULTS = Path(__file__).resolve().parent / "results" / "bench_cache.json"


def cached_run(config) -> tuple[float, dict]:
    from fmsteal.experiment.pipeline import run

    started = time.perf_counter()
    card = list(run(config))[-1]["card"]
    return time.perf_counter() - started, card


def paper_style_run(config, epochs: int) -> tuple[float, float]:
    """Victim and thief linear probes whose features are recomputed on augmented images every epoch."""
    from fmsteal.engine.augment import random_crop_flip
    from fmsteal.engine.data import load_splits, stratified_subset
    from fmsteal.engine.embed import preprocess
    from fmsteal.experiment.phases import split_pool
    from fmsteal.evaluation.metrics import agreement
    from fmsteal.engine.zoo import get_backbone, load_backbone

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    spec = get_backbone(config.victim)
    backbone = load_backbone(spec, config.image_size).eval()
    splits = load_splits(config.data_dir)
    train = stratified_subset(splits.train, config.train_per_class)
    test = stratified_subset(splits.test, config.test_per_class)
    victim_train, _, pool = split_pool(config, train)

    @torch.no_grad()  # not inference_mode: the head's backward needs these as ordinary tensors
    def features(images: torch.Tensor, augment: bool) -> torch.Tensor:
        batch = random_crop_flip(images) if augment else images
        return backbone(preprocess(batch, config.image_size, spec.mean, spec.std))

    def train_head(images: torch.Tensor, labels: torch.Tensor) -> torch.nn.Linear:
        head = torch.nn.Linear(spec.feature_dim, len(train.class_names))
        optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
        for _ in range(epochs):
            for index in torch.randperm(len(images)).split(256):
                loss = torch.nn.functional.cross_entropy(head(features(images[index], True)), labels[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return head.eval()

    def predict(head: torch.nn.Linear, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([head(features(chunk, False)).argmax(1) for chunk in images.split(256)])

    victim = train_head(victim_train.images, victim_train.labels)
    queried = pool.images[torch.randperm(len(pool), generator=torch.Generator().manual_seed(config.seed))[:config.budget]]
    thief = train_head(queried, predict(victim, queried))
    score = agreement(predict(thief, test.images), predict(victim, test.images))
    return time.perf_counter() - started, score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="epochs of victim and thief training (fast preset: 30)")
    parser.add_argument("--per-class", type=int, default=200, help="train images per class (pool is half)")
    parser.add_argument("--budget", type=int, default=800)
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = parser.parse_args()
    if not ARCHIVE.exists():
        print(f"needs the shared CIFAR-10 archive at {ARCHIVE}")
        return 1
    os.environ["FMSTEAL_CACHE"] = tempfile.mkdtemp(prefix="fmsteal-bench-")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    from fmsteal.engine.data import load_splits
    from fmsteal.experiment.pipeline import ExperimentConfig

    decoding = time.perf_counter()
    load_splits(str(ARCHIVE))  # decoded once for all three ways, so no way pays for the JPEGs
    print(f"decoding CIFAR-10 (not counted below): {time.perf_counter() - decoding:.1f} s")

    config = ExperimentConfig("tf_efficientnet_lite0", "tf_efficientnet_lite0", budget=args.budget,
                              data_dir=str(ARCHIVE), train_per_class=args.per_class, test_per_class=100, image_size=64)
    print(f"LP experiment: Lite0 victim and thief, {args.per_class * 10} train images (half the query pool), "
          f"{args.budget} queries, 1000 test images, 64px, {args.epochs} epochs, {torch.get_num_threads()} threads")
    cold, card = cached_run(config)
    warm, warm_card = cached_run(config)
    paper_time, paper_agreement = paper_style_run(config, args.epochs)
    print(f"(a)  fmsteal, cold cache : {cold:7.1f} s  agreement {card['agreement']:.3f}  "
          f"(whole curve: {len(card['curve'])} budgets in one run)")
    print(f"(a') fmsteal, warm cache : {warm:7.1f} s  agreement {warm_card['agreement']:.3f}")
    print(f"(b)  paper-style         : {paper_time:7.1f} s  agreement {paper_agreement:.3f}  (one budget per run)")
    print(f"speed-up vs paper-style  : cold {paper_time / cold:.1f}x, warm {paper_time / warm:.1f}x; "
          f"paper-style for the same curve would take ~{paper_time * len(card['curve']):.0f} s")
    record = {
        "benchmark": "bench/bench_cache.py", "command": "python bench/bench_cache.py " + " ".join(sys.argv[1:]),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {**machine(), "load_average_at_start_1_5_15min": load_at_start},
        "versions": card["versions"], "threads": torch.get_num_threads(),
        "setup": {"victim": config.victim, "thief": config.thief, "victim_train_images": card["victim_train_size"],
                  "budget": args.budget, "test_images": card["test_size"], "image_size": config.image_size,
                  "epochs": args.epochs},
        "seconds": {"cold_cache": round(cold, 2), "warm_cache": round(warm, 2), "paper_style": round(paper_time, 2)},
        "ratios_to_paper_style": {"cold_cache": round(paper_time / cold, 1), "warm_cache": round(paper_time / warm, 1)},
        "agreement": {"cold_cache": card["agreement"], "warm_cache": warm_card["agreement"],
                      "paper_style": paper_agreement},
        "curve_budgets_per_run": len(card["curve"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
