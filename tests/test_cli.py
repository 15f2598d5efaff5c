"""`python -m fmsteal run`: a run card on disk and a summary on screen."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fmsteal.evaluation.registry import EVALUATIONS

REPO = Path(__file__).resolve().parents[1]


def fmsteal(*args: str, env_cache: Path) -> subprocess.CompletedProcess:
    env = {"FMSTEAL_CACHE": str(env_cache), "PATH": "/usr/bin:/bin", "HOME": str(env_cache)}
    return subprocess.run([sys.executable, "-m", "fmsteal", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_run_writes_a_card_and_prints_a_summary(readme_cli_run):
    done, checkout = readme_cli_run  # the README's example: 500 label queries, every default evaluation
    assert done.returncode == 0, done.stderr
    cards = list((checkout / "runs").glob("*.json"))
    assert len(cards) == 1
    card = json.loads(cards[0].read_text())
    assert {"agreement", "curve", "confusion", "seed"} <= set(card)
    assert card["config"]["output"] == "label" and card["queries_spent"] == 500
    assert f"agreement {card['agreement']:.2%}" in done.stdout and f"runs/{cards[0].name}" in done.stdout
    transfer = card["transfer"]  # on by default: what the stolen copy lets the thief do
    for key in ("thief_fgsm", "thief_pgd", "independent_fgsm", "independent_pgd", "noise", "victim_whitebox_pgd"):
        assert 0 <= transfer[key] <= 1
    assert transfer["eps"] == 8 / 255 and transfer["n"] > 0
    assert transfer["steps"] == EVALUATIONS.get("transfer").defaults()["steps"]  # the declared default ran
    assert transfer["noise"] <= transfer["victim_whitebox_pgd"]  # the floor below the ceiling
    assert {row["name"] for row in card["corruptions"]} >= {"clean", "gaussian_noise", "jpeg", "contrast"}
    assert 0 <= card["fidelity"]["topk_agreement"] <= 1 and card["fidelity"]["kl_victim_thief"] >= 0
    assert "evaluate" in card["estimate"]["phases"] and card["estimate"]["phases"]["evaluate"] > 1


def test_no_transfer_and_no_corruptions_leave_those_evaluations_out(cifar_mini, monkeypatch):
    from fmsteal.cli import run as cli_run
    from fmsteal.cli.main import main

    configs = []  # the config the command would run (what a config's evaluations put in a card is tested elsewhere)
    monkeypatch.setattr(cli_run, "run_main", lambda args: configs.append(cli_run.config_from_args(args)) or 0)
    assert main(["run", "--victim", "tf_efficientnet_lite0", "--thief", "tf_efficientnet_lite0", "--data-dir",
                 str(cifar_mini), "--no-transfer", "--no-corruptions"]) == 0
    assert configs[0].evaluations == "fidelity,examples" and configs[0].evaluation_names() == ["fidelity", "examples"]


def test_default_in_a_list_of_evaluations_adds_every_default_one():
    from fmsteal.errors import ConfigError
    from fmsteal.experiment.pipeline import ExperimentConfig

    defaults = ExperimentConfig().evaluation_names()
    assert "transfer-sweep" not in defaults  # off by default
    both = ExperimentConfig(evaluations="transfer-sweep, default").evaluation_names()
    assert [name for name in both if name != "transfer-sweep"] == defaults and len(both) == len(defaults) + 1
    with pytest.raises(ConfigError, match="bogus"):
        ExperimentConfig(evaluations="default,bogus")


def test_bad_arguments_exit_with_a_message_not_a_traceback(tmp_path):
    done = fmsteal("run", "--victim", "tf_efficientnet_lite0", "--thief", "tf_efficientnet_lite0",
                   "--data-dir", str(tmp_path / "missing"), env_cache=tmp_path)
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr


def imported_after(commands: str, module: str) -> bool:
    """Whether `module` is imported once `commands` (Python, `main` and contextlib/io/sys at hand) have run in a
    fresh interpreter."""
    code = (f"import contextlib, io, sys; from fmsteal.cli.main import main\n{commands}\n"
            f"print({module!r} in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


def test_the_listings_answer_without_importing_torch():
    assert not imported_after("for command in ('zoo', 'defences'):\n"
                              "    with contextlib.redirect_stdout(io.StringIO()) as out: assert main([command]) == 0\n"
                              "    assert len(out.getvalue().splitlines()) > 5", "torch")
    # `fmsteal zoo` took ~10 s when it built every command's parser


def test_help_and_bad_options_answer_before_the_pipelines_imports():
    """`--help` and a refused option need no training code: torch.optim pulls in torch._dynamo (seconds)."""
    assert not imported_after("for argv in (['run', '--help'], ['attack', '--help']):\n"
                              "    try:\n"
                              "        with contextlib.redirect_stdout(io.StringIO()): main(argv)\n"
                              "    except SystemExit: pass\n"
                              "with contextlib.redirect_stderr(io.StringIO()) as err:\n"
                              "    code = main(['run', '--victim', 'tf_efficientnet_lite0', '--thief', 'nope'])\n"
                              "assert code == 2 and 'nope' in err.getvalue(), err.getvalue()", "torch._dynamo")
