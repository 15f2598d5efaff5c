"""Fixtures for the victim-source tests: real CIFAR-10 images and a real classifier to serve and export."""

from __future__ import annotations

import io
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="session")
def cifar_images(cifar_mini: Path) -> torch.Tensor:
    """The first 40 test images of the real CIFAR-10 archive, uint8 n x 3 x 32 x 32."""
    pictures = []
    with tarfile.open(cifar_mini) as archive:
        for member in archive:
            if member.isfile() and member.name.startswith("test/") and member.name.endswith(".jpg"):
                picture = Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB")
                pictures.append(torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1))
                if len(pictures) == 40:
                    break
    return torch.stack(pictures)


class Classifier(torch.nn.Module):
    """The offline EfficientNet-Lite0 (real ImageNet weights) with a seeded 10-class linear head;
    takes [0, 1] images, normalises inside, returns logits."""

    def __init__(self) -> None:
        super().__init__()
        from fmsteal.engine.zoo import get_backbone, load_backbone

        spec = get_backbone("tf_efficientnet_lite0")
        self.backbone = load_backbone(spec, 32)
        torch.manual_seed(0)
        self.head = torch.nn.Linear(spec.feature_dim, len(CLASSES))
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone((images - self.mean) / self.std))


@pytest.fixture(scope="session")
def classifier() -> Classifier:
    return Classifier().eval()


@pytest.fixture(scope="session")
def exported(classifier: Classifier, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The classifier as an ONNX file (fixed 48 px input, any batch) and a TorchScript file."""
    folder = tmp_path_factory.mktemp("exported")
    example = torch.rand(2, 3, 48, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit and the TorchScript-based ONNX exporter are deprecated
        torch.onnx.export(classifier, (example,), folder / "model.onnx", input_names=["images"],
                          dynamic_axes={"images": {0: "batch"}}, dynamo=False)
        torch.jit.trace(classifier, example, check_trace=False).save(folder / "model.pt")
    return {"onnx": folder / "model.onnx", "torchscript": folder / "model.pt"}
