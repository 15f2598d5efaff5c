"""The `file` source: an ONNX model (onnxruntime) or a TorchScript archive (`torch.jit.load`).

The model takes float32 images n x 3 x H x W and returns n x K scores (probabilities or logits) or
n labels. Images reach it in [0, 1], resized to `image_size` (default: the ONNX input's fixed size,
else as the attack has them) and normalised with `mean`/`std` when given; best export the model
with its own preprocessing inside. A user's file is never unpickled: `torch.save` pickles and
`torch.export` archives (.pt2, which torch loads with pickle) are refused with the export to use.
Export: `torch.onnx.export(model, (torch.rand(1, 3, 224, 224),), "model.onnx",
dynamic_shapes=({0: torch.export.Dim("batch")},))` or `torch.jit.trace(model, example).save("model.pt")`.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from fmsteal.errors import ConfigError
from fmsteal.fields import Field
from fmsteal.victims.handle import VictimHandle
from fmsteal.victims.sources import VICTIM_SOURCES

__all__ = ["file_format", "file_victim"]

EXPORT_HINT = ("export it with torch.onnx.export(model, example, 'model.onnx') or "
               "torch.jit.trace(model, example).save('model.pt')")


def file_format(path: Path) -> str:
    """"onnx" or "torchscript" from the file's content; ConfigError for pickles and other files."""
    if not zipfile.is_zipfile(path):
        return "onnx"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any("/code/" in name for name in names) and any(name.endswith("/constants.pkl") for name in names):
        return "torchscript"
    if any(name.endswith("/archive_format") for name in names):
        raise ConfigError(f"{path} is a torch.export archive, which torch can only load by unpickling; "
                          f"fmsteal never unpickles a user's file: {EXPORT_HINT}.")
    raise ConfigError(f"{path} is a pickled PyTorch file (torch.save), not a TorchScript archive; fmsteal never "
                      f"unpickles a user's file: {EXPORT_HINT}.")


@VICTIM_SOURCES.register(
    "file", help="an ONNX model (onnxruntime) or a TorchScript file; never unpickled",
    params=(
        Field("image_size", "int", 0, "pixels (square) the model takes; 0 = the ONNX input's fixed size, "
              "else the images as they are", minimum=0),
        Field("mean", "str", "", "per-channel mean to subtract from [0, 1] pixels, e.g. 0.485,0.456,0.406"),
        Field("std", "str", "", "per-channel std to divide by, e.g. 0.229,0.224,0.225"),
        Field("batch_size", "int", 64, "images per forward pass", minimum=1),
    ),
    target="PATH", example="file:model.onnx", flag="--victim-file")
def file_victim(target: str, *, num_classes: int | None, class_names: Sequence[str], image_size: int, mean: str,
                std: str, batch_size: int) -> VictimHandle:
    path = Path(target).expanduser()
    if not path.is_file():
        raise ConfigError(f"The victim file {path} does not exist.")
    if file_format(path) == "onnx":
        model, input_size, fixed_batch, model_classes, close = _onnx(path)
    else:
        model, input_size, fixed_batch, model_classes, close = _torchscript(path), None, None, None, None
    if model_classes is not None and num_classes not in (None, model_classes):
        raise ConfigError(f"{path} predicts {model_classes} classes, but {num_classes} are expected.")
    size = image_size or input_size
    normalise = _normaliser(_floats(mean, "mean"), _floats(std, "std"))

    def answer(images: torch.Tensor) -> object:
        if size and images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        images = normalise(images)
        if fixed_batch and len(images) < fixed_batch:  # a model exported for a fixed batch: pad, then drop
            pad = images.new_zeros(fixed_batch - len(images), *images.shape[1:])
            return model(torch.cat([images, pad]))[:len(images)]
        return model(images)

    return VictimHandle(answer, f"file:{path}", num_classes=num_classes or model_classes, class_names=class_names,
                        batch_size=fixed_batch or batch_size, close=close, fingerprint=_content_hash(path))


def _content_hash(path: Path) -> str:
    """The file's SHA-256 (16 hex): another model saved at the same path is another victim."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _onnx(path: Path) -> tuple[Callable, int | None, int | None, int | None, Callable[[], None]]:
    """(run, fixed input size, fixed batch, class count, close) of an ONNX model."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("ONNX victims need onnxruntime: pip install 'fmsteal[onnx]' (or onnxruntime).") from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise ConfigError(f"{path} is neither an ONNX model nor a TorchScript archive ({error}); "
                          f"{EXPORT_HINT}.") from None
    inputs, output = session.get_inputs(), session.get_outputs()[0]
    if len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 4:
        found = ", ".join(f"{i.name}: {i.type} {i.shape}" for i in inputs)
        raise ConfigError(f"{path} must take one float32 input n x 3 x H x W; it takes {found}.")
    batch, _, height, width = inputs[0].shape
    size = height if isinstance(height, int) and height == width else None
    fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
    classes = output.shape[-1] if len(output.shape) == 2 and isinstance(output.shape[-1], int) else None
    name = inputs[0].name

    def run(images: torch.Tensor) -> object:
        return session.run([output.name], {name: images.numpy()})[0]

    return run, size, fixed_batch, classes, lambda: None


def _torchscript(path: Path) -> Callable:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, yet its loader unpickles no code
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as error:
            raise ConfigError(f"{path} could not be loaded as TorchScript ({str(error).splitlines()[0]}); "
                              f"{EXPORT_HINT}.") from None
    module.eval()

    def run(images: torch.Tensor) -> object:
        with torch.no_grad():
            return module(images)

    return run


def _floats(text: str, name: str) -> list[float] | None:
    if not text.strip():
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{name} must be numbers separated by commas, e.g. 0.5,0.5,0.5; got {text!r}.") from None
    if len(values) not in (1, 3):
        raise ConfigError(f"{name} must have 1 or 3 values (one per channel); got {len(values)}.")
    return values


def _normaliser(mean: list[float] | None, std: list[float] | None) -> Callable[[torch.Tensor], torch.Tensor]:
    m = torch.tensor(mean or [0.0]).view(-1, 1, 1)
    s = torch.tensor(std or [1.0]).view(-1, 1, 1)
    if (s <= 0).any():
        raise ConfigError("std values must be positive.")
    return lambda images: (images - m) / s
