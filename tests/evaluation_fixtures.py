"""A trained victim and thief on a tiny real CIFAR-10 subset, built the way the pipeline builds them,
packed into an `EvaluationContext` (cached per process, so every evaluation test shares one)."""

from __future__ import annotations

import functools
from collections.abc import Generator

import pytest


def drain(events: Generator):
    """Run a generator of events to its end and return its value."""
    while True:
        try:
            next(events)
        except StopIteration as stop:
            return stop.value


def run_evaluation(name: str, ctx, **params):
    """The registered evaluation `name` run to its end on `ctx` with `params` (validated): its result."""
    from fmsteal.evaluation.registry import EVALUATIONS

    entry = EVALUATIONS.get(name)
    return drain(entry.fn(ctx, entry.validate(params)))


@functools.cache
def build_context(archive: str, victim: str = "tf_efficientnet_lite0", victim_mode: str = "lp",
                  thief: str = "tf_efficientnet_lite0", thief_mode: str = "lp", output: str = "label", size: int = 64):
    """The pipeline's data, embedding, victim and theft steps on 60 train / 20 test images per class at `size` px."""
    import torch

    from fmsteal.adversary.blackbox import BlackBoxVictim
    from fmsteal.adversary.thief import Thief, steal
    from fmsteal.engine.data import load_splits, stratified_subset
    from fmsteal.engine.embed import Embedder
    from fmsteal.engine.recipes import recipe_for
    from fmsteal.engine.victim import train_victim
    from fmsteal.engine.zoo import get_backbone
    from fmsteal.evaluation.registry import EvaluationContext
    from fmsteal.experiment.config import ExperimentConfig
    from fmsteal.experiment.phases import split_pool

    config = ExperimentConfig(victim=victim, thief=thief, victim_mode=victim_mode, thief_mode=thief_mode, output=output,
                              budget=200, data_dir=archive, train_per_class=60, test_per_class=20, image_size=size)
    device, seed = torch.device("cpu"), config.seed
    torch.manual_seed(seed)
    splits = load_splits(config.source)
    train, test = stratified_subset(splits.train, 60), stratified_subset(splits.test, 20)
    victim_train, _, pool = split_pool(config, train)
    victim_spec, thief_spec = get_backbone(victim), get_backbone(thief)
    victim_embedder = Embedder(victim_spec, size, device) if victim_mode == "lp" else None
    thief_embedder = victim_embedder if victim_embedder and victim == thief else Embedder(thief_spec, size, device)
    for embedder in {victim_embedder, thief_embedder} - {None}:
        if embedder is victim_embedder or thief_mode == "lp":
            drain(embedder.register(train))
            drain(embedder.register(test))
    trained = drain(train_victim(victim_spec, victim_mode, victim_train, victim_embedder,
                                 recipe_for("fast", "victim", victim_mode, victim_spec.family == "scratch"), size, device, seed))
    num_classes = len(test.class_names)
    black_box = BlackBoxVictim(trained.probabilities, num_classes, output, config.budget)
    stolen = Thief(thief_spec, thief_mode, size, device, thief_embedder,
                   recipe_for("fast", "thief", thief_mode, thief_spec.family == "scratch"), num_classes, seed)
    drain(steal(black_box, pool.images, stolen, config.budget, "random", seed, lambda current: {}))
    victim_probs, thief_probs = trained.probabilities(test.images), stolen.logits(test.images).softmax(1)
    return EvaluationContext(test=test, victim=trained, thief=stolen, victim_test=victim_probs.argmax(1),
                             thief_test=thief_probs.argmax(1), victim_probs=victim_probs, thief_probs=thief_probs,
                             pool=pool, output=output, queries_spent=black_box.queries_used, num_classes=num_classes,
                             device=device, seed=seed)


@pytest.fixture(scope="session")
def lp_context(cifar_mini):
    """Lite0 LP victim and Lite0 LP thief sharing one embedder, as the pipeline does for one backbone."""
    return build_context(str(cifar_mini))


@pytest.fixture(scope="session")
def fft_thief_context(cifar_mini):
    """Lite0 LP victim and a fully trained scratch-CNN thief at its native 32 px: the FFT paths (pixel model,
    surrogate training)."""
    return build_context(str(cifar_mini), thief="scratch_cnn", thief_mode="fft", output="probs", size=32)
