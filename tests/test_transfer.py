"""Adversarial transfer: attacks in pixel space, their bounds, and the registered stage on real CIFAR-10."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import threading

import pytest
import torch
from evaluation_fixtures import fft_thief_context, lp_context  # noqa: F401
from PIL import Image

from fmsteal.cancel import cancel_scope
from fmsteal.engine.data import ImageSet
from fmsteal.errors import Cancelled, ConfigError
from fmsteal.evaluation.attacks import fgsm, pgd, quantize, sign_noise
from fmsteal.evaluation.pixel_models import pixel_model
from fmsteal.evaluation.registry import EVALUATIONS
from fmsteal.evaluation.transfer import ATTACKS, correct_images

EPS = 8 / 255


def run_transfer(ctx, **params):
    entry = EVALUATIONS.get("transfer")
    events: list[dict] = []
    generator = entry.fn(ctx, entry.validate(params))
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return stop.value, events


@pytest.mark.parametrize("role", ["victim", "thief"])
def test_pixel_model_matches_the_engine_logits(lp_context, fft_thief_context, role):
    for ctx in (lp_context, fft_thief_context):
        model = getattr(ctx, role)
        images = ctx.test.images[:16]
        with torch.no_grad():
            pixels = pixel_model(model)(images.float() / 255)
        assert torch.allclose(pixels, model.logits(images), atol=1e-3), f"{model.spec.name} {model.mode}"


def thief_correct(ctx, count=12):
    """uint8 test images the thief classifies correctly, their labels, and the thief's pixel model."""
    model = pixel_model(ctx.thief)
    right = torch.nonzero(ctx.thief_test == ctx.test.labels).flatten()[:count]
    return ctx.test.images[right], ctx.test.labels[right], model


def own_accuracy(model, images, labels):
    with torch.no_grad():
        return (model(images.float() / 255).argmax(1) == labels).double().mean().item()


def test_pgd_lowers_the_attacked_models_own_accuracy(lp_context, fft_thief_context):
    # the tiny scratch CNN barely learns from 180 answers (it favours a few classes): it need only drop
    for ctx, ceiling in ((lp_context, 0.25), (fft_thief_context, 0.75)):
        clean, labels, model = thief_correct(ctx)
        assert own_accuracy(model, clean, labels) == 1.0
        x = clean.float() / 255
        after_pgd = quantize(pgd(model, x, labels, EPS, 2 / 255, 5, torch.Generator().manual_seed(0)), clean, EPS)
        after_fgsm = quantize(fgsm(model, x, labels, EPS), clean, EPS)
        assert own_accuracy(model, after_pgd, labels) <= ceiling
        assert own_accuracy(model, after_fgsm, labels) < 1.0


def test_perturbations_respect_epsilon_and_the_pixel_range(lp_context):
    clean, labels, model = thief_correct(lp_context, 6)
    clean = clean.clone()
    clean[:, :, :4] = 0  # pixels at the edges of the range, where the ball leaves [0, 1]
    clean[:, :, -4:] = 255
    x = clean.float() / 255
    for eps in (EPS, 0.03):  # 0.03 is not a whole number of pixel levels
        for adversarial in (fgsm(model, x, labels, eps), pgd(model, x, labels, eps, 2 / 255, 3),
                            pgd(model, x, labels, eps, 2 / 255, 3, torch.Generator().manual_seed(1)),
                            sign_noise(x, eps, torch.Generator().manual_seed(2))):
            assert adversarial.min() >= 0 and adversarial.max() <= 1
            assert (adversarial - x).abs().max() <= eps + 1e-6
            sent = quantize(adversarial, clean, eps)
            assert sent.dtype == torch.uint8
            assert (sent.int() - clean.int()).abs().max() <= int(eps * 255)


def test_noise_moves_every_pixel_by_the_full_epsilon_both_ways():
    clean = torch.full((4, 3, 8, 8), 128, dtype=torch.uint8)
    sent = quantize(sign_noise(clean.float() / 255, EPS, torch.Generator().manual_seed(0)), clean, EPS)
    delta = sent.int() - clean.int()
    assert set(delta.unique().tolist()) == {-8, 8}


def test_correct_images_are_ones_the_victim_gets_right(lp_context):
    chosen = correct_images(lp_context, 10)
    assert len(chosen) == 10 and len(set(chosen.tolist())) == 10
    assert torch.equal(lp_context.victim_test[chosen], lp_context.test.labels[chosen])
    assert torch.equal(chosen, correct_images(lp_context, 10))


def test_transfer_stage_on_real_cifar(lp_context):
    thief_state = {k: v.clone() for k, v in lp_context.thief.network.state_dict().items()}
    result, events = run_transfer(lp_context, n=8, steps=3)
    json.dumps(result)
    assert set(ATTACKS) <= set(result) and result["n"] == 8 and result["steps"] == 3 and result["eps"] == EPS
    for name in ATTACKS:
        assert 0 <= result[name] <= 1 and (result[name] * 8).is_integer()
    assert result["victim_whitebox_pgd"] >= max(0.5, result["noise"])  # the defender's ceiling
    assert result["independent_labels"] == lp_context.queries_spent
    assert result["gradient_passes"] == 8 * (3 * 3 + 2)
    assert all(0 <= v <= 1 for v in result["clean_accuracy"].values())
    progress = [e for e in events if e["kind"] == "progress"]
    assert all(e["phase"] == "evaluate" for e in progress)
    assert progress[-1]["done"] == progress[-1]["total"] == len(ATTACKS)
    assert 1 <= len(result["examples"]) <= 4
    names = lp_context.test.class_names
    for example in result["examples"]:
        clean = Image.open(io.BytesIO(base64.b64decode(example["clean_png"].split(",", 1)[1])))
        adversarial = Image.open(io.BytesIO(base64.b64decode(example["adversarial_png"].split(",", 1)[1])))
        assert clean.size == adversarial.size == tuple(lp_context.test.images.shape[-2:][::-1])
        assert example["victim_before"] == example["true_class"] in names
        assert example["fooled"] == (example["victim_after"] != example["true_class"])
    for key, value in lp_context.thief.network.state_dict().items():  # evaluation never changes the thief
        assert torch.equal(value, thief_state[key])


def test_transfer_with_a_fully_trained_thief(fft_thief_context):
    result, _ = run_transfer(fft_thief_context, n=4, steps=2)
    assert result["n"] == 4 and all(0 <= result[name] <= 1 for name in ATTACKS)


def test_a_pool_of_other_classes_has_no_independent_baseline(lp_context):
    pool = lp_context.pool
    other = dataclasses.replace(lp_context, pool=ImageSet(pool.images, pool.labels, [f"c{i}" for i in range(10)]))
    result, _ = run_transfer(other, n=4, steps=1)
    assert result["independent_fgsm"] is None and result["independent_pgd"] is None
    assert result["independent_labels"] == 0 and result["clean_accuracy"]["independent"] is None
    assert result["gradient_passes"] == 4 * (1 + 1 + 1) and 0 <= result["thief_pgd"] <= 1


def test_transfer_is_cancelled_within_a_step(lp_context):
    cancel = threading.Event()
    entry = EVALUATIONS.get("transfer")
    with cancel_scope(cancel):
        generator = entry.fn(lp_context, entry.validate({"n": 8, "steps": 200}))
        while not next(generator)["message"].startswith("Adversarial transfer: thief fgsm"):
            pass
        cancel.set()  # the next attack is a 200-step PGD: it must stop at its first step
        with pytest.raises(Cancelled):
            next(generator)


def test_transfer_parameters_are_validated():
    entry = EVALUATIONS.get("transfer")
    with pytest.raises(ConfigError, match="eps"):
        entry.validate({"eps": 0})
    with pytest.raises(ConfigError, match="steps"):
        entry.validate({"steps": 0})
