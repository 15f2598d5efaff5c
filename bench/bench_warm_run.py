"""Benchmark: the page's default run (Lite0 victim and thief, 5,000 random top-1 queries, all of CIFAR-10) on
a warm cache, end to end, without and with the default evaluations; against an older checkout in the same run.

Each measurement is a fresh process (`run` from that checkout's package) on one shared cache that already
holds the decoded images, the 96 px features and the measured speeds (the first, untimed pass fills it); the
"with evaluations" run is timed twice, as a classroom repeats it: the first on features no run has left yet
(the corrupted test images'), the second after one has. Targets (issue #22): at most 5 s without the
evaluations and 15 s with the default ones. Writes bench/results/bench_warm_run.json.

    python bench/bench_warm_run.py [--baseline ../fmsteal-old] [--data ../shared/data/cifar10-jpeg.tar.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
sys.path.insert(0, {repo!r})
from fmsteal.experiment.pipeline import ExperimentConfig, run
config = ExperimentConfig(data_dir={data!r}, evaluations={evaluations!r}, seed={seed})
started = time.perf_counter()
card = {{}}
for event in run(config):
    card = event.get("card", card)
print(json.dumps({{"seconds": time.perf_counter() - started, "timings": card["timings"],
                   "agreement": card["agreement"]}}))
"""


def timed(repo: Path, data: str, evaluations: str, cache: str, seed: int = 0) -> dict:
    """Wall seconds (inside the child, imports excluded), phase timings and agreement of one default run."""
    code = CHILD.format(repo=str(repo), data=data, evaluations=evaluations, seed=seed)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "FMSTEAL_CACHE": cache})
    if out.returncode:
        raise SystemExit(f"{repo}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(repo: Path, data: str, cache: str) -> dict:
    """The three timed runs of one checkout, after an untimed one that warms `cache` for it (another seed's, so
    the speed probes are paid and no corrupted image of seed 0 is cached yet)."""
    timed(repo, data, "default", cache, seed=1)
    return {"no_evaluations": timed(repo, data, "none", cache),
            "default_first": timed(repo, data, "default", cache, seed=0),
            "default_again": timed(repo, data, "default", cache, seed=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--baseline", default=None, help="a checkout of an older commit, timed the same way")
    parser.add_argument("--cache", default=None, help="a cache to start from (default: a new one)")
    args = parser.parse_args()
    checkouts = {"this": REPO, **({"baseline": Path(args.baseline).resolve()} if args.baseline else {})}
    results = {}
    for name, repo in checkouts.items():
        cache = args.cache or tempfile.mkdtemp(prefix=f"fmsteal-bench-warm-{name}-")
        results[name] = measure(repo, args.data, cache)
        for case, figures in results[name].items():
            phases = "  ".join(f"{k} {v:.1f}s" for k, v in figures["timings"].items() if k != "total" and v >= 0.1)
            print(f"{name:8} {case:15} {figures['seconds']:6.1f} s   ({phases})")
    for case in ("no_evaluations", "default_first", "default_again"):
        if "baseline" in results:
            ratio = results["this"][case]["seconds"] / results["baseline"][case]["seconds"]
            print(f"{case:15} this / baseline = {ratio:.2f}x")
    out = REPO / "bench" / "results" / "bench_warm_run.json"
    out.write_text(json.dumps({"benchmark": "bench_warm_run", "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "baseline": str(args.baseline), "results": results}, indent=1) + "\n")
    print(f"written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
