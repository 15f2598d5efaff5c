"""The embedding cache: hits skip the backbone; corrupt or stale files are rebuilt, never trusted."""

import os

import torch

from fmsteal.engine.cache import cache_dir
from fmsteal.engine.data import load_splits, stratified_subset
from fmsteal.engine.embed import Embedder
from fmsteal.engine.zoo import get_backbone

CPU = torch.device("cpu")


def small_set(archive, per_class=6):
    return stratified_subset(load_splits(str(archive)).test, per_class)


def lite0(size=48) -> Embedder:
    return Embedder(get_backbone("tf_efficientnet_lite0"), size, CPU)


def drain(generator):
    """Run a generator to its end: (events, return value)."""
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return events, stop.value


def test_a_cache_hit_skips_the_backbone(cifar_mini):
    images = small_set(cifar_mini)
    first = lite0()
    events, features = drain(first.embed(images))
    assert first.images_forwarded == len(images) and features.shape == (len(images), 1280)
    assert events[-1]["done"] == len(images)
    second = lite0()
    events, again = drain(second.embed(images))
    assert second.images_forwarded == 0 and events == []
    assert torch.equal(features, again)


def test_registered_images_are_recognised_by_content(cifar_mini):
    images = small_set(cifar_mini)
    embedder = lite0()
    _, features = drain(embedder.register(images))
    forwarded = embedder.images_forwarded
    served = embedder.features_of(images.images[[3, 1]].float() / 255)
    assert embedder.images_forwarded == forwarded
    assert torch.equal(served, features[[3, 1]])
    flipped = images.images[:2].flip(-1)
    fresh = embedder.features_of(flipped)
    assert embedder.images_forwarded == forwarded + 2
    assert not torch.allclose(fresh, features[:2])


def test_asking_the_same_tensor_again_follows_its_changes_and_new_registrations(cifar_mini):
    images = small_set(cifar_mini)
    embedder = lite0()
    asked = images.images[:20].clone()
    unknown = embedder.features_of(asked)  # nothing registered: every image through the backbone
    assert embedder.images_forwarded == 20
    drain(embedder.register(images))
    known = embedder.features_of(asked)  # the same tensor, now registered: served from memory
    assert embedder.images_forwarded == 20 and torch.allclose(known, unknown, atol=1e-4)
    assert torch.equal(embedder.features_of(asked), known) and embedder.images_forwarded == 20
    asked[0] = images.images[-1]  # changed in place: its first image is now another registered one
    moved = embedder.features_of(asked)
    assert embedder.images_forwarded == 20 and torch.equal(moved[1:], known[1:])
    assert torch.equal(moved[0], embedder.features_of(images.images[-1:])[0])
    asked[1] = 255 - asked[1]  # an image never seen: through the backbone
    embedder.features_of(asked)
    assert embedder.images_forwarded == 21


def cache_file(images, size=48):
    return cache_dir("embeddings") / "tf_efficientnet_lite0" / f"{size}px-{images.fingerprint}.pt"


def test_a_corrupt_cache_file_is_rebuilt(cifar_mini, tmp_path, monkeypatch):
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path))  # no other file holds these images' features
    images = small_set(cifar_mini, per_class=5)
    _, reference = drain(lite0().embed(images))
    cache_file(images).write_bytes(b"not a tensor file")
    embedder = lite0()
    events, rebuilt = drain(embedder.embed(images))
    assert embedder.cache_rebuilt == 1 and embedder.images_forwarded == len(images)
    assert any(e["kind"] == "log" and "rebuilding" in e["message"] for e in events)
    assert torch.allclose(rebuilt, reference, atol=1e-5)


def test_a_cache_file_with_tampered_features_or_other_weights_is_rebuilt(cifar_mini, tmp_path, monkeypatch):
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path))
    images = small_set(cifar_mini, per_class=4)
    _, reference = drain(lite0().embed(images))
    path = cache_file(images)
    stored = torch.load(path, weights_only=True)
    stored["features"][0] += 1.0  # contents no longer match their checksum
    torch.save(stored, path)
    tampered = lite0()
    drain(tampered.embed(images))
    assert tampered.cache_rebuilt == 1
    stored = torch.load(path, weights_only=True)
    stored["meta"]["weights"] = "made-from-other-weights"
    torch.save(stored, path)
    stale = lite0()
    _, features = drain(stale.embed(images))
    assert stale.cache_rebuilt == 1 and torch.allclose(features, reference, atol=1e-5)


def test_a_verified_file_is_trusted_by_its_seal_until_it_is_written_again(cifar_mini, tmp_path, monkeypatch):
    """The checksum is read once per version of a file: a load of the untouched file skips it, a file written
    again in place (same inode and size) is checked again and rebuilt when it does not match."""
    from fmsteal.engine import embed

    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path))
    images = small_set(cifar_mini, per_class=3)
    _, reference = drain(lite0().embed(images))
    sums = []
    checksum = embed._checksum
    monkeypatch.setattr(embed, "_checksum", lambda content: sums.append(1) or checksum(content))
    for _ in range(2):
        loaded = lite0()
        _, features = drain(loaded.embed(images))
        assert loaded.images_forwarded == 0 and torch.equal(features, reference)
    assert sums == []  # sealed when written: neither load read the features' every byte
    path = cache_file(images)
    stored = torch.load(path, weights_only=True)
    stored["features"][0] += 1.0
    with path.open("r+b") as file:  # in place: the same inode, the same size
        torch.save(stored, file)
    tampered = lite0()
    drain(tampered.embed(images))
    assert sums and tampered.cache_rebuilt == 1 and tampered.images_forwarded == len(images)


def test_an_image_is_embedded_once_whichever_set_it_comes_in(cifar_mini, tmp_path, monkeypatch):
    """A set that shares images with sets embedded before (another seed's pool subset, a larger budget) forwards
    only its new images, and its features are those of a direct forward pass."""
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path))  # a cache holding nothing else
    images = small_set(cifar_mini, per_class=9)
    first, overlapping, union = (images.subset(torch.arange(a, b)) for a, b in ((0, 50), (30, 80), (0, 80)))
    embedders = [lite0() for _ in range(3)]
    drain(embedders[0].embed(first))
    files = sorted((tmp_path / "embeddings").glob("*/48px-*.pt"))
    for file in files:
        os.utime(file, ns=(0, 0))  # long unused: what gives features is marked used, what is only looked at is not
    drain(lite0().embed(images.subset(torch.arange(80, 90))))  # no image in common with the first set
    assert [file.stat().st_mtime_ns for file in files] == [0]
    events, features = drain(embedders[1].embed(overlapping))
    assert [file.stat().st_mtime_ns > 0 for file in files] == [True]
    _, together = drain(embedders[2].embed(union))
    assert [e.images_forwarded for e in embedders] == [50, 30, 0]  # images 50-79 were the only new ones
    assert events[-1]["total"] == 30
    direct = embedders[0]._forward_batch(overlapping.images)
    assert torch.allclose(features, direct, atol=1e-5) and torch.equal(together[30:], features)


def test_a_warm_run_knows_the_weights_fingerprint_without_loading_the_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path))
    computed = lite0()
    fingerprint = computed.weights_fingerprint
    assert computed._model is not None  # the first time, from the weights themselves
    remembered = lite0()
    assert remembered.weights_fingerprint == fingerprint and remembered._model is None
    assert Embedder(get_backbone("tf_efficientnet_lite1"), 48, CPU).weights_fingerprint != fingerprint
    other_size = Embedder(get_backbone("tf_efficientnet_lite0"), 64, CPU)
    assert other_size.weights_fingerprint == fingerprint and other_size._model is not None  # a size of its own
