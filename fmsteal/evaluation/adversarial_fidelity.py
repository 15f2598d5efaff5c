"""The authors' transfer setting (`adversarial_attack_transfer.py` of rajankita/foundation_model_stealing):
FGSM at 8/255 (advertorch's GradientSignAttack, summed cross-entropy of the true labels) crafted on the thief
over about 1,000 test images, scored as "adversarial fidelity": the share of adversarial images on which thief
and victim give the same label. As there, every image counts (not only those the victim classifies
correctly) and the float images are scored without rounding to pixel levels; PGD (10 steps of 0.01, random
start) is their commented-out alternative. Their loop stops after the batch of 64 that reaches 1,000 images
(1,024) in torchvision's test order; an image folder is sorted by class, so here the images are a seeded
random draw of as many. Off by default: `--evaluations default,adversarial-fidelity`.
"""

from __future__ import annotations

from collections.abc import Generator

import torch

from fmsteal.errors import ConfigError
from fmsteal.evaluation.attacks import fgsm, pgd
from fmsteal.evaluation.pixel_models import pixel_model
from fmsteal.evaluation.registry import EVALUATIONS, EvaluationContext
from fmsteal.fields import Field

__all__ = ["adversarial_fidelity"]

BATCH = 64  # the authors' test loader's batch size
PGD_STEP, PGD_STEPS = 0.01, 10  # the authors' PGDAttack settings
SETTING = ("victim_fooled", "n", "eps", "attack")  # beside the fidelity in a sweep's table: adversarial_<key>

PARAMS = (
    Field("n", "int", 1024, "test images attacked (the authors' loop: 16 batches of 64)", label="Images attacked",
          minimum=1, maximum=100000),
    Field("eps", "float", 8 / 255, "L-inf budget as a fraction of the pixel range", label="Epsilon",
          minimum=1 / 255, maximum=1.0),
    Field("attack", "str", "fgsm", "fgsm (the authors' setting) or pgd (their commented-out alternative)",
          label="Attack"),
)


def cost(p, params: dict) -> float:
    """Seconds: the attack's gradient passes through the thief, then thief and victim on the crafted images."""
    plan = p.plan
    n = min(params["n"], plan.n_test)
    passes = n * (PGD_STEPS if params["attack"] == "pgd" else 1)
    return (p.gradient(plan.config.thief, plan.thief_size, passes) + p.forward(plan.config.thief, plan.thief_size, n)
            + p.forward(plan.config.victim, plan.victim_size, n))


@EVALUATIONS.register("adversarial-fidelity", help="the authors' transfer setting: FGSM 8/255 on the thief, "
                      "scored as thief-victim agreement on the adversarial images", params=PARAMS, default_on=False,
                      label="Adversarial fidelity (authors')", cost=cost,
                      columns=lambda result: {"adversarial_fidelity": result["adversarial_fidelity"],
                                              **{f"adversarial_{key}": result[key] for key in SETTING}})
def adversarial_fidelity(ctx: EvaluationContext, params: dict) -> Generator[dict, None, dict]:
    """Agreement of thief and victim on adversarial images crafted on the thief, and each one's error rate."""
    if params["attack"] not in ("fgsm", "pgd"):
        raise ConfigError(f"attack must be fgsm or pgd; got {params['attack']!r}.")
    eps, generator = params["eps"], torch.Generator().manual_seed(ctx.seed)
    chosen = torch.randperm(len(ctx.test), generator=generator)[:params["n"]]
    thief, victim = pixel_model(ctx.thief), pixel_model(ctx.victim)
    same = thief_wrong = victim_wrong = 0
    for start in range(0, len(chosen), BATCH):
        picked = chosen[start:start + BATCH]
        x, y = (ctx.test.images[picked].float() / 255).to(thief.device), ctx.test.labels[picked]
        adversarial = (fgsm(thief, x, y, eps) if params["attack"] == "fgsm"
                       else pgd(thief, x, y, eps, PGD_STEP, PGD_STEPS, generator))
        with torch.no_grad():
            by_thief = thief(adversarial).argmax(1).cpu()
            by_victim = victim(adversarial.to(victim.device)).argmax(1).cpu()
        same += int((by_thief == by_victim).sum())
        thief_wrong += int((by_thief != y).sum())
        victim_wrong += int((by_victim != y).sum())
        yield {"kind": "progress", "phase": "evaluate", "done": min(start + BATCH, len(chosen)), "total": len(chosen),
               "message": f"Adversarial fidelity (the authors' setting): images {start + 1}-{start + len(picked)}"}
    count = len(chosen)
    shares = {name: value / count if count else None for name, value in
              (("adversarial_fidelity", same), ("victim_fooled", victim_wrong), ("thief_fooled", thief_wrong))}
    finding = (f"{params['attack'].upper()} at {255 * eps:.0f}/255 on the thief, {count:,} test images: thief and victim "
               f"agree on {100 * shares['adversarial_fidelity']:.1f}% of the adversarial images; the victim gets "
               f"{100 * shares['victim_fooled']:.1f}% of them wrong, the thief {100 * shares['thief_fooled']:.1f}% "
               "(the authors' adversarial fidelity; one run: no spread)." if count else "No test images to attack.")
    return {**shares, "n": count, "eps": eps, "attack": params["attack"], "finding": finding}
