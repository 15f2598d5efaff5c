"""The transfer evaluations beside the default one: an epsilon sweep read over its unsaturated budgets, and the
authors' setting (FGSM on the thief scored as adversarial fidelity), on a real tiny CIFAR-10 victim and thief."""

from __future__ import annotations

import json

import pytest
import torch
from evaluation_fixtures import lp_context, run_evaluation  # noqa: F401

from fmsteal.errors import ConfigError
from fmsteal.evaluation.attacks import fgsm
from fmsteal.evaluation.pixel_models import pixel_model
from fmsteal.evaluation.registry import EVALUATIONS
from fmsteal.evaluation.saturation import SATURATED
from fmsteal.evaluation.transfer_sweep import parse_epsilons, sweep_finding
from fmsteal.experiment.config import ExperimentConfig


def test_the_sweep_measures_every_attack_at_every_budget_and_grows_with_epsilon(lp_context):
    result = run_evaluation("transfer-sweep", lp_context, n=16, epsilons="1,4,16", steps=3)
    json.dumps(result)
    assert [row["eps"] for row in result["rows"]] == [1, 4, 16] and result["n"] == 16
    names = {"thief_fgsm", "thief_pgd", "independent_fgsm", "independent_pgd", "noise"}
    for row in result["rows"]:
        assert set(row) == names | {"eps"} and all((16 * row[name]).is_integer() for name in names)
    smallest, largest = result["rows"][0], result["rows"][-1]
    assert largest["thief_pgd"] > smallest["thief_pgd"] and largest["thief_pgd"] >= largest["noise"]
    for attack in ("fgsm", "pgd"):  # unsaturated: the budgets at which either model leaves images unfooled
        assert result["unsaturated"][attack] == [row["eps"] for row in result["rows"]
                                                 if min(row[f"thief_{attack}"], row[f"independent_{attack}"]) < SATURATED]
    columns = EVALUATIONS.get("transfer-sweep").meta["columns"](result)
    assert columns["sweep_thief_pgd_16"] == largest["thief_pgd"] and len(columns) == 15


def test_the_sweep_finding_reads_only_unsaturated_budgets():
    rows = [{"eps": 1, "thief_fgsm": 0.30, "independent_fgsm": 0.20, "thief_pgd": 0.50, "independent_pgd": 0.45,
             "noise": 0.05},
            {"eps": 8, "thief_fgsm": 0.80, "independent_fgsm": 0.70, "thief_pgd": 1.0, "independent_pgd": 1.0,
             "noise": 0.20}]
    finding = sweep_finding(rows)
    assert "FGSM: the copy's examples fool the victim +10.0 points against the independent model's at 1/255, 8/255" in finding
    assert "PGD: the copy's examples fool the victim +5.0 points" in finding and "at 1/255 (left out: 8/255" in finding
    rows[0].update(thief_pgd=0.99, independent_pgd=0.98)
    assert "PGD fools the victim from both models on nearly every image at every budget (saturated)" in sweep_finding(rows)


def test_epsilons_are_checked_before_anything_runs():
    assert parse_epsilons(" 8, 2,2,1") == [1, 2, 8]
    for bad in ("", "0", "2,x", "300"):
        with pytest.raises(ConfigError, match="epsilons .pixel levels. must be integers from 1 to 255"):
            parse_epsilons(bad)
    config = ExperimentConfig(victim="tf_efficientnet_lite0", thief="tf_efficientnet_lite0",
                              evaluations="transfer-sweep,adversarial-fidelity")
    assert config.evaluation_names() == ["transfer-sweep", "adversarial-fidelity"]
    assert "transfer-sweep" not in ExperimentConfig(victim="tf_efficientnet_lite0",
                                                    thief="tf_efficientnet_lite0").evaluation_names()


def test_the_authors_setting_scores_thief_victim_agreement_on_fgsm_images(lp_context):
    result = run_evaluation("adversarial-fidelity", lp_context, n=40)
    assert result["n"] == 40 and result["attack"] == "fgsm" and result["eps"] == pytest.approx(8 / 255)
    # recomputed here: the same seeded draw of test images, FGSM on the thief, both models on the float images
    chosen = torch.randperm(len(lp_context.test), generator=torch.Generator().manual_seed(lp_context.seed))[:40]
    thief, victim = pixel_model(lp_context.thief), pixel_model(lp_context.victim)
    x, y = lp_context.test.images[chosen].float() / 255, lp_context.test.labels[chosen]
    adversarial = fgsm(thief, x, y, 8 / 255)
    with torch.no_grad():
        by_thief, by_victim = thief(adversarial).argmax(1), victim(adversarial).argmax(1)
    assert result["adversarial_fidelity"] == pytest.approx((by_thief == by_victim).double().mean().item())
    assert result["victim_fooled"] == pytest.approx((by_victim != y).double().mean().item())
    assert result["thief_fooled"] > 0.5  # white-box on the thief itself
    pgd = run_evaluation("adversarial-fidelity", lp_context, n=8, attack="pgd")
    assert pgd["attack"] == "pgd" and 0 <= pgd["adversarial_fidelity"] <= 1
    with pytest.raises(ConfigError, match="fgsm or pgd"):
        run_evaluation("adversarial-fidelity", lp_context, n=8, attack="cw")


def test_a_run_with_both_settings_prices_them_and_states_their_findings(tiny_config, tmp_path):
    from engine_fixtures import run_to_card

    from fmsteal.cli.run import summary
    from fmsteal.experiment.estimate import estimate

    config = tiny_config(budget=100, image_size=32, evaluations="transfer-sweep,adversarial-fidelity")
    priced = estimate(config, device="cpu")["phases"]["evaluate"]
    assert priced > estimate(tiny_config(budget=100, image_size=32), device="cpu")["phases"]["evaluate"]
    card, _ = run_to_card(config)
    assert [row["eps"] for row in card["transfer-sweep"]["rows"]] == [1, 2, 4, 8]
    assert card["adversarial-fidelity"]["n"] == card["test_size"]  # 200 test images: fewer than 1,024
    printed = summary(card, tmp_path / "card.json")
    for name in ("transfer-sweep", "adversarial-fidelity"):
        assert f"{name}: {card[name]['finding']}" in printed
