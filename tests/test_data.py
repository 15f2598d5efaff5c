"""Datasets: archives, image folders, hub parquet files, and clear errors for bad ones."""

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmsteal.engine import data
from fmsteal.engine import listing as data_listing
from fmsteal.engine.data import load_pool, load_splits, stratified_subset
from fmsteal.errors import DataError


def write_folder(root: Path, layout: dict[str, dict[str, int]], size=(12, 12)) -> Path:
    rng = np.random.default_rng(0)
    for split, classes in layout.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_the_shared_mini_archive_decodes_to_its_3000_train_and_1000_test_images(cifar_mini):
    splits = load_splits(str(cifar_mini))
    assert splits.train.images.shape == (3000, 3, 32, 32) and splits.train.images.dtype == torch.uint8
    assert len(splits.test) == 1000
    assert splits.train.class_names[:3] == ["airplane", "automobile", "bird"]
    assert splits.test.labels.bincount().tolist() == [100] * 10


def test_stratified_subset_takes_the_first_images_of_each_class(cifar_mini):
    test = load_splits(str(cifar_mini)).test
    subset = stratified_subset(test, 7)
    assert subset.labels.bincount().tolist() == [7] * 10
    assert torch.equal(subset.images[subset.labels == 2][0], test.images[test.labels == 2][0])


def test_folder_and_archive_of_the_same_images_load_alike(tmp_path):
    folder = write_folder(tmp_path / "toy", {"train": {"cat": 3, "dog": 2}, "test": {"cat": 1, "dog": 2}})
    archive = tmp_path / "toy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="toy")
    from_folder, from_archive = load_splits(str(folder)), load_splits(str(archive))
    assert from_folder.train.class_names == from_archive.train.class_names == ["cat", "dog"]
    assert sorted(from_folder.train.labels.tolist()) == sorted(from_archive.train.labels.tolist()) == [0, 0, 0, 1, 1]
    assert from_folder.train.images.shape == (5, 3, 12, 12)
    assert sorted(map(bytes, from_folder.test.images.flatten(1).numpy())) == sorted(map(bytes, from_archive.test.images.flatten(1).numpy()))


def test_a_folder_without_splits_is_an_unlabelled_query_pool(tmp_path):
    folder = write_folder(tmp_path / "pool", {"street": {"a": 3}, "park": {"b": 2}})
    pool = load_pool(str(folder))
    assert pool.images.shape == (5, 3, 12, 12) and pool.class_names == ["unlabelled"]
    with pytest.raises(DataError, match="has no images under train"):
        load_splits(str(folder))


def test_imagenet32_pool_reads_the_official_batches_or_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv(data.IMAGENET32_ENV, raising=False)
    with pytest.raises(DataError, match="FMSTEAL_IMAGENET32.*image-net.org|image-net.org.*FMSTEAL_IMAGENET32"):
        load_pool("imagenet32")
    rows = np.arange(4 * 3072, dtype=np.int64).reshape(4, 3072) % 251
    for i, part in enumerate((rows[:3], rows[3:]), start=1):  # the layout of Imagenet32_train's files
        with open(tmp_path / f"train_data_batch_{i}", "wb") as handle:
            pickle.dump({"data": part.astype(np.uint8), "labels": [1, 7, 1000][: len(part)]}, handle)
    monkeypatch.setenv(data.IMAGENET32_ENV, str(tmp_path))
    pool = load_pool("imagenet32")
    assert pool.images.shape == (4, 3, 32, 32) and pool.labels.tolist() == [0, 6, 999, 0]
    assert pool.images[1, 2, 0, 0] == rows[1, 2048] and pool.images[3, 0, 1, 0] == rows[3, 32]
    (tmp_path / "train_data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not an ImageNet32 batch file"):
        load_pool("imagenet32")


def test_images_of_other_sizes_are_resized_to_the_common_one(tmp_path):
    folder = write_folder(tmp_path / "mixed", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    Image.new("RGB", (30, 20)).save(folder / "train" / "a" / "big.png")
    assert load_splits(str(folder)).train.images.shape == (5, 3, 12, 12)


@pytest.mark.parametrize("layout, message", [
    ({}, "has no images under train"),
    ({"train": {"cat": 2, "dog": 2}}, "has no images under test"),
    ({"train": {"cat": 2, "dog": 2}, "test": {"cat": 2}}, r"Missing from test: \['dog'\]"),
    ({"train": {"cat": 2}, "test": {"cat": 2}}, "at least two"),
])
def test_malformed_folders_say_what_is_wrong(tmp_path, layout, message):
    folder = write_folder(tmp_path / "bad", layout)
    folder.mkdir(exist_ok=True)
    with pytest.raises(DataError, match=message):
        load_splits(str(folder))


def test_a_missing_path_or_unknown_dataset_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_splits(str(tmp_path / "nowhere" / "data.tar.gz"))
    with pytest.raises(DataError, match="Unknown dataset 'imagenet-99'"):
        load_splits("imagenet-99")


@pytest.mark.parametrize("junk, reason", [
    (b"not an image", "not an image file PIL can read"),
    (bytes(3 * 2**20), "no image header in its first 1 MB"),  # read no further than 1 MB to find a header
])
def test_an_undecodable_image_is_reported(tmp_path, junk, reason):
    folder = write_folder(tmp_path / "broken", {"train": {"a": 1, "b": 1}, "test": {"a": 1, "b": 1}})
    (folder / "train" / "a" / "junk.jpg").write_bytes(junk)
    with pytest.raises(DataError, match=f"Cannot decode an image of class 'a' .*{reason}"):
        load_splits(str(folder))


def _parquet_of(images, labels, path: Path) -> str:
    import pandas as pd

    rows = []
    for pixels, label in zip(images, labels):
        buffer = io.BytesIO()
        Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
        rows.append({"img": {"bytes": buffer.getvalue(), "path": None}, "label": int(label)})
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


def test_hub_cifar10_parquet_files_are_read(cifar_mini, tmp_path, monkeypatch):
    """The hub path with the download mocked (no network here) and real CIFAR-10 pixels."""
    source = load_splits(str(cifar_mini))
    train, test = stratified_subset(source.train, 3), stratified_subset(source.test, 2)
    (tmp_path / "plain_text").mkdir()
    _parquet_of(train.images[:15], train.labels[:15], tmp_path / "plain_text" / "train-00000-of-00002.parquet")
    _parquet_of(train.images[15:], train.labels[15:], tmp_path / "plain_text" / "train-00001-of-00002.parquet")
    _parquet_of(test.images, test.labels, tmp_path / "plain_text" / "test-00000-of-00001.parquet")
    asked = []

    def fake_snapshot_download(repo_id, repo_type=None, allow_patterns=None):
        asked.append((repo_id, repo_type, allow_patterns))
        return str(tmp_path)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    monkeypatch.setitem(data.HUB_DATASETS, "cifar10-test", data.HUB_DATASETS["cifar10"])
    splits = load_splits("cifar10-test")
    assert asked == [("uoft-cs/cifar10", "dataset", ["plain_text/*.parquet"])]
    assert torch.equal(splits.train.images, train.images) and torch.equal(splits.train.labels, train.labels)
    assert splits.test.labels.bincount().tolist() == [2] * 10


def test_an_unreachable_hub_dataset_says_how_to_work_offline(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("huggingface_hub.snapshot_download", offline)
    monkeypatch.setitem(data.HUB_DATASETS, "cifar100-test", data.HUB_DATASETS["cifar100"])
    with pytest.raises(DataError, match="Cannot download dataset 'cifar100-test'.*--data-dir"):
        load_splits("cifar100-test")


def test_count_images_matches_the_layout_and_walks_each_input_once(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "toy", {"train": {"cat": 3, "dog": 2}, "test": {"cat": 1, "dog": 2}})
    walks = []
    real_walk = data_listing.walk
    monkeypatch.setattr(data_listing, "walk", lambda *a, **k: walks.append(a[0]) or real_walk(*a, **k))
    assert data.count_images(str(folder)) == (5, 3, 2)
    assert data.count_images(str(folder)) == (5, 3, 2) and data.source_key(str(folder)) is not None
    assert len(walks) == 1  # the estimate's second look and the cache key reuse the first walk
    Image.new("RGB", (12, 12)).save(folder / "train" / "cat" / "new.png")
    assert data.count_images(str(folder)) == (6, 3, 2) and len(walks) == 2
    load_splits(str(folder))
    assert data.count_images(str(folder)) == (6, 3, 2) and len(walks) == 3  # loading refreshed the memo
    flat = write_folder(tmp_path / "flat", {"street": {"a": 3}})
    assert data.count_images(str(flat), pool=True) == (3, 0, 1)
    with pytest.raises(DataError, match="has no images under train/<class>/ and test/<class>/"):
        data.count_images(str(flat))
    assert data.count_images("cifar100") == (50_000, 10_000, 100)
    with pytest.raises(DataError, match="does not exist"):
        data.count_images(str(tmp_path / "missing" / "x.tar.gz"))


def test_count_images_reads_archives_by_their_headers(tmp_path, cifar_archive):
    assert data.count_images(str(cifar_archive)) == (50_000, 10_000, 10)
    folder = write_folder(tmp_path / "toy", {"train": {"cat": 3, "dog": 2}, "test": {"cat": 1, "dog": 2}})
    for mode, suffix in (("w:gz", "tar.gz"), ("w:bz2", "tar.bz2"), ("w", "tar")):
        archive = tmp_path / f"toy.{suffix}"
        with tarfile.open(archive, mode, format=tarfile.PAX_FORMAT) as tar:
            tar.add(folder, arcname="a-very-long-top-folder-name-" + "x" * 120)  # pax path records
        assert data.count_images(str(archive)) == (5, 3, 2)
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="junk.tar.gz"):
        data.count_images(str(tmp_path / "junk.tar.gz"))


def test_a_fresh_process_reads_an_archives_counts_from_the_cache_until_it_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path / "cache"))
    folder = write_folder(tmp_path / "toy", {"train": {"cat": 3, "dog": 2}, "test": {"cat": 1, "dog": 2}})
    archive = tmp_path / "toy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="toy")
    scans = []
    real = data_listing._scan_archive
    monkeypatch.setattr(data_listing, "_scan_archive", lambda *a: scans.append(a[0]) or real(*a))
    assert data.count_images(str(archive)) == (5, 3, 2) and len(scans) == 1
    data_listing._memo.clear()  # what a new process starts with
    assert data.count_images(str(archive)) == (5, 3, 2) and len(scans) == 1  # its headers not read again
    with tarfile.open(archive, "w:gz") as tar:  # the archive changes: its size and time with it
        tar.add(folder / "train", arcname="toy/train")
        tar.add(folder / "test" / "cat", arcname="toy/test/cat")
    data_listing._memo.clear()
    assert data.count_images(str(archive)) == (5, 1, 2) and len(scans) == 2


def test_large_images_are_resized_as_they_are_read(tmp_path):
    """Photos bigger than MAX_STORED_SIDE are stored at 128 px, close to a full decode then resize."""
    folder = tmp_path / "photos"
    rng = np.random.default_rng(1)
    gradient = np.linspace(0, 255, 640, dtype=np.float32)
    originals = {}
    for split, count in (("train", 2), ("test", 1)):
        for name in ("a", "b"):
            (folder / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.stack([np.add.outer(gradient[:480] * 0.5, gradient * 0.5) * rng.uniform(0.3, 1)] * 3, -1)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / split / name / f"{i}.jpg", quality=92)
                originals[(split, name, i)] = folder / split / name / f"{i}.jpg"
    splits = load_splits(str(folder))
    assert splits.train.images.shape == (4, 3, 128, 128)
    full = Image.open(originals[("train", "a", 0)]).convert("RGB").resize((128, 128), Image.BILINEAR)
    difference = np.abs(splits.train.images[0].permute(1, 2, 0).numpy().astype(int) - np.asarray(full).astype(int))
    assert difference.mean() < 2.0


def test_images_over_the_pixel_cap_are_refused_by_name(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "toy", {"train": {"a": 1, "b": 1}, "test": {"a": 1, "b": 1}})
    Image.new("RGB", (300, 200)).save(folder / "train" / "a" / "poster.png")
    monkeypatch.setenv("FMSTEAL_MAX_IMAGE_PIXELS", "50000")
    with pytest.raises(DataError, match=r"'train/a/poster.png' of class 'a' has 300x200 pixels, over the cap of 50,000"):
        load_splits(str(folder))


def test_cifar_images_are_stored_exactly_as_decoded(cifar_mini, tmp_path):
    """32x32 JPEGs are never resized: stored pixels equal PIL's decode, so earlier caches stay valid."""
    members = {}
    with tarfile.open(cifar_mini) as tar:
        for member in tar:
            label = member.name.split("/")[1] if member.isfile() else None
            if label in ("cat", "dog") and sum(name.split("/")[1] == label for name in members) < 20:
                members[member.name] = tar.extractfile(member).read()
            if len(members) == 40:
                break
    for name, payload in members.items():
        for split in ("train", "test"):
            path = tmp_path / "pets" / split / Path(name).relative_to(Path(name).parts[0])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
    splits = load_splits(str(tmp_path / "pets"))
    expected = sorted(np.asarray(Image.open(io.BytesIO(p)).convert("RGB")).tobytes() for p in members.values())
    stored = sorted(image.permute(1, 2, 0).numpy().tobytes() for image in splits.train.images)
    assert stored == expected
