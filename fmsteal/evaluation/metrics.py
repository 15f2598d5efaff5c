"""Agreement, accuracy, macro-F1 and the thief-vs-victim confusion, on integer predictions."""

from __future__ import annotations

import torch


def agreement(thief: torch.Tensor, victim: torch.Tensor) -> float:
    """Fraction of images on which thief and victim predict the same class."""
    _check_same_length(thief, victim)
    return (thief == victim).double().mean().item()


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of predictions equal to the true labels."""
    return agreement(predictions, labels)


def confusion(rows: torch.Tensor, cols: torch.Tensor, num_classes: int) -> torch.Tensor:
    """K x K counts: entry (i, j) counts images with `rows` == i and `cols` == j."""
    _check_same_length(rows, cols)
    flat = rows.long() * num_classes + cols.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def macro_f1(predictions: torch.Tensor, reference: torch.Tensor, num_classes: int) -> float:
    """Unweighted mean of the per-class F1 of `predictions` against `reference`.

    Classes absent from both count as F1 = 0 only if present in either (as scikit-learn's
    `f1_score(average="macro")` over the union of labels present).
    """
    counts = confusion(reference, predictions, num_classes).double()
    true_positive = counts.diag()
    predicted = counts.sum(0)
    actual = counts.sum(1)
    present = (predicted + actual) > 0
    f1 = 2 * true_positive / (predicted + actual).clamp(min=1)
    return f1[present].mean().item() if present.any() else 0.0


def per_class_agreement(thief: torch.Tensor, victim: torch.Tensor, num_classes: int) -> list[float | None]:
    """For each class the victim predicts, the fraction of those images the thief labels alike (None: never predicted)."""
    counts = confusion(victim, thief, num_classes).double()
    totals = counts.sum(1)
    return [(counts[c, c] / totals[c]).item() if totals[c] > 0 else None for c in range(num_classes)]


def _check_same_length(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"Predictions must be two 1-D tensors of one length, got {tuple(a.shape)} and {tuple(b.shape)}.")
