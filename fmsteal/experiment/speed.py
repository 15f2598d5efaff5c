"""Speeds measured on this machine, cached: what the phases' cost models multiply by.

Each measurement is a short timed run of the real code path (a backbone's forward and training
step at the run's resolution, the training loop of a linear head, JPEG decoding, image hashing,
loading a cached tensor file), kept in `<cache>/speeds.json` per machine, threads and torch version.
A backbone is timed without its pretrained weights: random weights run exactly as fast.
"""

from __future__ import annotations

import io
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["backbone_speed", "forward_batch", "observe_forward", "linear_seconds", "decode_ips", "hash_ips",
           "load_bytes_per_s", "MEASURE_SECONDS", "BATCH_SECONDS"]

MEASURE_SECONDS = 1.5  # wall time aimed at per measurement (one-off per machine and setting)
DECODE_PROBE_IMAGES = 400  # images in the synthetic archive the data phase is timed on
OBSERVED_MIN_IMAGES = 512  # a run's own throughput replaces the probe's from this many images on
BATCH_SECONDS = 1.0  # a CPU forward batch is sized to about this much work, so a cancel is seen within it
FORMAT = 2  # what a stored figure means; older ones are retaken (before 2, observed speeds counted overheads)
_lock = threading.Lock()  # the file's read-modify-write only: held for milliseconds, never while measuring
_measuring: dict[str, threading.Lock] = {}  # one lock per key being measured: a probe holds up no other key


def _file() -> Path:
    from fmsteal.engine.cache import cache_root

    return cache_root() / "speeds.json"


def _machine() -> str:
    import torch

    return f"{platform.machine()}-{os.cpu_count()}cpu-{torch.get_num_threads()}t-torch{torch.__version__}"


def _contention() -> float:
    """Runnable processes per core (1-minute load average / cores): above 1, others were sharing the CPU."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.0


def _stale(entry: dict) -> bool:
    """A measurement of an older format, or taken while the machine was contended and now at most half as busy,
    is retaken."""
    if entry.get("format") != FORMAT:
        return True
    return entry.get("contention", 0.0) > 1.0 and _contention() <= entry["contention"] / 2


def _measured(key: str, measure: Callable[[], dict], replace: dict | None = None) -> dict:
    """The cached measurement under `key` (per machine), measuring it once (again when it was taken on a
    contended machine that is now quieter); `replace` overwrites it. Each records the contention it saw.
    A lookup of a measured key waits for nothing; two threads wanting the same new key measure it once."""
    key = f"{_machine()}|{key}"
    found = _table().get(key)
    if replace is None and found is not None and not _stale(found):
        return found
    with _lock:
        probe = _measuring.setdefault(key, threading.Lock())
    with probe:
        found = _table().get(key)  # another thread may have measured it meanwhile
        if replace is None and found is not None and not _stale(found):
            return found
        entry = {**(replace if replace is not None else measure()), "contention": round(_contention(), 2),
                 "format": FORMAT}
        with _lock:
            table = _table()
            table[key] = entry
            from fmsteal.experiment.cards import write_card

            write_card(table, _file())
        return entry


def _table() -> dict:
    try:
        return json.loads(_file().read_text())
    except (OSError, ValueError):
        return {}


def observe_forward(spec, size: int, device: str, images: int, seconds: float) -> None:
    """A real run's backbone throughput (`seconds` spent in its forward passes alone, as the probe times them)
    replaces the short probe's (a probe taken while other processes loaded the machine would otherwise mislead
    every later estimate). Small samples are ignored."""
    if images >= OBSERVED_MIN_IMAGES and seconds > 0:
        probe = backbone_speed(spec, size, device)
        _measured(f"backbone|{spec.base_name}|{size}|{device}|forward", dict, {**probe, "ips": images / seconds})


def forward_batch(spec, size: int, device: str) -> int | None:
    """Images per forward batch on the CPU: about BATCH_SECONDS of work at this machine's measured speed (1 to 256),
    so progress comes every second or so at any image size; None on a GPU (the embedder's default)."""
    if device != "cpu":
        return None
    return max(1, min(256, int(backbone_speed(spec, size, device)["ips"] * BATCH_SECONDS)))


def _timed(step: Callable[[], None], per_call: int) -> float:
    """Items per second of `step` (each call handles `per_call` items): the fastest of several calls after a
    warm-up, so a moment of contention from other processes does not become this machine's speed."""
    step()
    fastest, started, calls = float("inf"), time.perf_counter(), 0
    while calls < 3 or (time.perf_counter() - started < MEASURE_SECONDS and calls < 50):
        began = time.perf_counter()
        step()
        fastest = min(fastest, time.perf_counter() - began)
        calls += 1
    return per_call / max(fastest, 1e-9)


KINDS = ("forward", "train", "gradient")


def backbone_speed(spec, size: int, device: str, kind: str = "forward") -> dict:
    """{"ips", "load_s"} of `spec` at `size` px on `device` for one `kind` of pass: "forward" (no gradients),
    "train" (a training step on augmented images) or "gradient" (forward and backward to the input pixels,
    weights frozen: an adversarial attack's step). Each is measured only when a plan needs it."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    return _measured(f"backbone|{spec.base_name}|{size}|{device}|{kind}", lambda: _measure_backbone(spec, size, device, kind))


def _measure_backbone(spec, size: int, device: str, kind: str) -> dict:
    import torch

    from fmsteal.engine.augment import image_transform
    from fmsteal.engine.embed import autocast
    from fmsteal.engine.zoo import load_backbone

    import timm  # noqa: F401  (imported before the clock starts: a process pays for it once, not per model)

    started = time.perf_counter()
    model = load_backbone(spec, size, pretrained=False).to(device)
    load_s = time.perf_counter() - started
    transform = image_transform(spec, size, torch.device(device), augment=kind == "train")
    probe = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8)
    model.eval()
    with torch.inference_mode(), autocast(torch.device(device)):
        model(transform(probe, False))  # warm-up: lazy initialisation of kernels
        first = time.perf_counter()
        model(transform(probe, False))
        per_image = (time.perf_counter() - first) / len(probe)
    # a batch as large as the runs use (64) where it is quick, so per-call overhead is not taken for speed
    batch = int(max(4, min(64, MEASURE_SECONDS / 4 / max(per_image, 1e-4) / (1 if kind == "forward" else 3))))
    images = torch.randint(0, 255, (batch, 3, 32, 32), dtype=torch.uint8)
    network = torch.nn.Sequential(model, torch.nn.Linear(spec.feature_dim, 10).to(device))
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    if kind == "forward":
        @torch.inference_mode()
        def step() -> None:
            with autocast(torch.device(device)):
                model(transform(images, False))
    elif kind == "gradient":
        network.requires_grad_(False)
        pixels = images.float().div(255).requires_grad_(True)

        def step() -> None:
            with autocast(torch.device(device)):
                loss = torch.nn.functional.cross_entropy(network(transform(pixels, False)).float(), labels)
            torch.autograd.grad(loss, pixels)
    else:
        network.train()
        optimizer = torch.optim.SGD(network.parameters(), lr=1e-4)

        def step() -> None:
            with autocast(torch.device(device)):
                loss = torch.nn.functional.cross_entropy(network(transform(images, True)).float(), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return {"ips": _timed(step, batch), "load_s": load_s}


def linear_seconds(feature_dim: int, device: str) -> float:
    """Seconds per sample-epoch of the real training loop (`fit`) on a linear head over cached features."""
    return _measured(f"linear|{feature_dim}|{device}", lambda: _measure_linear(feature_dim, device))["seconds"]


def _measure_linear(feature_dim: int, device: str) -> dict:
    import torch

    from fmsteal.engine.augment import feature_transform
    from fmsteal.engine.recipes import FAST_LINEAR
    from fmsteal.engine.train import fit
    from dataclasses import replace

    n, recipe = 4096, replace(FAST_LINEAR, epochs=3)
    features, labels = torch.randn(n, feature_dim), torch.randint(0, 10, (n,))
    validation = (features[:400], labels[:400])

    def train() -> None:
        for _ in fit(torch.nn.Linear(feature_dim, 10), features, labels, recipe, feature_transform(torch.device(device)),
                     torch.device(device), 0, 10, validation):
            pass

    return {"seconds": 1.0 / _timed(train, n * recipe.epochs)}


def decode_ips() -> float:
    """Small JPEGs decoded per second (the data phase on a cold cache)."""
    return _measured("decode", _measure_decode)["ips"]


def _measure_decode() -> dict:
    """The real reading path (an archive listed, decompressed, decoded) over a small synthetic .tar.gz of smooth
    32-px JPEGs (CIFAR-like in size), per image."""
    import tarfile
    import tempfile

    import numpy as np
    from PIL import Image

    from fmsteal.engine.data import read_uncached

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for i in range(DECODE_PROBE_IMAGES):
                buffer = io.BytesIO()
                smooth = Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).resize((32, 32), Image.BILINEAR)
                smooth.save(buffer, "JPEG")
                info = tarfile.TarInfo(f"{'test' if i % 5 == 0 else 'train'}/c{i % 2}/{i}.jpg")
                info.size = buffer.tell()
                buffer.seek(0)
                tar.addfile(info, buffer)
        return {"ips": _timed(lambda: read_uncached(path), DECODE_PROBE_IMAGES)}


def hash_ips(pixels: int) -> float:
    """Images of `pixels` bytes hashed per second (how cached features find their images)."""
    return _measured(f"hash|{pixels}", lambda: _measure_hash(pixels))["ips"]


def _measure_hash(pixels: int) -> dict:
    import torch

    from fmsteal.engine.embed import image_hashes

    images = torch.randint(0, 255, (2000, pixels), dtype=torch.uint8)
    return {"ips": _timed(lambda: image_hashes(images), len(images))}


def load_bytes_per_s() -> float:
    """Bytes per second read back from a cached tensor file (decoded datasets, features)."""
    return _measured("load", _measure_load)["bytes_per_s"]


def _measure_load() -> dict:
    import tempfile

    import torch

    from fmsteal.engine.cache import atomic_save, load_or_none

    tensor = torch.randint(0, 255, (64 * 2**20,), dtype=torch.uint8)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.pt"
        atomic_save({"x": tensor}, path)
        rate = _timed(lambda: load_or_none(path), tensor.numel())
    return {"bytes_per_s": rate}
