"""Corruptions: deterministic, effective, growing with severity; the registered evaluation on real CIFAR-10."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from evaluation_fixtures import fft_thief_context, lp_context, run_evaluation  # noqa: F401
from PIL import Image
from scipy.ndimage import gaussian_filter

from fmsteal.errors import ConfigError
from fmsteal.evaluation.corruptions import CORRUPTIONS, SEVERITIES, corrupt, parse_severities


@pytest.fixture(scope="module")
def images(lp_context) -> torch.Tensor:
    return lp_context.test.images[:32]


def change(images: torch.Tensor, corrupted: torch.Tensor) -> float:
    return (corrupted.float() - images.float()).abs().mean().item()


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_is_deterministic_per_seed_and_changes_images(images, name):
    first = corrupt(images, name, 3, seed=0)
    assert first.dtype == torch.uint8 and first.shape == images.shape
    assert torch.equal(first, corrupt(images, name, 3, seed=0))
    assert change(images, first) > 1.0  # at least a pixel level per pixel on average
    assert change(images, corrupt(images, name, 5, seed=0)) > change(images, corrupt(images, name, 1, seed=0))


def test_noise_differs_between_seeds_and_between_severities(images):
    assert not torch.equal(corrupt(images, "gaussian_noise", 3, seed=0), corrupt(images, "gaussian_noise", 3, seed=1))
    assert not torch.equal(corrupt(images, "gaussian_noise", 1, seed=0), corrupt(images, "gaussian_noise", 2, seed=0))


def test_bad_names_and_severities_say_what_to_use(images):
    with pytest.raises(ConfigError, match="gaussian_noise"):
        corrupt(images, "fog", 3, seed=0)
    assert parse_severities(" 5,1,3,3") == [1, 3, 5]
    for text in ("", "0", "6", "1,x"):
        with pytest.raises(ConfigError, match="1 to 5"):
            parse_severities(text)


# ---- hendrycks/robustness make_cifar_c.py, as it runs on one 32 px PIL image (then np.uint8) ----

def reference(name: str, picture: Image.Image, c: float) -> np.ndarray:
    if name == "contrast":
        x = np.array(picture) / 255.0
        means = np.mean(x, axis=(0, 1), keepdims=True)
        out = np.clip((x - means) * c + means, 0, 1) * 255
    elif name == "pixelate":
        out = picture.resize((int(32 * c), int(32 * c)), Image.BOX).resize((32, 32), Image.BOX)
    elif name == "gaussian_blur":  # skimage.filters.gaussian(x, sigma=c, multichannel=True): scipy, mode nearest
        out = np.clip(gaussian_filter(np.array(picture) / 255.0, sigma=(c, c, 0), mode="nearest", truncate=4.0), 0, 1) * 255
    else:  # jpeg
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=c)
        out = Image.open(buffer)
    return np.uint8(out)


@pytest.mark.parametrize("name", ["contrast", "pixelate", "gaussian_blur", "jpeg"])
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_corruptions_match_cifar10_c_on_real_images(images, name, severity):
    assert images.shape[-1] == 32
    ours = corrupt(images, name, severity, seed=0).permute(0, 2, 3, 1).numpy()
    theirs = np.stack([reference(name, Image.fromarray(image.permute(1, 2, 0).numpy()), SEVERITIES[name][severity - 1])
                       for image in images])
    assert np.array_equal(ours, theirs)


def test_noise_is_added_on_unit_pixels_and_truncated_as_cifar10_c():
    grey = torch.full((64, 3, 32, 32), 128, dtype=torch.uint8)
    noisy = corrupt(grey, "gaussian_noise", 3, seed=0).double()
    expected = 128 - 0.5  # np.uint8 truncates: half a level down on average (rounding would keep 128)
    assert abs(noisy.mean().item() - expected) < 0.15
    assert abs(noisy.std().item() - 255 * SEVERITIES["gaussian_noise"][2]) < 0.3


def run_corruptions(ctx, **params):
    return run_evaluation("corruptions", ctx, **params)


def test_corruptions_evaluation_on_real_cifar(lp_context):
    rows = run_corruptions(lp_context, n=40, severities="1,5")
    json.dumps(rows)
    assert [(r["name"], r["severity"]) for r in rows] == [("clean", 0)] + [(n, s) for n in CORRUPTIONS for s in (1, 5)]
    for row in rows:
        assert set(row) == {"name", "severity", "victim_accuracy", "thief_accuracy", "agreement"}
        assert all(0 <= row[key] <= 1 for key in ("victim_accuracy", "thief_accuracy", "agreement"))
    assert rows == run_corruptions(lp_context, n=40, severities="1,5")  # same seed, same table
    noisy = {r["severity"]: r["victim_accuracy"] for r in rows if r["name"] == "gaussian_noise"}
    assert noisy[5] < rows[0]["victim_accuracy"]  # heavy noise costs the victim accuracy


def test_clean_row_matches_the_runs_own_predictions(lp_context, fft_thief_context):
    for ctx in (lp_context, fft_thief_context):  # one shared backbone; two separate models
        rows = run_corruptions(ctx, n=None, severities="1")
        clean = rows[0]
        assert clean["victim_accuracy"] == (ctx.victim_test == ctx.test.labels).double().mean().item()
        assert clean["agreement"] == (ctx.victim_test == ctx.thief_test).double().mean().item()
