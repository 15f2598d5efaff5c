"""Datasets and query pools as uint8 image tensors: hub datasets, image folders, .tar.gz archives.

Images are decoded once and kept in the cache dir as one tensor file per source, so later runs
load them in a second. Local paths are read within bounds (`safe_fs`, `listing`); decoding resizes
as it reads (`decode`). Everything here is deterministic.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from fmsteal.engine.cache import atomic_save, cache_dir, load_or_none
from fmsteal.engine.catalog import CIFAR10_CLASSES, HUB_DATASETS, HUB_SIZES, IMAGENET32_ENV, NAMED_POOLS
from fmsteal.engine.decode import MAX_STORED_SIDE, Encoded, decode
from fmsteal.engine.listing import IMAGE_SUFFIXES, LAYOUT, Local, archive_images, file_stamp, list_local, scan
from fmsteal.engine.safe_fs import Clock, Limits, checked_path, read_regular, shown_name
from fmsteal.errors import DataError

__all__ = ["CIFAR10_CLASSES", "HUB_DATASETS", "HUB_SIZES", "IMAGE_SUFFIXES", "IMAGENET32_ENV", "MAX_STORED_SIDE",
           "NAMED_POOLS", "ImageSet", "Splits", "count_images", "is_decoded", "load_pool", "load_splits", "read_uncached",
           "source_key", "stratified_subset"]


@dataclass
class ImageSet:
    """Images (uint8, N x 3 x H x W), integer labels and the class names they index."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    _fingerprint: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def fingerprint(self) -> str:
        """A hash of the pixels and labels: what the embedding cache checks its files against."""
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=16)
            digest.update(self.images.numpy().tobytes())
            digest.update(self.labels.numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def subset(self, indices: torch.Tensor | np.ndarray | list[int]) -> "ImageSet":
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index], self.class_names)


@dataclass
class Splits:
    """A labelled dataset: its train and test split and where it came from."""

    name: str
    train: ImageSet
    test: ImageSet


def load_splits(source: str) -> Splits:
    """Load a dataset by hub name (`cifar10`, ...) or path (image folder or .tar.gz archive)."""
    if source in HUB_DATASETS:
        return _load_hub(source)
    local = list_local(*_local(source))
    return _cached(local.key(pool=False), lambda: _read_local(local), local.path.name)


def load_pool(source: str) -> ImageSet:
    """Query-pool images: a dataset's train split, or every image of a folder or archive without splits."""
    if source == "imagenet32":
        return _load_imagenet32()
    if source in HUB_DATASETS:
        return load_splits(source).train
    local = list_local(*_local(source))
    return _cached(local.key(pool=True), lambda: _read_local(local, unlabelled_ok=True), local.path.name).train


def read_uncached(path: Path) -> Splits:
    """A folder or archive the server made itself (a speed probe's), read and decoded as `load_splits` reads a
    user's, without the cache. Not for user-named paths: it skips the check that keeps them in the data roots
    (a public server's probe, in the system's temporary folder, would be refused)."""
    return _read_local(list_local(path, path.name))


def count_images(source: str, pool: bool = False) -> tuple[int, int, int]:
    """(train images, test images, classes) of a hub dataset, image folder or archive, without decoding.

    With `pool`, a folder or archive without train/test splits counts all its images as train. A folder
    is walked once per input (bounded: FMSTEAL_MAX_FILES, FMSTEAL_WALK_SECONDS); DataError when the
    source is missing, cannot be read or is not laid out train/<class>/, test/<class>/.
    """
    if source in HUB_SIZES:
        return HUB_SIZES[source]
    path, shown = _local(source)
    found = scan(path, shown)
    if pool and not found.train:
        return found.images, 0, 1
    if not found.train or not found.test:
        raise DataError(f"{shown!r} has no images under train/<class>/ and test/<class>/. {LAYOUT}")
    return found.train, found.test, found.classes


def source_key(source: str, pool: bool = False) -> str | None:
    """What identifies a source's decoded images in the cache, read without decoding (None: not found).

    Raises DataError for a path that may not be read (see `safe_fs.checked_path`).
    """
    if source in HUB_DATASETS:
        return f"hub:{source}"
    if source == "imagenet32":
        files = _imagenet32_files()
        stamp = "|".join(f"{f.name}-{f.stat().st_size}-{f.stat().st_mtime_ns}" for f in files)
        return f"imagenet32|{files[0].parent.resolve()}|{stamp}" if files else None
    if not Path(source).expanduser().exists():
        return None
    path, shown = _local(source)
    stamp = scan(path, shown).stamp if path.is_dir() else file_stamp(path, shown)  # a folder's walk is memoised
    return Local(path, shown, stamp, None).key(pool)


def is_decoded(key: str | None) -> bool:
    """True when the cache already holds the decoded images of the source with this `source_key`."""
    return key is not None and _cache_file(key).exists()


def stratified_subset(images: ImageSet, per_class: int | None) -> ImageSet:
    """The first `per_class` images of each class (all of them when None)."""
    if per_class is None:
        return images
    labels = images.labels.numpy()
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(len(images.class_names))])
    return images.subset(np.sort(keep))


def _local(source: str) -> tuple[Path, str]:
    """The checked path of a local source and the name messages give it."""
    if os.sep not in source and not source.endswith((".tar.gz", ".tgz")) and not Path(source).expanduser().exists():
        raise DataError(
            f"Unknown dataset {source!r}. Use one of {', '.join(HUB_DATASETS)}, or the path of an image "
            f"folder or .tar.gz archive. {LAYOUT}"
        )
    return checked_path(source), shown_name(source)


def _cache_file(key: str) -> Path:
    return cache_dir("datasets") / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.pt"


def _cached(key: str, read, name: str) -> Splits:
    file = _cache_file(key)
    stored = load_or_none(file)
    if stored is None or stored.get("key") != key:
        splits = read()
        atomic_save({"key": key, "name": name, "class_names": splits.train.class_names,
                     "train": (splits.train.images, splits.train.labels),
                     "test": (splits.test.images, splits.test.labels),
                     "fingerprints": (splits.train.fingerprint, splits.test.fingerprint)}, file)
        return splits
    names = stored["class_names"]
    train, test = stored.get("fingerprints") or (None, None)  # files written before they held them: hashed anew
    return Splits(stored["name"], ImageSet(*stored["train"], names, train), ImageSet(*stored["test"], names, test))


def _read_local(local: Local, unlabelled_ok: bool = False) -> Splits:
    shown = local.shown
    clock = Clock(Limits.reading(), shown)  # reading and decoding together stay within FMSTEAL_READ_SECONDS
    if local.files is not None:
        entries = [(f.parts, partial(_timed_read, clock, f.path, "/".join((shown.rstrip("/"), *f.parts))))
                   for f in local.files]
    else:
        entries = [(parts, partial(_timed_bytes, clock, data))
                   for parts, data in archive_images(local.path, shown, clock)]
    by_split: dict[str, list[Encoded]] = {"train": [], "test": []}
    for parts, read in entries:
        if "train" in parts[:-2] or "test" in parts[:-2]:
            split_at = max(i for i, part in enumerate(parts[:-2]) if part in by_split)
            if split_at == len(parts) - 3:
                by_split[parts[split_at]].append(Encoded(parts[-2], "/".join(parts), read))
    if unlabelled_ok and not by_split["train"] and entries:
        pool = _image_set([Encoded("unlabelled", "/".join(parts), read) for parts, read in entries], ["unlabelled"])
        return Splits(local.path.name, pool, pool.subset([]))
    for split, items in by_split.items():
        if not items:
            raise DataError(f"{shown!r} has no images under {split}/<class>/. {LAYOUT}")
    class_names = sorted({item.label for item in by_split["train"]})
    missing = sorted(set(class_names) - {item.label for item in by_split["test"]})
    extra = sorted({item.label for item in by_split["test"]} - set(class_names))
    if missing or extra or len(class_names) < 2:
        raise DataError(
            f"{shown!r}: the train and test splits must have the same classes (at least two). "
            f"Missing from test: {missing or 'none'}; in test but not train: {extra or 'none'}."
        )
    name = local.path.name.removesuffix(".tar.gz").removesuffix(".tgz")
    return Splits(name, _image_set(by_split["train"], class_names), _image_set(by_split["test"], class_names))


def _timed_read(clock: Clock, path: Path, shown: str, limit: int) -> bytes:
    clock.tick()
    return read_regular(path, shown, limit)


def _timed_bytes(clock: Clock, data: bytes, limit: int) -> bytes:
    clock.tick()
    return data


def _image_set(items: list[Encoded], class_names: list[str]) -> ImageSet:
    return ImageSet(*decode(items, class_names), class_names)


def _load_imagenet32() -> ImageSet:
    """Downsampled ImageNet 32x32 from its official pickled batches (uint8 rows of 3x32x32 pixels)."""
    files = _imagenet32_files()
    if not files:
        raise DataError(
            "The ImageNet32 query pool is not on this machine: its licence requires an image-net.org account, "
            "so fmsteal cannot download it. Download 'Imagenet32_train' from https://image-net.org/download-images, "
            f"unpack it and set {IMAGENET32_ENV} to the folder holding train_data_batch_1 ... _10; or pass any "
            "image folder with --query-pool (or use the default held-out pool)."
        )

    def read() -> Splits:
        images, labels = [], []
        for file in files:
            try:
                with open(file, "rb") as handle:
                    batch = pickle.load(handle)
                images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.append(np.asarray(batch["labels"], dtype=np.int64) - 1)  # the files count from 1
            except Exception as error:
                raise DataError(f"{file} is not an ImageNet32 batch file ({type(error).__name__}: {error}). "
                                "Re-download Imagenet32_train.") from None
        label_tensor = torch.from_numpy(np.concatenate(labels))
        pool = ImageSet(torch.from_numpy(np.concatenate(images)), label_tensor,
                        [str(i) for i in range(int(label_tensor.max()) + 1)])
        return Splits("imagenet32", pool, pool.subset([]))

    return _cached(source_key("imagenet32"), read, "imagenet32").train


def _imagenet32_files() -> list[Path]:
    folder = os.environ.get(IMAGENET32_ENV)
    return sorted(Path(folder).expanduser().glob("train_data_batch_*")) if folder else []


def _load_hub(name: str) -> Splits:
    repo, folder, image_column, label_column, prefixes = HUB_DATASETS[name]

    def read() -> Splits:
        import pandas as pd
        from huggingface_hub import snapshot_download

        try:
            local = Path(snapshot_download(repo, repo_type="dataset", allow_patterns=[f"{folder}/*.parquet"]))
        except Exception as error:
            raise DataError(
                f"Cannot download dataset {name!r} ({repo}) from the Hugging Face Hub: "
                f"{type(error).__name__}: {error}. Fix: connect to the internet, or pass an image "
                "folder or .tar.gz archive with --data-dir (e.g. ../shared/data/cifar10-jpeg.tar.gz)."
            ) from error
        frames = {}
        for split, prefix in prefixes.items():
            files = sorted((local / folder).glob(f"{prefix}-*.parquet"))
            if not files:
                raise DataError(f"Dataset {name!r} ({repo}) has no {prefix}-*.parquet files under {folder}/.")
            frames[split] = pd.concat([pd.read_parquet(file) for file in files], ignore_index=True)
        num_classes = int(max(frame[label_column].max() for frame in frames.values())) + 1
        class_names = CIFAR10_CLASSES if name == "cifar10" else [str(i) for i in range(num_classes)]
        splits = {split: [Encoded(class_names[int(label)], f"{split} image {i}", lambda n, b=image["bytes"]: b)
                          for i, (image, label) in enumerate(zip(frame[image_column], frame[label_column]))]
                  for split, frame in frames.items()}
        return Splits(name, _image_set(splits["train"], class_names), _image_set(splits["test"], class_names))

    return _cached(f"hub:{name}", read, name)
