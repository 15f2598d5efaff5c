"""The answer log: every answer a remote victim gave, on disk, so a rerun never pays for it twice.

One JSON object per line, append-only. The first line names the victim
(`{"fmsteal_answer_log": 1, "victim": "url:https://..."}`); each later line is one image's answer,
keyed by a hash of the image's content (its 8-bit pixels and shape, so the same image asked again
is found however the attack reached it): `{"key": "<32 hex>", "p": [probabilities]}`, or
`{"key": ..., "label": i, "of": K}` for a one-hot answer. Lines are flushed and synced per batch;
a line torn by a crash is dropped when the log is opened again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from fmsteal.victims.answers import VictimError

__all__ = ["AnswerLog", "image_key", "to_uint8"]

FORMAT = 1


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] float images as the 8-bit pixels a remote victim is sent (round to nearest)."""
    return (images * 255).round().clamp(0, 255).to(torch.uint8)


def image_key(pixels: torch.Tensor) -> str:
    """Content hash of one 3 x H x W uint8 image."""
    digest = hashlib.sha256(("x".join(map(str, pixels.shape)) + "|").encode())
    digest.update(pixels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


class AnswerLog:
    """Answers by image key, read from and appended to a JSONL file (one writer at a time)."""

    def __init__(self, path: str | Path, victim: str):
        self.path = Path(path).expanduser()
        self.victim = victim
        self._answers: dict[str, torch.Tensor] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read()
        self._file = open(self.path, "a", encoding="utf-8")
        if self.path.stat().st_size == 0:
            self._write([json.dumps({"fmsteal_answer_log": FORMAT, "victim": victim})])

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def num_classes(self) -> int | None:
        """K of the logged answers (None while the log is empty)."""
        first = next(iter(self._answers.values()), None)
        return None if first is None else len(first)

    def get(self, key: str) -> torch.Tensor | None:
        return self._answers.get(key)

    def add(self, keys: list[str], probs: torch.Tensor) -> None:
        """Append one batch of answers (rows of `probs`) and sync it to disk."""
        lines = []
        for key, row in zip(keys, probs):
            self._answers[key] = row.clone()
            top = int(row.argmax())
            if row[top] == 1 and int((row != 0).sum()) == 1:
                lines.append(f'{{"key": "{key}", "label": {top}, "of": {len(row)}}}')
            else:
                lines.append(f'{{"key": "{key}", "p": [{", ".join(str(np.float32(v)) for v in row.tolist())}]}}')
        self._write(lines)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def _write(self, lines: list[str]) -> None:
        self._file.write("".join(line + "\n" for line in lines))
        self._file.flush()
        os.fsync(self._file.fileno())

    def _read(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # torn by a crash mid-write: drop the partial line
            data = data[:data.rfind(b"\n") + 1]
            with open(self.path, "r+b") as f:
                f.truncate(len(data))
        lines = data.decode("utf-8").splitlines()
        if not lines:
            return
        header = self._parse(lines[0], 1)
        if header.get("fmsteal_answer_log") != FORMAT:
            raise VictimError(f"{self.path} is not an fmsteal answer log; give another answer log path.")
        if header.get("victim") != self.victim:
            raise VictimError(f"The answer log {self.path} holds answers of {header.get('victim')!r}, not of "
                              f"{self.victim!r}; give another answer log path for this victim.")
        for number, line in enumerate(lines[1:], start=2):
            entry = self._parse(line, number)
            if "label" in entry:
                row = torch.zeros(int(entry["of"]))
                row[int(entry["label"])] = 1
            else:
                row = torch.tensor(entry["p"], dtype=torch.float32)
            if self._answers and len(row) != self.num_classes:
                raise VictimError(f"The answer log {self.path} mixes answers for {self.num_classes} and {len(row)} "
                                  f"classes (line {number}); delete it or give another answer log path.")
            self._answers[entry["key"]] = row

    def _parse(self, line: str, number: int) -> dict:
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not ("fmsteal_answer_log" in entry or "key" in entry):
                raise ValueError("not an answer")
            return entry
        except ValueError as error:
            raise VictimError(f"The answer log {self.path} is damaged at line {number} ({error}); delete it or "
                              f"give another answer log path (its answers would have to be asked again).") from None
