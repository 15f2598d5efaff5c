"""`fmsteal.attack`: steal any victim (your function, an ONNX/TorchScript file, an HTTP API, a Space).

This is the one attack code path: `fmsteal.experiment.run` trains a victim here, then runs its steal
phase through this function with the victim behind a `BlackBoxVictim` (carrying the run's defence).
Events are plain dicts; the last one is `{"kind": "result", "card": {...}, "thief": ..., "test_predictions": ...}`.
Attack queries are exactly `budget`; the victim's answers on the test images are evaluation queries,
counted separately (`evaluation_queries`; none when the caller passes them as `reference`), as are a
remote victim's probe images (`victim_accounting["probes"]`). Their answers' hash (a file's content hash)
is the config's `victim_fingerprint`: two models behind one URL or path never share a card. Each retried
request is a `log` event and a `victim_retries` entry; `timings` holds each phase's seconds and the total.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime, timezone

from fmsteal import __version__
from fmsteal.cancel import check
from fmsteal.errors import ConfigError
from fmsteal.experiment.config import field_named

__all__ = ["attack"]

CHECKED = ("budget", "output", "strategy", "seed", "device", "preset", "top_k", "decimals")


def _pool_and_test(pool, test):
    """(pool, test) ImageSets; one source named for both is decoded once (its train split is the pool)."""
    from fmsteal.engine.data import load_splits

    if isinstance(pool, str) and pool == test:
        splits = load_splits(test)
        return splits.train, splits.test
    return _images(pool, "pool"), _images(test, "test")


def _images(source, role: str):
    """An ImageSet from an ImageSet, or a dataset name / folder / archive (its test split for `test`)."""
    from fmsteal.engine.data import ImageSet, load_pool, load_splits

    if isinstance(source, ImageSet):
        return source
    if not isinstance(source, str):
        raise ConfigError(f"{role} must be an ImageSet or a dataset name, folder or archive; got {type(source).__name__}.")
    return load_splits(source).test if role == "test" else load_pool(source)


def _check_black_box(victim, reference, budget: int) -> None:
    """A ready `BlackBoxVictim` answers only as set: the test labels must come with it, the budget fit it."""
    if reference is None:
        raise ConfigError("A BlackBoxVictim answers only as its API is set to: pass reference= (the victim's own "
                          "labels on the test images), or pass the victim's probability function instead.")
    if budget > victim.remaining:
        raise ConfigError(f"The budget ({budget:,} queries) exceeds what the BlackBoxVictim has left "
                          f"({victim.remaining:,}).")


def _opened(victim, victim_params: dict | None, classes) -> contextlib.AbstractContextManager:
    """The victim's handle to answer through, or None for a ready `BlackBoxVictim`."""
    from fmsteal.adversary.blackbox import BlackBoxVictim
    from fmsteal.victims.sources import resolve_victim

    if not isinstance(victim, BlackBoxVictim):
        return resolve_victim(victim, victim_params, num_classes=len(classes), class_names=classes)
    if victim.num_classes != len(classes):
        raise ConfigError(f"The BlackBoxVictim answers {victim.num_classes} classes; the test images have {len(classes)}.")
    return contextlib.nullcontext()


def _recorded(victim_params: dict | None) -> dict:
    """The victim's options as the card records them (they change its answers: normalisation, image size, ...);
    header values, which may hold credentials, as hashes."""
    from fmsteal.victims.url import header_digests

    recorded = dict(victim_params or {})
    if recorded.get("header"):
        recorded["header"] = header_digests(str(recorded["header"]))
    return recorded


class _Clock:
    """Each phase's seconds, from its phase event to the next one, and the total: the card's `timings`."""

    def __init__(self) -> None:
        self.started = self.since = time.perf_counter()
        self.current: str | None = None
        self.timings: dict[str, float] = {}

    def phase(self, name: str, message: str) -> dict:
        """The phase event that starts `name` (and ends the phase before it)."""
        self._lap()
        self.current = name
        return {"kind": "phase", "phase": name, "message": message}

    def done(self) -> dict[str, float]:
        self._lap()
        return {**self.timings, "total": round(time.perf_counter() - self.started, 3)}

    def _lap(self) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self.timings[self.current] = round(now - self.since, 3)
        self.since = now


class _Retries:
    """A `log` event for each request the victim retried, each shown once."""

    def __init__(self, handle) -> None:
        self.handle, self.shown = handle, 0

    def __call__(self) -> list[dict]:
        retried = self.handle.retried if self.handle is not None else []
        new, self.shown = retried[self.shown:], len(retried)
        return [{"kind": "log", "level": "warning", "message": f"{self.handle.description}: {r['error']}; retry "
                                                               f"{r['attempt']} of {r['of']} in {r['wait_s']:g} s"}
                for r in new]


def _default(name: str):
    """The declared default of a config field: `attack`'s defaults are the CLI's and the app's."""
    return field_named(name).default


def attack(victim, *, pool, test, thief: str = _default("thief"), budget: int = _default("budget"),
           output: str = _default("output"), strategy: str = _default("strategy"), seed: int = _default("seed"),
           thief_mode: str | None = _default("thief_mode"), image_size: int | None = _default("image_size"),
           device: str = _default("device"), preset: str = _default("preset"), top_k: int = _default("top_k"),
           decimals: int = _default("decimals"), victim_params: dict | None = None, reference=None,
           embedder=None, max_test: int | None = None) -> Iterator[dict]:
    """Steal `victim` with `budget` queries on `pool` images, scored on `test`; yields events, then the result.

    `victim`: a callable from images (n x 3 x H x W floats in [0, 1]) to probabilities, logits or labels, a
    spec string (`file:model.onnx`, `url:...`, ...) or a `VictimHandle`; or a ready `BlackBoxVictim`,
    whose output mode, defence and budget then stand as set (it needs `reference`). `reference`: the
    victim's own labels on the test images, when the caller has them (no evaluation queries). `embedder`:
    an `Embedder` of the thief that already holds the pool's and test images' features. `max_test`: score on
    at most this many test images (a seeded random subset), so at most that many evaluation queries. The
    result event carries the card, the stolen copy (`thief`, a `Thief`) and its labels on the test images.
    A random-order thief embeds only the pool images it will send.
    """
    import torch

    from fmsteal.adversary.blackbox import BlackBoxVictim
    from fmsteal.adversary.thief import Thief, random_order, steal
    from fmsteal.engine.embed import Embedder
    from fmsteal.engine.recipes import full_precision, recipe_for
    from fmsteal.engine.zoo import get_backbone
    from fmsteal.experiment.phases import CHECKPOINT, comparison, device_name, versions
    from fmsteal.experiment.pipeline import resolve_device
    from fmsteal.experiment import speed
    from fmsteal.experiment.attack_estimate import thief_estimate, with_victim
    from fmsteal.experiment.plan import resolve_image_size

    if isinstance(victim, BlackBoxVictim):
        _check_black_box(victim, reference, budget)
        output, top_k, decimals = victim.output, victim.top_k, victim.decimals
    options = dict(thief=thief, budget=budget, output=output, strategy=strategy, seed=seed, device=device,
                   preset=preset, top_k=top_k, decimals=decimals)
    for name in CHECKED:
        field_named(name).check(options[name])
    clock = _Clock()
    spec = get_backbone(thief)  # a zoo name, optionally with an input scaling (`resnet34@raw`)
    mode = thief_mode or spec.default_mode
    field_named("thief_mode").check(mode)
    torch_device = resolve_device(device)
    size = resolve_image_size(spec, image_size, torch_device.type)

    yield clock.phase("data", "Loading the query pool and the test images")
    pool_set, test_set = _pool_and_test(pool, test)
    if budget > len(pool_set):
        raise ConfigError(f"The budget ({budget:,} queries) is larger than the query pool ({len(pool_set):,} images).")
    if reference is not None and len(reference) != len(test_set):
        raise ConfigError(f"reference holds {len(reference):,} labels for {len(test_set):,} test images.")
    if max_test is not None:
        if max_test < 1:
            raise ConfigError(f"max_test must be at least 1 (got {max_test}); leave it out to score on every test image.")
        kept = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(seed))[:max_test].sort().values
        test_set, reference = test_set.subset(kept), None if reference is None else reference[kept]
    classes = test_set.class_names
    embedding = mode == "lp" and embedder is None
    estimated = thief_estimate(thief=thief, mode=mode, size=size, device=torch_device.type, preset=preset,
                               strategy=strategy, budget=budget, n_pool=len(pool_set), n_test=len(test_set),
                               n_embedded=((budget if strategy == "random" else len(pool_set)) + len(test_set))
                               if embedding else 0, n_asked=0 if reference is not None else len(test_set))
    yield {"kind": "log", "level": "info", "message": estimated["message"]}
    with _opened(victim, victim_params, classes) as handle:
        retries = _Retries(handle)
        fingerprint = handle.fingerprint() if handle is not None else None  # a changed model stops the run here
        yield from retries()
        if fingerprint is not None:
            yield {"kind": "log", "level": "info", "message": f"{handle.description}: fingerprint {fingerprint}"}
        if embedding:  # an FFT thief trains on pixels: it needs no frozen features
            yield clock.phase("embed", f"{spec.label} features of the pool and test images (cached)")
            embedder = Embedder(spec, size, torch_device, speed.forward_batch(spec, size, torch_device.type),
                                fp32=full_precision(preset))
            sent = pool_set if strategy != "random" else pool_set.subset(random_order(len(pool_set), seed)[0][:budget])
            for images, what in ((sent, "query pool"), (test_set, "test images")):
                yield from embedder.register(images, f"{spec.label}: {what}")
        black_box = victim if handle is None else BlackBoxVictim(
            handle.probabilities, handle.num_classes or len(classes), output, budget, top_k, decimals)
        victim_test = reference
        if victim_test is None:
            yield clock.phase("victim", "Asking the victim about the test images (evaluation)")
            asked = time.perf_counter()
            victim_test = handle.probabilities(test_set.images.float() / 255).argmax(1)
            check()
            yield from retries()
            estimated = with_victim(estimated, len(test_set), time.perf_counter() - asked, budget)
            yield {"kind": "log", "level": "info", "message": estimated["message"]}
        recipe = recipe_for(preset, "thief", mode, spec.family == "scratch", spec.timm_arch)
        copy = Thief(spec, mode, size, torch_device, embedder, recipe, len(classes), seed)
        last: dict = {}

        def evaluate(current: Thief) -> dict:
            last["predictions"] = current.logits(test_set.images).argmax(1)
            return {k: v for k, v in comparison(last["predictions"], victim_test, test_set).items() if k in CHECKPOINT}

        yield clock.phase("steal", f"Stealing with {budget:,} queries ({output})")
        curve, spent_before = [], black_box.queries_used
        for event in steal(black_box, pool_set.images, copy, budget, strategy, seed, evaluate):
            if event["kind"] == "checkpoint":
                curve.append({k: event[k] for k in ("queries", "agreement", "thief_accuracy", "macro_f1")})
            yield from retries()
            yield event
        yield from retries()
        accounting = handle.accounting() if handle is not None else None
        retried = handle.retried if handle is not None else []
        described = handle.description if handle is not None else "a BlackBoxVictim"
    yield {"kind": "result", "thief": copy, "test_predictions": last["predictions"], "card": {
        "fmsteal_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {"victim": described, "victim_options": _recorded(victim_params), "victim_fingerprint": fingerprint,
                   **options, "thief_mode": mode, "image_size": size,
                   "pool": pool if isinstance(pool, str) else "ImageSet", "test": test if isinstance(test, str) else "ImageSet",
                   "max_test": max_test},
        "estimate": estimated, "versions": versions(), "device": device_name(torch_device), "threads": torch.get_num_threads(),
        "seed": seed, "class_names": classes, "image_size": {"thief": size}, "curve": curve,
        **comparison(last["predictions"], victim_test, test_set),
        "queries_spent": black_box.queries_used - spent_before,
        "evaluation_queries": 0 if reference is not None else len(test_set), "victim_accounting": accounting,
        "victim_retries": retried,
        "test_size": len(test_set), "pool_size": len(pool_set),
        "backbone_images_forwarded": embedder.images_forwarded if embedder is not None else 0,
        "timings": clock.done()}}
