"""The defences inside the black box: each one's defining property and its validation (PRADA: test_prada.py)."""

import math
import subprocess
import sys

import pytest
import torch

from fmsteal.adversary.defences import DEFENCES, DefenceContext, build_defence, plan_defence
from fmsteal.adversary.defences.mad import mad_reference, random_head_surrogate
from fmsteal.adversary.defences.mad_angular import mad_perturb
from fmsteal.adversary.defences.watermark import binomial_log10_tail, verify_watermark
from fmsteal.errors import ConfigError

K = 10


def random_probs(n: int, seed: int = 0, sharpness: float = 3.0) -> torch.Tensor:
    """Rows of varied confidence, including near-ties and near-one-hot rows."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.rand(n, 1, generator=generator) * sharpness * 2
    return (torch.randn(n, K, generator=generator) * scale).softmax(1)


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def defend(name: str, probs: torch.Tensor, images: torch.Tensor | None = None, seed: int = 0, **params) -> torch.Tensor:
    defence = build_defence(name, params, DefenceContext(K, seed))
    return defence.answer(random_images(len(probs)) if images is None else images, probs)


def assert_probability_vectors(out: torch.Tensor) -> None:
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out >= 0).all() and (out <= 1).all()
    assert torch.allclose(out.sum(1), torch.ones(len(out)), atol=1e-5)


def test_importing_the_registries_and_validating_imports_no_torch():
    code = ("import sys; from fmsteal.adversary.outputs import OUTPUT_MODES; "
            "from fmsteal.adversary.defences import DEFENCES, plan_defence; "
            "assert len(DEFENCES.names()) == 12 and 'label' in OUTPUT_MODES; "
            "plan_defence('mad', {'epsilon': '0.5'}, 'probs'); plan_defence('topk', {'top_k': 2}, 'probs'); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name, params", [
    ("gaussian-noise", {"sigma": 0.5, "keep_argmax": True}),
    ("gaussian-noise", {"sigma": 5.0, "keep_argmax": True}),
    ("mad", {"epsilon": 2.0, "keep_argmax": True}),
    ("mad", {"epsilon": 0.5, "keep_argmax": True}),
    ("mad-angular", {"epsilon": 2.0, "keep_argmax": True}),
    ("mad-angular", {"epsilon": 0.5, "keep_argmax": True}),
    ("none", {}), ("top1", {}), ("topk", {}), ("rounding", {}), ("prada", {}),
])
def test_argmax_preserving_defences_never_change_the_top1(name, params):
    probs = torch.cat([random_probs(3000), torch.eye(K), torch.full((5, K), 1 / K)])
    out = defend(name, probs, **params)
    assert torch.equal(out.argmax(1), probs.argmax(1))
    assert_probability_vectors(out)


def test_the_same_defences_without_keep_argmax_do_change_labels():
    probs = random_probs(2000)
    assert (defend("gaussian-noise", probs, sigma=0.5).argmax(1) != probs.argmax(1)).float().mean() > 0.2
    assert (defend("mad", probs, epsilon=2.0).argmax(1) != probs.argmax(1)).float().mean() > 0.5


@pytest.mark.parametrize("name, params", [
    ("gaussian-noise", {"sigma": 0.05}), ("gaussian-noise", {"sigma": 3.0}),
    ("reverse-sigmoid", {}), ("reverse-sigmoid", {"beta": 10.0, "gamma": 10.0}),
    ("reverse-sigmoid", {"beta": 0.5, "gamma": 0.01}), ("adaptive-misinformation-reversed", {}),
])
def test_perturbing_defences_answer_probability_vectors(name, params):
    probs = torch.cat([random_probs(2000), torch.eye(K)])
    out = defend(name, probs, **params)
    assert_probability_vectors(out)
    assert (out - probs).abs().sum(1).mean() > 1e-3  # and they do perturb


def test_reverse_sigmoid_follows_lee_et_al():
    """y = p - beta (sigmoid(gamma log(p / (1 - p))) - 1/2), renormalised: checked on one row by hand."""
    p = torch.tensor([[0.7, 0.2, 0.1]])
    shifted = [q - 1.0 * (1 / (1 + math.exp(-0.1 * math.log(q / (1 - q)))) - 0.5) for q in p[0].tolist()]
    expected = torch.tensor([shifted]) / sum(shifted)
    assert torch.allclose(defend("reverse-sigmoid", p, images=random_images(1)), expected, atol=1e-6)


def test_gaussian_noise_with_sigma_zero_is_the_identity_and_is_seeded():
    probs = random_probs(500)
    assert torch.allclose(defend("gaussian-noise", probs, sigma=0.0), probs, atol=1e-6)
    assert torch.equal(defend("gaussian-noise", probs, seed=3), defend("gaussian-noise", probs, seed=3))
    assert not torch.equal(defend("gaussian-noise", probs, seed=3), defend("gaussian-noise", probs, seed=4))


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("keep_argmax", [False, True])
@pytest.mark.parametrize("name", ["mad", "mad-angular"])
def test_mad_stays_within_its_l1_budget(name, epsilon, keep_argmax):
    probs = torch.cat([random_probs(2000), torch.eye(K)])
    out = defend(name, probs, epsilon=epsilon, keep_argmax=keep_argmax)
    assert_probability_vectors(out)
    assert (out - probs).abs().sum(1).max() <= epsilon + 1e-5
    if epsilon == 2.0 and not keep_argmax:  # the whole budget reaches a vertex: the answer is one-hot
        assert torch.allclose(out.max(1).values, torch.ones(len(out)))


def test_the_angular_mad_deviates_the_gradient_at_least_as_much_as_the_reference_mad():
    """The angle between y~ - p and y - p (the thief's last-layer gradients) beats the reference's answer, the
    step toward the least likely class (one of the angular variant's candidates)."""
    probs, surrogate = random_probs(1000, seed=1), random_probs(1000, seed=2, sharpness=0.5)
    out = mad_perturb(probs, surrogate, 0.5, keep_argmax=False)
    naive = mad_reference(probs, 0.5, keep_argmax=False)

    def cosine(answer):
        return torch.nn.functional.cosine_similarity(answer - surrogate, probs - surrogate, dim=1)

    assert (cosine(out) <= cosine(naive) + 1e-5).all()
    assert cosine(out).mean() < 0.9


def test_the_angular_mad_uses_the_defenders_surrogate():
    probs, images = random_probs(200), random_images(200)
    uniform = build_defence("mad-angular", {"epsilon": 0.5}, DefenceContext(K, 0)).answer(images, probs)
    surrogate = random_head_surrogate(lambda x: x.flatten(1)[:, :48] * 20, 48, K, seed=1)
    predicted = surrogate(images)
    assert torch.allclose(predicted.sum(1), torch.ones(200)) and torch.equal(predicted, surrogate(images))
    assert not torch.equal(predicted, random_head_surrogate(lambda x: x.flatten(1)[:, :48] * 20, 48, K, seed=2)(images))
    guided = build_defence("mad-angular", {"epsilon": 0.5}, DefenceContext(K, 0, surrogate=surrogate)).answer(images, probs)
    assert not torch.allclose(guided, uniform) and (guided - probs).abs().sum(1).max() <= 0.5 + 1e-5


CONFIDENT = torch.tensor([[0.97] + [0.03 / (K - 1)] * (K - 1)])
UNSURE = torch.tensor([[0.2, 0.15, 0.15, 0.1, 0.1, 0.1, 0.1, 0.05, 0.04, 0.01]])


def test_reversed_misinformation_misleads_only_unconfident_queries():
    defence = build_defence("adaptive-misinformation-reversed", {"tau": 0.5}, DefenceContext(K, 0))
    assert defence.params["nu"] == 50.0  # its own default, softer than the reference's
    assert torch.allclose(defence.answer(random_images(1), CONFIDENT), CONFIDENT, atol=1e-6)
    assert defence.answer(random_images(1), UNSURE).argmax(1).item() == 9  # the victim's least likely class
    assert defence.report() == {"out_of_distribution": 1, "out_of_distribution_fraction": 0.5}


def test_adaptive_misinformation_answers_unconfident_queries_with_its_misinformation_function():
    misleading = torch.tensor([[0.01] * 3 + [0.91] + [0.01] * 6])
    context = DefenceContext(K, 0, misinformation=lambda images: misleading.expand(len(images), K))
    defence = build_defence("adaptive-misinformation", {"tau": 0.5}, context)
    assert defence.params["nu"] == 10_000.0  # the reference's
    assert torch.equal(defence.answer(random_images(1), CONFIDENT), CONFIDENT)  # 1 / (1 + e^4700) is 0 in float32
    assert torch.allclose(defence.answer(random_images(1), UNSURE), misleading)
    assert defence.report() == {"out_of_distribution": 1, "out_of_distribution_fraction": 0.5,
                                "misinformation_agreement": 0.0}


def test_adaptive_misinformation_without_a_trained_function_says_what_to_use():
    with pytest.raises(ConfigError, match="adaptive-misinformation-reversed"):
        build_defence("adaptive-misinformation", {}, DefenceContext(K, 0))


def test_watermark_is_deterministic_per_key_and_marks_about_rate_of_the_queries():
    images, probs = random_images(4000), random_probs(4000)
    first = build_defence("watermark", {"rate": 0.05, "key": "owner"}, DefenceContext(K, 0))
    out = first.answer(images, probs)
    marked = (out.argmax(1) != probs.argmax(1))
    n, rate = len(probs), 0.05
    assert abs(int(marked.sum()) - n * rate) < 4 * math.sqrt(n * rate * (1 - rate))
    assert first.report()["marked"] == int(marked.sum())
    assert torch.equal(out.sort(1).values, probs.sort(1).values)  # a swap: the answer looks like any other
    again = build_defence("watermark", {"rate": 0.05, "key": "owner"}, DefenceContext(K, 7))
    assert torch.equal(again.answer(images, probs), out)  # same key, same answers (the seed plays no part)
    as_uint8 = build_defence("watermark", {"rate": 0.05, "key": "owner"}, DefenceContext(K, 0))
    assert torch.equal(as_uint8.answer((images * 255).round().byte(), probs), out)
    other = build_defence("watermark", {"rate": 0.05, "key": "someone else"}, DefenceContext(K, 0))
    assert not torch.equal(other.answer(images, probs).argmax(1) != probs.argmax(1), marked)
    marked_images, marked_labels = first.marks()
    assert marked_images.dtype == torch.uint8 and torch.equal(marked_labels, out.argmax(1)[marked])


def test_verify_watermark_convicts_a_model_that_learnt_the_marks_and_clears_one_that_did_not():
    images, probs = random_images(2000), random_probs(2000)
    defence = build_defence("watermark", {"rate": 0.05, "key": "owner"}, DefenceContext(K, 0))
    marked = defence.answer(images, probs).argmax(1) != probs.argmax(1)
    marked_images, marked_labels = defence.marks()
    lookup = {tuple(img.flatten()[:16].tolist()): int(label) for img, label in zip(marked_images, marked_labels)}
    copycat = verify_watermark(lambda x: torch.tensor([lookup[tuple(i.flatten()[:16].tolist())] for i in x]),
                               marked_images, marked_labels, K)
    assert copycat["matches"] == copycat["marks"] > 50 and copycat["log10_p_value"] < -40
    innocent = verify_watermark(lambda x: probs.argmax(1)[marked], marked_images, marked_labels, K)  # the victim's own labels
    assert innocent["matches"] == 0 and innocent["p_value"] == 1.0


def test_binomial_tail_matches_scipy():
    from scipy.stats import binom

    for successes, trials, chance in [(5, 20, 0.1), (1, 50, 1 / 9), (30, 40, 0.5), (0, 10, 0.3), (12, 12, 0.2)]:
        expected = binom.sf(successes - 1, trials, chance)
        assert math.isclose(10 ** binomial_log10_tail(successes, trials, chance), expected, rel_tol=1e-9)
    assert binomial_log10_tail(900, 1000, 1 / 9) < -700  # far below a float's range, still finite


def test_defence_input_errors_name_the_valid_choices():
    with pytest.raises(ConfigError, match="Unknown defence 'madness': use one of none, top1, .*prada"):
        plan_defence("madness", {}, "probs")
    with pytest.raises(ConfigError, match="mad has no parameter sigma; its parameters: epsilon .*keep_argmax"):
        plan_defence("mad", {"sigma": 1}, "probs")
    with pytest.raises(ConfigError, match="epsilon must be a number 0 to 2"):
        plan_defence("mad", {"epsilon": 3}, "probs")
    with pytest.raises(ConfigError, match="keep_argmax must be true or false"):
        plan_defence("mad", {"keep_argmax": "maybe"}, "probs")
    with pytest.raises(ConfigError, match="Unknown output mode 'logits': use one of label, topk, probs, rounded"):
        plan_defence("none", {}, "logits")
    with pytest.raises(ConfigError, match="never changes the top-1 .* gaussian-noise, reverse-sigmoid, mad"):
        plan_defence("mad", {"keep_argmax": "true"}, "label")
    with pytest.raises(ConfigError, match="use it with output 'probs', or use output 'topk' with defence 'none'"):
        plan_defence("topk", {}, "label")


def test_plans_coerce_text_and_map_truncations_to_output_modes():
    plan = plan_defence("gaussian-noise", {"sigma": "0.3", "keep_argmax": "yes"}, "rounded", decimals=3)
    assert (plan.params, plan.output, plan.decimals) == ({"sigma": 0.3, "keep_argmax": True}, "rounded", 3)
    topk = plan_defence("topk", {"top_k": "2"}, "probs", top_k=5)
    assert (topk.output, topk.top_k) == ("topk", 2)
    assert plan_defence("top1", {}, "probs").output == "label"
    assert plan_defence("rounding", {}, "probs").decimals == 2
    assert plan_defence("watermark", {}, "label").output == "label"
    for entry in DEFENCES:  # every parameter is declared with a default inside its range
        entry.validate({})
        assert all(f.help for f in entry.params)
