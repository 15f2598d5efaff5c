"""The authors' setup beyond hyperparameters (the `paper` preset): per-side input scaling, their weights, fp32,
and augmentation under a linear probe as cached features of augmented views."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from engine_fixtures import run_to_card
from fmsteal.engine.augment import FeatureViews, augmented_view, view_features
from fmsteal.engine.embed import Embedder, autocast
from fmsteal.engine.recipes import FAST_LINEAR, PAPER_THIEF, PAPER_VICTIM, VIEWS, recipe_for
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


def _images(n: int, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(n), dtype=torch.uint8)


@pytest.mark.parametrize("crop, rotate", [(True, 0.0), (False, 5.0)])
def test_an_images_views_depend_on_the_image_and_view_only(crop, rotate):
    images = _images(12)
    first = augmented_view(images, 1, crop, rotate)
    assert first.shape == images.shape and first.dtype == torch.uint8
    assert torch.equal(augmented_view(images[3:8], 1, crop, rotate), first[3:8])  # any batch, any order
    assert torch.equal(augmented_view(images.flip(0), 1, crop, rotate), first.flip(0))
    second = augmented_view(images, 2, crop, rotate)
    assert sum(not torch.equal(a, b) for a, b in zip(first, second)) >= 9  # views differ (a few may coincide)
    assert sum(not torch.equal(a, b) for a, b in zip(first, images)) >= 9


def test_a_rotated_view_turns_the_image_by_at_most_the_angle():
    bars = torch.zeros(40, 3, 65, 65, dtype=torch.uint8)
    bars[..., 31:34, 8:57] = 255  # a 3-px horizontal bar through the centre
    bars[:, 1] = torch.arange(40).view(40, 1, 1).to(torch.uint8)  # 40 different images: 40 different angles
    tilts = []
    for image in augmented_view(bars, 1, False, 5.0).float():
        rows = (image[0] > 100).nonzero()[:, 0].float()
        assert len(rows) > 100  # the bar is still there
        tilts.append(float(rows.max() - rows.min()))
    # a 48-px bar tilted by at most 5 degrees spans at most 48 sin 5 + its 3 rows + 1 of interpolation
    assert max(tilts) <= 48 * math.sin(math.radians(5)) + 4 and max(tilts) > min(tilts)


def test_feature_views_draw_one_view_per_item_reproducibly():
    views = torch.arange(3 * 6).float().view(3, 6, 1)  # view v of item i holds 6v + i
    index = torch.tensor([0, 2, 5, 5])
    drawn = FeatureViews(views, seed=0)[index].squeeze(1)
    assert len(FeatureViews(views, 0)) == 6 and torch.equal(drawn % 6, index.float())
    assert torch.equal(FeatureViews(views, seed=0)[index].squeeze(1), drawn)
    many = FeatureViews(views, seed=1)[torch.zeros(300, dtype=torch.long)].squeeze(1)
    assert set(many.tolist()) == {0.0, 6.0, 12.0}  # every view gets drawn


def test_views_are_embedded_once_per_image():
    embedder = Embedder(get_backbone("scratch_cnn"), 32, torch.device("cpu"))  # no weights to fetch
    images = _images(20)
    first = view_features(embedder, images[:12], PAPER_THIEF, seed=0)
    forwarded = embedder.images_forwarded
    assert isinstance(first, FeatureViews) and first.views.shape == (VIEWS + 1, 12, 128)
    assert forwarded == 12 * (VIEWS + 1)
    again = view_features(embedder, images, PAPER_THIEF, seed=0)  # 8 new images: only their views are new
    assert embedder.images_forwarded - forwarded == 20 + 8 * VIEWS
    assert torch.allclose(again.views[1:, :12], first.views[1:], atol=1e-5)
    assert isinstance(view_features(embedder, images, FAST_LINEAR, 0), torch.Tensor)


def test_a_paper_preset_run_trains_both_probes_on_augmented_views(tiny_config, session_cache):
    assert (PAPER_VICTIM.views, PAPER_THIEF.views, PAPER_THIEF.rotate, PAPER_THIEF.augment) == (VIEWS, VIEWS, 5.0, False)
    config = tiny_config(budget=120, preset="paper", image_size=48, seed=5)
    card, events = run_to_card(config)
    victim_train, queried = card["victim_train_size"], 120 - 120 // 10  # every 10th answer validates
    images = victim_train + card["pool_size"] + card["test_size"]
    # every image once, then each training image's views (the victim's and the thief's queried ones); a view
    # that equals an image already embedded (a centred crop, unflipped: 1 in 162) is looked up instead
    views = VIEWS * (victim_train + queried)
    assert 0 <= images + views - card["backbone_images_forwarded"] <= 0.02 * views
    assert card["queries_spent"] == 120 and card["agreement"] > 0.2
    assert card["estimate"]["phases"]["victim"] > 0 and card["estimate"]["phases"]["steal"] > 0
