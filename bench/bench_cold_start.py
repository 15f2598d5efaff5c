"""Seconds from starting a fresh app (empty cache, nothing measured or decoded) to the first curve point of the
page's default run, against the same run again on the warm cache in the same server (the baseline), and from
starting a fresh app given a warm pack of that cache (FMSTEAL_WARM_PACK, a local file: a Space would first
download it from the Hub, which is not measured here).

Launches `python app.py` with a new FMSTEAL_CACHE, as a freshly started Space is, waits until it serves, starts
the page's default form (its opening budget) on `--data` through the app's own API (`/start`, `gradio_client`)
and polls `/job` until the first agreement point and the end. Then the same run from a second visitor, warm.
Then `fmsteal pack` of that server's cache, and a second fresh server with its own empty cache and the pack.
Prints the figures and writes bench/results/bench_cold_start.json with the machine's details.

    python bench/bench_cold_start.py [--data ../shared/data/cifar10-jpeg.tar.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))


def served(url: str, server: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"app.py exited with {server.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"app.py did not serve {url} within {timeout:.0f} s")


def timed_run(client, values: dict) -> dict:
    """Seconds from /start to the first curve point and to the end of one run; its card's phase timings."""
    owner = secrets.token_hex(16)
    started = time.perf_counter()
    job = client.predict(owner, **values, api_name="/start")
    if not job["job_id"]:
        raise SystemExit(f"refused: {job['message']}")
    first = None
    while True:
        state = client.predict(job["job_id"], owner, api_name="/job")
        if first is None and state.get("checkpoints"):
            first = time.perf_counter() - started
        if state["status"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.25)
    if state["status"] != "done":
        raise SystemExit(f"the run ended {state['status']}: {state.get('error')}")
    return {"first_point_s": round(first, 1), "done_s": round(time.perf_counter() - started, 1),
            "timings": state["card"]["timings"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "bench_cold_start.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fmsteal-bench-cold-"))
    try:
        measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # two servers' caches and the pack: over a gigabyte


def measure(args: argparse.Namespace, work: Path) -> None:
    """The three starts, in `work`; prints and writes their figures."""
    os.environ["FMSTEAL_CACHE"] = str(work / "client-cache")  # importing the app here leaves the server's cache empty
    import app
    from fmsteal.experiment.config import FIELDS
    from machine import machine
    from app_fixtures import _free_port

    values = {**{field.name: field.default for field in FIELDS}, "budget": app.START_BUDGET, "data_dir": args.data}
    server, client, serving = launch(work / "cache", work / "runs", _free_port())
    try:
        cold = timed_run(client, values)
        warm = timed_run(client, values)
    finally:
        server.terminate()
    first_cold = serving + cold["first_point_s"]
    pack = work / "warm-pack.tar"
    subprocess.run([sys.executable, "-m", "fmsteal", "pack", str(pack)], cwd=REPO, check=True,
                   env=dict(os.environ, FMSTEAL_CACHE=str(work / "cache")), stdout=subprocess.DEVNULL)
    server, client, packed_serving = launch(work / "packed-cache", work / "packed-runs", _free_port(), pack)
    try:
        packed = timed_run(client, values)
    finally:
        server.terminate()
    first_packed = packed_serving + packed["first_point_s"]
    pack_mb = pack.stat().st_size / 2**20
    print(f"Default run ({app.START_BUDGET:,} queries, {values['victim']} victim, {values['thief']} thief) on "
          f"{Path(args.data).name}:")
    print(f"  fresh start: serving after {serving:.1f} s, first curve point {first_cold:.1f} s after launch "
          f"({cold['first_point_s']:.1f} s after Start), done {cold['done_s']:.1f} s after Start; phases {cold['timings']}")
    print(f"  warm (baseline): first curve point {warm['first_point_s']:.1f} s, done {warm['done_s']:.1f} s "
          f"(cold/warm to the first point {cold['first_point_s'] / warm['first_point_s']:.1f}x); phases {warm['timings']}")
    print(f"  fresh start with a warm pack of {pack_mb:,.0f} MB (local file): serving after "
          f"{packed_serving:.1f} s, first curve point {first_packed:.1f} s after launch ({first_packed / first_cold:.2f}x "
          f"the fresh start); phases {packed['timings']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "bench_cold_start", "when": time.strftime("%Y-%m-%d %H:%M:%S"), "data": Path(args.data).name,
        "budget": app.START_BUDGET, "serving_s": round(serving, 1), "first_point_after_launch_s": round(first_cold, 1),
        "cold": cold, "warm": warm, "pack_mb": round(pack_mb),
        "packed": {**packed, "serving_s": round(packed_serving, 1), "first_point_after_launch_s": round(first_packed, 1)},
        "ratios": {"first_point_cold_over_warm": round(cold["first_point_s"] / warm["first_point_s"], 2),
                   "first_point_packed_over_cold": round(first_packed / first_cold, 3)}, "machine": machine()}, indent=1))


def launch(cache: Path, runs: Path, port: int, pack: Path | None = None):
    """A fresh `python app.py` on `cache` (with FMSTEAL_WARM_PACK=`pack`): the process, a client, seconds to serve."""
    from gradio_client import Client

    env = dict(os.environ, FMSTEAL_CACHE=str(cache), FMSTEAL_RUNS=str(runs), HF_HUB_OFFLINE="1",
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               FMSTEAL_WARM_PACK=str(pack or ""))
    launched = time.perf_counter()
    server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    served(url, server)
    return server, Client(url, verbose=False), time.perf_counter() - launched


if __name__ == "__main__":
    main()
