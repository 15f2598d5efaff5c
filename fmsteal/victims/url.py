"""The `url` source: a classifier behind an HTTP JSON API (`url:http://host:port/predict`).

The schema (version 1). Request: `POST <url>` with `Content-Type: application/json` and the body

    {"images": ["<base64 PNG>", ...]}

one 8-bit RGB PNG per image, at the size the attack asks (the server resizes if it must).
Answer: HTTP 200 with a JSON object holding one of, one entry per image in request order,

    {"probabilities": [[p_1, ..., p_K], ...]}   rows in [0, 1] summing to 1 (rounding allowed)
    {"logits": [[z_1, ..., z_K], ...]}          any finite scores; fmsteal applies a softmax
    {"labels": [3, 7, ...]}                     class indices (or class names, when known)

Other keys are ignored. HTTP 408, 429 and 5xx, timeouts and lost connections are retried (after the
answer's Retry-After seconds, if it gives them, when that is longer than the backoff); any other
status, HTML or non-JSON bodies and malformed answers stop the attack with a `VictimError`.
`examples/serve_victim.py` serves any fmsteal victim with this schema.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import urllib.error
import urllib.request
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from fmsteal.errors import ConfigError
from fmsteal.fields import Field
from fmsteal.victims.answers import VictimError
from fmsteal.victims.handle import VictimHandle
from fmsteal.victims.remote import RemoteVictim, TransientError, remote_fields
from fmsteal.victims.sources import VICTIM_SOURCES

__all__ = ["ANSWER_KEYS", "encode_png", "decode_png", "header_digests", "post_images", "url_victim"]

ANSWER_KEYS = ("probabilities", "logits", "labels")
RETRIED_STATUS = (408, 429, 500, 502, 503, 504)
MAX_ANSWER_BYTES = 256 * 2**20


def encode_png(pixels: torch.Tensor) -> str:
    """One 3 x H x W uint8 image as base64 PNG text."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), "RGB").save(buffer, "PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png(text: str) -> torch.Tensor:
    """base64 PNG (or any image PIL reads) text -> 3 x H x W uint8 RGB."""
    image = Image.open(io.BytesIO(base64.b64decode(text, validate=True))).convert("RGB")
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def post_images(url: str, pixels: torch.Tensor, timeout: float, headers: dict[str, str] | None = None) -> dict:
    """POST one batch in the schema; the answer as `{kind: values}` (TransientError/VictimError on failure)."""
    body = json.dumps({"images": [encode_png(p) for p in pixels]}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read(MAX_ANSWER_BYTES).decode("utf-8", errors="replace")
            content_type = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        detail = error.read(300).decode("utf-8", errors="replace").strip()
        message = f"HTTP {error.code} {error.reason} from {url}" + (f": {detail}" if detail else "")
        if error.code in RETRIED_STATUS:
            raise TransientError(message, _seconds(error.headers.get("Retry-After"))) from None
        raise VictimError(f"The victim answered {message}.") from None
    except TimeoutError:
        raise TransientError(f"no answer from {url} within {timeout:g} s") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise TransientError(f"no answer from {url} within {timeout:g} s") from None
        raise TransientError(f"cannot reach {url} ({error.reason})") from None
    except (ConnectionError, http.client.HTTPException) as error:
        raise TransientError(f"the connection to {url} failed ({type(error).__name__}: {error})") from None
    return parse_answer(text, content_type, url)


def parse_answer(text: str, content_type: str, url: str) -> dict:
    """The `{kind: values}` of one HTTP answer body; VictimError naming what is wrong otherwise."""
    if "html" in content_type or text.lstrip().startswith("<"):
        raise VictimError(f"The victim at {url} answered HTML instead of JSON ({_snippet(text)}); is this the API's "
                          f"endpoint rather than a web page?")
    try:
        answer = json.loads(text)
    except ValueError:
        raise VictimError(f"The victim at {url} answered something that is not JSON: {_snippet(text)}.") from None
    if not isinstance(answer, dict) or not any(k in answer for k in ANSWER_KEYS):
        keys = ", ".join(map(str, answer)) if isinstance(answer, dict) else type(answer).__name__
        raise VictimError(f"The victim at {url} answered JSON without {', '.join(ANSWER_KEYS[:-1])} or labels "
                          f"(it has: {keys or 'nothing'}){_error_text(answer)}.")
    kind = next(k for k in ANSWER_KEYS if k in answer)
    return {kind: answer[kind]}


def _seconds(retry_after: str | None) -> float | None:
    """An HTTP Retry-After given in seconds, capped at ten minutes (dates are ignored)."""
    try:
        return min(float(retry_after), 600.0) if retry_after else None
    except ValueError:
        return None


def _error_text(answer: object) -> str:
    return f"; its error: {str(answer['error'])[:200]}" if isinstance(answer, dict) and "error" in answer else ""


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def _headers(text: str) -> dict[str, str]:
    headers = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = part.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"header must be 'Name: value' pairs separated by ';', e.g. 'Authorization: Bearer T'; "
                              f"got {part!r}.")
        headers[name.strip()] = value.strip()
    return headers


def header_digests(text: str) -> dict[str, str]:
    """The `header` option's values as hashes (`{"Authorization": "sha256:<12 hex>"}`): what the answer log
    and the card record, telling values apart without keeping credentials."""
    return {name: "sha256:" + hashlib.sha256(f"{name}: {value}".encode()).hexdigest()[:12]
            for name, value in _headers(text).items()}


@VICTIM_SOURCES.register(
    "url", help="a classifier behind an HTTP JSON API (POST {images: [base64 PNG]} -> {probabilities|logits|labels})",
    params=remote_fields(32) + (
        Field("header", "str", "", "extra HTTP headers, 'Name: value' pairs separated by ';'"),),
    target="URL", example="url:http://127.0.0.1:8000/predict", flag="--victim-url")
def url_victim(target: str, *, num_classes: int | None, class_names: Sequence[str], timeout: float, retries: int,
               backoff: float, rate: float, batch_size: int, answer_log: str, header: str) -> VictimHandle:
    if not target.startswith(("http://", "https://")):
        raise ConfigError(f"The victim URL must start with http:// or https://; got {target!r}.")
    headers, digests = _headers(header), header_digests(header)
    return RemoteVictim(lambda pixels: post_images(target, pixels, timeout, headers), f"url:{target}",
                        timeout=timeout, retries=retries, backoff=backoff, rate=rate, batch_size=batch_size,
                        answer_log=answer_log, options={"header": digests} if digests else {},
                        num_classes=num_classes, class_names=class_names)
