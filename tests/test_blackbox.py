"""The victim boundary: budget, output modes, and a thief that only ever sees answers."""

import ast
from pathlib import Path

import pytest
import torch

from fmsteal.adversary.blackbox import Answers, BlackBoxVictim
from fmsteal.errors import BudgetExceeded

FIXED_PROBS = torch.tensor([0.05, 0.6, 0.2, 0.1, 0.05])


def constant_victim(images: torch.Tensor) -> torch.Tensor:
    return FIXED_PROBS.expand(len(images), -1).clone()


def images(n: int) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8)


def test_every_image_is_one_query_and_the_budget_is_enforced():
    victim = BlackBoxVictim(constant_victim, 5, budget=10)
    victim(images(4))
    victim(images(6))
    assert victim.queries_used == 10 and victim.remaining == 0
    with pytest.raises(BudgetExceeded, match="budget exhausted: 1 more images asked, 0 of 10"):
        victim(images(1))
    assert victim.queries_used == 10


def test_a_batch_past_the_budget_is_refused_whole():
    victim = BlackBoxVictim(constant_victim, 5, budget=5)
    with pytest.raises(BudgetExceeded):
        victim(images(6))
    assert victim.queries_used == 0


def test_label_mode_leaks_no_probabilities_or_logits():
    answers = BlackBoxVictim(constant_victim, 5, output="label")(images(3))
    assert answers.topk is None and answers.probs is None
    assert answers.labels.dtype == torch.long and answers.labels.tolist() == [1, 1, 1]
    assert not any(isinstance(v, torch.Tensor) and v.is_floating_point() for v in vars(answers).values())


def test_topk_probs_and_rounded_modes():
    topk = BlackBoxVictim(constant_victim, 5, output="topk", top_k=3)(images(2))
    assert topk.topk.tolist() == [[1, 2, 3]] * 2 and topk.probs is None
    probs = BlackBoxVictim(constant_victim, 5, output="probs")(images(2))
    assert torch.allclose(probs.probs.sum(1), torch.ones(2))
    rounded = BlackBoxVictim(lambda x: torch.full((len(x), 3), 1 / 3), 3, output="rounded", decimals=1)(images(2))
    assert torch.equal(rounded.probs, torch.full((2, 3), 0.3))


def test_images_must_be_a_batch_of_rgb_images():
    with pytest.raises(ValueError, match="n x 3 x H x W"):
        BlackBoxVictim(constant_victim, 5)(torch.rand(3, 8, 8))


def test_no_attack_module_imports_the_victims_implementation():
    for path in (Path(__file__).resolve().parents[1] / "fmsteal" / "adversary").rglob("*.py"):
        source = path.read_text()
        imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
        assert "fmsteal.engine.victim" not in imported and not any(m.startswith("fmsteal.experiment") for m in imported if m)
        assert "TrainedVictim" not in source, path.name


def test_steal_reaches_a_custom_callable_victim_only_through_its_answers(tiny_config):
    """A stand-in 'remote API' victim: the thief spends exactly the budget through it."""
    from fmsteal.engine.data import load_splits, stratified_subset
    from fmsteal.engine.embed import Embedder
    from fmsteal.engine.recipes import FAST_LINEAR
    from fmsteal.adversary.thief import Thief, curve_checkpoints, steal
    from fmsteal.engine.zoo import get_backbone

    config = tiny_config()
    pool = stratified_subset(load_splits(config.data_dir).train, 20)
    seen = []

    class RemoteAPI:
        output, num_classes = "label", 10

        def __call__(self, batch: torch.Tensor) -> Answers:
            seen.append(batch.clone())
            return Answers(labels=(batch.mean((1, 2, 3)) * 10).long().clamp(0, 9))

    spec = get_backbone("tf_efficientnet_lite0")
    thief = Thief(spec, "lp", 64, torch.device("cpu"), Embedder(spec, 64, torch.device("cpu")), FAST_LINEAR, 10, 0)
    events = list(steal(RemoteAPI(), pool.images, thief, 120, "random", 0, lambda t: {"agreement": 0.0}))
    checkpoints = [e["queries"] for e in events if e["kind"] == "checkpoint"]
    assert checkpoints == curve_checkpoints(120)
    assert sum(len(b) for b in seen) == 120
    sent = torch.cat(seen)
    assert sent.dtype == torch.float32 and 0 <= sent.min() and sent.max() <= 1
    assert len({tuple(row.flatten()[:64].tolist()) for row in sent}) == 120  # no image asked twice
