"""What earlier runs left in the cache, so an estimate can leave out the work a run will not redo.

A run records the cache files behind each backbone's features, behind its trained victim and behind
the features its evaluations asked for (corrupted test images), under a key made of config fields and
the data's on-disk stamp, which an estimate can compute without decoding a single image. `is_cached` is true only while the record exists and every file it names
is still there.
"""

from __future__ import annotations

import json
from pathlib import Path

from fmsteal.engine.cache import cache_root, keyed_file
from fmsteal.experiment.cards import write_card
from fmsteal.engine.data import source_key


def data_key(config) -> dict | None:
    """The data half of a record's key (None when the data is not found); reads stamps, decodes nothing."""
    data = source_key(config.source, False)
    pool = "heldout" if config.query_pool == "heldout" else source_key(config.query_pool, True)
    if data is None or pool is None:
        return None
    return {"data": data, "pool": pool, "train_per_class": config.train_per_class,
            "test_per_class": config.test_per_class}


def record(base: dict | None, part: str, files: list[Path], **fields) -> None:
    """Remember that `part` of a run on the data `base` (see `data_key`, with `fields`) is served by `files`
    (named relative to the cache's root where inside it, so that a warm pack carries its records)."""
    path = _record_path(base, part, fields)
    if path is not None and files:
        root = cache_root().resolve()
        names = {(Path(f).resolve().relative_to(root).as_posix() if Path(f).resolve().is_relative_to(root) else str(f))
                 for f in files}
        write_card({"files": sorted(names)}, path)  # atomic: parallel sweep cells share records


def is_cached(base: dict | None, part: str, **fields) -> bool:
    """True when a run on the data `base` (see `data_key`) recorded `part` and its files are all there."""
    path = _record_path(base, part, fields)
    if path is None or not path.exists():
        return False
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(files) and all((cache_root() / f).exists() for f in files)  # an absolute name stays itself


def victim_fields(config, image_size: int) -> dict:
    """What besides the data decides which trained victim a run uses."""
    return {"backbone": config.backbone("victim"), "mode": config.victim_mode, "size": image_size, "seed": config.seed,
            "preset": config.preset}


def evaluation_fields(config, plan, name: str, params: dict) -> dict:
    """What besides the data decides the features an evaluation leaves in the cache (the corrupted test
    images'): its name and parameters, the seed and the backbones at their sizes."""
    return {"evaluation": name, "params": params, "seed": config.seed, "backbones": sorted(map(list, plan.embeddings))}


def _record_path(base: dict | None, part: str, fields: dict) -> Path | None:
    if base is None:
        return None
    key = {"part": part, **base, **fields}
    return keyed_file("warm", key, ".json")

