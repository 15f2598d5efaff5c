"""One training loop for linear heads and whole networks, with best-checkpoint selection.

`fit` is a generator: it yields progress events and returns the trained model
(`model = yield from fit(...)`). Targets are class indices (cross-entropy) or rows of
probabilities (distillation: cross-entropy against soft targets).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fmsteal.cancel import check
from fmsteal.engine.embed import autocast
from fmsteal.evaluation.metrics import macro_f1
from fmsteal.engine.recipes import Recipe

Transform = Callable[[torch.Tensor, bool], torch.Tensor]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against class indices (1-D targets) or probability rows (2-D targets)."""
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets)
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def make_optimizer(params, recipe: Recipe, steps_per_epoch: int):
    """The recipe's optimiser and a per-step learning-rate scheduler."""
    if recipe.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    total = max(1, recipe.epochs * steps_per_epoch)
    if recipe.schedule == "cosine":
        factor = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    elif recipe.schedule == "step":
        factor = lambda step: recipe.step_gamma ** ((step // steps_per_epoch) // recipe.step_every)  # noqa: E731
    else:
        factor = lambda step: 1.0  # noqa: E731
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(
    model: nn.Module,
    inputs: torch.Tensor | Sequence,
    targets: torch.Tensor,
    recipe: Recipe,
    transform: Transform,
    device: torch.device,
    seed: int,
    num_classes: int,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    phase: str = "train",
    label: str = "training",
    report_seconds: float = 0.5,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = soft_cross_entropy,
) -> Generator[dict, None, nn.Module]:
    """Train `model` on `inputs` (a tensor, or `FeatureViews`: one augmented view per item per step) to minimise
    `loss(logits, targets)`; with `validation` (inputs, labels) keep the epoch with the best macro-F1.

    Progress is yielded at the end of every epoch and at least every `report_seconds` within one; a
    cancelled run (`fmsteal.cancel`) stops before the next step.
    """
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    batch_size = min(recipe.batch_size, max(1, len(inputs)))
    steps = math.ceil(len(inputs) / batch_size)
    optimizer, scheduler = make_optimizer(model.parameters(), recipe, steps)
    reported = time.monotonic()
    best_score, best_state = -1.0, None
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        for step in range(steps):
            check()  # a cancelled run stops within a step, even one between progress reports
            index = order[step * batch_size:(step + 1) * batch_size]
            with autocast(device, recipe.fp32):
                logits = model(transform(inputs[index], True))
            step_loss = loss(logits.float(), targets[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            step_loss.backward()
            optimizer.step()
            scheduler.step()
            if step + 1 == steps or time.monotonic() - reported >= report_seconds:
                reported = time.monotonic()
                yield {"kind": "progress", "phase": phase, "done": epoch * steps + step + 1,
                       "total": recipe.epochs * steps, "message": f"{label}: epoch {epoch + 1}/{recipe.epochs}"}
        if validation is not None:
            predicted = predict(model, validation[0], transform, device, fp32=recipe.fp32).argmax(1)
            score = macro_f1(predicted, validation[1], num_classes)
            if score > best_score:
                best_score, best_state = score, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval()


@torch.inference_mode()
def predict(model: nn.Module, inputs: torch.Tensor, transform: Transform, device: torch.device, batch_size: int = 512,
            fp32: bool = False) -> torch.Tensor:
    """Logits of `model` on `inputs` (float32, on the CPU); `fp32` turns CUDA's bf16 autocast off."""
    model.eval()
    outputs = []
    for start in range(0, len(inputs), batch_size):
        check()
        with autocast(device, fp32):
            outputs.append(model(transform(inputs[start:start + batch_size], False)).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)
