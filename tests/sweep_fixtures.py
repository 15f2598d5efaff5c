"""Fixtures for sweep and results tests: tiny grids on the shared CIFAR-10 and one finished tiny sweep."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

# The sweep's own mechanics need no evaluation beyond the cheapest; `evaluated_grid` runs the default ones
TINY_FIXED = {"train_per_class": 30, "test_per_class": 20, "image_size": 32, "evaluations": "examples"}


@pytest.fixture(scope="session")
def tiny_grid(cifar_mini: Path):
    """Factory of small grids (Lite0 and scratch victims, Lite0 thief, 100 queries, 32 px) on real CIFAR-10."""
    from fmsteal.service.sweep import Grid

    def make(name: str = "tiny", **axes) -> Grid:
        spec = {"victims": ["tf_efficientnet_lite0", "scratch_cnn"], "thieves": ["tf_efficientnet_lite0"],
                "budgets": [100], "seeds": [0], "outputs": ["label"],
                "fixed": {"data_dir": str(cifar_mini), **TINY_FIXED}}
        spec.update(axes)
        return Grid.from_dict(name, spec)

    return make


@pytest.fixture(scope="session")
def evaluated_grid(tiny_grid):
    """The grid of `tiny_sweep`: two seeds and every default evaluation (the table's summary columns)."""
    grid = tiny_grid(seeds=[0, 1])
    return replace(grid, fixed={**grid.fixed, "evaluations": "default"})


@pytest.fixture(scope="session")
def tiny_sweep(evaluated_grid, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of one finished tiny sweep of `evaluated_grid` (4 cells)."""
    from fmsteal.service.sweep import run_sweep

    out = tmp_path_factory.mktemp("tiny-sweep") / "tiny"
    run_sweep(evaluated_grid, out)
    return out
