"""`python -m fmsteal run`: a run card on disk and a summary on screen."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fmsteal(*args: str, env_cache: Path) -> subprocess.CompletedProcess:
    env = {"FMSTEAL_CACHE": str(env_cache), "PATH": "/usr/bin:/bin", "HOME": str(env_cache)}
    return subprocess.run([sys.executable, "-m", "fmsteal", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_run_writes_a_card_and_prints_a_summary(cifar_archive, session_cache, tmp_path):
    done = fmsteal("run", "--victim", "tf_efficientnet_lite0", "--thief", "tf_efficientnet_lite0", "--budget", "200",
                   "--output", "probs", "--data-dir", str(cifar_archive), "--train-per-class", "60",
                   "--test-per-class", "20", "--image-size", "64", "--out", str(tmp_path), env_cache=session_cache)
    assert done.returncode == 0, done.stderr
    cards = list(tmp_path.glob("*.json"))
    assert len(cards) == 1
    card = json.loads(cards[0].read_text())
    assert {"agreement", "curve", "confusion", "seed"} <= set(card)
    assert card["config"]["output"] == "probs" and card["queries_spent"] == 200
    assert f"agreement {card['agreement']:.2%}" in done.stdout and str(cards[0]) in done.stdout


def test_bad_arguments_exit_with_a_message_not_a_traceback(tmp_path):
    done = fmsteal("run", "--victim", "tf_efficientnet_lite0", "--thief", "tf_efficientnet_lite0",
                   "--data-dir", str(tmp_path / "missing"), env_cache=tmp_path)
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
