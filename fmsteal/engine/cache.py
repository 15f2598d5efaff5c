"""The on-disk cache (decoded datasets, embeddings, trained victims) under FMSTEAL_CACHE.

Saves are atomic (a temporary file, then a rename) and trim the cache to FMSTEAL_CACHE_MAX_GB,
evicting the least recently used files first (a load marks a file used by touching its mtime).
`remove_stale_temporaries` deletes the half-written temporary files of killed runs (call it at start).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import time
from pathlib import Path

from fmsteal import settings

__all__ = ["EVICTABLE", "atomic_save", "cache_dir", "cache_root", "cache_size", "keyed_file", "load_or_none",
           "mark_as_used", "remove_stale_temporaries", "trim_cache", "write_text_atomic"]

EVICTABLE = ("datasets", "embeddings", "victims")  # the cache's kinds whose files `trim_cache` may remove
_TMP = ".tmp"


def cache_root() -> Path:
    """FMSTEAL_CACHE, else $XDG_CACHE_HOME/fmsteal, else ~/.cache/fmsteal."""
    return settings.current().cache


def cache_dir(kind: str) -> Path:
    """The cache's sub-folder for `kind` ("datasets", "embeddings", "victims"), created on demand."""
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def keyed_file(kind: str, key: object, suffix: str, prefix: str = "") -> Path:
    """The file of the cache's `kind` for `key` (JSON data): named by a hash of it."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir(kind) / f"{prefix}{digest}{suffix}"


def atomic_save(obj: object, path: Path) -> None:
    """torch.save through a temporary file and a rename, so readers never see half a file; then trim the cache.

    The temporary file's name carries this process's id, so `remove_stale_temporaries` knows when its
    writer is gone.
    """
    import torch

    _replace(path, lambda tmp: torch.save(obj, tmp))
    if path.resolve().is_relative_to(cache_root().resolve()):
        trim_cache(keep=path)


def write_text_atomic(path: Path, text: str) -> None:
    """`text` written to `path` as `atomic_save` writes (a temporary file, then a rename): small records."""
    _replace(path, lambda tmp: Path(tmp).write_text(text))


def _replace(path: Path, write) -> None:
    """`write(tmp)` into a temporary file beside `path` named after this process, then renamed onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=_TMP)
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_or_none(path: Path, mark_used: bool = True) -> dict | None:
    """The dict saved at `path`, or None when it is missing or unreadable (corrupt files are not trusted).

    Its tensors are mapped from the file (copy on write), so the pages a run reads are all it loads. A successful
    load marks the file as used now (`mark_used`), for `trim_cache`'s least-recently-used order.
    """
    import torch

    if not path.exists():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    if not isinstance(obj, dict):
        return None
    if mark_used:
        mark_as_used(path)
    return obj


def mark_as_used(path: Path) -> None:
    """Mark the cache file `path` as used now (its modification time: `trim_cache` evicts the oldest first)."""
    try:
        os.utime(path)
    except OSError:
        pass


def cache_size() -> int:
    """Bytes held by the cache's evictable files."""
    return sum(size for _, size, _ in _evictable())


def trim_cache(max_bytes: int | None = None, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used cache files until the rest fit in `max_bytes` (default: the settings').

    Only decoded datasets, embeddings and trained victims are removed, never `keep` nor temporary
    files; the removed paths are returned.
    """
    limit = settings.current().cache_max_bytes if max_bytes is None else max_bytes
    files = sorted(_evictable(), key=lambda f: f[2])
    total = sum(size for _, size, _ in files)
    kept = keep.resolve() if keep is not None else None
    removed = []
    for path, size, _ in files:
        if total <= limit:
            break
        if path.resolve() == kept:
            continue
        try:
            path.unlink()
        except FileNotFoundError:  # another process trimmed it first
            pass
        total -= size
        removed.append(path)
    return removed


def remove_stale_temporaries(root: Path | None = None, min_age_seconds: float = 3600.0) -> list[Path]:
    """Delete the `*.tmp` files under `root` (default: the cache) that no live writer will finish.

    A temporary file named by `atomic_save` goes once its process has exited; any other once it is
    older than `min_age_seconds` (a writer that slow is gone). Returns the removed paths.
    """
    root = cache_root() if root is None else root
    now = time.time()
    removed = []
    for path in root.rglob(f"*{_TMP}") if root.is_dir() else []:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        writer = _writer_pid(path.name)
        if not _alive(writer) if writer is not None else now - info.st_mtime > min_age_seconds:
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


def _evictable() -> list[tuple[Path, int, float]]:
    """(path, size, mtime) of every regular, non-temporary file in the evictable kinds."""
    found = []
    for kind in EVICTABLE:
        folder = cache_root() / kind
        for path in folder.rglob("*") if folder.is_dir() else []:
            if path.name.endswith(_TMP):
                continue
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((path, info.st_size, info.st_mtime))
    return found


def _writer_pid(name: str) -> int | None:
    """The process id in a temporary file's name from `atomic_save` (".<target>.<pid>.<random>.tmp")."""
    parts = name.split(".")
    if len(parts) >= 4 and name.startswith(".") and parts[-3].isdigit():
        return int(parts[-3])
    return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
