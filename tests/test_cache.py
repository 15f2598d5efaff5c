"""The cache stays under its size cap, least recently used first, and killed runs' temporaries are removed."""

import os
import subprocess
import sys
import time

import pytest
import torch

from fmsteal.engine.cache import atomic_save, cache_dir, cache_size, load_or_none, remove_stale_temporaries, trim_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def save(kind: str, name: str, age_seconds: float) -> os.PathLike:
    """A ~40 KB cache file last used `age_seconds` ago."""
    path = cache_dir(kind) / name
    atomic_save({"x": torch.zeros(10_000)}, path)
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def test_trimming_removes_the_least_recently_used_files_first(cache):
    oldest, old, recent = save("datasets", "a.pt", 300), save("embeddings", "b.pt", 200), save("victims", "c.pt", 100)
    newest = save("embeddings", "lite0/d.pt", 0)
    record = cache_dir("warm") / "record.json"
    record.write_text("{}")
    assert load_or_none(oldest) is not None  # a load marks the file used now
    size = os.path.getsize(newest)
    assert cache_size() == sum(os.path.getsize(p) for p in (oldest, old, recent, newest))
    assert trim_cache(max_bytes=int(2.5 * size)) == [old, recent]
    assert oldest.exists() and newest.exists() and record.exists()
    assert trim_cache(max_bytes=int(2.5 * size)) == []


def test_saving_trims_to_the_configured_cap_but_keeps_the_new_file(cache, monkeypatch):
    first = save("datasets", "a.pt", 100)
    monkeypatch.setenv("FMSTEAL_CACHE_MAX_GB", str(1.5 * os.path.getsize(first) / 2**30))
    second = save("datasets", "b.pt", 0)
    assert not first.exists() and second.exists()
    monkeypatch.setenv("FMSTEAL_CACHE_MAX_GB", "0")
    third = save("victims", "c.pt", 0)
    assert third.exists() and not second.exists() and load_or_none(third)["x"].shape == (10_000,)


def test_temporaries_of_dead_writers_and_old_ones_are_removed(cache):
    folder = cache_dir("embeddings")
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    orphan = folder / f".x.pt.{dead}.abc123.tmp"  # atomic_save's name, its writer gone
    live = folder / f".y.pt.{os.getpid()}.def456.tmp"  # this process is writing it
    stale, young = folder / "tmpq1w2e3.tmp", folder / "tmpz9x8c7.tmp"  # another writer's, name without a pid
    for path in (orphan, live, stale, young):
        path.write_bytes(b"half")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    assert sorted(remove_stale_temporaries()) == sorted([orphan, stale])
    assert live.exists() and young.exists()
    assert remove_stale_temporaries(min_age_seconds=0) == [young] and live.exists()
