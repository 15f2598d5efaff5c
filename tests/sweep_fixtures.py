"""Fixtures for sweep and results tests: tiny grids on the shared CIFAR-10 and one finished tiny sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_FIXED = {"train_per_class": 30, "test_per_class": 20, "image_size": 64}


@pytest.fixture(scope="session")
def tiny_grid(cifar_archive: Path):
    """Factory of small grids (Lite0 and scratch victims, Lite0 thief, 100 queries) on real CIFAR-10."""
    from fmsteal.service.sweep import Grid

    def make(name: str = "tiny", **axes) -> Grid:
        spec = {"victims": ["tf_efficientnet_lite0", "scratch_cnn"], "thieves": ["tf_efficientnet_lite0"],
                "budgets": [100], "seeds": [0], "outputs": ["label"],
                "fixed": {"data_dir": str(cifar_archive), **TINY_FIXED}}
        spec.update(axes)
        return Grid.from_dict(name, spec)

    return make


@pytest.fixture(scope="session")
def tiny_sweep(tiny_grid, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of one finished tiny sweep over two seeds (4 cells)."""
    from fmsteal.service.sweep import run_sweep

    out = tmp_path_factory.mktemp("tiny-sweep") / "tiny"
    run_sweep(tiny_grid(seeds=[0, 1]), out)
    return out
