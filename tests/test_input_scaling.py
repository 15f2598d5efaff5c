"""The authors' setup beyond hyperparameters: per-side input scaling, their weights, fp32 (the `paper` preset)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from engine_fixtures import run_to_card
from fmsteal.engine.embed import autocast
from fmsteal.engine.recipes import FAST_LINEAR, recipe_for
from fmsteal.engine.zoo import INPUT_SCALINGS, get_backbone
from fmsteal.errors import ConfigError
from fmsteal.experiment.config import ExperimentConfig


def test_a_scaled_backbone_is_the_same_network_fed_differently():
    base, raw = get_backbone("tf_efficientnet_lite0"), get_backbone("tf_efficientnet_lite0@raw")
    assert (raw.mean, raw.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)) and raw.name == "tf_efficientnet_lite0@raw"
    assert (raw.base_name, raw.weight_source, raw.feature_dim) == (base.name, base.weight_source, base.feature_dim)
    assert get_backbone("resnet18@cifar10").mean == INPUT_SCALINGS["cifar10"][0] != get_backbone("resnet18").mean
    assert get_backbone("resnet18@backbone") is get_backbone("resnet18")
    with pytest.raises(ConfigError, match="Unknown input scaling 'imagenet'.*raw"):
        get_backbone("resnet18@imagenet")
    with pytest.raises(ConfigError, match="Unknown backbone 'resnet19'"):
        get_backbone("resnet19@raw")


def test_the_authors_weights_are_zoo_entries_of_their_own():
    assert get_backbone("resnet50_tv2").hub_id == "timm/resnet50.tv2_in1k"
    assert get_backbone("resnet101_tv2").hub_id == "timm/resnet101.tv2_in1k"
    assert get_backbone("vit_base_patch16_clip_224_ft").hub_id == "timm/vit_base_patch16_clip_224.laion2b_ft_in1k"
    assert get_backbone("vit_base_patch16_clip_224").hub_id == "timm/vit_base_patch16_clip_224.laion2b"


def test_input_scaling_is_a_validated_field_left_out_of_earlier_job_ids():
    config = ExperimentConfig(victim="resnet18", thief="resnet34", victim_inputs="cifar10", thief_inputs="raw")
    assert (config.backbone("victim"), config.backbone("thief")) == ("resnet18@cifar10", "resnet34@raw")
    assert ExperimentConfig().backbone("victim") == "tf_efficientnet_lite0"
    assert ExperimentConfig(victim_inputs="backbone").job_id() == ExperimentConfig().job_id()  # old cards keep their ids
    assert config.job_id() != ExperimentConfig(victim="resnet18", thief="resnet34").job_id()
    with pytest.raises(ConfigError, match="thief_inputs must be one of backbone, cifar10, raw"):
        ExperimentConfig(thief_inputs="imagenet")


def test_paper_recipes_run_fp32_and_fast_cache_keys_are_unchanged():
    assert all(recipe_for("paper", role, mode, scratch).fp32 for role in ("victim", "thief")
               for mode in ("lp", "fft") for scratch in (False, True))
    assert not FAST_LINEAR.fp32 and "fp32" not in FAST_LINEAR.to_dict()  # trained victims' cache keys stay valid
    assert recipe_for("paper", "victim", "lp", False).to_dict()["fp32"] is True
    assert isinstance(autocast(torch.device("cuda"), fp32=True), contextlib.nullcontext)
    assert isinstance(autocast(torch.device("cpu")), contextlib.nullcontext)  # bf16 is 10-30x slower on CPUs


def test_a_run_feeds_each_side_its_own_scaling_and_caches_them_apart(tiny_config, session_cache):
    plain, _ = run_to_card(tiny_config(budget=150))
    scaled, _ = run_to_card(tiny_config(budget=150, victim_inputs="cifar10", thief_inputs="raw"))
    folders = {path.name for path in (session_cache / "embeddings").iterdir()}
    assert {"tf_efficientnet_lite0", "tf_efficientnet_lite0@cifar10", "tf_efficientnet_lite0@raw"} <= folders
    assert scaled["backbone_images_forwarded"] > 0  # new features: nothing reused from the plain run
    assert scaled["config"]["thief_inputs"] == "raw" and scaled["victim_accuracy"] != plain["victim_accuracy"]
    assert scaled["curve"] != plain["curve"]
