"""Adversarial transfer over an epsilon sweep: FGSM and PGD at each L-inf budget, from the stolen copy and
from the independent model, beside random sign noise of the same size.

At 8/255 PGD from either model fools a pretrained victim on nearly every image (saturated: it cannot tell a
copy from an honest model); smaller budgets show where the copy's advantage lives. `unsaturated` lists
the budgets at which neither model fools the victim on SATURATED of the images, and `finding` reads the
sweep over those only. Images, the independent model and uint8 rounding are the `transfer` evaluation's.
Off by default (4 budgets cost about 4 transfer evaluations): `--evaluations default,transfer-sweep`.
"""

from __future__ import annotations

from collections.abc import Generator

import torch

from fmsteal.evaluation.attacks import fgsm, pgd, quantize, sign_noise
from fmsteal.evaluation.pixel_models import pixel_model
from fmsteal.evaluation.registry import EVALUATIONS, EvaluationContext
from fmsteal.evaluation.saturation import SATURATED, signed_span
from fmsteal.evaluation.transfer import BATCH, correct_images, train_independent
from fmsteal.fields import Field, parse_int_list

__all__ = ["parse_epsilons", "sweep_finding", "transfer_sweep"]

ATTACKS = {"fgsm": "FGSM", "pgd": "PGD"}
STEP_SHARE = 0.25  # PGD step as a share of epsilon (2/255 at 8/255, as `transfer`)

PARAMS = (
    Field("n", "int", 48, "test images the victim classifies correctly that are attacked", label="Images attacked",
          minimum=1, maximum=10000),
    Field("epsilons", "str", "1,2,4,8", "L-inf budgets in pixel levels (of 255), separated by commas",
          label="Epsilons (/255)"),
    Field("steps", "int", 10, "PGD iterations (each of a quarter of epsilon)", label="PGD steps", minimum=1,
          maximum=1000),
)


def parse_epsilons(text: str) -> list[int]:
    """"1,2,4,8" -> [1, 2, 4, 8]; a ConfigError unless every part is an integer from 1 to 255."""
    return parse_int_list(text, 1, 255, "epsilons (pixel levels)", '"1,2,4,8"')


def cost(p, params: dict) -> float:
    """Seconds: per budget, FGSM and PGD on the thief and the independent model, the victim's answers to the
    five crafted batches; once, the independent model's training."""
    plan, n, steps = p.plan, params["n"], params["steps"]
    budgets = len(parse_epsilons(params["epsilons"]))
    thief = (plan.config.thief, plan.thief_size)
    crafting = 2 * p.gradient(*thief, n * (steps + 1))
    scoring = p.forward(plan.config.victim, plan.victim_size, 5 * n)
    return budgets * (crafting + scoring) + p.thief_training(min(plan.config.budget, plan.n_pool))


def _columns(result: dict) -> dict:
    return {f"sweep_{name}_{row['eps']}": row[name] for row in result["rows"] for name in row if name != "eps"}


@EVALUATIONS.register("transfer-sweep", help="Adversarial transfer (FGSM, PGD) from the copy and an independent model "
                      "over an epsilon sweep", params=PARAMS, default_on=False, label="Transfer over epsilons",
                      cost=cost, columns=_columns)
def transfer_sweep(ctx: EvaluationContext, params: dict) -> Generator[dict, None, dict]:
    """Per budget, the share of attacked images the victim gets wrong after each attack."""
    epsilons, steps = parse_epsilons(params["epsilons"]), params["steps"]
    chosen = correct_images(ctx, params["n"])
    images, labels = ctx.test.images[chosen], ctx.test.labels[chosen]
    surrogate = (yield from train_independent(ctx)) if ctx.pool.class_names == ctx.test.class_names else None
    models = {"thief": pixel_model(ctx.thief)}
    if surrogate is not None:
        models["independent"] = pixel_model(surrogate)
    generator = torch.Generator().manual_seed(ctx.seed)
    rows, batches = [], range(0, len(chosen), BATCH)
    for done, level in enumerate(epsilons):
        eps = level / 255
        fooled: dict[str, int] = {}
        for start in batches:
            clean, y = images[start:start + BATCH], labels[start:start + BATCH]
            crafted = {"noise": sign_noise(clean.float() / 255, eps, generator)}
            for side, model in models.items():
                x = clean.float().div(255).to(model.device)
                crafted[f"{side}_fgsm"] = fgsm(model, x, y, eps)
                crafted[f"{side}_pgd"] = pgd(model, x, y, eps, STEP_SHARE * eps, steps, generator)
            for name, adversarial in crafted.items():
                answer = ctx.victim.logits(quantize(adversarial, clean, eps)).argmax(1)
                fooled[name] = fooled.get(name, 0) + int((answer != y).sum())
        rows.append({"eps": level, **{name: count / len(chosen) if len(chosen) else None
                                      for name, count in sorted(fooled.items())}})
        yield {"kind": "progress", "phase": "evaluate", "done": done + 1, "total": len(epsilons),
               "message": f"Transfer over epsilons: {level}/255 done"}
    comparable = surrogate is not None and len(chosen) > 0
    unsaturated = {attack: [row["eps"] for row in _unsaturated(rows, attack)] for attack in ATTACKS} if comparable else None
    return {"rows": rows, "n": len(chosen), "steps": steps, "step_share": STEP_SHARE, "unsaturated": unsaturated,
            "finding": sweep_finding(rows)}


def _unsaturated(rows: list[dict], attack: str) -> list[dict]:
    """The rows at which the copy or the independent model fools the victim on fewer than SATURATED of the images."""
    return [row for row in rows if min(row[f"thief_{attack}"], row[f"independent_{attack}"]) < SATURATED]


def sweep_finding(rows: list[dict]) -> str:
    """Over the budgets where neither model saturates an attack, how much more often the copy's examples fool
    the victim than the independent model's; which budgets were left out and why."""
    if not rows or rows[0].get("thief_pgd") is None:
        return "No test image the victim classifies correctly: nothing to attack."
    if "independent_pgd" not in rows[0]:
        return "No independent model to compare with (the query pool has no true labels)."
    parts = []
    for attack, name in ATTACKS.items():
        kept = _unsaturated(rows, attack)
        left = [row["eps"] for row in rows if row not in kept]
        if not kept:
            parts.append(f"{name} fools the victim from both models on nearly every image at every budget (saturated)")
            continue
        gains = [100 * (row[f"thief_{attack}"] - row[f"independent_{attack}"]) for row in kept]
        text = (f"{name}: the copy's examples fool the victim {signed_span(gains)} points against the independent model's "
                f"at {_levels([row['eps'] for row in kept])}")
        if left:
            text += f" (left out: {_levels(left)}, where both saturate)"
        parts.append(text)
    return "; ".join(parts) + " (one run: no spread)."


def _levels(levels: list[int]) -> str:
    return ", ".join(f"{level}/255" for level in levels)
