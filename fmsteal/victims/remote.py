"""A victim behind a network: batches, a rate limit, timeouts, retries with backoff, an answer log.

A transport (`url`, `space`) only sends one batch of 8-bit images and returns the raw answer,
raising `TransientError` for failures worth retrying (timeout, lost connection, HTTP 5xx or 429)
and `VictimError` for the rest. `RemoteVictim` does everything else: it answers images already in
the answer log without asking again, sends the others in batches no faster than the rate limit,
retries transient failures after 1x, 2x, 4x ... `backoff` seconds (longer when the server's
Retry-After asks for it; each retry is recorded in `retried`), and logs each batch's answers
before it returns, so an interrupted attack reruns for free up to where it stopped. Before its first
answer it asks the probe images (`fmsteal.victims.log.probe_images`): a log's answers are used only
while the victim still answers them as logged, and their hash is the victim's `fingerprint()`.
Waits (rate limit, backoff) and each request check `fmsteal.cancel`, so a cancelled run stops within 0.1 s.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence

import torch

from fmsteal import settings
from fmsteal.cancel import check
from fmsteal.errors import FmstealError
from fmsteal.fields import Field
from fmsteal.victims.answers import VictimError
from fmsteal.victims.handle import VictimHandle, check_images
from fmsteal.victims.log import AnswerLog, fingerprint, image_key, probe_images, to_uint8

__all__ = ["RemoteVictim", "TransientError", "remote_fields", "default_log_path"]


class TransientError(Exception):
    """A failure of one request that may pass if the same request is sent again; `retry_after` is the
    server's own wait in seconds (HTTP Retry-After), when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def remote_fields(batch_size: int) -> tuple[Field, ...]:
    """The options every remote source takes (the CLI's --timeout, --retries, ... and the API's params)."""
    return (
        Field("timeout", "float", 30.0, "seconds to wait for one request's answer", minimum=0.1),
        Field("retries", "int", 3, "further attempts after a timeout, lost connection, HTTP 5xx or 429", minimum=0),
        Field("backoff", "float", 1.0, "seconds before the first retry; doubles at each further one", minimum=0),
        Field("rate", "float", 0.0, "at most this many images (queries) per second; 0 = no limit", minimum=0),
        Field("batch_size", "int", batch_size, "images per request", minimum=1),
        Field("answer_log", "str", "", "JSONL file of the victim's answers, reused when the attack is rerun "
              "('' = one per victim and header set under FMSTEAL_CACHE/answers, 'off' = none)"),
    )


def _pause(seconds: float) -> None:
    """Sleep, yet let a cancelled run stop within a tenth of a second (`fmsteal.cancel`)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        check()
        time.sleep(min(left, 0.1))
    check()


def default_log_path(spec: str, options: dict) -> str:
    """The answer log of a victim when none is given: one file per victim spec and options in the cache."""
    identity = json.dumps([spec, options], sort_keys=True).encode()
    return str(settings.current().cache / "answers" / f"{hashlib.sha256(identity).hexdigest()[:16]}.jsonl")


class RemoteVictim(VictimHandle):
    """A `VictimHandle` over a transport `send(pixels) -> raw answer` (pixels: n x 3 x H x W uint8).
    `options`: the source's options that change its answers (as the log records them: no secrets)."""

    def __init__(self, send: Callable[[torch.Tensor], object], spec: str, *, timeout: float, retries: int,
                 backoff: float, rate: float, batch_size: int, answer_log: str, options: dict | None = None,
                 num_classes: int | None = None, class_names: Sequence[str] = (),
                 close: Callable[[], None] | None = None):
        super().__init__(send, spec, num_classes=num_classes, class_names=class_names, batch_size=batch_size,
                         close=close)
        self.timeout, self.retries, self.backoff, self.rate = timeout, retries, backoff, rate
        options = options or {}
        path = None if answer_log == "off" else answer_log or default_log_path(spec, options)
        self.log = AnswerLog(path, spec, options) if path else None
        self.replayed = 0
        self._ready_at = 0.0  # monotonic time before which the rate limit allows no request
        if self.log is not None and self.log.num_classes is not None:
            if num_classes is not None and num_classes != self.log.num_classes:
                self.log.close()
                raise VictimError(f"The answer log {self.log.path} holds answers for {self.log.num_classes} classes, "
                                  f"but {num_classes} are expected; give another answer log path.")
            self._num_classes = self.log.num_classes

    def fingerprint(self) -> str:
        """The hash of the victim's answers to the probe images, asked once per handle: a new log records
        them, an existing one checks them (VictimError when the model behind the victim has changed)."""
        if self._fingerprint is None:
            pixels, step = to_uint8(probe_images()), self.batch_size
            probes = torch.cat([self._fetch(pixels[i:i + step]) for i in range(0, len(pixels), step)])
            self.probed += len(probes)
            if self.log is not None and self.log.probes is None:
                self.log.start(probes)
            elif self.log is not None:
                self.log.check(probes)
                probes = self.log.probes  # the logged answers: the same fingerprint in every run
            self._fingerprint = fingerprint(probes)
        return self._fingerprint

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        if self.log is not None:
            self.fingerprint()  # a changed model is caught before the first answer, logged or asked
        pixels = to_uint8(check_images(images))
        keys = [image_key(p) for p in pixels]
        logged = self.log.get if self.log is not None else (lambda key: None)
        known = {key: row for key in keys if (row := logged(key)) is not None}
        self.replayed += sum(key in known for key in keys)
        todo, seen = [], set(known)
        for i, key in enumerate(keys):  # each missing image once, however often it is asked
            if key not in seen:
                seen.add(key)
                todo.append(i)
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            probs = self._fetch(pixels[batch])
            self.sent += len(batch)
            if self.log is not None:
                self.log.add([keys[i] for i in batch], probs)
            known.update(zip((keys[i] for i in batch), probs))
        self.answered += len(keys)
        k = self._num_classes or 0
        return torch.stack([known[key] for key in keys]) if keys else torch.zeros(0, k)

    def _fetch(self, pixels: torch.Tensor) -> torch.Tensor:
        """One batch's probabilities, retried on transient failures; VictimError naming the failure otherwise."""
        for attempt in range(self.retries + 1):
            check()
            self._wait_for_rate(len(pixels))
            try:
                return self._accept(self._answer(pixels), len(pixels))
            except TransientError as error:
                self.failed_attempts += 1
                if attempt == self.retries:
                    raise VictimError(f"{self.description} failed {attempt + 1} time(s) in a row: {error}. "
                                      f"{self._saved()} Run again to resume, or raise retries/timeout.") from None
                wait = max(self.backoff * 2**attempt, error.retry_after or 0.0)
                self.retried.append({"attempt": attempt + 1, "of": self.retries, "error": str(error),
                                     "wait_s": round(wait, 3)})
                _pause(wait)
            except VictimError as error:
                raise VictimError(f"{error} {self._saved()}") from None
            except FmstealError:
                raise
            except Exception as error:  # a transport's unexpected failure: named, not retried
                raise VictimError(f"{self.description} failed: {type(error).__name__}: {error}. "
                                  f"{self._saved()}") from error

    def _wait_for_rate(self, n: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        if now < self._ready_at:
            _pause(self._ready_at - now)
        self._ready_at = max(now, self._ready_at) + n / self.rate

    def _saved(self) -> str:
        if self.log is None:
            return "No answer log was kept (answer_log 'off')."
        return f"The {len(self.log)} answers received so far are kept in {self.log.path}."

    def accounting(self) -> dict[str, int]:
        logged = len(self.log) if self.log is not None else 0
        return {**super().accounting(), "replayed": self.replayed, "logged": logged}

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        super().close()
