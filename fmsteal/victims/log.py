"""The answer log: every answer a remote victim gave, on disk, so a rerun never pays for it twice.

One JSON object per line, append-only. The first line says whose answers these are: the victim spec,
the options that change its answers (HTTP header values as hashes, never in clear) and its
answers to the probe images (`probe_images()`, the same 8 images in every run):

    {"fmsteal_answer_log": 2, "victim": "url:https://...", "options": {"header": {"Authorization": "sha256:..."}},
     "probes": [[p_1, ..., p_K], ...]}

The probes are asked again each time the log is opened for a run (`AnswerLog.check`): a victim that
answers them otherwise (by more than `TOLERANCE` in any probability, so any changed label) is no
longer the model whose answers the log holds, and the log is refused. Each later line is one image's
answer, keyed by a hash of the image's content (its 8-bit pixels and shape, so the same image asked
again is found however the attack reached it): `{"key": "<32 hex>", "p": [probabilities]}`, or
`{"key": ..., "label": i, "of": K}` for a one-hot answer. Lines are flushed and synced per batch; a
line torn by a crash is dropped when the log is opened again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from fmsteal.victims.answers import VictimError

__all__ = ["AnswerLog", "TOLERANCE", "fingerprint", "image_key", "probe_images", "to_uint8"]

FORMAT = 2
TOLERANCE = 1e-3  # the largest change of a probe's probability still taken for the same model's answer
PROBES, PROBE_SIZE, PROBE_BLOCK = 8, 32, 8


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] float images as the 8-bit pixels a remote victim is sent (round to nearest)."""
    return (images * 255).round().clamp(0, 255).to(torch.uint8)


def image_key(pixels: torch.Tensor) -> str:
    """Content hash of one 3 x H x W uint8 image."""
    digest = hashlib.sha256(("x".join(map(str, pixels.shape)) + "|").encode())
    digest.update(pixels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def probe_images() -> torch.Tensor:
    """The probe images, 8 x 3 x 32 x 32 uint8: blocks of 8 x 8 pixels in colours drawn from SHA-256,
    so they are the same on every machine and with every library version."""
    cells = PROBE_SIZE // PROBE_BLOCK
    count = PROBES * 3 * cells * cells
    data = b"".join(hashlib.sha256(f"fmsteal probe {i}".encode()).digest() for i in range(-(-count // 32)))
    colours = torch.frombuffer(bytearray(data[:count]), dtype=torch.uint8).view(PROBES, 3, cells, cells)
    return colours.repeat_interleave(PROBE_BLOCK, 2).repeat_interleave(PROBE_BLOCK, 3)


def fingerprint(probes: torch.Tensor) -> str:
    """A short hash of a victim's answers to the probe images (rounded, so noise below 1e-3 does not show)."""
    rounded = [[round(float(v), 3) + 0.0 for v in row] for row in probes]
    return hashlib.sha256(json.dumps(rounded).encode()).hexdigest()[:16]


class AnswerLog:
    """Answers by image key, read from and appended to a JSONL file (one writer at a time).

    Opening checks the header against `victim` and `options` (VictimError naming what differs);
    `probes` holds the logged probe answers (None for a new log, whose header `start` writes)."""

    def __init__(self, path: str | Path, victim: str, options: dict):
        self.path = Path(path).expanduser()
        self.victim, self.options = victim, options
        self.probes: torch.Tensor | None = None
        self._answers: dict[str, torch.Tensor] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read()
        self._file = open(self.path, "a", encoding="utf-8")

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def num_classes(self) -> int | None:
        """K of the logged answers (None while the log is new)."""
        return None if self.probes is None else self.probes.shape[1]

    def start(self, probes: torch.Tensor) -> None:
        """Write the header of a new log, with the victim's answers to the probe images."""
        self.probes = probes.clone()
        self._write([json.dumps({"fmsteal_answer_log": FORMAT, "victim": self.victim, "options": self.options,
                                 "probes": [_floats(row) for row in probes]})])

    def check(self, probes: torch.Tensor) -> None:
        """VictimError if the victim's answers to the probes (as many classes as logged) now differ from the
        logged ones: the model behind it has changed."""
        logged = self.probes
        change = (probes - logged).abs().amax(1)
        if change.max() <= TOLERANCE:
            return
        differ = [i for i, c in enumerate(change.tolist()) if c > TOLERANCE]
        flipped = [i for i in differ if probes[i].argmax() != logged[i].argmax()]
        raise VictimError(
            f"The model behind {self.victim} has changed since the answer log {self.path} was written: it answers "
            f"{len(differ)} of its {len(logged)} probe images otherwise (probabilities moved by up to "
            f"{float(change.max()):.3f}; the top class changed on {len(flipped)}). The logged answers are not this "
            f"model's: delete {self.path} (its answers will be asked again), give another answer log path "
            f"(--victim-answer-log), or answer_log 'off'.")

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
                lines.append(f'{{"key": "{key}", "p": {json.dumps(_floats(row))}}}')
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
        self._check_header(self._parse(lines[0], 1))
        for number, line in enumerate(lines[1:], start=2):
            entry = self._parse(line, number)
            if "label" in entry:
                row = torch.zeros(int(entry["of"]))
                row[int(entry["label"])] = 1
            else:
                row = torch.tensor(entry["p"], dtype=torch.float32)
            if len(row) != self.num_classes:
                raise VictimError(f"The answer log {self.path} mixes answers for {self.num_classes} and {len(row)} "
                                  f"classes (line {number}); delete it or give another answer log path.")
            self._answers[entry["key"]] = row

    def _check_header(self, header: dict) -> None:
        version = header.get("fmsteal_answer_log")
        if version == 1:
            raise VictimError(f"{self.path} is an answer log of an older fmsteal, without the victim's answers to the "
                              f"probe images, so whether the model behind {header.get('victim')} still answers as "
                              f"logged cannot be checked: delete it (its answers will be asked again) or give another "
                              f"answer log path.")
        if version != FORMAT or not isinstance(header.get("probes"), list):
            raise VictimError(f"{self.path} is not an fmsteal answer log; give another answer log path.")
        if header.get("victim") != self.victim:
            raise VictimError(f"The answer log {self.path} holds answers of {header.get('victim')!r}, not of "
                              f"{self.victim!r}; give another answer log path for this victim.")
        changed = _differences(header.get("options") or {}, self.options)
        if changed:
            raise VictimError(f"The answer log {self.path} holds answers of {self.victim} given another "
                              f"{' and another '.join(changed)} than now; give another answer log path for these "
                              f"options (or leave it unset: each set of options then has its own log).")
        self.probes = torch.tensor(header["probes"], dtype=torch.float32)

    def _parse(self, line: str, number: int) -> dict:
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not ("fmsteal_answer_log" in entry or "key" in entry):
                raise ValueError("not an answer")
            return entry
        except ValueError as error:
            raise VictimError(f"The answer log {self.path} is damaged at line {number} ({error}); delete it or "
                              f"give another answer log path (its answers would have to be asked again).") from None


def _floats(row: torch.Tensor) -> list[float]:
    """A row of probabilities as the shortest decimals that read back as the same float32 values."""
    return [float(str(np.float32(v))) for v in row.tolist()]


def _differences(old: dict, new: dict) -> list[str]:
    """The options that differ, as `header 'Authorization'` for a value inside an option's dict."""
    names = []
    for name in sorted(set(old) | set(new)):
        before, now = old.get(name), new.get(name)
        if isinstance(before, dict) and isinstance(now, dict):
            names += [f"{name} {key!r}" for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]
        elif before != now:
            names.append(f"option {name}")
    return names
