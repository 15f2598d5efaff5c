"""The `space` source: an image classifier in a Gradio app (`space:owner/name` or `space:http://host:7860/`).

Expected endpoint (`api_name`, default `/predict`): one image in (a `gr.Image` input, sent as a
PNG file), and one of these out:

- a `gr.Label` value, `{"label": ..., "confidences": [{"label": name, "confidence": p}, ...]}`,
  as `gr.Interface(classify, gr.Image(), gr.Label())` returns. Labels are class names (mapped to
  indices through `class_names`) or indices; classes missing from a top-k answer share what is left
  of the probability mass equally;
- a JSON answer of the `url` schema for one image: `{"probabilities": [...]}`, `{"logits": [...]}`
  or `{"labels": [i]}`, or a bare list of scores, or a bare label.

One image per call (Gradio endpoints take one); each image's answer is logged as soon as it comes.
Private Spaces read the token huggingface_hub finds (HF_TOKEN or `hf auth login`).
"""

from __future__ import annotations

import concurrent.futures
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from fmsteal.fields import Field
from fmsteal.victims.answers import VictimError, labels_to_indices, to_probabilities
from fmsteal.victims.handle import VictimHandle
from fmsteal.victims.remote import RemoteVictim, TransientError, remote_fields
from fmsteal.victims.sources import VICTIM_SOURCES

__all__ = ["label_probabilities", "space_victim"]


def label_probabilities(value: dict, num_classes: int | None, class_names: Sequence[str], where: str) -> torch.Tensor:
    """One `gr.Label` value as a 1 x K probability row (classes it leaves out share the remaining mass)."""
    confidences = value.get("confidences") or []
    if not confidences:
        return to_probabilities([_label(value.get("label"), class_names)], 1, num_classes, class_names, where)
    names = [_label(c.get("label"), class_names) for c in confidences]
    k = num_classes or len(class_names) or None
    if k is None:
        raise VictimError(f"{where} answers labelled confidences, so its class count is unknown: give num_classes "
                          f"or class_names.")
    indices = labels_to_indices(names, class_names, where)
    outside = [name for name, i in zip(names, indices) if not 0 <= i < k]
    if outside:
        raise VictimError(f"{where} answered the class {outside[0]!r}, outside its {k} classes.")
    scores = [float(c.get("confidence") or 0.0) for c in confidences]
    row = torch.full((k,), 0.0)
    row[indices] = torch.tensor(scores)
    missing = k - len(set(indices))
    if missing:
        row[[i for i in range(k) if i not in set(indices)]] = max(0.0, 1.0 - sum(scores)) / missing
    return to_probabilities(row[None], 1, k, class_names, where)


def _label(label: object, class_names: Sequence[str]) -> object:
    """A Label's class as a name or an index (numeric text such as "3" counts as an index)."""
    if isinstance(label, str) and label not in class_names and label.strip().lstrip("-").isdigit():
        return int(label)
    return label


class _SpaceTransport:
    """Sends one image per call to a Gradio endpoint; connects on first use."""

    def __init__(self, source: str, api_name: str, timeout: float, num_classes: int | None, class_names: Sequence[str]):
        self.source, self.api_name, self.timeout = source, api_name, timeout
        self.num_classes, self.class_names = num_classes, tuple(class_names)
        self.where = f"space:{source}"
        self._client = None
        self._folder = tempfile.TemporaryDirectory(prefix="fmsteal-space-")

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        from PIL import Image

        rows = []
        for n, image in enumerate(pixels):
            path = Path(self._folder.name) / f"query{n}.png"
            Image.fromarray(image.permute(1, 2, 0).contiguous().numpy(), "RGB").save(path)
            row = self._interpret(self._call(path))
            self.num_classes = self.num_classes or row.shape[1]
            rows.append(row)
        return torch.cat(rows)

    def _call(self, path: Path) -> object:
        from gradio_client import handle_file
        from gradio_client.exceptions import AppError

        try:
            client = self._connect()
            return client.submit(handle_file(str(path)), api_name=self.api_name).result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            raise TransientError(f"no answer from the Space within {self.timeout:g} s") from None
        except AppError as error:
            raise VictimError(f"{self.where} raised an error in its app: {error}") from None
        except ValueError as error:  # gradio_client: unknown api_name, wrong arguments
            raise VictimError(f"{self.where} cannot be called at {self.api_name!r}: {error}") from None
        except Exception as error:  # httpx and websocket failures, a Space that is sleeping or restarting
            raise TransientError(f"{type(error).__name__}: {error}") from None

    def _connect(self):
        if self._client is None:
            from gradio_client import Client

            self._client = Client(self.source, verbose=False, download_files=False,
                                  httpx_kwargs={"timeout": self.timeout})
        return self._client

    def _interpret(self, answer: object) -> torch.Tensor:
        if isinstance(answer, dict) and ("confidences" in answer or set(answer) == {"label"}):
            return label_probabilities(answer, self.num_classes, self.class_names, self.where)
        if isinstance(answer, dict):
            kind = next((k for k in ("probabilities", "logits", "labels") if k in answer), None)
            if kind is None:
                raise VictimError(f"{self.where} answered a dict without confidences, probabilities, logits or "
                                  f"labels (it has: {', '.join(map(str, answer))}).")
            values = answer[kind]
            if not isinstance(values, list) or (kind != "labels" and values and not isinstance(values[0], list)):
                values = [values]  # one image's answer, as a batch of one
            return to_probabilities({kind: values}, 1, self.num_classes, self.class_names, self.where)
        if isinstance(answer, (list, tuple)) and answer and not isinstance(answer[0], (list, tuple, str)):
            return to_probabilities([list(answer)], 1, self.num_classes, self.class_names, self.where)
        if isinstance(answer, (str, int)) and not isinstance(answer, bool):
            label = _label(answer, self.class_names)
            return to_probabilities([label], 1, self.num_classes, self.class_names, self.where)
        raise VictimError(f"{self.where} answered {type(answer).__name__} {str(answer)[:80]!r}; expected a gr.Label "
                          f"value, probabilities, logits or a label for one image.")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._folder.cleanup()


@VICTIM_SOURCES.register(
    "space", help="an image classifier in a Gradio app (a Hugging Face Space or a URL), via gradio_client",
    params=remote_fields(1) + (Field("api_name", "str", "/predict", "the app's endpoint: one image in, a label out"),),
    target="OWNER/NAME or URL", example="space:owner/name", flag="--victim-space")
def space_victim(target: str, *, num_classes: int | None, class_names: Sequence[str], timeout: float, retries: int,
                 backoff: float, rate: float, batch_size: int, answer_log: str, api_name: str) -> VictimHandle:
    transport = _SpaceTransport(target, api_name, timeout, num_classes, class_names)
    spec = f"space:{target}" + (f"#{api_name}" if api_name != "/predict" else "")
    return RemoteVictim(transport, spec, timeout=timeout, retries=retries, backoff=backoff, rate=rate,
                        batch_size=batch_size, answer_log=answer_log, num_classes=num_classes,
                        class_names=class_names, close=transport.close)
