"""`fmsteal.attack` on victims defined here, and `fmsteal.run` built on it (one attack code path)."""

from __future__ import annotations

import pytest
import torch

import fmsteal
from engine_fixtures import run_to_card
from fmsteal.adversary.blackbox import BlackBoxVictim
from fmsteal.engine.data import load_splits, stratified_subset
from fmsteal.errors import ConfigError
from fmsteal.experiment import attack as attack_module

OPTIONS = dict(thief="tf_efficientnet_lite0", image_size=64, device="cpu")


@pytest.fixture(scope="module")
def images(cifar_mini):
    """(pool, test): 300 real CIFAR-10 train images to query, 100 test images to score on."""
    splits = load_splits(str(cifar_mini))
    return stratified_subset(splits.train, 30), stratified_subset(splits.test, 10)


class ColourModel:
    """A victim that is no part of fmsteal: logits from mean colour; counts every image it is shown."""

    def __init__(self) -> None:
        self.seen = 0
        self.weights = torch.linspace(-1, 1, 30).reshape(3, 10)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.float32 and 0 <= float(images.min()) and float(images.max()) <= 1
        self.seen += len(images)
        return images.mean(dim=(2, 3)) @ self.weights


def test_a_callable_victim_is_stolen_with_exact_query_accounting(images):
    pool, test = images
    victim = ColourModel()
    events = list(fmsteal.attack(victim, pool=pool, test=test, budget=150, **OPTIONS))
    result = events[-1]
    card = result["card"]
    assert victim.seen == 150 + 100  # the budget, then the test images once (a local victim is not probed)
    assert card["queries_spent"] == 150 and card["evaluation_queries"] == 100 == card["test_size"]
    checkpoints = [e for e in events if e["kind"] == "checkpoint"]
    assert [c["queries"] for c in checkpoints] == [p["queries"] for p in card["curve"]] and checkpoints[-1]["queries"] == 150
    victim_labels = ((test.images.float() / 255).mean(dim=(2, 3)) @ victim.weights).argmax(1)
    assert card["agreement"] == pytest.approx(float((result["test_predictions"] == victim_labels).float().mean()))
    assert torch.equal(result["thief"].logits(test.images).argmax(1), result["test_predictions"])


def test_the_attack_states_its_estimate_before_it_embeds_and_again_once_the_victim_has_answered(images):
    from fmsteal.experiment.attack_estimate import thief_estimate

    pool, test = images
    events = list(fmsteal.attack(ColourModel(), pool=pool, test=test, budget=150, **OPTIONS))
    card = events[-1]["card"]
    messages = [e.get("message", "") for e in events if e["kind"] in ("log", "phase")]
    first = next(i for i, m in enumerate(messages) if m.startswith("Estimated time for the thief"))
    assert first < next(i for i, m in enumerate(messages) if "features of the pool" in m)
    assert "victim's time to answer 250 images (150 queries, 100 test images)" in messages[first]
    assert any(m.startswith("The victim answered 100 test images in") for m in messages)
    estimate = card["estimate"]
    priced = thief_estimate(thief=OPTIONS["thief"], mode="lp", size=64, device="cpu", preset="fast", strategy="random",
                            budget=150, n_pool=300, n_test=100, n_embedded=250, n_asked=100)
    assert estimate["phases"] == priced["phases"] and estimate["victim_images"] == 250
    assert estimate["victim_seconds_per_image"] > 0
    wider = thief_estimate(thief=OPTIONS["thief"], mode="lp", size=64, device="cpu", preset="fast", strategy="random",
                           budget=150, n_pool=300, n_test=100, n_embedded=400, n_asked=100)
    assert wider["phases"]["embed"] > priced["phases"]["embed"] and wider["phases"]["steal"] == priced["phases"]["steal"]
    fft = thief_estimate(thief="scratch_cnn", mode="fft", size=32, device="cpu", preset="fast", strategy="random",
                         budget=150, n_pool=300, n_test=100, n_embedded=0, n_asked=0)
    assert set(fft["phases"]) == {"steal"} and fft["phases"]["steal"] > 0 and fft["message"].endswith("150 images (its queries).")


def test_a_random_thief_embeds_only_what_it_sends_and_max_test_caps_the_evaluation_queries(images, tmp_path,
                                                                                          monkeypatch):
    from fmsteal.adversary.thief import random_order
    from fmsteal.engine.embed import Embedder
    from fmsteal.engine.zoo import get_backbone

    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path))  # no feature of these images cached yet
    pool, test = images
    victim = ColourModel()
    result = list(fmsteal.attack(victim, pool=pool, test=test, budget=150, seed=5, max_test=40, **OPTIONS))[-1]
    card = result["card"]
    assert victim.seen == 150 + 40 and card["evaluation_queries"] == 40 == card["test_size"]
    assert card["backbone_images_forwarded"] == 150 + 40  # not the 300 pool images: 150 will never be sent
    other = list(fmsteal.attack(ColourModel(), pool=pool, test=test, budget=150, seed=6, max_test=40, **OPTIONS))[-1]

    def used(seed: int) -> tuple[set, set]:  # the pool images a seed sends, the test images it scores on
        scored = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:40]
        return set(random_order(len(pool), seed)[0][:150].tolist()), set(scored.tolist())

    (sent, scored), (sent_again, scored_again) = used(5), used(6)
    assert 0 < other["card"]["backbone_images_forwarded"] == len(sent_again - sent) + len(scored_again - scored) < 190
    whole = Embedder(get_backbone(OPTIONS["thief"]), OPTIONS["image_size"], torch.device("cpu"))
    for part in (pool, test):
        list(whole.register(part))
    same = list(fmsteal.attack(ColourModel(), pool=pool, test=test, budget=150, seed=5, max_test=40,
                               embedder=whole, **OPTIONS))[-1]
    assert torch.equal(same["test_predictions"], result["test_predictions"]) and same["card"]["curve"] == card["curve"]
    with pytest.raises(ConfigError, match="max_test"):
        list(fmsteal.attack(victim, pool=pool, test=test, budget=10, max_test=0, **OPTIONS))


def test_a_black_box_is_used_as_set_and_needs_the_reference_labels(images):
    pool, test = images
    victim = ColourModel()
    black_box = BlackBoxVictim(victim, 10, "probs", budget=120)
    with pytest.raises(ConfigError, match="reference="):
        next(iter(fmsteal.attack(black_box, pool=pool, test=test, budget=100, **OPTIONS)))
    with pytest.raises(ConfigError, match="has left"):
        next(iter(fmsteal.attack(black_box, pool=pool, test=test, budget=150, reference=torch.zeros(100), **OPTIONS)))
    reference = victim(test.images.float() / 255).argmax(1)
    victim.seen = 0
    card = list(fmsteal.attack(black_box, pool=pool, test=test, budget=100, reference=reference, **OPTIONS))[-1]["card"]
    assert victim.seen == 100 == black_box.queries_used == card["queries_spent"] and card["evaluation_queries"] == 0
    assert card["config"]["output"] == "probs"  # the black box's answers, not the default label
    with pytest.raises(ConfigError, match="100 test images"):
        list(fmsteal.attack(victim, pool=pool, test=test, budget=10, reference=reference[:5], **OPTIONS))


def test_a_run_steals_through_fmsteal_attack(tiny_config, monkeypatch):
    calls, original = [], attack_module.attack

    def spied(*args, **kwargs):
        calls.append(None)
        for event in original(*args, **kwargs):
            if event["kind"] == "result":
                calls[-1] = event["card"]
            yield event

    monkeypatch.setattr(attack_module, "attack", spied)
    card, events = run_to_card(tiny_config(budget=200, output="topk"))
    assert len(calls) == 1 and isinstance(calls[0], dict)  # one attack, and it ran to its result
    assert calls[0]["curve"] == card["curve"] and calls[0]["agreement"] == card["agreement"]
    assert calls[0]["queries_spent"] == card["queries_spent"] == 200 and calls[0]["config"]["output"] == "topk"
    assert [e["phase"] for e in events if e["kind"] == "phase"] == ["data", "embed", "victim", "steal", "evaluate", "card"]


def test_defaults_are_the_declared_fields_own_in_attack_its_help_and_the_layers_below():
    import inspect
    import os
    import re
    import subprocess
    import sys

    from fmsteal.adversary.defences import plan_defence
    from fmsteal.experiment.config import field_named

    for function in (fmsteal.attack, BlackBoxVictim.__init__, plan_defence):
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.default is not inspect.Parameter.empty and name in ("budget", "output", "top_k", "decimals",
                                                                             "thief", "strategy", "seed", "device",
                                                                             "preset", "thief_mode", "image_size"):
                assert parameter.default == field_named(name).default, f"{function.__qualname__}({name}=...)"
    shown = subprocess.run([sys.executable, "-m", "fmsteal", "attack", "--help"], capture_output=True, text=True,
                           check=True, env={**os.environ, "COLUMNS": "250"}).stdout
    assert re.search(r"--budget BUDGET .*; default (\d+)\)", shown).group(1) == str(
        inspect.signature(fmsteal.attack).parameters["budget"].default)


def test_the_attack_command_without_a_budget_spends_the_declared_default(cifar_mini, tmp_path):
    """What runs is what --help says: 5,000 queries do not fit the 3,000-image pool, and the message says so."""
    import subprocess
    import sys

    (tmp_path / "colour_model.py").write_text("def predict(images):\n    return images.mean((2, 3))\n")
    done = subprocess.run([sys.executable, "-m", "fmsteal", "attack", "--victim-api", "colour_model:predict",
                           "--test", str(cifar_mini), "--out", str(tmp_path / "runs")], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 2
    assert "The budget (5,000 queries) is larger than the query pool (3,000 images)" in done.stderr


def test_the_card_records_the_victims_options_but_no_header_values():
    from fmsteal.experiment.attack import _recorded

    recorded = _recorded({"mean": "0.5,0.5,0.5", "std": "0.25,0.25,0.25", "image_size": 64,
                          "header": "Authorization: Bearer s3cret; X-Team: red"})
    assert recorded["mean"] == "0.5,0.5,0.5" and recorded["std"] == "0.25,0.25,0.25" and recorded["image_size"] == 64
    assert set(recorded["header"]) == {"Authorization", "X-Team"}
    assert all(value.startswith("sha256:") for value in recorded["header"].values())
    assert "s3cret" not in str(recorded) and _recorded(None) == {}
    other = _recorded({"header": "Authorization: Bearer other; X-Team: red"})["header"]
    assert other["X-Team"] == recorded["header"]["X-Team"] and other["Authorization"] != recorded["header"]["Authorization"]


def test_one_source_named_as_pool_and_test_is_decoded_once(cifar_mini, monkeypatch):
    import fmsteal.engine.data as data

    def no_second_decode(source):
        raise AssertionError(f"{source} decoded again as a pool")

    monkeypatch.setattr(data, "load_pool", no_second_decode)
    card = list(fmsteal.attack(ColourModel(), pool=str(cifar_mini), test=str(cifar_mini), budget=50, max_test=20,
                               **OPTIONS))[-1]["card"]
    assert card["pool_size"] == len(data.load_splits(str(cifar_mini)).train) and card["queries_spent"] == 50
