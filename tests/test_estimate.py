"""Duration estimates: the run's own phases priced with speeds measured here; hopeless or impossible configs refused."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine_fixtures import run_to_card
from fmsteal.experiment import estimate as est
from fmsteal.engine.cache import cache_dir
from fmsteal.experiment.config import ExperimentConfig
from fmsteal import settings
from fmsteal.engine.data import count_images
from fmsteal.engine.embed import Embedder
from fmsteal.errors import ConfigError, DataError
from fmsteal.experiment import speed
from fmsteal.engine.zoo import get_backbone


def image_folder(root: Path, train: int, test: int, classes: int = 3) -> Path:
    """Empty .jpg files in the train/<class>, test/<class> layout: counting needs no pixels."""
    for split, count in (("train", train), ("test", test)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i}.jpg").touch()
    return root


@pytest.fixture
def cifar_like(tmp_path) -> str:
    return str(image_folder(tmp_path / "data", 500, 100, classes=10))


def make(data_dir: str, **overrides) -> ExperimentConfig:
    values = dict(victim="tf_efficientnet_lite0", thief="tf_efficientnet_lite0", budget=2000, data_dir=data_dir)
    values.update(overrides)
    return ExperimentConfig(**values)


def test_speeds_are_measured_on_this_machine_once_and_scale_with_pixels(monkeypatch):
    monkeypatch.setattr(speed, "_contention", lambda: 0.0)  # retaking contended probes is tested below
    spec = get_backbone("tf_efficientnet_lite0")
    small, large = speed.backbone_speed(spec, 32, "cpu"), speed.backbone_speed(spec, 160, "cpu")  # 25x the pixels
    assert small["ips"] > large["ips"] > 0 and small["load_s"] > 0
    train, gradient = speed.backbone_speed(spec, 32, "cpu", "train"), speed.backbone_speed(spec, 32, "cpu", "gradient")
    assert small["ips"] > train["ips"] > 0 and small["ips"] > gradient["ips"] > 0  # a backward pass costs more
    with pytest.raises(ValueError, match="gradient"):
        speed.backbone_speed(spec, 32, "cpu", "backward")
    monkeypatch.setattr(speed, "_measure_backbone", lambda *a: pytest.fail("measured twice"))
    assert speed.backbone_speed(spec, 32, "cpu") == small  # cached in the cache folder
    assert speed.linear_seconds(1280, "cpu") > 0 and speed.decode_ips() > 0


def test_a_runs_observed_speed_counts_its_forward_passes_alone(monkeypatch):
    # A run's throughput replaces the probe's; time spent outside the backbone (here a slow consumer of
    # progress events) must not count, or a backbone that ran for real looks slower than one only probed.
    monkeypatch.setattr(speed, "_contention", lambda: 0.0)
    spec = get_backbone("tf_efficientnet_lite0")
    embedder = Embedder(spec, 32, torch.device("cpu"))
    images = torch.randint(0, 255, (speed.OBSERVED_MIN_IMAGES, 3, 32, 32), dtype=torch.uint8)
    began, events = time.perf_counter(), 0
    for _ in embedder.forward(images):
        time.sleep(0.1)
        events += 1
    assert 0 < embedder.forward_seconds <= time.perf_counter() - began - 0.1 * events
    speed.observe_forward(spec, 32, "cpu", embedder.images_forwarded, embedder.forward_seconds)
    assert speed.backbone_speed(spec, 32, "cpu")["ips"] == pytest.approx(len(images) / embedder.forward_seconds)


def test_offline_pair_is_estimated_from_its_images(cifar_like):
    result = est.estimate(make(cifar_like), device="cpu")
    images = 10 * (500 + 100)
    forward = images / speed.backbone_speed(get_backbone("tf_efficientnet_lite0"), 96, "cpu")["ips"]
    assert not result["refused"] and result["device"] == "cpu"
    assert forward < result["phases"]["embed"] < 1.5 * forward + 5  # plus loading the model and indexing images
    assert result["phases"]["data"] == pytest.approx(images / speed.decode_ips(), abs=0.06)  # shown to 0.1 s
    assert result["seconds"] == pytest.approx(sum(result["phases"].values()), abs=0.5)
    assert "Estimated time on this CPU" in result["message"] and "nothing reusable" in result["message"]


def test_costlier_choices_cost_more(cifar_like, monkeypatch):
    # Pricing, not timing, is under test (timing is above). The speeds cached on a machine mix short probes
    # with real runs' observed throughput, taken at different moments, so their order across backbones is
    # not fixed; here each backbone gets a fixed speed at 96 px, slower for the bigger one and for passes
    # with a backward step, scaled by pixels as the probes are.
    per_image_at_96 = {"tf_efficientnet_lite0": 1 / 200, "tf_efficientnet_lite2": 1 / 100}
    pass_cost = {"forward": 1, "train": 3, "gradient": 3}
    monkeypatch.setattr(speed, "backbone_speed", lambda spec, size, device, kind="forward": {
        "ips": 1 / (per_image_at_96[spec.name] * pass_cost[kind] * (size / 96) ** 2), "load_s": 0.5})

    def seconds(**overrides):
        return est.estimate(make(cifar_like, **overrides), device="cpu")["seconds"]

    base = seconds()
    assert seconds(image_size=192) > base  # 4x the pixels
    assert seconds(victim_mode="fft") > base and seconds(thief_mode="fft") > base
    assert seconds(thief="tf_efficientnet_lite2") > base  # a second, slower backbone embeds everything again
    assert seconds(budget=1000) < base  # fewer queries to answer and learn from
    assert est.estimate(make(cifar_like), device="cuda")["seconds"] < base


def test_fft_of_vit_large_on_cpu_is_refused_with_what_would_work(cifar_like, monkeypatch):
    monkeypatch.setattr(est, "hub_reachable", lambda: True)
    measured = speed.backbone_speed  # timing ViT-L takes minutes here: its speed is DESIGN.md's measurement
    monkeypatch.setattr(speed, "backbone_speed", lambda spec, size, device, kind="forward": (
        {"ips": (4.4 if kind == "forward" else 1.0) * (112 / size) ** 2, "load_s": 5.0}
        if spec.name.startswith("vit_large") else measured(spec, size, device, kind)))
    big = image_folder(Path(cifar_like).parent / "big", 5000, 1000, classes=10)
    result = est.estimate(make(str(big), victim="vit_large_patch16_224", thief="vit_large_patch16_224",
                               victim_mode="fft", thief_mode="fft", budget=5000), device="cpu")
    assert result["refused"] and result["seconds"] > settings.current().max_seconds
    assert "far beyond" in result["message"] and "Results tab" in result["message"]
    assert any(tip in result["message"] for tip in ("linear probes", "EfficientNet-Lite0", "LP instead of FFT"))


def test_weights_that_cannot_be_fetched_are_refused(cifar_like, monkeypatch):
    if get_backbone("resnet18").offline_available():
        pytest.skip("resnet18 weights are cached on this machine")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = est.estimate(make(cifar_like, victim="resnet18"), device="cpu")
    assert result["refused"] and "ResNet-18" in result["message"] and "offline ✓" in result["message"]
    assert "hf download timm/resnet18.tv_in1k" in result["message"]


def test_bad_data_is_a_data_error(tmp_path, cifar_like):
    with pytest.raises(DataError, match="does not exist"):
        est.estimate(make(str(tmp_path / "missing")))
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.jpg").touch()
    with pytest.raises(DataError, match="train/<class>"):
        est.estimate(make(str(flat)))
    with pytest.raises(ConfigError, match="larger than the query pool"):
        est.estimate(make(cifar_like, budget=2501))
    assert count_images(str(flat), pool=True) == (1, 0, 1)


def test_hub_datasets_and_subsets(cifar_like):
    assert count_images("cifar100") == (50_000, 10_000, 100)
    full = est.estimate(make(cifar_like, budget=1000), device="cpu")["phases"]["embed"]
    subset = est.estimate(make(cifar_like, budget=1000, train_per_class=250, test_per_class=50), device="cpu")["phases"]["embed"]
    assert subset < 0.6 * full  # half the images to embed (the model loads either way)


def test_durations_read_naturally():
    assert [est.duration(s) for s in (0.2, 40, 420, 9000)] == ["1 s", "40 s", "7 min", "2.5 h"]


def test_work_an_earlier_run_left_in_the_cache_is_left_out(tiny_config):
    config = tiny_config(seed=7, image_size=48, evaluations="corruptions")  # a size no other test embeds at
    cold = est.estimate(config)  # (a linear-probe victim of 300 images may price at 0.00 s: judge by what is reused)
    assert cold["phases"]["embed"] > 0
    assert not {"the EfficientNet-Lite0 features", "the trained victim"} & set(cold["reused"])
    first, _ = run_to_card(config)
    warm = est.estimate(config)
    assert warm["phases"]["data"] <= cold["phases"]["data"] and warm["phases"]["victim"] == 0
    assert warm["phases"]["embed"] < cold["phases"]["embed"] / 3  # features loaded, not computed
    assert warm["phases"]["evaluate"] < cold["phases"]["evaluate"] / 3  # the corrupted images' features too
    rerun, _ = run_to_card(config)
    assert first["backbone_images_forwarded"] > 0 and rerun["backbone_images_forwarded"] == 0
    assert rerun["corruptions"] == first["corruptions"]
    assert warm["reused"] == ["the decoded images", "the EfficientNet-Lite0 features", "the trained victim"]
    assert "reusing the decoded images" in warm["message"] and warm["seconds"] < cold["seconds"]
    other_seed = est.estimate(replace(config, seed=8))  # its victim trains on another split
    assert other_seed["phases"]["embed"] == warm["phases"]["embed"] and "the trained victim" not in other_seed["reused"]
    for features in (cache_dir("embeddings") / "tf_efficientnet_lite0").glob("48px-*.pt"):
        features.unlink()  # a record is believed only while its files are there
    again = est.estimate(config)
    assert again["phases"]["embed"] > 3 * warm["phases"]["embed"]
    assert "the EfficientNet-Lite0 features" not in again["reused"]


def test_a_speed_measured_on_a_contended_machine_is_retaken_once_it_is_quieter(monkeypatch):
    calls = []

    def measure() -> dict:
        calls.append(1)
        return {"ips": float(len(calls))}

    monkeypatch.setattr(speed, "_contention", lambda: 3.0)  # three runnable processes per core
    assert speed._measured("probe|contended", measure)["ips"] == 1.0
    monkeypatch.setattr(speed, "_contention", lambda: 2.0)  # still busy: keep the figure
    assert speed._measured("probe|contended", measure) == {"ips": 1.0, "contention": 3.0, "format": speed.FORMAT}
    monkeypatch.setattr(speed, "_contention", lambda: 0.5)  # quiet now: measured again, and kept
    assert speed._measured("probe|contended", measure) == {"ips": 2.0, "contention": 0.5, "format": speed.FORMAT}
    assert speed._measured("probe|contended", measure)["ips"] == 2.0 and len(calls) == 2


def test_a_public_server_measures_its_decode_speed(monkeypatch, tmp_path):
    """The decode probe reads an archive the server made in the system's temporary folder, which a public
    server's data roots exclude: it must not be refused as a visitor's path would be (a fresh Space could price
    no run from uploaded images)."""
    monkeypatch.setenv("FMSTEAL_PUBLIC", "1")
    monkeypatch.setenv("FMSTEAL_UPLOADS", str(tmp_path / "uploads"))
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path / "cache"))  # nothing measured yet
    assert speed.decode_ips() > 0


def test_a_speed_stored_by_an_older_version_is_retaken(monkeypatch, tmp_path):
    """Figures stored before observed speeds counted forward passes alone (no `format`) could be several times
    too slow; they are measured again once, then kept."""
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path))  # a cache of its own: the session's speeds stay
    monkeypatch.setattr(speed, "_contention", lambda: 0.0)
    key = f"{speed._machine()}|probe|old"
    speed._file().write_text(json.dumps({key: {"ips": 38.0, "contention": 0.0}}))
    assert speed._measured("probe|old", lambda: {"ips": 120.0})["ips"] == 120.0
    assert speed._measured("probe|old", lambda: {"ips": 999.0})["ips"] == 120.0


def test_a_probe_in_progress_holds_up_no_other_speed(monkeypatch, tmp_path):
    """One visitor's estimate at a new size measures while everyone else's estimates read what is measured (and
    measure other sizes) at once; two threads wanting the same new figure measure it once."""
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path))
    monkeypatch.setattr(speed, "_contention", lambda: 0.0)
    speed._measured("probe|known", lambda: {"ips": 5.0})
    started, release, calls = threading.Event(), threading.Event(), []

    def slow() -> dict:
        calls.append(1)
        started.set()
        release.wait(20)
        return {"ips": 1.0}

    waiting = [threading.Thread(target=speed._measured, args=("probe|slow", slow)) for _ in range(2)]
    for thread in waiting:
        thread.start()
    assert started.wait(10)
    began = time.perf_counter()
    assert speed._measured("probe|known", slow)["ips"] == 5.0  # measured before: read, not waited for
    assert speed._measured("probe|other", lambda: {"ips": 7.0})["ips"] == 7.0  # a new key measures alongside
    assert time.perf_counter() - began < 5  # against the 20 s the slow probe would hold a shared lock
    release.set()
    for thread in waiting:
        thread.join(20)
    assert len(calls) == 1 and speed._measured("probe|slow", slow)["ips"] == 1.0
    assert set(json.loads(speed._file().read_text())) >= {f"{speed._machine()}|probe|{k}" for k in ("known", "other", "slow")}


def test_a_cpu_forward_batch_is_about_a_second_of_work_so_cancel_is_seen_within_one(monkeypatch):
    spec = get_backbone("tf_efficientnet_lite0")
    for ips, batch in ((10.0, 10), (0.2, 1), (1e6, 256)):  # a slow big size, a very slow one, a tiny fast one
        monkeypatch.setattr(speed, "backbone_speed", lambda *args, ips=ips, **kwargs: {"ips": ips})
        assert speed.forward_batch(spec, 256, "cpu") == batch
    assert speed.forward_batch(spec, 256, "cuda") is None  # a GPU keeps the embedder's own batch
