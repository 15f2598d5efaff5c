"""`fmsteal.attack`: steal any victim (your function, an ONNX/TorchScript file, an HTTP API, a Space).

It runs the same attack as `fmsteal.experiment.run` (the thief's cached features, `attack.thief.steal`
through a `BlackBoxVictim`, the same comparisons in the card) against a victim given from outside:
anything `fmsteal.victims.resolve_victim` takes. Its events are plain dicts; the last one is
`{"kind": "result", "card": {...}}`. Attack queries are exactly `budget`; the victim's answers on the
test images are evaluation queries, counted separately (`evaluation_queries`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone

from fmsteal import __version__
from fmsteal.cancel import check
from fmsteal.errors import ConfigError
from fmsteal.experiment.config import field_named

__all__ = ["attack"]

CHECKED = ("thief", "budget", "output", "strategy", "seed", "device", "preset", "top_k", "decimals")


def _images(source, role: str):
    """An ImageSet from an ImageSet, or a dataset name / folder / archive (its test split for `test`)."""
    from fmsteal.engine.data import ImageSet, load_pool, load_splits

    if isinstance(source, ImageSet):
        return source
    if not isinstance(source, str):
        raise ConfigError(f"{role} must be an ImageSet or a dataset name, folder or archive; got {type(source).__name__}.")
    return load_splits(source).test if role == "test" else load_pool(source)


def attack(victim, *, pool, test, thief: str = "tf_efficientnet_lite0", budget: int = 1000, output: str = "label",
           strategy: str = "random", seed: int = 0, thief_mode: str | None = None, image_size: int | None = None,
           device: str = "auto", preset: str = "fast", top_k: int = 3, decimals: int = 2,
           victim_params: dict | None = None) -> Iterator[dict]:
    """Steal `victim` with `budget` queries on `pool` images, scored on `test`; yields events, then the card."""
    from fmsteal.adversary.blackbox import BlackBoxVictim
    from fmsteal.adversary.thief import Thief, steal
    from fmsteal.engine.embed import Embedder
    from fmsteal.engine.recipes import recipe_for
    from fmsteal.engine.zoo import get_backbone
    from fmsteal.experiment.phases import CHECKPOINT, comparison
    from fmsteal.experiment.pipeline import resolve_device
    from fmsteal.experiment.plan import resolve_image_size
    from fmsteal.victims.sources import resolve_victim

    options = dict(thief=thief, budget=budget, output=output, strategy=strategy, seed=seed, device=device,
                   preset=preset, top_k=top_k, decimals=decimals)
    for name in CHECKED:
        field_named(name).check(options[name])
    started = time.perf_counter()
    spec = get_backbone(thief)
    mode = thief_mode or spec.default_mode
    field_named("thief_mode").check(mode)
    torch_device = resolve_device(device)
    size = resolve_image_size(spec, image_size, torch_device.type)

    yield {"kind": "phase", "phase": "data", "message": "Loading the query pool and the test images"}
    pool_set, test_set = _images(pool, "pool"), _images(test, "test")
    if budget > len(pool_set):
        raise ConfigError(f"The budget ({budget:,} queries) is larger than the query pool ({len(pool_set):,} images).")
    classes = test_set.class_names
    yield {"kind": "phase", "phase": "embed", "message": f"{spec.label} features of the pool and test images (cached)"}
    embedder = Embedder(spec, size, torch_device)
    for images, what in ((pool_set, "query pool"), (test_set, "test images")):
        yield from embedder.register(images, f"{spec.label}: {what}")

    yield {"kind": "phase", "phase": "victim", "message": "Asking the victim about the test images (evaluation)"}
    with resolve_victim(victim, victim_params, num_classes=len(classes), class_names=classes) as handle:
        victim_test = handle.probabilities(test_set.images.float() / 255).argmax(1)
        check()
        black_box = BlackBoxVictim(handle.probabilities, handle.num_classes or len(classes), output, budget,
                                   top_k, decimals)
        recipe = recipe_for(preset, "thief", mode, spec.family == "scratch", spec.name)
        thief_model = Thief(spec, mode, size, torch_device, embedder, recipe, len(classes), seed)
        last: dict = {}

        def evaluate(current: Thief) -> dict:
            last["predictions"] = current.logits(test_set.images).argmax(1)
            return {k: v for k, v in comparison(last["predictions"], victim_test, test_set).items() if k in CHECKPOINT}

        yield {"kind": "phase", "phase": "steal", "message": f"Stealing with {budget:,} queries ({output})"}
        curve = []
        for event in steal(black_box, pool_set.images, thief_model, budget, strategy, seed, evaluate):
            if event["kind"] == "checkpoint":
                curve.append({k: event[k] for k in ("queries", "agreement", "thief_accuracy", "macro_f1")})
            yield event
        accounting = handle.accounting()
        described = handle.description
    yield {"kind": "result", "card": {
        "fmsteal_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {"victim": described, **options, "thief_mode": mode, "image_size": size,
                   "pool": pool if isinstance(pool, str) else "ImageSet", "test": test if isinstance(test, str) else "ImageSet"},
        "seed": seed, "class_names": classes, "image_size": {"thief": size}, "curve": curve,
        **comparison(last["predictions"], victim_test, test_set),
        "queries_spent": black_box.queries_used, "evaluation_queries": len(test_set), "victim_accounting": accounting,
        "test_size": len(test_set), "pool_size": len(pool_set),
        "timings": {"total": round(time.perf_counter() - started, 3)}}}
