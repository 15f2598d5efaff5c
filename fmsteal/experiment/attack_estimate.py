"""What `fmsteal attack` will cost on this machine, before it steals: the thief's side priced as a run's is
(`fmsteal.experiment.pricing`, measured speeds), the victim's answers timed once it has answered some.

The victim is someone else's model (a file, an API, a Space): its speed is unknown until it answers, so
the first estimate prices the thief's work and counts the images the victim will be asked; once the victim
has answered the test images, `with_victim` adds its measured seconds per image for the budget's answers.
"""

from __future__ import annotations

from fmsteal.experiment.estimate import duration

__all__ = ["thief_estimate", "with_victim"]


def thief_estimate(*, thief: str, mode: str, size: int, device: str, preset: str, strategy: str, budget: int,
                   n_pool: int, n_test: int, n_embedded: int, n_asked: int) -> dict:
    """{"seconds", "phases", "victim_images", "message"}: the thief's embedding of `n_embedded` images (none for
    FFT) and its training at every rung of the curve, scored on `n_test` images each time; the victim is asked
    the budget and `n_asked` test images."""
    from fmsteal.adversary.budget import curve_checkpoints
    from fmsteal.engine.zoo import get_backbone
    from fmsteal.experiment.config import ExperimentConfig
    from fmsteal.experiment.phases import cost_thief_steal
    from fmsteal.experiment.plan import Plan
    from fmsteal.experiment.pricing import Pricing

    spec = get_backbone(thief)
    config = ExperimentConfig(victim=spec.base_name, thief=spec.base_name, thief_mode=mode, budget=budget,
                              strategy=strategy, preset=preset, image_size=size)
    plan = Plan(config=config, device="cuda" if device.startswith("cuda") else "cpu", n_train=n_pool, n_test=n_test,
                classes=0, n_pool=n_pool, n_victim_train=0, heldout=False, victim_size=size, thief_size=size,
                embeddings=((spec.base_name, size),) if mode == "lp" else (), rungs=tuple(curve_checkpoints(budget)),
                n_decoded=n_pool + n_test)
    pricing = Pricing(plan)
    phases = {"steal": cost_thief_steal(pricing)}
    if mode == "lp":
        phases = {"embed": pricing.load_model(spec.base_name, size) + pricing.forward(spec.base_name, size, n_embedded),
                  **phases}
    seconds = sum(phases.values())
    victim_images = budget + n_asked
    asked = f" ({budget:,} queries, {n_asked:,} test images)" if n_asked else " (its queries)"
    return {"seconds": round(seconds, 1), "phases": {k: round(v, 1) for k, v in phases.items()},
            "victim_images": victim_images,
            "message": f"Estimated time for the thief: about {duration(seconds)} on this machine (at most: "
                       f"features already in the cache are not recomputed), plus the victim's time to answer "
                       f"{victim_images:,} images{asked}."}


def with_victim(estimate: dict, answered: int, seconds: float, budget: int) -> dict:
    """`estimate` with the victim's answers to the budget priced at its measured speed (`answered` images in
    `seconds`); what is left once the test images are answered: those answers and the thief's training."""
    per_image = seconds / max(answered, 1)
    remaining = estimate["phases"]["steal"] + per_image * budget
    return {**estimate, "victim_seconds_per_image": round(per_image, 5),
            "message": f"The victim answered {answered:,} test images in {duration(seconds)}: the "
                       f"{budget:,} queries and the thief's work take about {duration(remaining)} more."}
