"""`VictimHandle`: a victim from any source as one function from [0, 1] images to probabilities."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from fmsteal.errors import FmstealError
from fmsteal.victims.answers import VictimError, to_probabilities

__all__ = ["VictimHandle", "check_images"]


class VictimHandle:
    """A victim opened from a source: `probabilities(images)` maps n x 3 x H x W images (float in
    [0, 1], or uint8) to n x K float probabilities, whatever the source answers (see
    `fmsteal.victims.answers` for the rule). `num_classes` is K when known: given, read from the
    source (an ONNX output shape), or learned from the first answer (None before it). `close()`
    frees the source (sessions, connections, the answer log); a handle is also a context manager.
    `accounting()` counts images: `answered` (returned by this handle), `sent` (asked of the victim
    itself), `replayed` (answered from the answer log), `logged` (answers the log holds) and `probes`
    (probe images asked, outside any budget); and `failed_attempts` (requests that failed; those
    retried are listed in `retried`). `fingerprint()` tells models apart where the source can (a hash
    of a file's content, of a remote victim's answers to the probe images), else None.
    """

    def __init__(self, answer: Callable[[torch.Tensor], object], description: str, *, num_classes: int | None = None,
                 class_names: Sequence[str] = (), batch_size: int = 0, close: Callable[[], None] | None = None,
                 fingerprint: str | None = None):
        self._answer = answer
        self.description = description
        self._num_classes = num_classes
        self.class_names = tuple(class_names)
        self.batch_size = batch_size  # images per call to the source (0: all at once)
        self._close = close
        self._fingerprint = fingerprint
        self.answered = 0
        self.sent = 0
        self.probed = 0
        self.failed_attempts = 0
        self.retried: list[dict] = []  # one {"attempt", "of", "error", "wait_s"} per retried request

    @property
    def num_classes(self) -> int | None:
        return self._num_classes

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """n x K probabilities for n images (float in [0, 1] or uint8, n x 3 x H x W)."""
        images = check_images(images)
        step = self.batch_size or max(len(images), 1)
        parts = [self._probabilities(images[i:i + step]) for i in range(0, len(images), step)]
        probs = torch.cat(parts) if parts else torch.zeros(0, self._num_classes or 0)
        self.answered += len(images)
        return probs

    __call__ = probabilities

    def _probabilities(self, images: torch.Tensor) -> torch.Tensor:
        try:
            answer = self._answer(images)
        except FmstealError:
            raise
        except Exception as error:  # the user's code may raise anything
            raise VictimError(f"{self.description} raised {type(error).__name__}: {error}") from error
        self.sent += len(images)
        return self._accept(answer, len(images))

    def _accept(self, answer: object, n: int) -> torch.Tensor:
        """Probabilities of one answer, checked against (or teaching) the class count."""
        probs = to_probabilities(answer, n, self._num_classes, self.class_names, self.description)
        if self._num_classes is None and n:
            self._num_classes = probs.shape[1]
        return probs

    def fingerprint(self) -> str | None:
        return self._fingerprint

    def accounting(self) -> dict[str, int]:
        return {"answered": self.answered, "sent": self.sent, "replayed": 0, "logged": 0, "probes": self.probed,
                "failed_attempts": self.failed_attempts}

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> "VictimHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VictimHandle({self.description!r}, num_classes={self._num_classes})"


def check_images(images: torch.Tensor) -> torch.Tensor:
    """`images` as float32 [0, 1] on the CPU; ValueError for another shape or range."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"A victim takes images shaped n x 3 x H x W, got {shape}.")
    if images.dtype == torch.uint8:
        return images.cpu().float() / 255
    images = images.detach().cpu().float()
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError("A victim takes float images in [0, 1] (or uint8); these have values outside [0, 1].")
    return images
