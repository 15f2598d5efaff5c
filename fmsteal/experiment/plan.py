"""What a run will do, decided before any image is decoded: sizes, resolutions, what gets embedded.

`make_plan` is the one place that turns a config and the data's sizes into the work of a run; the
run's phases follow it and the estimate prices it, so the two can never disagree about the split
of the pool, the resolutions or the errors. Imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from fmsteal.adversary.budget import curve_checkpoints
from fmsteal.errors import ConfigError

__all__ = ["Plan", "make_plan", "pool_split", "resolve_image_size", "POOL_FRACTION"]

POOL_FRACTION = 0.5  # share of the train split held out as the query pool
MAX_SIZE_FACTOR = 2  # an image size beyond twice the backbone's native size is refused


@dataclass(frozen=True)
class Plan:
    """The work of one run, as numbers."""

    config: object  # the ExperimentConfig
    device: str  # "cpu" or "cuda"
    n_train: int  # labelled train images used (before the pool is split off)
    n_test: int
    classes: int
    n_pool: int
    n_victim_train: int
    heldout: bool  # the pool is a held-out part of the train split
    victim_size: int
    thief_size: int
    embeddings: tuple[tuple[str, int], ...]  # (backbone, px) whose frozen features are computed
    rungs: tuple[int, ...]  # budgets at which the thief is retrained and evaluated
    n_decoded: int  # images decoded from the sources: every image, before any per-class subset

    @property
    def n_embedded(self) -> int:
        """Images each embedding backbone sees: train, test and (if separate) the pool."""
        return self.n_train + self.n_test + (0 if self.heldout else self.n_pool)


def pool_split(n_train: int) -> tuple[int, int]:
    """(query pool, victim's training set) sizes of a held-out split of `n_train` images."""
    pool = int(n_train * POOL_FRACTION)
    return pool, n_train - pool


def resolve_image_size(spec, image_size: int | None, device: str) -> int:
    """The configured size, else the backbone's native size on a GPU and its CPU size on a CPU."""
    if image_size is None:
        return spec.native_size if device == "cuda" else spec.cpu_size
    if image_size > MAX_SIZE_FACTOR * spec.native_size:
        raise ConfigError(f"Image size {image_size} px is more than {MAX_SIZE_FACTOR}x {spec.label}'s native "
                          f"{spec.native_size} px: pick {MAX_SIZE_FACTOR * spec.native_size} px or less.")
    return image_size


def make_plan(config, device: str, sizes: tuple[int, int, int] | None = None, pool_size: int | None = None,
              n_decoded: int | None = None) -> Plan:
    """The plan of `config` on `device`. `sizes` (train, test, classes), `pool_size` and `n_decoded` are the
    loaded data's; without them they are counted from the sources without decoding (`count_images`)."""
    from fmsteal.engine.zoo import get_backbone

    if sizes is None:
        n_train, n_test, classes = _count(config.source, pool=False)
        n_decoded = n_train + n_test
        n_train = min(n_train, (config.train_per_class or n_train) * classes)
        n_test = min(n_test, (config.test_per_class or n_test) * classes)
    else:
        n_train, n_test, classes = sizes
    heldout = config.query_pool == "heldout"
    if heldout:
        n_pool, n_victim_train = pool_split(n_train)
    else:
        n_pool = pool_size if pool_size is not None else _count(config.query_pool, pool=True)[0]
        n_victim_train = n_train
        n_decoded = None if n_decoded is None else n_decoded + n_pool
    if config.budget > n_pool:
        raise ConfigError(f"The budget ({config.budget:,} queries) is larger than the query pool ({n_pool:,} images). "
                          "Lower the budget or use a larger pool or dataset.")
    victim, thief = get_backbone(config.backbone("victim")), get_backbone(config.backbone("thief"))
    victim_size = resolve_image_size(victim, config.image_size, device)
    thief_size = resolve_image_size(thief, config.image_size, device)
    embeddings = [(victim.name, victim_size)] if config.victim_mode == "lp" else []
    if (config.thief_mode == "lp" or config.strategy == "kcenter") and (thief.name, thief_size) not in embeddings:
        embeddings.append((thief.name, thief_size))
    return Plan(config, device, n_train, n_test, classes, n_pool, n_victim_train, heldout, victim_size, thief_size,
                tuple(embeddings), tuple(curve_checkpoints(config.budget)), n_decoded or n_train + n_test)


def _count(source: str, pool: bool) -> tuple[int, int, int]:
    from fmsteal.engine.data import count_images

    return count_images(source, pool=pool)
