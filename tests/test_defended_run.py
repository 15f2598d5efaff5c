"""A defended experiment end to end on real CIFAR-10, and bad defence input refused by the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine_fixtures import run_to_card

from fmsteal.cli.run import summary
from fmsteal.service import live

REPO = Path(__file__).resolve().parents[1]


def test_a_watermarked_victim_reports_both_sides_and_convicts_its_thief(tiny_config):
    card, _ = run_to_card(tiny_config(defence="watermark", defence_params="rate=0.2", evaluations="none", seed=41))
    defence = card["defence"]
    assert defence["name"] == "watermark" and defence["params"] == {"rate": 0.2, "key": "fmsteal-watermark"}
    assert card["queries_spent"] == 200 and defence["queries_answered"] == 200
    assert 0.1 < defence["marked_fraction"] < 0.3 and defence["answers_changed"] == pytest.approx(defence["marked_fraction"])
    assert defence["api_accuracy"] < defence["undefended_accuracy"]  # honest users get the marks too
    assert 0 <= defence["agreement_with_api"] <= 1 and "agreement" in card  # agreement stays vs the undefended victim
    assert defence["watermark_thief"]["p_value"] < 1e-3 < defence["watermark_innocent"]["p_value"]


def test_an_argmax_preserving_defence_costs_honest_users_nothing(tiny_config):
    card, _ = run_to_card(tiny_config(defence="gaussian-noise", defence_params="sigma=0.2,keep_argmax=true",
                                      output="probs", evaluations="none", seed=42))
    defence = card["defence"]
    assert defence["answers_changed"] == 0 and defence["api_accuracy"] == defence["undefended_accuracy"]
    assert defence["mean_l1"] > 0
    thieves = defence["thieves"]  # a thief who knows the noise fits through it; one asks again and averages
    assert set(thieves) == {"distil", "argmax", "simulate", "repeat"}
    assert len({t["agreement"] for t in thieves.values()}) > 1
    assert defence["worst_case_agreement"] == max(t["agreement"] for t in thieves.values())
    assert defence["queries_answered"] == card["queries_spent"]  # the repeat thief's asks are another client's
    paragraph = live.defence_summary(card)
    assert f"fits its model through it, on {100 * thieves['simulate']['agreement']:.1f}%" in paragraph
    assert f"learns the mean answer, on {100 * thieves['repeat']['agreement']:.1f}%" in paragraph


def test_a_defended_card_holds_the_argmax_thief_which_sees_through_a_kept_argmax(tiny_config):
    defended, _ = run_to_card(tiny_config(defence="mad", defence_params="epsilon=0.5,keep_argmax=true",
                                          output="probs", evaluations="none", seed=43))
    label_only, _ = run_to_card(tiny_config(output="label", evaluations="none", seed=43))
    defence = defended["defence"]
    thieves = defence["thieves"]
    assert set(thieves) == {"distil", "argmax"} and thieves["distil"]["agreement"] == defended["agreement"]
    assert defence["answers_changed"] == 0 and defence["mean_l1"] > 0  # poisoned probabilities, every top class kept
    # so the argmax thief learns exactly what a label-only client of the undefended victim learns
    assert thieves["argmax"] == {key: label_only[key] for key in ("agreement", "thief_accuracy", "macro_f1")}
    assert defence["worst_case_agreement"] == max(t["agreement"] for t in thieves.values())
    assert thieves[defence["strongest_thief"]]["agreement"] == defence["worst_case_agreement"]
    printed = summary(defended, Path("card.json"))  # the command line's summary: the defender's worst case
    assert f"the strongest thief ({defence['strongest_thief']}) agrees {defence['worst_case_agreement']:.2%}" in printed
    summary_text = live.defence_summary(defended)  # the page's paragraph names both thieves
    assert (f"top class agrees on {100 * thieves['argmax']['agreement']:.1f}%" in summary_text
            or thieves["argmax"]["agreement"] == defended["agreement"])


def test_a_thief_that_knows_an_invertible_defence_undoes_it(tiny_config):
    """MAD without keep_argmax moves each answer toward its least likely class by a step the thief can solve for:
    the invert thief recovers the victim's probabilities and learns what an undefended probability API teaches."""
    defended, _ = run_to_card(tiny_config(defence="mad", defence_params="epsilon=1.0", output="probs",
                                          evaluations="none", seed=44))
    plain, _ = run_to_card(tiny_config(output="probs", evaluations="none", seed=44))
    thieves = defended["defence"]["thieves"]
    assert set(thieves) == {"distil", "argmax", "invert"}
    assert defended["defence"]["answers_changed"] > 0.9  # at epsilon 1 nearly every top class is the least likely one
    assert thieves["argmax"]["agreement"] < 0.3 and thieves["invert"]["agreement"] >= plain["agreement"] - 0.05
    assert defended["defence"]["strongest_thief"] == "invert"


@pytest.mark.parametrize("args, message", [
    (["--defence", "bogus"], "defence must be one of none, top1"),
    (["--defence", "mad", "--defence-param", "epsilon=9"], "epsilon must be a number 0 to 2"),
    (["--defence", "mad", "--defence-param", "eps=0.1"], "mad has no parameter eps"),
    (["--defence", "top1"], "use it with output 'probs'"),
])
def test_bad_defence_input_is_refused_with_one_message(tmp_path, capsys, args, message):
    from fmsteal.cli.main import main

    try:  # in this process (a traceback would fail the test); the command's own exit is tested in test_cli
        code = main(["run", "--victim", "tf_efficientnet_lite0", "--thief", "tf_efficientnet_lite0", *args,
                     "--out", str(tmp_path)])
    except SystemExit as exit:
        code = exit.code
    assert code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_defences_command_lists_every_defence_with_its_ranges():
    done = subprocess.run([sys.executable, "-m", "fmsteal", "defences"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0
    for name in ("none", "gaussian-noise", "reverse-sigmoid", "mad", "mad-angular", "adaptive-misinformation", "watermark",
                 "prada"):
        assert f"\n{name} " in "\n" + done.stdout
    assert "sigma: a number 0 to 10, default 0.1" in done.stdout
