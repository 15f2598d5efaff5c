"""Remote victims against real servers: examples/serve_victim.py over HTTP and a local Gradio app.

The served model is the real EfficientNet-Lite0 with a linear head; the images are real CIFAR-10.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fmsteal.victims import VictimError, callable_victim, open_victim
from victim_fixtures import CLASSES, cifar_images, classifier  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
FAST = {"backoff": 0.01, "timeout": 10.0}
PROBES = 8  # probe images asked once per handle that keeps an answer log, in one request of up to 32


def _counts(answered=0, sent=0, replayed=0, logged=0, probes=PROBES, failed_attempts=0) -> dict:
    return dict(answered=answered, sent=sent, replayed=replayed, logged=logged, probes=probes,
                failed_attempts=failed_attempts)


def _load_example():
    spec = importlib.util.spec_from_file_location("serve_victim", REPO / "examples" / "serve_victim.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["serve_victim"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


serve_victim = _load_example()


@pytest.fixture(scope="module")
def local(classifier):
    """The served model as a local handle: the answers a remote victim must reproduce."""
    return callable_victim(lambda images: classifier(images), "the served model")


@pytest.fixture
def server(local):
    """Starts the example server; `server(failures=[...], answer=...)`; closed after the test."""
    started = []

    def start(failures=(), answer="probabilities", slow=5.0):
        started.append(serve_victim.start_server(local, answer=answer, failures=[
            serve_victim.Failure.parse(f) for f in failures], slow=slow))
        return started[-1]

    yield start
    for running in started:
        running.close()


def _url_victim(running, log: Path | str, **params):
    return open_victim(f"url:{running.url}", {**FAST, "answer_log": str(log), **params}, num_classes=10)


def test_an_http_victim_answers_as_the_served_model_with_exact_query_accounting(server, local, cifar_images, tmp_path):
    running = server()
    with _url_victim(running, tmp_path / "answers.jsonl", batch_size=8) as victim:
        probs = victim.probabilities(cifar_images[:30])
        assert victim.accounting() == _counts(answered=30, sent=30, logged=30)
    assert running.stats() == {"requests": 1 + 4, "images": PROBES + 30}  # the probes, then 8 + 8 + 8 + 6
    assert torch.allclose(probs, local.probabilities(cifar_images[:30]), atol=1e-6)  # PNG is lossless


def test_an_interrupted_attack_resumes_from_the_answer_log_without_paying_twice(server, local, cifar_images, tmp_path):
    log = tmp_path / "answers.jsonl"
    failing = server(failures=["http500@4+"])  # after the probes and two batches, every request fails
    victim = _url_victim(failing, log, batch_size=8, retries=1)
    with pytest.raises(VictimError) as caught:
        victim.probabilities(cifar_images[:30])
    message = str(caught.value)
    assert "HTTP 500" in message and "failed 2 time(s) in a row" in message
    assert f"The 16 answers received so far are kept in {log}" in message
    assert victim.accounting()["logged"] == 16 and victim.failed_attempts == 2
    victim.close()
    assert failing.stats() == {"requests": 5, "images": PROBES + 16}

    failing.failures.clear()  # the victim recovers; the attack is run again from the start
    with _url_victim(failing, log, batch_size=8) as resumed:
        assert resumed.num_classes == 10
        probs = resumed.probabilities(cifar_images[:30])
        assert resumed.accounting() == _counts(answered=30, sent=14, replayed=16, logged=30)
    assert failing.stats() == {"requests": 8, "images": 2 * PROBES + 30}  # each image paid for once; probes each run
    assert torch.allclose(probs, local.probabilities(cifar_images[:30]), atol=1e-6)
    lines = log.read_text().splitlines()
    assert len(lines) == 31 and json.loads(lines[0])["victim"] == f"url:{failing.url}"


def test_a_black_box_over_a_remote_victim_stops_at_the_budget_before_asking(server, cifar_images, tmp_path):
    from fmsteal.adversary.blackbox import BlackBoxVictim
    from fmsteal.errors import BudgetExceeded

    running = server()
    with _url_victim(running, tmp_path / "answers.jsonl") as victim:
        black_box = BlackBoxVictim(victim.probabilities, victim.num_classes, "label", budget=10)
        answers = black_box(cifar_images[:8].float() / 255)
        with pytest.raises(BudgetExceeded):
            black_box(cifar_images[8:11].float() / 255)
        assert answers.labels.shape == (8,) and black_box.queries_used == 8
    assert running.stats()["images"] == PROBES + 8  # the probes are no part of the budget


def test_an_image_asked_twice_is_sent_once(server, cifar_images, tmp_path):
    running = server()
    images = torch.cat([cifar_images[:5], cifar_images[:5], cifar_images[2:3]])
    with _url_victim(running, tmp_path / "answers.jsonl") as victim:
        probs = victim.probabilities(images)
        assert torch.equal(probs[:5], probs[5:10]) and torch.equal(probs[2], probs[10])
        assert victim.accounting() == _counts(answered=11, sent=5, logged=5)
    assert running.stats()["images"] == PROBES + 5


def test_a_transient_failure_is_retried_with_backoff(server, cifar_images, tmp_path):
    running = server(failures=["http500@1", "drop@2"])
    with _url_victim(running, "off", retries=2, backoff=0.2) as victim:
        started = time.monotonic()
        victim.probabilities(cifar_images[:4])
        assert time.monotonic() - started >= 0.2 + 0.4  # waited 1x then 2x the backoff
        assert victim.accounting() == _counts(answered=4, sent=4, probes=0, failed_attempts=2)  # no log: no probes
        assert [(r["attempt"], r["of"], r["wait_s"]) for r in victim.retried] == [(1, 2, 0.2), (2, 2, 0.4)]
        assert "HTTP 500" in victim.retried[0]["error"]
        assert re.search("connection .* failed|cannot reach", victim.retried[1]["error"])
    assert running.stats() == {"requests": 3, "images": 4}


def test_http_429_waits_as_long_as_retry_after_asks(server, cifar_images):
    running = server(failures=["http429@1"])
    with _url_victim(running, "off", retries=1, backoff=0.01) as victim:
        started = time.monotonic()
        victim.probabilities(cifar_images[:2])
        assert time.monotonic() - started >= 1.0 and victim.failed_attempts == 1
    assert running.stats() == {"requests": 2, "images": 2}


def test_a_cancelled_run_stops_during_the_backoff(server, cifar_images):
    import threading

    from fmsteal.cancel import cancel_scope
    from fmsteal.errors import Cancelled

    running = server(failures=["http500@1+"])
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with _url_victim(running, "off", retries=3, backoff=30) as victim, cancel_scope(cancel):
        started = time.monotonic()
        with pytest.raises(Cancelled):
            victim.probabilities(cifar_images[:2])
        assert time.monotonic() - started < 5
    assert running.stats()["requests"] == 1


def test_the_rate_limit_spaces_requests(server, cifar_images, tmp_path):
    running = server()
    with _url_victim(running, "off", rate=40, batch_size=8) as victim:
        started = time.monotonic()
        victim.probabilities(cifar_images[:24])
        assert time.monotonic() - started >= 16 / 40 - 0.02  # 3 batches of 8 at 40 images/s
    assert running.stats()["requests"] == 3


@pytest.mark.parametrize("kind, message", [
    ("http500", "HTTP 500"),
    ("html", "HTML instead of JSON"),
    ("badjson", "not JSON"),
    ("nan", "NaN or infinite scores for 1 of 8 images"),
    ("shape", "7 rows for 8 images"),
    ("classes", "11 classes, but 10 were expected"),
    ("timeout", "no answer from .* within 3 s"),
    ("drop", "connection .* failed|cannot reach"),
])
def test_a_bad_answer_gives_one_clear_error_and_keeps_earlier_answers(server, cifar_images, tmp_path, kind, message):
    running = server(failures=[f"{kind}@3"], slow=6.0)  # a healthy answer takes far less than 3 s, even under load
    log = tmp_path / "answers.jsonl"
    victim = open_victim(f"url:{running.url}", {**FAST, "answer_log": str(log), "batch_size": 8, "retries": 0,
                                                "timeout": 3.0})  # no num_classes: learned from the probes
    with pytest.raises(VictimError, match=message) as caught:
        victim.probabilities(cifar_images[:16])
    assert f"The 8 answers received so far are kept in {log}" in str(caught.value)
    victim.close()
    assert len(log.read_text().splitlines()) == 1 + 8


def test_logits_and_labels_answers(server, local, cifar_images, tmp_path):
    expected = local.probabilities(cifar_images[:6])
    with _url_victim(server(answer="logits"), "off") as victim:
        assert torch.allclose(victim.probabilities(cifar_images[:6]), expected, atol=1e-5)
    labels_server = server(answer="labels")
    with _url_victim(labels_server, "off") as victim:
        assert victim.probabilities(cifar_images[:6]).argmax(1).tolist() == expected.argmax(1).tolist()
    unknown = open_victim(f"url:{labels_server.url}", {**FAST, "answer_log": "off", "retries": 0})
    with pytest.raises(VictimError, match="give num_classes"):
        unknown.probabilities(cifar_images[:2])


def test_an_http_error_that_is_not_transient_is_not_retried(server):
    running = server()
    victim = open_victim(running.url.replace("/predict", "/missing").replace("http", "url:http"),
                         {**FAST, "answer_log": "off", "retries": 3})
    with pytest.raises(VictimError, match="HTTP 404"):
        victim.probabilities(torch.rand(1, 3, 4, 4))
    assert victim.failed_attempts == 0 and running.stats()["requests"] == 0


def test_the_answer_log_survives_a_torn_line_and_refuses_another_victim(server, cifar_images, tmp_path):
    running = server()
    log = tmp_path / "answers.jsonl"
    with _url_victim(running, log) as victim:
        victim.probabilities(cifar_images[:3])
    with open(log, "a") as f:
        f.write('{"key": "abc", "p": [0.1, 0.')  # a crash mid-write
    with _url_victim(running, log) as victim:
        assert victim.accounting()["logged"] == 3
        victim.probabilities(cifar_images[:4])
        assert victim.accounting() == _counts(answered=4, sent=1, replayed=3, logged=4)
    assert all(json.loads(line) for line in log.read_text().splitlines())
    with pytest.raises(VictimError, match="holds answers of 'url:http"):
        open_victim("url:http://127.0.0.1:9/other", {"answer_log": str(log)})


@pytest.fixture(scope="module")
def retrained(classifier):
    """The served model after its head was retrained: the same backbone and classes, another linear head."""
    model = copy.deepcopy(classifier)
    with torch.no_grad():
        model.head.weight.add_(0.2 * torch.randn(model.head.weight.shape, generator=torch.Generator().manual_seed(1)))
    return callable_victim(lambda images: model(images), "the retrained model")


def test_a_changed_model_behind_the_same_url_is_refused_before_any_query(server, retrained, cifar_images, tmp_path):
    running = server()
    log = tmp_path / "answers.jsonl"
    with _url_victim(running, log) as victim:
        victim.probabilities(cifar_images[:10])
        first = victim.fingerprint()
    with _url_victim(running, log) as same:  # the same model: all replayed, only the probes asked again
        same.probabilities(cifar_images[:10])
        assert same.accounting() == _counts(answered=10, replayed=10, logged=10) and same.fingerprint() == first
    running.victim = retrained  # the model behind the URL is replaced
    before = running.stats()["images"]
    with _url_victim(running, log) as changed:
        with pytest.raises(VictimError, match=f"The model behind url:{running.url} has changed since the answer log "
                                              f"{log} was written: it answers [1-8] of its 8 probe images otherwise"):
            changed.probabilities(cifar_images[:10])
        assert changed.accounting() == _counts(logged=10)  # nothing answered, from the log or otherwise
    assert running.stats()["images"] == before + PROBES  # the probes only
    assert len(log.read_text().splitlines()) == 1 + 10
    with _url_victim(running, tmp_path / "new.jsonl") as fresh:
        assert fresh.fingerprint() != first


def test_the_answer_log_is_keyed_by_the_headers_without_keeping_their_values(server, tmp_path, monkeypatch):
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path))
    running = server()
    red, blue = ({**FAST, "header": f"Authorization: Bearer s3cret; X-Model: {name}"} for name in ("red", "blue"))
    spec = f"url:{running.url}"
    paths = []
    for params in (red, blue, FAST):
        with open_victim(spec, params) as victim:
            paths.append(victim.log.path)
    assert len(set(paths)) == 3  # by default, each set of headers has a log of its own
    log = tmp_path / "answers.jsonl"
    with open_victim(spec, {**red, "answer_log": str(log)}) as victim:
        victim.fingerprint()
    header = json.loads(log.read_text().splitlines()[0])
    assert header["victim"] == spec and set(header["options"]["header"]) == {"Authorization", "X-Model"}
    assert "s3cret" not in log.read_text() and len(header["probes"]) == PROBES
    with pytest.raises(VictimError, match="given another header 'X-Model' than now; give another answer log path"):
        open_victim(spec, {**blue, "answer_log": str(log)})


def test_an_answer_log_without_probes_is_refused(tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text('{"fmsteal_answer_log": 1, "victim": "url:http://127.0.0.1:9/predict"}\n'
                   '{"key": "0123456789abcdef0123456789abcdef", "label": 3, "of": 10}\n')
    with pytest.raises(VictimError, match="an older fmsteal, without the victim's answers to the probe images"):
        open_victim("url:http://127.0.0.1:9/predict", {"answer_log": str(old)})


def test_an_attack_card_names_the_model_behind_the_url_and_records_retries_versions_and_timings(
        server, retrained, cifar_mini, tmp_path):
    from fmsteal import attack
    from fmsteal.engine.data import load_splits, stratified_subset
    from fmsteal.experiment.cards import attack_card_name

    splits = load_splits(str(cifar_mini))
    pool, test = stratified_subset(splits.train, 6), stratified_subset(splits.test, 4)
    running = server(failures=["http500@3"])  # the probes, the first test images, then one failed request

    def run(log, embedder=None):
        return list(attack(f"url:{running.url}", pool=pool, test=test, budget=40, thief="tf_efficientnet_lite0",
                           image_size=32, device="cpu", victim_params={**FAST, "answer_log": str(log)},
                           embedder=embedder))

    events = run(tmp_path / "answers.jsonl")
    card, embedder = events[-1]["card"], events[-1]["thief"].embedder  # the thief's features, for the reruns
    assert card["victim_accounting"] == _counts(answered=40 + 40, sent=80, logged=80, failed_attempts=1)
    assert card["victim_retries"] == [{"attempt": 1, "of": 3, "error": card["victim_retries"][0]["error"],
                                       "wait_s": FAST["backoff"]}] and "HTTP 500" in card["victim_retries"][0]["error"]
    logs = [e["message"] for e in events if e["kind"] == "log"]  # what the console shows
    assert any("HTTP 500" in line and "retry 1 of 3" in line for line in logs)
    assert any(f"fingerprint {card['config']['victim_fingerprint']}" in line for line in logs)
    assert set(card["versions"]) >= {"python", "torch", "timm"} and card["device"] == "cpu"
    assert list(card["timings"]) == ["data", "embed", "victim", "steal", "total"]
    assert card["timings"]["total"] >= sum(card["timings"][p] for p in ("data", "embed", "victim", "steal")) - 0.01 > 0

    again = run(tmp_path / "answers.jsonl", embedder)[-1]["card"]  # a rerun: all from the log, the probes asked again
    assert again["victim_accounting"] == _counts(answered=80, replayed=80, logged=80)
    assert attack_card_name(again) == attack_card_name(card) and again["agreement"] == card["agreement"]

    running.victim = retrained
    served = running.stats()["images"]
    with pytest.raises(VictimError, match="has changed since the answer log"):
        run(tmp_path / "answers.jsonl")  # stopped before the thief's features are computed
    assert running.stats()["images"] == served + PROBES  # no test image, no budget query
    other = run(tmp_path / "retrained.jsonl", embedder)[-1]["card"]
    assert other["config"]["victim"] == card["config"]["victim"]
    assert other["config"]["victim_fingerprint"] != card["config"]["victim_fingerprint"]
    assert attack_card_name(other) != attack_card_name(card)


def test_the_default_answer_log_lives_in_the_cache(server, cifar_images, tmp_path, monkeypatch):
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path))
    running = server()
    with open_victim(f"url:{running.url}", FAST, num_classes=10) as victim:
        victim.probabilities(cifar_images[:2])
        assert victim.log.path.parent == tmp_path / "answers"
    with open_victim(f"url:{running.url}", FAST) as again:  # a rerun finds it without being told
        assert again.num_classes == 10 and again.accounting()["logged"] == 2


def test_the_example_server_runs_as_a_script(tmp_path):
    (tmp_path / "brightness.py").write_text("def predict(images):\n    return images.mean((2, 3)) * 4\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, str(REPO / "examples" / "serve_victim.py"), "api:brightness:predict",
                                "--port", "0"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("Serving api:brightness:predict at http://127.0.0.1:"), line
        url = line.split(" at ")[1].strip()
        images = torch.rand(3, 3, 8, 8)
        probs = open_victim(f"url:{url}", {**FAST, "answer_log": "off"}).probabilities(images)
        expected = ((images * 255).round() / 255).mean((2, 3)) * 4
        assert torch.allclose(probs, expected.softmax(1), atol=1e-5)
    finally:
        process.terminate()
        process.wait(timeout=30)


# Gradio apps (a Hugging Face Space is the same app behind a hub name).

@pytest.fixture(scope="module")
def gradio_app(local):
    """A real Gradio image classifier, gr.Interface(image -> gr.Label), on a local port."""
    import gradio as gr
    import numpy as np

    calls = []

    def classify(picture: np.ndarray) -> dict:
        calls.append(1)
        image = torch.from_numpy(picture).permute(2, 0, 1)[None]
        return dict(zip(CLASSES, local.probabilities(image)[0].tolist()))

    top3 = gr.Interface(classify, gr.Image(type="numpy"), gr.Label(num_top_classes=3), api_name="top3")
    demo = gr.TabbedInterface([gr.Interface(classify, gr.Image(type="numpy"), gr.Label(), api_name="predict"), top3])
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield demo.local_url, calls
    demo.close()


def test_a_gradio_victim_answers_as_the_model_and_resumes_from_its_log(gradio_app, local, cifar_images, tmp_path):
    url, calls = gradio_app
    log = tmp_path / "space.jsonl"
    params = {**FAST, "answer_log": str(log)}
    before = len(calls)
    with open_victim(f"space:{url}", params, class_names=CLASSES) as victim:
        probs = victim.probabilities(cifar_images[:4])
        assert victim.accounting() == _counts(answered=4, sent=4, logged=4)
    assert len(calls) - before == PROBES + 4  # one image per call
    assert torch.allclose(probs, local.probabilities(cifar_images[:4]), atol=1e-5)
    with open_victim(f"space:{url}", params, class_names=CLASSES) as again:
        assert torch.allclose(again.probabilities(cifar_images[:5])[:4], probs)
        assert again.accounting() == _counts(answered=5, sent=1, replayed=4, logged=5)
    assert len(calls) - before == 2 * PROBES + 5  # the probes are asked again, to check the model


def test_a_gradio_victim_with_top_k_confidences_shares_the_rest(gradio_app, local, cifar_images):
    url, _ = gradio_app
    expected = local.probabilities(cifar_images[:2])
    with open_victim(f"space:{url}", {**FAST, "answer_log": "off", "api_name": "/top3"}, class_names=CLASSES) as victim:
        probs = victim.probabilities(cifar_images[:2])
    top = expected.topk(3, 1)
    assert torch.allclose(probs.gather(1, top.indices), top.values, atol=1e-5)
    rest = (1 - top.values.sum(1)) / 7
    assert torch.allclose(probs.sort(1).values[:, :7], rest[:, None].expand(2, 7), atol=1e-5)


def test_a_gradio_victim_with_a_wrong_endpoint_or_classes_says_so(gradio_app, cifar_images):
    url, _ = gradio_app
    with pytest.raises(VictimError, match="cannot be called at '/nope'"):
        open_victim(f"space:{url}", {**FAST, "answer_log": "off", "api_name": "/nope"},
                    class_names=CLASSES).probabilities(cifar_images[:1])
    with pytest.raises(VictimError, match="answered the label '[a-z]+'; expected an integer"):
        open_victim(f"space:{url}", {**FAST, "answer_log": "off"}, num_classes=10).probabilities(cifar_images[:1])
