"""The launched app through gradio_client: a real offline job, cancel and queue, bad inputs, failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from gradio_client import Client

LITE0 = "tf_efficientnet_lite0"


def options(data_dir, victim=LITE0, thief=LITE0, budget=150, victim_mode="lp", thief_mode="lp", seed=0,
            image_size=64) -> dict:
    """The API's keyword options (named as the experiment's fields; the rest take their defaults)."""
    return dict(victim=victim, thief=thief, budget=budget, data_dir=str(data_dir), victim_mode=victim_mode,
                thief_mode=thief_mode, seed=seed, image_size=image_size)


def start(client: Client, *args, **kwargs) -> tuple[str, str]:
    """(job id, status line) after starting a job through the API."""
    started = client.predict(**options(*args, **kwargs), api_name="/start")
    return started["job_id"], started["status"]


def wait(client: Client, job_id: str, statuses=("done", "failed", "cancelled"), timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.predict(job_id, api_name="/job")
        if state["status"] in statuses:
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {state['status']} after {timeout} s")


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


def test_offline_job_runs_to_completion(client, cifar_subset):
    started = time.time()
    job_id, status = start(client, cifar_subset, seed=11)
    assert job_id and ("Queued" in status or "Running" in status)
    first_point = None
    while time.time() - started < 240:
        state = client.predict(job_id, api_name="/job")
        if first_point is None and state["checkpoints"]:
            first_point = time.time() - started
        if state["status"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert state["status"] == "done", state["error"]
    print(f"first curve point after {first_point:.1f} s, done after {time.time() - started:.1f} s")
    queries = [c["queries"] for c in state["checkpoints"]]
    assert queries == sorted(queries) and queries[-1] == 150 and len(queries) >= 5
    card = state["card"]
    labels = card["confusion"]["labels"]
    assert labels == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    matrix = card["confusion"]["matrix"]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == card["test_size"] == 200
    assert sum(matrix[i][i] for i in range(10)) / 200 == pytest.approx(card["agreement"])

    status, curve, confusion, per_class, summary, card_file, curve_file, _ = client.predict(job_id, api_name="/poll")
    assert status.startswith("**Done**")
    agreement_trace = json.loads(curve["plot"])["data"][0]
    assert agreement_trace["x"] == queries
    assert agreement_trace["y"] == pytest.approx([100 * c["agreement"] for c in state["checkpoints"]])
    assert json.loads(confusion["plot"])["data"][0]["x"] == labels
    assert f"{100 * card['agreement']:.1f}% of the test images" in summary
    assert json.loads(Path(card_file["value"]).read_text())["agreement"] == card["agreement"]
    assert Path(curve_file["value"]).read_text().splitlines()[-1].startswith("150,")

    again, status = start(client, cifar_subset, seed=11)
    assert again == job_id and status.startswith("**Done**")


def test_cancel_frees_the_worker_for_the_queued_job(app_url, cifar_subset):
    first, second = Client(app_url, verbose=False), Client(app_url, verbose=False)
    slow, _ = start(first, cifar_subset, victim_mode="fft", thief_mode="fft", budget=150, seed=12, image_size=96)
    wait(first, slow, ("running",), timeout=60)
    queued, status = start(second, cifar_subset, seed=13)
    assert "Queued" in status and "position 1" in status
    assert second.predict(queued, api_name="/job")["position"] == 1
    pressed = time.time()
    assert "Cancelled" in first.predict(slow, api_name="/cancel") or wait(first, slow, timeout=5)
    assert wait(first, slow, timeout=5)["status"] == "cancelled"
    wait(second, queued, ("running", "done"), timeout=5 - (time.time() - pressed))
    print(f"cancel to next job running: {time.time() - pressed:.2f} s")
    assert wait(second, queued)["status"] == "done"


@pytest.mark.parametrize("case, expected", [
    ("budget 0", "budget must be an integer 1 to"),
    ("missing folder", "does not exist"),
    ("hub weights", "cannot be reached"),
])
def test_bad_inputs_get_a_clear_message(client, cifar_subset, tmp_path, case, expected):
    args = {"budget 0": dict(budget=0), "missing folder": dict(data_dir=tmp_path / "nowhere"),
            "hub weights": dict(victim="vit_large_patch16_224")}[case]
    values = options(**{"data_dir": cifar_subset, **args})
    assert expected in client.predict(**values, api_name="/estimate")
    started = client.predict(**values, api_name="/start")
    assert started["job_id"] == "" and expected in started["status"] and expected in started["message"]


def test_a_failing_job_shows_its_error_and_the_app_keeps_serving(client, cifar_subset, tmp_path):
    broken = tmp_path / "broken"
    picture = next((cifar_subset / "test" / "cat").iterdir()).read_bytes()
    for split, classes in (("train", ("cat", "dog")), ("test", ("cat", "ship"))):
        for name in classes:
            (broken / split / name).mkdir(parents=True)
            for i in range(3):
                (broken / split / name / f"{i}.jpg").write_bytes(picture)
    job_id, _ = start(client, broken, budget=2)
    state = wait(client, job_id)
    assert state["status"] == "failed" and "same classes" in state["error"]
    assert "same classes" in client.predict(job_id, api_name="/poll")[0]
    ok, _ = start(client, cifar_subset, budget=100, seed=14)
    assert wait(client, ok)["status"] == "done"
