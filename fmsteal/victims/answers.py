"""What a victim may answer, turned into probabilities, and the one error a bad answer raises.

The rule, applied to every source (a Python callable, a model file, an HTTP or Gradio answer):

- a 1-D answer of length n is **labels**: integers in [0, K) (or class names, when the class names
  are known) -> one-hot rows; K must be known (given, or learned from an earlier answer);
- an n x K answer whose entries are all in [0, 1] and whose rows each sum to 1 within
  `PROBABILITY_TOLERANCE` is **probabilities** (rounded probabilities included) -> rows renormalised;
- any other finite n x K answer is **logits** -> softmax.

NaN or infinite entries, a row count other than n, a K that differs from the expected one, or
another shape raise `VictimError` naming what was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fmsteal.errors import FmstealError

__all__ = ["VictimError", "PROBABILITY_TOLERANCE", "to_probabilities", "labels_to_indices"]

PROBABILITY_TOLERANCE = 0.05  # |row sum - 1| accepted as probabilities (2-decimal rounding of 10 classes: 0.05)


class VictimError(FmstealError):
    """The victim failed or answered something unusable; the message names what and where."""


def to_probabilities(answer: object, n: int, num_classes: int | None, class_names: Sequence[str] = (),
                     where: str = "the victim") -> torch.Tensor:
    """`answer` for n images (probabilities, logits or labels; see the module rule) as n x K float probabilities."""
    if isinstance(answer, dict) and len(answer) == 1 and next(iter(answer)) in ("probabilities", "logits", "labels"):
        kind, answer = next(iter(answer.items()))
    else:
        kind = None
    if kind == "labels" or _is_label_list(answer):
        return _one_hot(labels_to_indices(answer, class_names, where), n, num_classes, where)
    values = _as_tensor(answer, where)
    if values.ndim == 1:
        return _one_hot(labels_to_indices(values.tolist(), class_names, where), n, num_classes, where)
    if values.ndim != 2:
        raise VictimError(f"{where} answered an array shaped {tuple(values.shape)}; expected n x K scores "
                          f"(probabilities or logits) or n labels for n = {n} images.")
    if len(values) != n:
        raise VictimError(f"{where} answered {len(values)} rows for {n} images; it must answer one row per image.")
    _check_classes(values.shape[1], num_classes, where)
    if not torch.isfinite(values).all():
        bad = int((~torch.isfinite(values)).any(1).sum())
        raise VictimError(f"{where} answered NaN or infinite scores for {bad} of {n} images.")
    looks_like_probs = bool(((values >= 0) & (values <= 1)).all()) and bool(
        ((values.sum(1) - 1).abs() <= PROBABILITY_TOLERANCE).all())
    if kind == "probabilities" and not looks_like_probs:
        raise VictimError(f"{where} answered 'probabilities' that are not probabilities (entries outside [0, 1] or "
                          f"rows not summing to 1); answer them as 'logits' instead.")
    if looks_like_probs and kind != "logits":
        return values / values.sum(1, keepdim=True)
    return values.softmax(1)


def labels_to_indices(labels: Sequence, class_names: Sequence[str] = (), where: str = "the victim") -> list[int]:
    """Integer class indices of `labels` (ints, integral floats or class names)."""
    if isinstance(labels, (str, bytes, dict)) or not hasattr(labels, "__iter__"):
        raise VictimError(f"{where} answered labels as {type(labels).__name__} {str(labels)[:80]!r}; expected a list.")
    out = []
    for label in labels:
        if isinstance(label, str):
            if label not in class_names:
                known = (f"one of {', '.join(class_names)}" if class_names
                         else "an integer (class names are unknown here)")
                raise VictimError(f"{where} answered the label {label!r}; expected {known}.")
            out.append(list(class_names).index(label))
        elif not _is_integral(label):
            raise VictimError(f"{where} answered the label {str(label)[:80]!r}; labels must be integer class indices.")
        else:
            out.append(int(label))
    return out


def _is_integral(label: object) -> bool:
    if isinstance(label, (bool, np.bool_)):
        return False
    try:
        return float(label).is_integer()
    except (TypeError, ValueError, OverflowError):
        return False


def _one_hot(indices: list[int], n: int, num_classes: int | None, where: str) -> torch.Tensor:
    if len(indices) != n:
        raise VictimError(f"{where} answered {len(indices)} labels for {n} images; it must answer one per image "
                          f"(a 1-D answer is read as labels: return n x K scores for scores).")
    if num_classes is None:
        raise VictimError(f"{where} answers with labels, so the number of classes cannot be read from its answers: "
                          f"give num_classes (the number of classes it predicts).")
    outside = [i for i in indices if not 0 <= i < num_classes]
    if outside:
        raise VictimError(f"{where} answered the label {outside[0]}, outside 0..{num_classes - 1} "
                          f"({num_classes} classes).")
    return torch.nn.functional.one_hot(torch.tensor(indices, dtype=torch.long), num_classes).float()


def _check_classes(k: int, num_classes: int | None, where: str) -> None:
    if num_classes is not None and k != num_classes:
        raise VictimError(f"{where} answered scores for {k} classes, but {num_classes} were expected "
                          f"(given, or from its earlier answers); a victim's class count must not change.")


def _is_label_list(answer: object) -> bool:
    return isinstance(answer, (list, tuple)) and any(isinstance(a, str) for a in answer)


def _as_tensor(answer: object, where: str) -> torch.Tensor:
    try:
        if isinstance(answer, torch.Tensor):
            values = answer.detach().cpu()
        else:
            values = torch.as_tensor(np.asarray(answer))
    except (TypeError, ValueError, RuntimeError) as error:
        raise VictimError(f"{where} answered something that is not an array of numbers ({type(answer).__name__}: "
                          f"{str(answer)[:120]!r}): {error}") from None
    if values.dtype == torch.bool or values.dtype.is_complex:
        raise VictimError(f"{where} answered values of type {values.dtype}; expected numbers.")
    return values.double() if values.ndim == 1 else values.float()
