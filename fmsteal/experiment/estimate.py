"""How long a config will take on this machine, and refusal of configs far beyond it.

Speeds are the forward throughputs measured on the project's 2-core CPUs (DESIGN.md), scaled by
pixel count to other resolutions. Work that earlier runs left in the cache (decoded images, a
backbone's features, a trained victim: `fmsteal.experiment.warm`) is left out. Everything returned is plain data.
"""

from __future__ import annotations

import os
import socket
import tarfile
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from fmsteal.errors import DataError

# Images per second, forward pass only, fp32, batch 32, on 2 CPU cores: arch -> {size: ips}.
CPU_SPEED = {
    "resnet18": {32: 892.0, 224: 22.0},
    "resnet34": {224: 11.0},  # 2x resnet18's FLOPs
    "resnet50": {224: 6.0},
    "resnet101": {224: 3.3},  # 1.9x resnet50's FLOPs
    "vit_small_patch16_224": {224: 14.0},
    "vit_base_patch16_224": {112: 7.0, 224: 2.0},
    "vit_base_patch16_clip_224": {112: 7.0, 224: 2.0},
    "vit_large_patch16_224": {112: 4.4, 224: 0.6},
    "vit_small_patch14_dinov2": {224: 5.2},
    "vit_base_patch14_dinov2": {224: 0.75},  # vit_base scaled like dinov2-S vs ViT-S
    "tf_efficientnet_lite0": {96: 210.0},
    "tf_efficientnet_lite1": {96: 140.0},  # FLOPs ratio to lite0 at equal size
    "tf_efficientnet_lite2": {96: 95.0},
    "scratch_cnn": {32: 4000.0},
}
GPU_SPEEDUP = 40.0  # a mid-range GPU with AMP against 2 CPU cores
TRAIN_COST = 6.0  # a training step (forward, backward, augmentation) on a CPU, in forward passes
LINEAR_SECONDS = 1e-5  # one sample-epoch of a linear head on cached features
DECODE_IPS = 1500.0  # JPEG decoding of small images, once per dataset (then cached)
CACHED_FEATURES_IPS = 20_000.0  # loading cached features and hashing their images (60k in 2.7 s measured)
HUB_SIZES = {"cifar10": (50_000, 10_000, 10), "cifar100": (50_000, 10_000, 100), "tiny-imagenet": (100_000, 10_000, 200),
             "imagenet32": (1_281_167, 0, 1000)}
REFUSE_SECONDS = float(os.environ.get("FMSTEAL_MAX_SECONDS", 2 * 3600))
WARN_SECONDS = 15 * 60


def estimate(config, device: str | None = None) -> dict:
    """{"seconds", "phases", "device", "reused", "refused", "message"} for an ExperimentConfig.

    `device` ("cpu"/"cuda") overrides what the config would resolve to here. Raises DataError
    when the data folder does not exist.
    """
    from fmsteal.engine.zoo import get_backbone

    device = device or _device(config.device)
    phases, reused = _phases(config, device)
    seconds = sum(phases.values())
    result = {"seconds": round(seconds, 1), "phases": {k: round(v, 1) for k, v in phases.items()},
              "device": device, "reused": reused, "refused": False}
    missing = [name for name in {config.victim, config.thief} if not get_backbone(name).offline_available()]
    reasons = []
    if seconds > REFUSE_SECONDS:
        reasons.append(f"This run would take about {duration(seconds)} on this {device.upper()}, far beyond a live "
                       f"demo. {_suggestions(config, device)}")
    if missing and not hub_reachable():
        names = ", ".join(get_backbone(n).label for n in sorted(missing))
        hubs = " ".join(f"`hf download {get_backbone(n).hub_id}`" for n in sorted(missing))
        reasons.append(f"The weights of {names} are not on this machine and the Hugging Face Hub cannot be reached: "
                       f"pick a backbone marked 'offline ✓' (EfficientNet-Lite0/1/2 or the scratch CNN), or "
                       f"download them on a connected machine first: {hubs}.")
    if reasons:
        result.update(refused=True, message=" ".join(reasons))
    else:
        where = " (plus downloading weights from the Hub)" if missing else ""
        cache = (f"reusing {_and(reused)} that earlier runs left in the cache." if reused else
                 "nothing reusable in the cache yet; a repeat with these backbones and data is much faster.")
        result["message"] = f"Estimated time on this {device.upper()}: about {duration(seconds)}{where}; {cache}"
        if seconds > WARN_SECONDS:
            result["message"] += f" That is long for a demo. {_suggestions(config, device)}"
    return result


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def duration(seconds: float) -> str:
    """A rough human duration: '40 s', '7 min', '2.5 h'."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def forward_speed(arch: str, size: int, device: str) -> float:
    """Images per second through `arch` at `size` px, from the nearest measured size."""
    measured = CPU_SPEED.get(arch, {224: 2.0})
    ref = min(measured, key=lambda s: abs(s - size))
    ips = measured[ref] * (ref / size) ** 2
    return ips * (GPU_SPEEDUP if device == "cuda" else 1.0)


def hub_reachable(timeout: float = 2.0) -> bool:
    """False when HF_HUB_OFFLINE is set or huggingface.co does not resolve and connect."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    return _hub_reachable(int(time.time() // 60), timeout)


@lru_cache(maxsize=2)
def _hub_reachable(minute: int, timeout: float) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _device(name: str) -> str:
    if name == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _phases(config, device: str) -> tuple[dict[str, float], list[str]]:
    """Seconds per phase (data decoding, embedding, victim training, stealing), leaving out the work
    earlier runs left in the cache, and the names of that reused work."""
    from fmsteal.experiment import warm
    from fmsteal.engine.data import is_decoded
    from fmsteal.engine.recipes import recipe_for
    from fmsteal.attack.thief import curve_checkpoints
    from fmsteal.engine.zoo import get_backbone

    n_train, n_test, classes = dataset_size(config.source)
    n_train = min(n_train, (config.train_per_class or n_train) * classes)
    n_test = min(n_test, (config.test_per_class or n_test) * classes)
    heldout = config.query_pool == "heldout"
    n_pool = n_train // 2 if heldout else dataset_size(config.query_pool, pool=True)[0]
    n_victim_train = n_train - n_train // 2 if heldout else n_train
    if config.budget > n_pool:
        raise DataError(f"The budget ({config.budget:,} queries) is larger than the query pool "
                        f"({n_pool:,} images). Lower the budget or use a larger pool or dataset.")
    victim, thief = get_backbone(config.victim), get_backbone(config.thief)
    v_size, t_size = _size(victim, config, device), _size(thief, config, device)
    v_ips, t_ips = forward_speed(victim.timm_arch, v_size, device), forward_speed(thief.timm_arch, t_size, device)
    embedded = n_train + n_test + (0 if heldout else n_pool)
    reused = []
    base = warm.data_key(config, _recent_source_key)
    if base is not None and is_decoded(base["data"]) and (heldout or is_decoded(base["pool"])):
        phases = {"data": 0.0, "embed": 0.0}
        reused.append("the decoded images")
    else:
        phases = {"data": embedded / DECODE_IPS, "embed": 0.0}
    embedding = {victim.name: v_size} if config.victim_mode == "lp" else {}
    if config.thief_mode == "lp" or config.strategy == "kcenter":
        embedding.setdefault(thief.name, t_size)
    for name, size in embedding.items():
        if warm.is_cached(base, "embed", backbone=name, size=size):
            reused.append(f"the {get_backbone(name).label} features")
            phases["embed"] += embedded / CACHED_FEATURES_IPS
        else:
            phases["embed"] += embedded / (v_ips if name == victim.name else t_ips)

    v_recipe = recipe_for(config.preset, "victim", config.victim_mode, victim.family == "scratch")
    trained = warm.is_cached(base, "victim", **warm.victim_fields(config, v_size))
    if trained:
        reused.append("the trained victim")
    if config.victim_mode == "lp":
        phases["victim"] = 0.0 if trained else n_victim_train * v_recipe.epochs * LINEAR_SECONDS
    else:
        training = 0.0 if trained else n_victim_train * v_recipe.epochs * TRAIN_COST / v_ips
        phases["victim"] = training + n_test / v_ips

    t_recipe = recipe_for(config.preset, "thief", config.thief_mode, thief.family == "scratch")
    rungs = curve_checkpoints(config.budget)
    answers = 0.0 if config.victim_mode == "lp" else config.budget / v_ips
    if config.thief_mode == "lp":
        steal = sum(rungs) * 0.9 * t_recipe.epochs * LINEAR_SECONDS
    else:
        steal = sum(rungs) * 0.9 * t_recipe.epochs * TRAIN_COST / t_ips + len(rungs) * n_test / t_ips
        if config.strategy == "entropy":
            steal += len(rungs) * n_pool / t_ips
    phases["steal"] = steal + answers
    return phases, reused


def _recent_source_key(source: str, pool: bool) -> str | None:
    """`data.source_key`, reused for ten seconds: a folder's stamp walks all its files."""
    return _source_key(source, pool, int(time.time() // 10))


@lru_cache(maxsize=16)
def _source_key(source: str, pool: bool, moment: int) -> str | None:
    from fmsteal.engine.data import source_key

    return source_key(source, pool)


def _size(spec, config, device: str) -> int:
    if config.image_size:
        return config.image_size
    return spec.native_size if device == "cuda" else spec.cpu_size


def _suggestions(config, device: str) -> str:
    """Nearby configs that would finish in reasonable time, as one sentence."""
    from fmsteal.engine.zoo import get_backbone

    variants = []
    if "fft" in (config.victim_mode, config.thief_mode):
        fixed = {m: "lp" for m in ("victim_mode", "thief_mode")
                 if getattr(config, m) == "fft" and get_backbone(getattr(config, m[:-5])).family != "scratch"}
        if fixed:
            variants.append(("linear probes (LP) instead of full fine-tuning", replace(config, **fixed)))
    for size in (64, 32):
        if (config.image_size or 10**9) > size:
            variants.append((f"{size} px images", replace(config, image_size=size)))
            break
    if config.train_per_class is None:
        classes = dataset_size(config.source)[2]
        per_class = max(100, -(-2 * config.budget // classes))
        variants.append((f"{per_class:,} training images per class",
                         replace(config, train_per_class=per_class, test_per_class=100)))
    if len(variants) > 1:
        combined = config
        for _, variant in variants:
            combined = replace(combined, **{k: v for k, v in variant.__dict__.items() if v != getattr(config, k)})
        variants.append((" + ".join(text.split(" (")[0] for text, _ in variants), combined))
    for role in ("victim", "thief"):
        if getattr(config, role) != "tf_efficientnet_lite0":
            variants.append((f"EfficientNet-Lite0 as the {role}",
                             replace(config, **{role: "tf_efficientnet_lite0", f"{role}_mode": "lp"})))
    fits = []
    for text, variant in variants:
        try:
            seconds = sum(_phases(variant, device)[0].values())
        except DataError:
            continue
        if seconds <= WARN_SECONDS:
            fits.append(f"{text} (~{duration(seconds)})")
    tip = "Try " + "; or ".join(fits) + ". " if fits else "Try a smaller backbone, LP instead of FFT, or a lower resolution. "
    return tip + "The Results tab shows the full-size grid, precomputed."


def dataset_size(source: str, pool: bool = False) -> tuple[int, int, int]:
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
    from fmsteal.engine.data import IMAGE_SUFFIXES

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
