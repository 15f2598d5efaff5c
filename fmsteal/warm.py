"""What earlier runs left in the cache, so an estimate can leave out the work a run will not redo.

A run records the cache files behind each backbone's features and behind its trained victim, under
a key made of config fields and the data's on-disk stamp, which an estimate can compute without
decoding a single image. `is_cached` is true only while the record exists and every file it names
is still there.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .cache import cache_dir
from .data import source_key


def record(config, part: str, files: list[Path], **fields) -> None:
    """Remember that `part` of `config` (with `fields`) is served by `files`."""
    path = _record_path(config, part, fields)
    if path is None or not files:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"files": sorted({str(f) for f in files})}))
    os.replace(tmp, path)


def is_cached(config, part: str, **fields) -> bool:
    """True when a run recorded `part` of such a config and its cache files are all still there."""
    path = _record_path(config, part, fields)
    if path is None or not path.exists():
        return False
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(files) and all(Path(f).exists() for f in files)


def victim_fields(config, image_size: int) -> dict:
    """What besides the data decides which trained victim a run uses."""
    return {"backbone": config.victim, "mode": config.victim_mode, "size": image_size, "seed": config.seed,
            "preset": config.preset}


def _record_path(config, part: str, fields: dict) -> Path | None:
    data = source_key(config.source)
    pool = "heldout" if config.query_pool == "heldout" else source_key(config.query_pool, pool=True)
    if data is None or pool is None:
        return None
    key = {"part": part, "data": data, "pool": pool, "train_per_class": config.train_per_class,
           "test_per_class": config.test_per_class, **fields}
    return cache_dir("warm") / f"{hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]}.json"

