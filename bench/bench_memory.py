"""Benchmark: a server's memory after a run, with and without handing the freed pages back.

Runs the default experiment (Lite0 victim and thief, 96 px, 1,000 queries, default evaluations) twice
through a `JobStore` on the mini CIFAR-10 archive, in a fresh process per mode, and reports the
process's RSS when idle (imports done, nothing run), at its peak and after each run:
  (kept)     the store's worker without `release_memory` (the behaviour before it);
  (released) the store as shipped: `release_memory()` after every run.
Writes bench/results/bench_memory.json, with the machine.
Usage: python bench/bench_memory.py [--data ARCHIVE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import machine  # bench/, the script's own folder

REPO = Path(__file__).resolve().parents[1]
MINI = REPO.parent / "shared" / "data" / "cifar10-mini-jpeg.tar.gz"

CHILD = """
import json, sys, tempfile, time
sys.path.insert(0, {repo!r})
import torch  # noqa: F401  (idle includes the libraries)
from fmsteal.service import jobs
from fmsteal.service.jobs import JobStore, new_owner_token
from fmsteal.experiment.config import ExperimentConfig

def rss(field="VmRSS"):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024

if {kept!r}:
    jobs.release_memory = lambda: None
store, owner = JobStore(tempfile.mkdtemp()), new_owner_token()
figures = {{"idle_mb": rss(), "after_mb": []}}
for seed in (0, 1):
    job = store.submit(ExperimentConfig(victim="tf_efficientnet_lite0", thief="tf_efficientnet_lite0", budget=1000,
                                        image_size=96, data_dir={data!r}, seed=seed), owner)
    while store.snapshot(job, owner)["status"] not in ("done", "failed", "cancelled"):
        time.sleep(0.2)
    assert store.snapshot(job, owner)["status"] == "done", store.snapshot(job, owner)
    while store._current is not None:  # the worker releases memory once the run's thread has ended
        time.sleep(0.05)
    time.sleep(0.5)
    figures["after_mb"].append(rss())
figures["peak_mb"] = rss("VmHWM")
store.close()
print(json.dumps(figures))
"""


def measure(data: str, kept: bool, cache: str) -> dict:
    """RSS figures (MB) of one fresh process running two default runs."""
    code = CHILD.format(repo=str(REPO), kept=kept, data=data)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "FMSTEAL_CACHE": cache})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MINI))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        results = {mode: measure(args.data, mode == "kept", cache) for mode in ("kept", "released")}
    for mode, figures in results.items():
        above = [round(after - figures["idle_mb"]) for after in figures["after_mb"]]
        print(f"{mode:9s} idle {figures['idle_mb']:6.0f} MB  peak {figures['peak_mb']:6.0f} MB  "
              f"after each run {', '.join(f'+{a} MB' for a in above)} above idle")
    kept, released = (results[m]["after_mb"][-1] - results[m]["idle_mb"] for m in ("kept", "released"))
    print(f"memory held after the runs: {released:.0f} MB released vs {kept:.0f} MB kept "
          f"({released / kept:.2f}x)")
    out = REPO / "bench" / "results" / "bench_memory.json"
    figures = {**results, "held_ratio": round(released / kept, 3), "machine": machine()}
    out.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
