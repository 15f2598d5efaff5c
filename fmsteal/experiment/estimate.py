"""How long a config will take on this machine, and refusal of configs far beyond it.

The estimate is the sum of the run's own phases' cost models (`fmsteal.experiment.phases`) for the
run's own plan (`fmsteal.experiment.plan`), priced with speeds measured on this machine
(`fmsteal.experiment.speed`), leaving out work that earlier runs left in the cache
(`fmsteal.experiment.warm`). Everything returned is plain data.
"""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from functools import lru_cache

from fmsteal import settings
from fmsteal.errors import FmstealError
from fmsteal.experiment.memory import available_bytes, peak_bytes

__all__ = ["estimate", "price", "duration", "hub_reachable", "WARN_SECONDS"]

WARN_SECONDS = 15 * 60
MEMORY_SHARE = 0.8  # a run may take at most this share of the memory free when it is estimated


def estimate(config, device: str | None = None) -> dict:
    """{"seconds", "phases", "device", "reused", "refused", "message"} for an ExperimentConfig.

    `device` ("cpu"/"cuda") overrides what the config would resolve to here. Raises DataError
    when the data cannot be found and ConfigError when the plan is impossible (e.g. budget > pool).
    """
    from fmsteal.engine.zoo import get_backbone

    device = device or _device(config.device)
    missing = [name for name in {config.victim, config.thief} if not get_backbone(name).offline_available()]
    if missing and not hub_reachable():  # refused before pricing: timing a model it cannot run helps nobody
        names = ", ".join(get_backbone(n).label for n in sorted(missing))
        hubs = " ".join(f"`hf download {get_backbone(n).hub_id}`" for n in sorted(missing))
        return {"seconds": None, "phases": {}, "device": device, "reused": [], "refused": True, "message": (
            f"The weights of {names} are not on this machine and the Hugging Face Hub cannot be reached: "
            f"pick a backbone marked 'offline ✓' (EfficientNet-Lite0/1/2 or the scratch CNN), or "
            f"download them on a connected machine first: {hubs}.")}
    phases, reused, plan = price(config, device)
    seconds = sum(phases.values())
    peak = peak_bytes(plan)
    result = {"seconds": round(seconds, 1), "phases": {k: round(v, 1) for k, v in phases.items()},
              "memory_gb": round(peak / 2**30, 2), "device": device, "reused": reused, "refused": False}
    reasons = []
    room = available_bytes()
    if room is not None and peak > MEMORY_SHARE * room:
        reasons.append(f"This run would need about {peak / 2**30:.1f} GB of memory and this machine has "
                       f"{room / 2**30:.1f} GB free: lower the image size, use fewer images per class or LP "
                       "instead of fine-tuning.")
    if seconds > settings.max_run_seconds():
        reasons.append(f"This run would take about {duration(seconds)} on this {device.upper()}, far beyond a live "
                       f"demo. {_suggestions(config, device)}")
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


def hub_reachable(timeout: float = 2.0) -> bool:
    """False when HF_HUB_OFFLINE is set or huggingface.co does not resolve and connect."""
    if settings.current().hub_offline:
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


def price(config, device: str) -> tuple[dict[str, float], list[str], object]:
    """Seconds per phase of `config` on `device` (the run's own phases), the cached work reused, and the plan."""
    from fmsteal.engine.data import is_decoded
    from fmsteal.engine.zoo import get_backbone
    from fmsteal.experiment import warm
    from fmsteal.experiment.phases import PHASES
    from fmsteal.experiment.plan import make_plan
    from fmsteal.experiment.pricing import Pricing

    plan = make_plan(config, device)
    base = warm.data_key(config)
    pricing = Pricing(plan, data_key=base)
    if base is not None and is_decoded(base["data"]) and (plan.heldout or is_decoded(base["pool"])):
        pricing.decoded = True
        pricing.reused.append("the decoded images")
    cached = {(name, size) for name, size in plan.embeddings if warm.is_cached(base, "embed", backbone=name, size=size)}
    pricing.embedded = frozenset(cached)
    pricing.reused += [f"the {get_backbone(name).label} features" for name, _ in sorted(cached)]
    if warm.is_cached(base, "victim", **warm.victim_fields(config, plan.victim_size)):
        pricing.victim_trained = True
        pricing.reused.append("the trained victim")
    return {phase.name: round(phase.cost(pricing), 2) for phase in PHASES}, pricing.reused, plan


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
        from fmsteal.engine.data import count_images

        classes = count_images(config.source)[2]
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
            seconds = sum(price(variant, device)[0].values())
        except FmstealError:
            continue
        if seconds <= WARN_SECONDS:
            fits.append(f"{text} (~{duration(seconds)})")
    tip = "Try " + "; or ".join(fits) + ". " if fits else "Try a smaller backbone, LP instead of FFT, or a lower resolution. "
    return tip + "The Results tab shows the full-size grid, precomputed."
