"""How close the page's time estimate is to the run it predicts, cold and warm, odd image sizes included.

For each configuration (real CIFAR-10 subsets, offline backbones) in a fresh cache: the estimate
made before the run (`fmsteal.experiment.estimate`), the run's measured wall time, and their ratio;
then the same configuration again on the now-warm cache. Target: every ratio within 0.7-1.3.
Prints a table (with each phase's estimated/measured seconds where either is 1 s or more) and writes bench/results/bench_estimate.json with the machine's details.

    python bench/bench_estimate.py [--data ../shared/data/cifar10-jpeg.tar.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LITE0 = "tf_efficientnet_lite0"
CASES = [  # name, config overrides (on top of a 100 train / 50 test images per class subset)
    ("LP Lite0/Lite0 96 px", dict(victim=LITE0, thief=LITE0, budget=400)),
    ("LP Lite0/Lite0 72 px (odd size)", dict(victim=LITE0, thief=LITE0, budget=400, image_size=72)),
    ("LP Lite0/Lite1 96 px, k-center", dict(victim=LITE0, thief="tf_efficientnet_lite1", budget=400, strategy="kcenter")),
    ("FFT scratch victim, LP Lite0 thief", dict(victim="scratch_cnn", thief=LITE0, budget=400)),
    ("FFT Lite0 thief 48 px", dict(victim=LITE0, thief=LITE0, budget=150, thief_mode="fft", image_size=48)),
]


def measure(config) -> tuple[float, float, dict]:
    """(estimated seconds, measured seconds, {phase: [estimated, measured]}) of one run of `config`."""
    from fmsteal.experiment import run
    from fmsteal.experiment.estimate import estimate

    predicted = estimate(config, device="cpu")  # measures this machine's speeds on first use
    started = time.perf_counter()
    card = {}
    for event in run(config):
        card = event.get("card", card)
    took = time.perf_counter() - started
    phases = {name: [round(predicted["phases"].get(name, 0.0), 2), round(seconds, 2)]
              for name, seconds in card.get("timings", {}).items() if name != "total"}
    return predicted["seconds"], took, phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "bench_estimate.json"))
    parser.add_argument("--only", default="", help="run only the configurations whose name contains this")
    args = parser.parse_args()
    os.environ["FMSTEAL_CACHE"] = tempfile.mkdtemp(prefix="fmsteal-bench-estimate-")
    import torch

    from fmsteal.experiment.config import ExperimentConfig

    rows = []
    print(f"{'configuration':38} {'cache':5} {'estimate':>9} {'measured':>9} {'ratio':>6}")
    for name, overrides in [case for case in CASES if args.only in case[0]]:
        config = ExperimentConfig(data_dir=args.data, train_per_class=100, test_per_class=50, **overrides)
        for cache in ("cold", "warm"):
            predicted, took, phases = measure(config)
            rows.append({"configuration": name, "cache": cache, "estimate_s": round(predicted, 2),
                         "measured_s": round(took, 2), "ratio": round(predicted / took, 3), "phases": phases})
            detail = "  ".join(f"{phase} {e:.0f}/{m:.0f}s" for phase, (e, m) in phases.items() if max(e, m) >= 1)
            print(f"{name:38} {cache:5} {predicted:8.1f}s {took:8.1f}s {predicted / took:6.2f}   {detail}")
    ratios = [r["ratio"] for r in rows]
    print(f"ratios {min(ratios):.2f}-{max(ratios):.2f}; within +-30%: {sum(0.7 <= r <= 1.3 for r in ratios)}/{len(ratios)}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "bench_estimate", "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "rows": rows}, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
