"""Adversarial transfer: what the stolen copy lets the thief do to the real victim.

On test images the victim classifies correctly, FGSM and PGD are crafted white-box on the thief
(end to end through its preprocessing), rounded to uint8 pixels and shown to the victim; the result
is the fraction the victim then gets wrong. Baselines on the same images: an independent surrogate
(the thief's architecture and recipe trained on as many TRUE labels of the pool, no victim queries),
random sign noise of the same epsilon (the floor) and PGD on the victim itself (the ceiling, the
defender's view). Scoring asks the victim directly: evaluation, not attack queries. A pool of other
classes than the test set's has no true labels to offer, so the surrogate's rates are then None.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Callable, Generator

import torch
from PIL import Image

from fmsteal.adversary.thief import VALIDATION_EVERY, Thief
from fmsteal.evaluation.attacks import fgsm, pgd, quantize, sign_noise
from fmsteal.evaluation.pixel_models import pixel_model
from fmsteal.evaluation.registry import EVALUATIONS, EvaluationContext
from fmsteal.fields import Field

__all__ = ["ATTACKS", "PARAMS", "correct_images", "train_independent", "transfer"]

ATTACKS = ("thief_fgsm", "thief_pgd", "independent_fgsm", "independent_pgd", "noise", "victim_whitebox_pgd")
BATCH = 32
EXAMPLES = 4

PARAMS = (
    Field("n", "int", 48, "test images the victim classifies correctly that are attacked (fewer if fewer are correct)",
          label="Images attacked", minimum=1, maximum=10000),
    Field("eps", "float", 8 / 255, "L-inf budget per pixel as a fraction of the pixel range (8/255 = 0.031)",
          label="Epsilon", minimum=1 / 255, maximum=1.0),
    Field("step", "float", 2 / 255, "PGD step size, as a fraction of the pixel range (2/255 = 0.0078)",
          label="PGD step", minimum=1e-4, maximum=1.0),
    # 5 steps of 2/255 reach the edge of an 8/255 ball from a random start, in half of 10 steps' time. Where PGD
    # saturates is read from the measured grids (consequences, transfer-sweep), not assumed here.
    Field("steps", "int", 5, "PGD iterations", label="PGD steps", minimum=1, maximum=1000),
)


def cost(p, params: dict) -> float:
    """Seconds: FGSM + PGD on the thief and on the independent surrogate, PGD on the victim (forward and
    backward through each backbone), the victim's answers to every crafted batch, the surrogate's training."""
    plan, n, steps = p.plan, params["n"], params["steps"]
    thief, victim = (plan.config.thief, plan.thief_size), (plan.config.victim, plan.victim_size)
    crafting = 2 * p.gradient(*thief, n * (steps + 1)) + p.gradient(*victim, n * steps)
    scoring = p.forward(*victim, 6 * n) + p.forward(*thief, 2 * n)
    return crafting + scoring + p.thief_training(min(plan.config.budget, plan.n_pool))


@EVALUATIONS.register("transfer", help="Adversarial examples crafted on the thief, shown to the victim, against baselines",
                      params=PARAMS, default_on=True, label="Adversarial transfer", cost=cost,
                      columns=lambda result: {**{f"transfer_{name}": result[name] for name in ATTACKS},
                                              "transfer_eps": result["eps"], "transfer_steps": result["steps"]})
def transfer(ctx: EvaluationContext, params: dict) -> Generator[dict, None, dict]:
    """Transfer rates (fractions of `n` correctly classified test images the victim then gets wrong)."""
    eps, step, steps = params["eps"], params["step"], params["steps"]
    chosen = correct_images(ctx, params["n"])
    images, labels = ctx.test.images[chosen], ctx.test.labels[chosen]
    # a pool of other classes (e.g. CIFAR-100 for a CIFAR-10 victim) has no true labels to train on
    surrogate = (yield from train_independent(ctx)) if ctx.pool.class_names == ctx.test.class_names else None
    thief, victim = pixel_model(ctx.thief), pixel_model(ctx.victim)
    independent = pixel_model(surrogate) if surrogate is not None else None
    generator = torch.Generator().manual_seed(ctx.seed)
    crafts: dict[str, Callable] = {
        "thief_fgsm": lambda x, y: fgsm(thief, x.to(thief.device), y, eps),
        "thief_pgd": lambda x, y: pgd(thief, x.to(thief.device), y, eps, step, steps, generator),
        "independent_fgsm": lambda x, y: fgsm(independent, x.to(independent.device), y, eps),
        "independent_pgd": lambda x, y: pgd(independent, x.to(independent.device), y, eps, step, steps, generator),
        "noise": lambda x, y: sign_noise(x, eps, generator),
        "victim_whitebox_pgd": lambda x, y: pgd(victim, x.to(victim.device), y, eps, step, steps, generator),
    }
    if independent is None:
        del crafts["independent_fgsm"], crafts["independent_pgd"]
    fooled = {name: 0 for name in crafts}
    shown, answers = [], []  # the thief-PGD images and the victim's answers to them, for the examples
    total, done = len(range(0, len(chosen), BATCH)) * len(crafts), 0
    for start in range(0, len(chosen), BATCH):
        clean, y = images[start:start + BATCH], labels[start:start + BATCH]
        for name, craft in crafts.items():
            sent = quantize(craft(clean.float() / 255, y), clean, eps)
            answer = ctx.victim.logits(sent).argmax(1)
            fooled[name] += int((answer != y).sum())
            if name == "thief_pgd":
                shown.append(sent)
                answers.append(answer)
            done += 1
            yield {"kind": "progress", "phase": "evaluate", "done": done, "total": total,
                   "message": f"Adversarial transfer: {name.replace('_', ' ')} on images {start + 1}-{start + len(y)}"}
    count = len(chosen)
    return {
        **{name: fooled[name] / count if count and name in fooled else None for name in ATTACKS},
        "eps": eps, "step": step, "steps": steps, "n": count,
        "clean_accuracy": {"thief": _accuracy(ctx.thief, images, labels), "independent": _accuracy(surrogate, images, labels)},
        "independent_labels": _training_size(ctx) if surrogate is not None else 0,
        "gradient_passes": count * sum(1 if name.endswith("fgsm") else steps * name.endswith("pgd") for name in crafts),
        "examples": _examples(images, torch.cat(shown) if shown else images, labels,
                              torch.cat(answers) if answers else labels, ctx.test.class_names),
    }


def correct_images(ctx: EvaluationContext, n: int) -> torch.Tensor:
    """Indices of up to `n` test images the victim classifies correctly, in a seeded random order."""
    correct = torch.nonzero(ctx.victim_test == ctx.test.labels).flatten()
    order = torch.randperm(len(correct), generator=torch.Generator().manual_seed(ctx.seed))
    return correct[order[:n]]


def train_independent(ctx: EvaluationContext) -> Generator[dict, None, Thief]:
    """The thief's architecture, mode and recipe trained on TRUE labels of as many pool images as the
    thief queried (the same seeded order random query selection uses), without asking the victim."""
    count = _training_size(ctx)
    picked = torch.randperm(len(ctx.pool), generator=torch.Generator().manual_seed(ctx.seed))[:count]
    images, labels = ctx.pool.images[picked], ctx.pool.labels[picked]
    is_val = torch.arange(count) % VALIDATION_EVERY == VALIDATION_EVERY - 1
    validation = (images[is_val], labels[is_val]) if is_val.any() else None
    surrogate = dataclasses.replace(ctx.thief, network=None)
    label = f"Adversarial transfer: training an independent {surrogate.spec.label} on {count:,} true labels"
    for event in surrogate.train(images[~is_val], labels[~is_val], validation, label=label):
        yield {**event, "phase": "evaluate"} if event.get("kind") == "progress" else event
    return surrogate


def _training_size(ctx: EvaluationContext) -> int:
    return min(ctx.queries_spent, len(ctx.pool))


def _accuracy(model: Thief | None, images: torch.Tensor, labels: torch.Tensor) -> float | None:
    if model is None or not len(labels):
        return None
    return (model.logits(images).argmax(1) == labels).double().mean().item()


def _examples(clean: torch.Tensor, adversarial: torch.Tensor, labels: torch.Tensor, after: torch.Tensor,
              names: list[str]) -> list[dict]:
    """A few thief-PGD examples as plain data, those that fooled the victim first (each says whether it did)."""
    fooled = after != labels
    order = torch.cat([torch.nonzero(fooled).flatten(), torch.nonzero(~fooled).flatten()])[:EXAMPLES]
    return [{"attack": "thief_pgd", "clean_png": _png(clean[i]), "adversarial_png": _png(adversarial[i]),
             "true_class": names[labels[i]], "victim_before": names[labels[i]], "victim_after": names[after[i]],
             "fooled": bool(fooled[i])} for i in order.tolist()]


def _png(image: torch.Tensor) -> str:
    """A uint8 3 x H x W image as a PNG data URI."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
