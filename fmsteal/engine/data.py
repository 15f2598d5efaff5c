"""Datasets and query pools as uint8 image tensors: hub datasets, image folders, .tar.gz archives.

Images are decoded once and kept in the cache dir as one tensor file per source, so later runs
load them in a second. Everything here is deterministic.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fmsteal.engine.cache import atomic_save, cache_dir, load_or_none
from fmsteal.cancel import check
from fmsteal.engine.catalog import CIFAR10_CLASSES, HUB_DATASETS, HUB_SIZES, IMAGENET32_ENV, NAMED_POOLS
from fmsteal.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MAX_STORED_SIDE = 128


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
    path = Path(source).expanduser()
    if not path.exists():
        if os.sep in source or source.endswith((".tar.gz", ".tgz")):
            raise DataError(f"Data folder or archive {source!r} does not exist. Check the path.")
        raise DataError(
            f"Unknown dataset {source!r}. Use one of {', '.join(HUB_DATASETS)}, or the path of an image "
            "folder or .tar.gz archive laid out train/<class>/*.jpg and test/<class>/*.jpg."
        )
    return _cached(source_key(source), lambda: _read_local(path), path.name)


def load_pool(source: str) -> ImageSet:
    """Query-pool images: a dataset's train split, or every image of a folder or archive without splits."""
    if source == "imagenet32":
        return _load_imagenet32()
    path = Path(source).expanduser()
    if source in HUB_DATASETS or not path.exists():
        return load_splits(source).train
    return _cached(source_key(source, pool=True), lambda: _read_local(path, unlabelled_ok=True), path.name).train


def source_key(source: str, pool: bool = False) -> str | None:
    """What identifies a source's decoded images in the cache, read without decoding (None: not found)."""
    if source in HUB_DATASETS:
        return f"hub:{source}"
    if source == "imagenet32":
        files = _imagenet32_files()
        stamp = "|".join(f"{f.name}-{f.stat().st_size}-{f.stat().st_mtime_ns}" for f in files)
        return f"imagenet32|{files[0].parent.resolve()}|{stamp}" if files else None
    path = Path(source).expanduser()
    if not path.exists():
        return None
    return f"{'pool|' if pool else ''}{path.resolve()}|{_source_stamp(path)}"


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


def _cache_file(key: str) -> Path:
    return cache_dir("datasets") / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.pt"


def _cached(key: str, read, name: str) -> Splits:
    file = _cache_file(key)
    stored = load_or_none(file)
    if stored is None or stored.get("key") != key:
        splits = read()
        atomic_save({"key": key, "name": name, "class_names": splits.train.class_names,
                     "train": (splits.train.images, splits.train.labels),
                     "test": (splits.test.images, splits.test.labels)}, file)
        return splits
    names = stored["class_names"]
    return Splits(stored["name"], ImageSet(*stored["train"], names), ImageSet(*stored["test"], names))


def _source_stamp(path: Path) -> str:
    if path.is_file():
        stat = path.stat()
        return f"{stat.st_size}-{stat.st_mtime_ns}"
    files = [p for p in path.rglob("*") if p.is_file()]
    return f"{len(files)}-{sum(p.stat().st_size for p in files)}-{max((p.stat().st_mtime_ns for p in files), default=0)}"


def _read_local(path: Path, unlabelled_ok: bool = False) -> Splits:
    if path.is_dir():
        entries = [(p.relative_to(path).parts, p.read_bytes) for p in sorted(path.rglob("*"))
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    elif tarfile.is_tarfile(path):
        entries = list(_tar_entries(path))
    else:
        raise DataError(f"{path} is neither a folder nor a .tar.gz archive of images.")
    by_split: dict[str, list[tuple[str, bytes]]] = {"train": [], "test": []}
    for parts, read in entries:
        if "train" in parts[:-2] or "test" in parts[:-2]:
            split_at = max(i for i, part in enumerate(parts[:-2]) if part in by_split)
            if split_at == len(parts) - 3:
                by_split[parts[split_at]].append((parts[-2], read))
    if unlabelled_ok and not by_split["train"]:
        pool = _decode([("unlabelled", read) for _, read in entries], ["unlabelled"]) if entries else None
        if pool is not None:
            return Splits(path.name, pool, pool.subset([]))
    for split, items in by_split.items():
        if not items:
            raise DataError(
                f"{path} has no images under {split}/<class>/. Lay it out as train/<class>/*.jpg and "
                "test/<class>/*.jpg (one folder per class)."
            )
    class_names = sorted({label for label, _ in by_split["train"]})
    missing = sorted(set(class_names) - {label for label, _ in by_split["test"]})
    extra = sorted({label for label, _ in by_split["test"]} - set(class_names))
    if missing or extra or len(class_names) < 2:
        raise DataError(
            f"{path}: the train and test splits must have the same classes (at least two). "
            f"Missing from test: {missing or 'none'}; in test but not train: {extra or 'none'}."
        )
    name = path.name.removesuffix(".tar.gz").removesuffix(".tgz")
    return Splits(name, _decode(by_split["train"], class_names), _decode(by_split["test"], class_names))


def _tar_entries(path: Path):
    with tarfile.open(path, "r:*") as archive:
        for i, member in enumerate(archive):
            if i % 1024 == 0:
                check()
            if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                data = archive.extractfile(member).read()
                yield Path(member.name).parts, (lambda data=data: data)


def _decode(items: list[tuple[str, object]], class_names: list[str]) -> ImageSet:
    pictures = []
    for i, (label, read) in enumerate(items):
        if i % 256 == 0:
            check()
        try:
            pictures.append(Image.open(io.BytesIO(read())).convert("RGB"))
        except Exception as error:
            raise DataError(f"Cannot decode an image of class {label!r}: {error}. Remove or fix the file.") from None
    size = _common_size(pictures)
    arrays = [np.asarray(p if p.size == size else p.resize(size, Image.BILINEAR)) for p in pictures]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    index = {name: i for i, name in enumerate(class_names)}
    labels = torch.tensor([index[label] for label, _ in items], dtype=torch.long)
    return ImageSet(images, labels, class_names)


def _common_size(pictures: list[Image.Image]) -> tuple[int, int]:
    """The size every image is stored at: the most common one, capped at MAX_STORED_SIDE."""
    (width, height), _ = Counter(p.size for p in pictures).most_common(1)[0]
    if max(width, height) <= MAX_STORED_SIDE:
        return width, height
    side = min(MAX_STORED_SIDE, width, height)
    return side, side


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
        splits = {split: [(class_names[int(label)], (lambda b=image["bytes"]: b))
                          for image, label in zip(frame[image_column], frame[label_column])]
                  for split, frame in frames.items()}
        return Splits(name, _decode(splits["train"], class_names), _decode(splits["test"], class_names))

    return _cached(f"hub:{name}", read, name)


def count_images(source: str, pool: bool = False) -> tuple[int, int, int]:
    """(train images, test images, classes) of a hub dataset, image folder or archive.

    With `pool`, a folder or archive without train/test splits counts all its images as train.
    """
    if source in HUB_SIZES:
        return HUB_SIZES[source]
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"Data folder or archive {source!r} does not exist. Check the path "
                        "(a folder or .tar.gz laid out train/<class>/*.jpg and test/<class>/*.jpg).")
    stat = path.stat()
    return _count(str(path.resolve()), stat.st_mtime_ns, stat.st_size, pool)


@lru_cache(maxsize=32)
def _count(path: str, mtime: int, size: int, pool: bool) -> tuple[int, int, int]:
    root = Path(path)
    if root.is_dir():
        names = [p.relative_to(root).parts for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        try:
            with tarfile.open(root) as archive:
                names = [Path(n).parts for n in archive.getnames() if n.lower().endswith(IMAGE_SUFFIXES)]
        except tarfile.TarError as error:
            raise DataError(f"{path} is neither a folder nor a readable .tar.gz archive of images: {error}") from None
    split = {"train": 0, "test": 0}
    classes = set()
    for parts in names:
        if len(parts) >= 3 and parts[-3] in split:
            split[parts[-3]] += 1
            classes.add(parts[-2])
    if pool and not split["train"]:
        return len(names), 0, 1
    if not split["train"] or not split["test"]:
        raise DataError(f"{path} has no images under train/<class>/ and test/<class>/. Lay it out as "
                        "train/<class>/*.jpg and test/<class>/*.jpg (one folder per class).")
    return split["train"], split["test"], len(classes)
