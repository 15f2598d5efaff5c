"""The README's findings on the precomputed grids are exactly what the code computes from the committed tables:
a new sweep that changes a number fails here until `python scripts/print_findings.py --write` is run."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NAMES = ["defences, label answers", "defences, probs answers", "consequences", "transfer over epsilons",
         "adversarial fidelity", "confound table", "confound", "status defences-cifar10", "status consequences-cifar10",
         "status transfer-sweep-cifar10", "status adversarial-fidelity-cifar10", "status confound-cifar10"]


def _script():
    spec = importlib.util.spec_from_file_location("print_findings", REPO / "scripts" / "print_findings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def findings() -> dict[str, str]:
    return _script().readme_findings()


def test_every_finding_has_its_region_in_the_readme(findings):
    assert sorted(findings) == sorted(NAMES)
    regions = re.findall(r"<!-- finding: (.+?) -->\n", (REPO / "README.md").read_text())
    assert sorted(regions) == sorted(NAMES)  # each once


@pytest.mark.parametrize("name", NAMES)
def test_the_readme_quotes_each_finding_as_computed(findings, name: str) -> None:
    finding = findings[name]
    assert not finding.startswith("No precomputed"), f"precomputed/ lacks the table behind the {name} finding"
    region = re.search(rf"<!-- finding: {re.escape(name)} -->\n(.*?)\n<!-- /finding -->",
                       (REPO / "README.md").read_text(), re.S)
    assert region.group(1) == finding, f"README out of date for {name}: run `python scripts/print_findings.py --write`"


def test_writing_replaces_only_the_regions(findings, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- finding: consequences -->\n<!-- /finding -->\n"  # a new, empty region before another
                      "intro\n<!-- finding: confound -->\nold text\n<!-- /finding -->\noutro\n")
    absent = _script().write_readme({"confound": "new text", "consequences": "filled", "nowhere": "x"}, readme)
    assert readme.read_text() == ("<!-- finding: consequences -->\nfilled\n<!-- /finding -->\n"
                                  "intro\n<!-- finding: confound -->\nnew text\n<!-- /finding -->\noutro\n")
    assert absent == ["nowhere"]


def test_the_readme_benchmark_rows_quote_the_committed_results() -> None:
    """The Benchmarks table's figures are the ones the benchmarks wrote to bench/results/."""
    import json

    rows = {line.split("|")[1].strip(" `"): line for line in (REPO / "README.md").read_text().splitlines()
            if line.startswith("| `bench_")}
    load = lambda name: json.loads((REPO / "bench" / "results" / f"{name}.json").read_text())  # noqa: E731
    for results in (REPO / "bench" / "results").glob("*.json"):  # each says what it was measured on
        assert f"{results.stem}.py" in rows and "machine" in load(results.stem), results.name
    ratios = [row["ratio"] for row in load("bench_estimate")["rows"]]
    within = sum(0.7 <= ratio <= 1.3 for ratio in ratios)
    assert f"{min(ratios):.2f}-{max(ratios):.2f}; {within} of {len(ratios)} within ±30%" in rows["bench_estimate.py"]
    classroom = load("bench_classroom")
    assert f"cold {classroom['cold_s']:.1f} s, warm {classroom['warm_s']:.1f} s" in rows["bench_classroom.py"]
    estimates = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in classroom["scenario_estimates_s"].items())
    assert f"each scenario's estimate on all of CIFAR-10: {estimates}" in rows["bench_classroom.py"]
    embed = load("bench_embed")["rows"]
    lite0 = {(row["size"], row["pass"]): row["speedup"] for row in embed if row["backbone"] == "tf_efficientnet_lite0"}
    resnet = [row["speedup"] for row in embed if row["backbone"] == "resnet18"]
    assert (f"Lite0 forward {lite0[(96, 'forward')]:.2f}x at 96 px, {lite0[(32, 'forward')]:.2f}x at 32 px; "
            f"forward+backward {lite0[(96, 'gradient')]:.2f}x and {lite0[(32, 'gradient')]:.2f}x "
            f"(ResNet-18 {min(resnet):.2f}-{max(resnet):.2f}x)") in rows["bench_embed.py"]
    warm = load("bench_warm_run")
    this, base, ratio = warm["median_seconds"]["this"], warm["median_seconds"]["baseline"], warm["ratios"]
    assert ", ".join(f"{label} {this[case]:.1f} s ({'baseline ' * (case == 'no_evaluations')}{base[case]:.1f} s, "
                     f"{ratio[case]:.2f}x)" for label, case in (("without", "no_evaluations"), ("first", "default_first"),
                                                                ("again", "default_again"))) in rows["bench_warm_run.py"]
    again = {name: warm["runs"][name]["default_again"] for name in ("this", "baseline")}
    spans = {name: f"{min(r['seconds'] for r in runs):.1f}-{max(r['seconds'] for r in runs):.1f} s"
             for name, runs in again.items()}
    median_run = sorted(again["this"], key=lambda r: r["seconds"])[len(again["this"]) // 2]
    assert (f"again with evaluations: {spans['this']}, baseline {spans['baseline']}; the evaluations take "
            f"{median_run['timings']['evaluate']:.1f} s of this median run" in rows["bench_warm_run.py"])
    cold = load("bench_cold_start")
    assert (f"first curve point {cold['first_point_after_launch_s']:.1f} s after launch (serving after "
            f"{cold['serving_s']:.1f} s; embedding 60,000 images took {cold['cold']['timings']['embed']:.1f} s), warm "
            f"{cold['warm']['first_point_s']:.1f} s (cold / warm {cold['ratios']['first_point_cold_over_warm']:.1f}x); "
            f"given a warm pack of {cold['pack_mb']:,} MB (a local file) {cold['packed']['first_point_after_launch_s']:.1f}"
            f" s after launch ({cold['ratios']['first_point_packed_over_cold']:.2f}x the fresh start)"
            in rows["bench_cold_start.py"])
    warm_start = (REPO / "README.md").read_text().split("### Warm start", 1)[1].split("\n\n", 2)[1]
    assert (f"({cold['cold']['timings']['embed']:.1f} s on a 2-core CPU, `bench_cold_start.py`)" in warm_start
            and cold["machine"]["cpus"] == 2)
    assert (f"given one\n({cold['pack_mb']:,} MB, a local file), a fresh app on the same machine showed the default run's "
            f"first curve point {cold['packed']['first_point_after_launch_s']:.1f} s after\nlaunch" in warm_start)
    memory = load("bench_memory")
    held = {mode: memory[mode]["after_mb"][-1] - memory[mode]["idle_mb"] for mode in ("released", "kept")}
    assert (f"+{held['released']:,.0f} MB above idle against +{held['kept']:,.0f} MB ({memory['held_ratio']:.2f}x)"
            in rows["bench_memory.py"])
    cache = load("bench_cache")
    seconds, ratio = cache["seconds"], cache["ratios_to_paper_style"]
    assert (f"cold cache {seconds['cold_cache']:.1f} s, warm {seconds['warm_cache']:.1f} s, paper's way "
            f"{seconds['paper_style']:.1f} s for one budget: {ratio['cold_cache']:.1f}x and {ratio['warm_cache']:.1f}x"
            in rows["bench_cache.py"])
