"""The launched app through gradio_client: a real offline job, visitors who cannot touch each other's
runs, cancel and queue, bad inputs, failures, public mode's refusal of server paths and hostile uploads."""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client

from app_fixtures import memory_mb
from engine_fixtures import zeros_tar_gz

LITE0 = "tf_efficientnet_lite0"


class Visitor:
    """An API client with its own owner token (the page keeps one per browser)."""

    def __init__(self, url: str) -> None:
        self.client = Client(url, verbose=False)
        self.token = secrets.token_urlsafe(18)

    def start(self, data_dir, victim=LITE0, thief=LITE0, budget=150, victim_mode="lp", thief_mode="lp", seed=0,
              image_size=64, evaluations="examples", **more) -> dict:
        where = {} if data_dir is None else {"data_dir": str(data_dir)}
        return self.client.predict(self.token, victim=victim, thief=thief, budget=budget, victim_mode=victim_mode,
                                   thief_mode=thief_mode, seed=seed, image_size=image_size, evaluations=evaluations,
                                   **where, **more, api_name="/start")

    def job(self, job_id: str) -> dict:
        return self.client.predict(job_id, self.token, api_name="/job")

    def cancel(self, job_id: str) -> str:
        return self.client.predict(job_id, self.token, api_name="/cancel")

    def skip(self, job_id: str) -> str:
        return self.client.predict(job_id, self.token, api_name="/skip")

    def wait(self, job_id: str, statuses=("done", "failed", "cancelled", "lost"), timeout: float = 300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.job(job_id)
            if state["status"] in statuses:
                return state
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} still {state['status']} after {timeout} s")


@pytest.fixture(scope="module")
def visitor(app_url) -> Visitor:
    return Visitor(app_url)


def test_offline_job_runs_to_completion(visitor, cifar_subset):
    started = time.time()
    reply = visitor.start(cifar_subset, seed=11)
    job_id = reply["job_id"]
    assert job_id and ("Queued" in reply["status"] or "Running" in reply["status"])
    first_point, state = None, visitor.job(job_id)
    while time.time() - started < 300 and state["status"] not in ("done", "failed"):
        state = visitor.job(job_id)
        if first_point is None and state["checkpoints"]:
            first_point = time.time() - started
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
    assert set(card["estimate"]["phases"]) == {"data", "embed", "victim", "steal", "evaluate", "card"}
    assert len(card["examples"]) > 0 and "transfer" not in card  # only the evaluations asked for
    assert "/" not in state["config"]["data_dir"]  # the server's paths never reach a client
    assert "card_path" not in state

    again = visitor.start(cifar_subset, seed=11)
    assert again["job_id"] == job_id and again["status"].startswith("**Done**")


def test_another_visitor_with_the_same_settings_gets_a_job_of_their_own(app_url, visitor, cifar_subset):
    other = Visitor(app_url)
    mine = visitor.start(cifar_subset, seed=11)["job_id"]  # finished above
    theirs = other.start(cifar_subset, seed=11)["job_id"]
    assert theirs and theirs != mine
    assert other.job(mine)["status"] == "lost" and other.job(mine)["card"] is None  # cannot see mine
    assert "Cancelled" not in other.cancel(mine)  # cannot cancel mine
    assert visitor.job(mine)["status"] == "done"
    assert other.wait(theirs)["status"] == "done"


def test_cancel_frees_the_worker_for_the_queued_job(app_url, cifar_subset):
    first, second = Visitor(app_url), Visitor(app_url)
    slow = first.start(cifar_subset, victim_mode="fft", thief_mode="fft", budget=150, seed=12, image_size=96)["job_id"]
    first.wait(slow, ("running",), timeout=120)
    reply = second.start(cifar_subset, seed=13)
    queued = reply["job_id"]
    assert "Queued" in reply["status"] and "position 1" in reply["status"]
    assert second.job(queued)["position"] == 1
    pressed = time.time()
    first.cancel(slow)
    assert first.wait(slow, timeout=10)["status"] == "cancelled"
    second.wait(queued, ("running", "done"), timeout=60)
    print(f"cancel to next job running: {time.time() - pressed:.2f} s")
    assert second.wait(queued)["status"] == "done"


def test_a_run_whose_evaluations_are_skipped_ends_with_its_result_and_says_what_was_left_out(app_url, cifar_subset):
    owner, stranger = Visitor(app_url), Visitor(app_url)
    job_id = owner.start(cifar_subset, seed=14, evaluations="fidelity,transfer")["job_id"]
    assert "Running" not in stranger.skip(job_id) and stranger.job(job_id)["status"] == "lost"  # not theirs
    owner.skip(job_id)
    state = owner.wait(job_id)
    assert state["status"] == "done" and state["skipping"]
    card = state["card"]
    assert sorted(card["evaluations_skipped"]) == ["fidelity", "transfer"]  # in the server's registry order
    assert "transfer" not in card and "fidelity" not in card and card["agreement"] > 0.3  # the result itself is whole


@pytest.mark.parametrize("case, expected", [
    ("budget 0", "budget must be an integer 1 to"),
    ("seed 2**80", "seed must be an integer 0 to"),
    ("image size 500", "500 px is more than 2x"),
    ("missing folder", "does not exist"),
    ("the root folder", "train/<class>"),
    ("hub weights", "cannot be reached"),
])
def test_bad_inputs_get_a_clear_message(visitor, cifar_subset, tmp_path, case, expected):
    args = {"budget 0": dict(budget=0), "seed 2**80": dict(seed=2**80), "image size 500": dict(image_size=500),
            "missing folder": dict(data_dir=tmp_path / "nowhere"), "the root folder": dict(data_dir="/"),
            "hub weights": dict(victim="vit_large_patch16_224")}[case]
    values = {"data_dir": cifar_subset, **args}
    started = time.time()
    reply = visitor.start(**values)
    assert reply["job_id"] == "" and expected in reply["status"] and expected in reply["message"]
    assert time.time() - started < 30  # answered within seconds, even for "/"
    options = {"victim": LITE0, "thief": LITE0, "budget": 150, "image_size": 64, **values}
    estimate = visitor.client.predict(**{**options, "data_dir": str(options["data_dir"])}, api_name="/estimate")
    assert expected in estimate


def test_a_failing_job_shows_its_error_and_the_app_keeps_serving(visitor, cifar_subset, tmp_path):
    broken = tmp_path / "broken"
    picture = next((cifar_subset / "test" / "cat").iterdir()).read_bytes()
    for split, classes in (("train", ("cat", "dog")), ("test", ("cat", "ship"))):
        for name in classes:
            (broken / split / name).mkdir(parents=True)
            for i in range(3):
                (broken / split / name / f"{i}.jpg").write_bytes(picture)
    job_id = visitor.start(broken, budget=2)["job_id"]
    state = visitor.wait(job_id)
    assert state["status"] == "failed" and "same classes" in state["error"]
    assert visitor.wait(visitor.start(cifar_subset, budget=100, seed=14)["job_id"])["status"] == "done"


def test_public_mode_reads_no_server_paths(public_app_url, cifar_subset):
    stranger = Visitor(public_app_url)
    with pytest.raises(TypeError, match="data_dir"):  # the public API has no such parameter
        stranger.start(cifar_subset)
    reply = stranger.start(None, query_pool="/etc")
    assert reply["job_id"] == "" and "reads no server folders" in reply["status"]
    reply = stranger.start(None, budget=50_000)
    assert reply["job_id"] == "" and "at most 20,000 queries per run" in reply["status"]


def _upload(url: str, payload: bytes, name: str = "images.zip") -> tuple[int, list[str]]:
    """POST one file to the app's upload endpoint, as the page does: the HTTP status and where Gradio stored it."""
    boundary = "fmsteal-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, []


def page_config(url: str) -> dict:
    with urllib.request.urlopen(f"{url}config", timeout=30) as reply:
        return json.load(reply)


def page_event(url: str, config: dict, elem_id: str, event: str, data: list, session: str) -> list:
    """Trigger the page's `event` listener on the component `elem_id` as the browser does, in `session`: its outputs."""
    field = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    listener = next(d["id"] for d in config["dependencies"] if [field, event] in d["targets"])
    join = json.dumps({"data": data, "fn_index": listener, "trigger_id": field, "session_hash": session,
                       "event_data": None})
    urllib.request.urlopen(urllib.request.Request(f"{url}gradio_api/queue/join", data=join.encode(), method="POST",
                                                  headers={"Content-Type": "application/json"}), timeout=30).close()
    with urllib.request.urlopen(f"{url}gradio_api/queue/data?session_hash={session}", timeout=300) as events:
        for line in events:
            message = json.loads(line[5:]) if line.startswith(b"data:") else {}
            if message.get("msg") == "process_completed":
                assert message["success"], message
                return message["output"]["data"]
    raise AssertionError(f"the {elem_id} {event} listener never completed")


def _take_upload(url: str, stored: str, name: str) -> str:
    """Hand a stored upload to the app's upload listener, as the page does when a file is dropped: the note shown."""
    file = {"path": stored, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
    return page_event(url, page_config(url), "upload", "upload", [file], secrets.token_hex(8))[1]


def test_an_upload_over_the_cap_is_refused_before_it_is_stored(public_app_url, public_gradio_temp):
    from app_fixtures import PUBLIC_UPLOAD_MAX_MB

    def stored() -> list[int]:
        return sorted(p.stat().st_size for p in public_gradio_temp.rglob("*") if p.is_file())

    before = stored()
    assert _upload(public_app_url, b"\0" * 2**20)[0] == 200  # under the cap: Gradio keeps it for the app to check
    assert stored() != before and 2**20 in stored()
    kept = stored()
    assert _upload(public_app_url, b"\0" * (PUBLIC_UPLOAD_MAX_MB + 1) * 2**20)[0] == 413
    assert stored() == kept  # nothing of the refused upload is left on disk


def _hostile_upload(cifar_subset: Path, path: Path, case: str) -> tuple[Path, str]:
    """(an archive of `case`, the refusal it must get); all but "zeros" add real CIFAR-10 images."""
    if case == "zeros":  # 400 MB of zeros named .jpg, 0.4 MB compressed
        return zeros_tar_gz(path, "d/train/cat/zero.jpg", 400 * 2**20), "more than 8 MB of images"
    good = {f"d/{split}/{label}/{i}.jpg": picture.read_bytes() for split in ("train", "test")
            for label in ("cat", "dog") for i, picture in enumerate(sorted((cifar_subset / split / label).iterdir())[:3])}
    jpeg = good["d/train/cat/0.jpg"]
    extra, refusal = {
        "header": ({"d/train/cat/zero.jpg": bytes(7 * 2**20)}, "zero.jpg is not an image that can be read (no image "
                                                                 "header in its first 1 MB)"),
        "skipped": ({"d/notes.bin": bytes(9 * 2**20)}, "more than 8 MB once decompressed"),
        "truncated": ({"d/train/cat/cut.jpg": jpeg[:-100]}, "d/train/cat/cut.jpg is truncated"),
    }[case]
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {**good, **extra}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path, refusal


@pytest.mark.parametrize("case", ["zeros", "header", "skipped", "truncated"])
def test_a_public_app_refuses_hostile_uploads_in_bounded_memory_and_keeps_none(public_app, public_gradio_temp,
                                                                             public_uploads, cifar_subset, tmp_path,
                                                                             case):
    url, pid = public_app
    archive, refusal = _hostile_upload(cifar_subset, tmp_path / f"{case}.tar.gz", case)
    status, (stored,) = _upload(url, archive.read_bytes(), archive.name)
    assert status == 200 and Path(stored).is_relative_to(public_gradio_temp)
    kept = {p for p in public_uploads.rglob("*") if p.is_file()}  # other visitors' (tests') uploads
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the server's peak (VmHWM) restarts from its RSS now
    idle, started = memory_mb(pid), time.monotonic()
    note = _take_upload(url, stored, archive.name)
    grown = memory_mb(pid, "VmHWM") - idle
    print(f"{case}: refused in {time.monotonic() - started:.2f} s, server peak RSS +{grown:.0f} MB")
    assert "Upload refused" in note and refusal in note and str(tmp_path) not in note
    assert grown < 200
    assert not Path(stored).exists() and not Path(stored).parent.exists()  # Gradio's copy is gone
    assert {p for p in public_uploads.rglob("*") if p.is_file()} == kept  # and nothing was kept of it
