"""Fixtures for engine tests: the shared CIFAR-10 archive, a session-wide cache, cheap archives of zeros."""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
# The first 300 train and 100 test images of each class of CIFAR_ARCHIVE (same files): decodes in a second.
CIFAR_MINI = REPO.parent / "shared" / "data" / "cifar10-mini-jpeg.tar.gz"


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One FMSTEAL_CACHE for the whole session, so CIFAR-10 is decoded and embedded once."""
    path = tmp_path_factory.mktemp("fmsteal-cache")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("FMSTEAL_CACHE", str(path))
    yield path
    patcher.undo()


def _shared(path: Path) -> Path:
    """`path` under ../shared/data; skips where it is absent (a fresh clone), fails in CI (which has it)."""
    if not path.exists():
        reason = f"needs the shared CIFAR-10 archive at {path} (present in CI, absent in a fresh clone)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run every test: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def cifar_archive() -> Path:
    """All 60,000 real CIFAR-10 images beside the checkout: only for tests about the whole data set."""
    return _shared(CIFAR_ARCHIVE)


@pytest.fixture(scope="session")
def cifar_mini() -> Path:
    """4,000 real CIFAR-10 images (300 train, 100 test per class) beside the checkout (CI always has it)."""
    return _shared(CIFAR_MINI)


@pytest.fixture(scope="session")
def tiny_config(cifar_mini: Path):
    """Factory of small, fast experiment configs on real CIFAR-10 with the offline Lite0."""
    from fmsteal.experiment.pipeline import ExperimentConfig

    def make(**overrides) -> ExperimentConfig:
        values = dict(victim="tf_efficientnet_lite0", thief="tf_efficientnet_lite0", budget=200,
                      data_dir=str(cifar_mini), train_per_class=60, test_per_class=20, image_size=64,
                      evaluations="examples")  # transfer and corruptions have tests of their own
        values.update(overrides)
        return ExperimentConfig(**values)

    return make


def run_to_card(config) -> tuple[dict, list[dict]]:
    """Run `config` to the end: its run card and every event."""
    from fmsteal.experiment.pipeline import run

    events = list(run(config))
    return events[-1]["card"], events


def zeros_tar_gz(path: Path, name: str, size: int, piece: int = 64 * 2**20) -> Path:
    """A tar.gz of one entry of `size` zero bytes, written as gzip members that repeat one (cheap to build)."""
    info = tarfile.TarInfo(name)
    info.size = size
    zeros = gzip.compress(bytes(piece))
    with path.open("wb") as out:
        out.write(gzip.compress(info.tobuf()))
        for _ in range(size // piece):
            out.write(zeros)
        out.write(gzip.compress(bytes(size % piece) + bytes(-size % 512) + bytes(2 * 512)))  # padding, end blocks
    return path
