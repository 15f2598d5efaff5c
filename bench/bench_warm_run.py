"""Benchmark: the page's default run (Lite0 victim and thief, 5,000 random top-1 queries, all of CIFAR-10) on
a warm cache, end to end, without and with the default evaluations; against an older checkout in the same run.

Each measurement is a fresh process (`run` from that checkout's package, its imports excluded, as a server has
made them at launch) on the checkout's own copy of a cache that already holds the decoded images, the 96 px
features and the measured speeds (an untimed run fills it). With the evaluations, the first run meets features
no run has left yet (the corrupted test images'); later ones, as a classroom repeats a run, find them. Medians of --repeats runs, the checkouts interleaved. Targets (issue #22):
at most 5 s without the evaluations and 15 s with the default ones. Writes
bench/results/bench_warm_run.json, with the machine.

    python bench/bench_warm_run.py [--baseline ../fmsteal-old] [--data ../shared/data/cifar10-jpeg.tar.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine  # bench/, the script's own folder

REPO = Path(__file__).resolve().parents[1]


CHILD = """
import json, sys, time
sys.path.insert(0, {repo!r})
from fmsteal.experiment.pipeline import ExperimentConfig, run
import timm, torch._dynamo, torchvision  # loaded on first use (torch.optim loads torch._dynamo): a server has, untimed
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


def measure(checkouts: dict[str, Path], data: str, cache: str, repeats: int) -> dict:
    """Each checkout's runs, interleaved so a drift of the machine's speed hits both alike, each on its own copy of
    one cache the first checkout filled (a run's files serve the other checkout's too): an untimed run of another
    seed (it pays the speed probes; no corrupted image of seed 0 is cached yet), the first run with evaluations,
    then `repeats` rounds of a run without them and one with them again."""
    first = next(iter(checkouts.values()))
    timed(first, data, "none", cache, seed=1)  # decodes and embeds the data once, for every copy
    caches = {name: shutil.copytree(cache, f"{cache}-{name}") for name in checkouts}
    for name, repo in checkouts.items():
        timed(repo, data, "default", caches[name], seed=1)
    runs = {name: {"default_first": [timed(repo, data, "default", caches[name])], "no_evaluations": [],
                   "default_again": []} for name, repo in checkouts.items()}
    for _ in range(repeats):
        for name, repo in checkouts.items():
            runs[name]["no_evaluations"].append(timed(repo, data, "none", caches[name]))
            runs[name]["default_again"].append(timed(repo, data, "default", caches[name]))
    return runs


def median(runs: list[dict]) -> float:
    return statistics.median(run["seconds"] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--baseline", default=None, help="a checkout of an older commit, timed the same way")
    parser.add_argument("--cache", default=None, help="a cache to start from (default: a new one)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case whose median is reported")
    args = parser.parse_args()
    checkouts = {"this": REPO, **({"baseline": Path(args.baseline).resolve()} if args.baseline else {})}
    cache = args.cache or tempfile.mkdtemp(prefix="fmsteal-bench-warm-")
    try:
        runs = measure(checkouts, args.data, cache, args.repeats)
    finally:
        for copy in [f"{cache}-{name}" for name in checkouts] + ([] if args.cache else [cache]):
            shutil.rmtree(copy, ignore_errors=True)  # a cache given with --cache is kept
    seconds = {name: {case: round(median(case_runs), 2) for case, case_runs in cases.items()}
               for name, cases in runs.items()}
    for name, cases in seconds.items():
        print(f"{name:8} " + "  ".join(f"{case} {value:.1f} s" for case, value in cases.items()))
    ratios = {case: round(seconds["this"][case] / seconds["baseline"][case], 2)
              for case in seconds["this"]} if "baseline" in seconds else {}
    for case, ratio in ratios.items():
        print(f"{case:15} this / baseline = {ratio:.2f}x")
    out = REPO / "bench" / "results" / "bench_warm_run.json"
    out.write_text(json.dumps({"benchmark": "bench_warm_run", "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "baseline": args.baseline, "repeats": args.repeats, "median_seconds": seconds,
                               "ratios": ratios, "runs": runs, "machine": machine()}, indent=1) + "\n")
    print(f"written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
