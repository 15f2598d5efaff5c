"""One experiment end to end: data -> embeddings -> victim -> theft -> run card, as a stream of events.

`run(config)` yields plain-data events (see docs/architecture.md) and ends with the run card.
Evaluation is the experimenter's privilege: it reads the victim's own test predictions, which
the thief never sees; the thief reaches the victim only through a `BlackBoxVictim`.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import torch

from fmsteal import __version__
from fmsteal.experiment import warm
from fmsteal.attack.blackbox import BlackBoxVictim
from fmsteal.experiment.config import ExperimentConfig
from fmsteal.engine.data import ImageSet, load_pool, load_splits, stratified_subset
from fmsteal.engine.embed import Embedder
from fmsteal.cancel import cancel_scope, check
from fmsteal.errors import ConfigError, DeviceUnavailable
from fmsteal.evaluation.metrics import accuracy, agreement, confusion, macro_f1, per_class_agreement
from fmsteal.engine.recipes import recipe_for
from fmsteal.attack.thief import Thief, curve_checkpoints, steal
from fmsteal.engine.victim import train_victim
from fmsteal.engine.zoo import BackboneSpec, get_backbone

__all__ = ["ExperimentConfig", "run", "resolve_device", "resolve_image_size"]

POOL_FRACTION = 0.5  # share of the train split held out as the query pool


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when present, else CPU; `cuda` where there is none is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("CUDA was asked for, but this machine has no usable GPU. Use device 'cpu' or 'auto'.")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def resolve_image_size(spec: BackboneSpec, image_size: int | None, device: torch.device) -> int:
    """The configured size, else the backbone's native size on a GPU and its CPU size on a CPU."""
    if image_size is not None:
        return image_size
    return spec.native_size if device.type == "cuda" else spec.cpu_size


def run(config: ExperimentConfig, cancel: threading.Event | None = None) -> Iterator[dict]:
    """Run `config`, yielding events; the last one is `{"kind": "result", "card": ...}`."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    phase, phase_started = None, started
    with cancel_scope(cancel):
        for event in _events(config, timings):
            check()
            now = time.perf_counter()
            if event["kind"] in ("phase", "result"):
                if phase is not None:
                    timings[phase] = round(timings.get(phase, 0.0) + now - phase_started, 3)
                phase, phase_started = event.get("phase"), now
            if event["kind"] == "result":
                timings["total"] = round(now - started, 3)
            event["elapsed_s"] = round(now - started, 3)
            yield event


def _events(config: ExperimentConfig, timings: dict) -> Iterator[dict]:
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    victim_spec, thief_spec = get_backbone(config.victim), get_backbone(config.thief)
    num_threads = torch.get_num_threads()

    yield {"kind": "phase", "phase": "data", "message": f"Loading {config.source}"}
    splits = load_splits(config.source)
    train = stratified_subset(splits.train, config.train_per_class)
    test = stratified_subset(splits.test, config.test_per_class)
    victim_train, pool_source, pool = _split_pool(config, train)
    yield {"kind": "log", "level": "info", "message": (
        f"{len(victim_train):,} victim training images, a query pool of {len(pool):,}, {len(test):,} test images "
        f"({len(test.class_names)} classes) on {device.type} ({num_threads} threads).")}

    cached_data = warm.data_key(config)  # once per run: a folder's stamp walks all its files
    yield {"kind": "phase", "phase": "embed", "message": "Computing frozen-backbone features (cached)"}
    victim_size = resolve_image_size(victim_spec, config.image_size, device)
    thief_size = resolve_image_size(thief_spec, config.image_size, device)
    victim_embedder = Embedder(victim_spec, victim_size, device) if config.victim_mode == "lp" else None
    thief_embedder = (victim_embedder if victim_embedder and (thief_spec, thief_size) == (victim_spec, victim_size)
                      else Embedder(thief_spec, thief_size, device))
    thief_needs_features = config.thief_mode == "lp" or config.strategy == "kcenter"
    for embedder, role in ((victim_embedder, "victim"), (thief_embedder, "thief")):
        if embedder is None or (role == "thief" and (embedder is victim_embedder or not thief_needs_features)):
            continue
        for images, what in ((train, "train split"), (test, "test split"), (pool_source, "query pool")):
            if images is not None:
                yield from embedder.register(images, f"{role}: {what}")
        warm.record(cached_data, "embed", embedder.files, backbone=embedder.spec.name, size=embedder.image_size)

    yield {"kind": "phase", "phase": "victim", "message": f"Training the {victim_spec.label} victim"}
    victim_recipe = recipe_for(config.preset, "victim", config.victim_mode, victim_spec.family == "scratch")
    victim = yield from train_victim(victim_spec, config.victim_mode, victim_train, victim_embedder,
                                     victim_recipe, victim_size, device, config.seed)
    warm.record(cached_data, "victim", [victim.cache_file], **warm.victim_fields(config, victim_size))
    victim_test = victim.logits(test.images).argmax(1)
    victim_accuracy = accuracy(victim_test, test.labels)
    yield {"kind": "log", "level": "info", "message": f"Victim test accuracy: {victim_accuracy:.1%}"}

    yield {"kind": "phase", "phase": "steal", "message": f"Stealing with {config.budget:,} queries ({config.output})"}
    num_classes = len(test.class_names)
    black_box = BlackBoxVictim(victim.probabilities, num_classes, config.output, config.budget,
                               config.top_k, config.decimals)
    thief_recipe = recipe_for(config.preset, "thief", config.thief_mode, thief_spec.family == "scratch",
                              thief_spec.name)
    thief = Thief(thief_spec, config.thief_mode, thief_size, device, thief_embedder, thief_recipe, num_classes, config.seed)
    last: dict = {}

    def evaluate(current: Thief) -> dict:
        predictions = current.logits(test.images).argmax(1)
        last["predictions"] = predictions
        return {"agreement": agreement(predictions, victim_test), "thief_accuracy": accuracy(predictions, test.labels),
                "macro_f1": macro_f1(predictions, test.labels, num_classes), "victim_accuracy": victim_accuracy}

    curve = []
    for event in steal(black_box, pool.images, thief, config.budget, config.strategy, config.seed, evaluate):
        if event["kind"] == "checkpoint":
            curve.append({k: event[k] for k in ("queries", "agreement", "thief_accuracy", "macro_f1")})
        yield event

    yield {"kind": "phase", "phase": "evaluate", "message": "Comparing thief and victim on the test set"}
    thief_test = last["predictions"]
    yield {"kind": "result", "card": {
        "fmsteal_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "versions": _versions(),
        "device": str(device) if device.type == "cpu" else f"cuda:{torch.cuda.current_device()}",
        "threads": num_threads,
        "image_size": {"victim": victim_size, "thief": thief_size},
        "seed": config.seed,
        "dataset": splits.name,
        "class_names": test.class_names,
        "timings": timings,
        "victim_accuracy": victim_accuracy,
        "agreement": agreement(thief_test, victim_test),
        "thief_accuracy": accuracy(thief_test, test.labels),
        "macro_f1": macro_f1(thief_test, test.labels, num_classes),
        "per_class_agreement": per_class_agreement(thief_test, victim_test, num_classes),
        "curve": curve,
        "confusion": {"labels": test.class_names, "matrix": confusion(victim_test, thief_test, num_classes).tolist()},
        "queries_spent": black_box.queries_used,
        "test_size": len(test),
        "pool_size": len(pool),
        "victim_train_size": len(victim_train),
        "backbone_images_forwarded": sum(e.images_forwarded for e in {victim_embedder, thief_embedder} if e),
    }}


def _split_pool(config: ExperimentConfig, train: ImageSet) -> tuple[ImageSet, ImageSet | None, ImageSet]:
    """(victim's training set, images to pre-embed as the pool source or None, the query pool).

    The held-out pool is a seeded random part of the train split the victim never trains on.
    """
    if config.query_pool == "heldout":
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed))
        cut = int(len(train) * POOL_FRACTION)
        pool, victim_train = train.subset(order[:cut].sort().values), train.subset(order[cut:].sort().values)
        pool_source = None
    else:
        victim_train = train
        pool_source = pool = load_pool(config.query_pool)
    if config.budget > len(pool):
        raise ConfigError(
            f"The budget ({config.budget:,} queries) is larger than the query pool ({len(pool):,} images). "
            "Lower the budget or use a larger pool or dataset."
        )
    return victim_train, pool_source, pool


def _versions() -> dict:
    import timm
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__}
