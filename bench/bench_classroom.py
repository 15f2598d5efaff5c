"""Seconds from pressing "The paper's contrast" to both curves on screen, cold and warm cache.

Launches `python app.py` on a fresh cache (cold), opens the page in headless Chromium (Debian's
chromium, Playwright), sets a small CIFAR-10 subset, presses the scenario button and waits until the
comparison plot holds both victims' finished curves; then a second visitor (a fresh browser, so new
runs of their own) presses it again on the warm cache (decoded images, features, trained victims). Prints both
figures and their ratio, then the time each scenario's button shows for the page's default form on the whole
data set (with the speeds this run measured), and writes bench/results/bench_classroom.json with the machine's details.

    python bench/bench_classroom.py [--data ../shared/data/cifar10-jpeg.tar.gz] [--budget 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

BOTH_DONE = ("() => { const p = document.querySelector('#comparison .js-plotly-plot');"
             " return p && p.data && p.data.filter(t => !t.name.includes('precomputed') && t.x &&"
             " t.x.length && t.x[t.x.length - 1] === {budget}).length >= 2 }")


def press_and_wait(page, budget: int) -> float:
    page.locator("#scenario-contrast").click()
    pressed = time.perf_counter()
    page.wait_for_function(BOTH_DONE.replace("{budget}", str(budget)), timeout=3_600_000)
    return time.perf_counter() - pressed


def scenario_estimates(cache: Path, data: str) -> dict[str, float | None]:
    """Seconds each scenario's button shows for the page's default form on `data` (the speeds `cache` measured)."""
    os.environ["FMSTEAL_CACHE"] = str(cache)
    sys.path.insert(0, str(REPO))
    import app
    from fmsteal.experiment.config import FIELDS
    from fmsteal.service import classroom

    values = {**{field.name: field.default for field in FIELDS}, "budget": app.START_BUDGET, "data_dir": data}
    return {entry.name: app.scenario_seconds(entry.name, values) for entry in classroom.SCENARIOS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "bench_classroom.json"))
    args = parser.parse_args()
    from app_fixtures import _free_port, extract_subset
    from browser_fixtures import ARGS, CHROMIUM, configure
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="fmsteal-bench-classroom-"))
    data = extract_subset(Path(args.data), work / "data", train=100, test=50)
    port = _free_port()
    env = dict(os.environ, FMSTEAL_CACHE=str(work / "cache"), FMSTEAL_RUNS=str(work / "runs"), HF_HUB_OFFLINE="1",
               GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            seconds = []
            for visitor in ("cold", "warm"):
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                for _ in range(240):
                    try:
                        page.goto(f"http://127.0.0.1:{port}/")
                        break
                    except Exception:
                        time.sleep(0.5)
                page.wait_for_selector("#curve .js-plotly-plot")
                configure(page, data, budget=args.budget, seed=0)
                seconds.append(press_and_wait(page, args.budget))
            cold, warm = seconds
            browser.close()
    finally:
        server.terminate()
    print(f"The paper's contrast, {args.budget} queries, 100 train + 50 test images per class:")
    print(f"  cold cache {cold:.1f} s, warm cache {warm:.1f} s (warm/cold {warm / cold:.2f})")
    estimates = scenario_estimates(work / "cache", args.data)
    print(f"Each scenario's estimate on the page's defaults with {Path(args.data).name}, this cache: "
          + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in estimates.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "bench_classroom", "when": time.strftime("%Y-%m-%d %H:%M:%S"), "budget": args.budget,
        "cold_s": round(cold, 1), "warm_s": round(warm, 1), "scenario_estimates_s": estimates,
        "load_average": os.getloadavg(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}},
        indent=1))


if __name__ == "__main__":
    main()
