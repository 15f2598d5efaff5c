"""The victim boundary: budget, output modes, and a thief that only ever sees answers."""

import ast
from pathlib import Path

import pytest
import torch

from fmsteal.adversary.blackbox import Answers, BlackBoxVictim, api_accuracy, api_predictions
from fmsteal.adversary.defences import DefenceContext, build_defence
from fmsteal.errors import BudgetExceeded, ConfigError, QueryRefused

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


def test_unknown_output_modes_and_bad_output_parameters_are_refused():
    with pytest.raises(ConfigError, match="Unknown output mode 'logits': use one of label, topk, probs, rounded"):
        BlackBoxVictim(constant_victim, 5, output="logits")
    with pytest.raises(ConfigError, match="top_k must be an integer 1 to 100"):
        BlackBoxVictim(constant_victim, 5, output="topk", top_k=0)


def test_no_attack_module_imports_the_victims_implementation():
    for path in (Path(__file__).resolve().parents[1] / "fmsteal" / "adversary").rglob("*.py"):
        source = path.read_text()
        imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
        assert "fmsteal.engine.victim" not in imported and not any(m.startswith("fmsteal.experiment") for m in imported if m)
        assert "TrainedVictim" not in source, path.name
        if path.name != "blackbox.py":
            assert "defence_report" not in source, f"{path.name}: the defender's statistics are the experimenter's"


def varied_victim(images: torch.Tensor) -> torch.Tensor:
    """A deterministic victim whose confidence varies with the image."""
    return (images.flatten(1)[:, :5] * 8).softmax(1)


def test_a_defended_victim_spends_the_budget_as_before_and_answers_only_the_defended_vector():
    budget, batches = 300, [images(100), images(100), images(100)]
    defence = build_defence("mad", {"epsilon": 0.5}, DefenceContext(5, 0))
    defended = BlackBoxVictim(varied_victim, 5, output="probs", budget=budget, defence=defence)
    plain = BlackBoxVictim(varied_victim, 5, output="probs", budget=budget)
    reference = build_defence("mad", {"epsilon": 0.5}, DefenceContext(5, 0))
    for batch in batches:
        answer = defended(batch)
        assert torch.equal(answer.probs, reference.answer(batch, varied_victim(batch)))
        assert torch.equal(answer.labels, answer.probs.argmax(1))
        plain(batch)
    assert defended.queries_used == plain.queries_used == budget and defended.remaining == 0
    with pytest.raises(BudgetExceeded):
        defended(images(1))
    assert {k for k in vars(defended) if not k.startswith("_")} == {k for k in vars(plain) if not k.startswith("_")}

    report = defended.defence_report()
    undefended = torch.cat([varied_victim(b) for b in batches])
    answered = torch.cat([reference.answer(b, varied_victim(b)) for b in batches])  # a fresh copy: same answers
    assert report["queries_answered"] == budget
    assert report["answers_changed"] == pytest.approx(float((answered.argmax(1) != undefended.argmax(1)).float().mean()))
    assert report["mean_l1"] == pytest.approx(float((answered - undefended).abs().sum(1).mean()), rel=1e-5)
    assert 0 < report["mean_l1"] <= 0.5 + 1e-5
    assert plain.defence_report() == {"queries_answered": budget, "answers_changed": 0.0, "mean_l1": 0.0}


def test_label_answers_carry_the_defence_and_report_its_own_results():
    defence = build_defence("watermark", {"rate": 0.2, "key": "k"}, DefenceContext(5, 0))
    victim = BlackBoxVictim(varied_victim, 5, output="label", budget=1000, defence=defence)
    batch = images(1000)
    answers = victim(batch)
    assert answers.probs is None and answers.topk is None
    report = victim.defence_report()
    assert report["mean_l1"] is None and 150 < report["marked"] < 250
    assert report["answers_changed"] == pytest.approx(report["marked"] / 1000)
    assert int((answers.labels != varied_victim(batch).argmax(1)).sum()) == report["marked"]


def test_a_blocking_detector_refuses_without_spending_the_budget():
    seed = images(1)
    near_copies = (seed + 0.01 * torch.randn(400, 3, 8, 8, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    stream = torch.cat([images(60), near_copies])  # probing around one point, as a synthetic attack does
    victim = BlackBoxVictim(constant_victim, 5, budget=1000,
                            defence=build_defence("prada", {"block": True}, DefenceContext(5, 0)))
    with pytest.raises(QueryRefused, match="flagged as a model-stealing attack after"):
        for batch in stream.split(20):
            victim(batch)
    flagged = victim.defence_report()["detected_at"]
    assert flagged is not None and victim.queries_used < flagged <= victim.queries_used + 20
    with pytest.raises(QueryRefused):
        victim(images(1))
    assert victim.defence_report()["refused"] == 21 and victim.remaining == 1000 - victim.queries_used


def test_api_accuracy_is_what_honest_clients_get_from_the_defended_api():
    test_images = images(500)
    truth = varied_victim(test_images).argmax(1)
    assert api_accuracy(varied_victim, test_images, truth) == 1.0
    assert torch.equal(api_predictions(varied_victim, test_images), truth)
    marked = api_accuracy(varied_victim, test_images, truth,
                          build_defence("watermark", {"rate": 0.1, "key": "k"}, DefenceContext(5, 0)))
    assert 0.84 < marked < 0.96
    keep = build_defence("gaussian-noise", {"sigma": 0.3, "keep_argmax": True}, DefenceContext(5, 0))
    assert api_accuracy(varied_victim, test_images, truth, keep) == 1.0


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
