"""One experiment end to end on real CIFAR-10 subsets with the offline Lite0."""

import json
import threading

import pytest
import torch

import app
from engine_fixtures import run_to_card
from fmsteal.engine.cache import cache_dir
from fmsteal.cancel import cancel_scope
from fmsteal.errors import Cancelled, ConfigError, DeviceUnavailable
from fmsteal.experiment.pipeline import ExperimentConfig, resolve_device, run
from fmsteal.adversary.thief import curve_checkpoints
from fmsteal.engine.train import predict

CARD_KEYS = {"config", "versions", "device", "timings", "curve", "confusion", "agreement", "seed", "victim_accuracy",
             "thief_accuracy", "macro_f1", "per_class_agreement", "class_names", "queries_spent"}


def test_a_run_streams_plain_events_and_ends_with_a_complete_card(tiny_config):
    card, events = run_to_card(tiny_config(budget=300))
    json.dumps(events)  # every event is plain data
    assert CARD_KEYS <= set(card)
    phases = [e["phase"] for e in events if e["kind"] == "phase"]
    assert phases == ["data", "embed", "victim", "steal", "evaluate", "card"]
    assert set(card["timings"]) == set(phases) | {"total"}
    assert set(card["estimate"]["phases"]) == set(phases)  # predicted before the run, per phase
    assert events[0]["kind"] == "plan"  # announced before any work: what the card will say
    assert (events[0]["image_size"], events[0]["estimate"]) == (card["image_size"], card["estimate"])
    assert card["estimate"]["total"] == pytest.approx(sum(card["estimate"]["phases"].values()), abs=0.05)
    checkpoints = [e for e in events if e["kind"] == "checkpoint"]
    assert [c["queries"] for c in checkpoints] == [p["queries"] for p in card["curve"]] == curve_checkpoints(300)
    assert len(card["curve"]) >= 8 and card["queries_spent"] == 300
    assert card["curve"][-1]["agreement"] == card["agreement"]
    matrix = torch.tensor(card["confusion"]["matrix"])
    assert matrix.shape == (10, 10) and int(matrix.sum()) == card["test_size"] == 200
    assert int(matrix.trace()) == round(card["agreement"] * 200)
    assert card["confusion"]["labels"] == card["class_names"] and card["class_names"][0] == "airplane"
    assert card["victim_accuracy"] > 0.3  # pretrained features are far better than chance (0.1)
    assert card["agreement"] > card["curve"][0]["agreement"]  # more queries, closer copy
    (stolen,) = [e for e in events if e["kind"] == "stolen"]  # the result, before the evaluations begin
    assert events.index(stolen) < next(i for i, e in enumerate(events) if e.get("phase") == "evaluate")
    for key in ("agreement", "confusion", "per_class_agreement", "curve", "victim_accuracy", "thief_accuracy"):
        assert stolen["card"][key] == card[key], key
    assert "examples" in card and "examples" not in stolen["card"] and "total" not in stolen["card"]["timings"]
    outputs = app.run_outputs(None, [], 300, stolen["card"])  # what the page shows meanwhile
    assert f"copied the victim on {100 * card['agreement']:.1f}%" in outputs["summary"]
    assert "evaluations are running" in outputs["summary"] and outputs["confusion"].data


def test_a_second_identical_run_is_served_from_the_cache(tiny_config):
    config = tiny_config(seed=3, image_size=56)  # a size no other test embeds at
    first, _ = run_to_card(config)
    second, events = run_to_card(config)
    assert second["backbone_images_forwarded"] == 0 < first["backbone_images_forwarded"]
    assert any("Victim loaded from the cache" in e.get("message", "") for e in events)
    assert second["agreement"] == first["agreement"] and second["curve"] == first["curve"]


@pytest.mark.parametrize("output", ["topk", "probs", "rounded"])
def test_every_output_mode_trains_a_thief(tiny_config, output):
    card, _ = run_to_card(tiny_config(output=output, budget=150))
    assert card["queries_spent"] == 150 and card["agreement"] > 0.3


@pytest.mark.parametrize("strategy", ["entropy", "kcenter"])
def test_selection_strategies_spend_exactly_the_budget(tiny_config, strategy):
    card, _ = run_to_card(tiny_config(strategy=strategy, budget=170))
    assert card["queries_spent"] == 170 and card["curve"][-1]["queries"] == 170


def test_fft_victim_and_thief_train_whole_networks(tiny_config):
    card, _ = run_to_card(tiny_config(victim="scratch_cnn", victim_mode="fft", thief_mode="fft", budget=40,
                                      train_per_class=10, test_per_class=5, image_size=32))
    assert card["queries_spent"] == 40 and 0 <= card["agreement"] <= 1
    assert card["config"]["victim_mode"] == "fft" and card["image_size"] == {"victim": 32, "thief": 32}


def test_cancel_stops_network_training_within_its_first_epoch(tiny_config):
    config = tiny_config(victim="scratch_cnn", victim_mode="fft", budget=40, train_per_class=200,
                         test_per_class=5, image_size=32, seed=5)
    cancel, victim_steps = threading.Event(), []
    with pytest.raises(Cancelled):
        for event in run(config, cancel=cancel):
            if event["kind"] == "progress" and event["phase"] == "victim":
                victim_steps.append(event["done"])
                cancel.set()
    assert len(victim_steps) == 1 and victim_steps[0] < event["total"] / 2  # stopped early in training


def test_cancel_reaches_into_decoding_before_anything_is_cached(tiny_config, tmp_path):
    from test_data import write_folder

    folder = write_folder(tmp_path / "fresh", {"train": {"a": 300, "b": 300}, "test": {"a": 10, "b": 10}})
    datasets = cache_dir("datasets")
    before = set(datasets.iterdir())
    cancel = threading.Event()
    events = run(tiny_config(data_dir=str(folder), train_per_class=None, test_per_class=None, budget=50), cancel)
    assert next(events)["kind"] == "plan" and next(events)["phase"] == "data"
    cancel.set()
    with pytest.raises(Cancelled):
        next(events)
    assert set(datasets.iterdir()) == before  # stopped inside decoding, not after it


def test_prediction_stops_between_batches_once_its_run_is_cancelled():
    model, cancel = torch.nn.Linear(4, 2), threading.Event()
    inputs = torch.randn(10, 4)
    with cancel_scope(cancel):
        assert predict(model, inputs, lambda x, train: x, torch.device("cpu"), batch_size=4).shape == (10, 2)
        cancel.set()
        with pytest.raises(Cancelled):
            predict(model, inputs, lambda x, train: x, torch.device("cpu"), batch_size=4)
    assert predict(model, inputs, lambda x, train: x, torch.device("cpu")).shape == (10, 2)  # outside any run


def test_an_external_query_pool_is_used_instead_of_the_heldout_split(tiny_config, tmp_path):
    from test_data import write_folder

    pool = write_folder(tmp_path / "pool", {"x": {"a": 30, "b": 30}}, size=(32, 32))
    card, _ = run_to_card(tiny_config(query_pool=str(pool), budget=60))
    assert card["pool_size"] == 60 and card["victim_train_size"] == 600 and card["queries_spent"] == 60


def test_a_budget_larger_than_the_pool_is_refused(tiny_config):
    with pytest.raises(ConfigError, match=r"larger than the query pool \(300 images\)"):
        list(run(tiny_config(budget=301)))


@pytest.mark.parametrize("change, message", [
    ({"budget": 0}, "budget must be an integer 1 to 1,000,000; got 0"),
    ({"budget": -5}, "budget must be an integer 1 to 1,000,000"),
    ({"budget": 2.5}, "budget must be an integer"),
    ({"seed": 2**80}, "seed must be an integer 0 to 2,147,483,647"),
    ({"image_size": 5000}, "image_size must be an integer 8 to 1,024"),
    ({"victim": "resnet19"}, "victim must be one of resnet18, resnet34"),
    ({"victim": "scratch_cnn", "victim_mode": "lp"}, "set victim_mode to 'fft'"),
    ({"output": "logits"}, "output must be one of label, topk, probs, rounded"),
    ({"strategy": "greedy"}, "strategy must be one of"),
    ({"device": "tpu"}, "device must be one of"),
    ({"dataset": "mnist"}, "dataset must be one of cifar10, cifar100, tiny-imagenet"),
    ({"defence": "firewall"}, "defence must be one of none, top1"),
    ({"evaluations": "transfer,vibes"}, "Unknown evaluation 'vibes': use one of .*transfer"),
])
def test_bad_configs_name_the_problem(change, message):
    values = {"victim": "tf_efficientnet_lite0", "thief": "tf_efficientnet_lite0", **change}
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig(**values)


def test_config_round_trips_and_has_a_stable_id():
    config = ExperimentConfig("tf_efficientnet_lite0", "tf_efficientnet_lite1", budget=700, seed=2)
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    assert config.job_id() == ExperimentConfig.from_dict(config.to_dict()).job_id()
    assert config.job_id() != ExperimentConfig("tf_efficientnet_lite0", "tf_efficientnet_lite1", budget=700).job_id()
    with pytest.raises(ConfigError, match="Unknown config fields"):
        ExperimentConfig.from_dict({**config.to_dict(), "epochs": 3})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_where_there_is_none_is_a_clear_error(tiny_config):
    with pytest.raises(DeviceUnavailable, match="no usable GPU.*'cpu' or 'auto'"):
        resolve_device("cuda")
    with pytest.raises(DeviceUnavailable):
        list(run(tiny_config(device="cuda")))
    assert resolve_device("auto").type == "cpu"


def test_hub_backbones_fail_with_the_fix_when_offline(tiny_config, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    from fmsteal.errors import WeightsUnavailable

    with pytest.raises(WeightsUnavailable, match="'resnet18'.*pick a backbone available offline"):
        list(run(tiny_config(victim="resnet18")))


def test_building_and_validating_a_config_imports_neither_torch_nor_the_attack():
    import subprocess
    import sys

    code = ("import sys; from fmsteal.experiment.config import ExperimentConfig; "
            "ExperimentConfig(victim='scratch_cnn', thief='tf_efficientnet_lite0', output='probs', strategy='kcenter'); "
            "assert 'torch' not in sys.modules and 'fmsteal.adversary.thief' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
