"""The on-disk cache (decoded datasets, embeddings, trained victims) under FMSTEAL_CACHE."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def cache_root() -> Path:
    """FMSTEAL_CACHE, else $XDG_CACHE_HOME/fmsteal, else ~/.cache/fmsteal."""
    configured = os.environ.get("FMSTEAL_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fmsteal"


def cache_dir(kind: str) -> Path:
    """The cache's sub-folder for `kind` ("datasets", "embeddings", "victims"), created on demand."""
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_save(obj: object, path: Path) -> None:
    """torch.save through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_or_none(path: Path) -> dict | None:
    """The dict saved at `path`, or None when it is missing or unreadable (corrupt files are not trusted)."""
    if not path.exists():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return obj if isinstance(obj, dict) else None
