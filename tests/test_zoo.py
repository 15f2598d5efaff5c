"""The backbone zoo: the paper's backbones as data, real offline weights, the real hub loading path."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmsteal.errors import ConfigError
from fmsteal.engine.zoo import get_backbone, list_backbones, load_backbone

PAPER_BACKBONES = ["resnet18", "resnet34", "resnet50", "resnet101", "vit_small_patch16_224", "vit_base_patch16_224",
                   "vit_large_patch16_224", "vit_base_patch16_224_dino", "vit_base_patch16_clip_224"]
REPO = Path(__file__).resolve().parents[1]


def test_every_backbone_of_the_paper_and_the_offline_ones_is_registered():
    names = [spec.name for spec in list_backbones()]
    for name in PAPER_BACKBONES + ["vit_small_patch14_dinov2", "vit_base_patch14_dinov2", "tf_efficientnet_lite0",
                                   "tf_efficientnet_lite1", "tf_efficientnet_lite2", "scratch_cnn"]:
        assert name in names
    families = {spec.name: spec.family for spec in list_backbones()}
    assert families["vit_large_patch16_224"] == "foundation" and families["resnet18"] == "conventional"
    assert families["scratch_cnn"] == "scratch"
    assert all(spec.params_m > 0 and spec.native_size >= 32 for spec in list_backbones())


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ConfigError, match="Unknown backbone 'resnet19'.*resnet18"):
        get_backbone("resnet19")


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "scratch_cnn"])
def test_declared_parameter_counts_and_feature_sizes_are_true(name):
    spec = get_backbone(name)
    model = load_backbone(spec, 64)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - spec.params_m) < 0.06
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, spec.feature_dim)


def test_pypi_lite_weights_are_genuinely_pretrained():
    spec = get_backbone("tf_efficientnet_lite0")
    assert spec.offline_available()
    pretrained, random = load_backbone(spec, 64), load_backbone(spec, 64, pretrained=False)
    assert not torch.equal(pretrained.conv_stem.weight, random.conv_stem.weight)
    assert pretrained.bn1.running_var.mean() != 1.0  # BN statistics came from ImageNet, not the init


HUB_SCRIPT = """
import json, sys, torch
from dataclasses import replace
from fmsteal.engine import zoo
from fmsteal.errors import WeightsUnavailable
lite = zoo.get_backbone("tf_efficientnet_lite0")
hub_spec = replace(lite, name="lite0_from_hub", weight_source="hub:timm/tf_efficientnet_lite0.in1k")
result = {"offline_available": hub_spec.offline_available()}
try:
    model = zoo.load_backbone(hub_spec, 64).eval()
    reference = zoo.load_backbone(lite, 64).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        result["max_difference"] = (model(x) - reference(x)).abs().max().item()
except WeightsUnavailable as error:
    result["error"] = str(error)
print(json.dumps(result))
"""


def run_hub_script(cache: Path) -> dict:
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(cache)}
    done = subprocess.run([sys.executable, "-c", HUB_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hub_weights_load_through_timm_from_the_standard_hf_cache(tmp_path):
    """A model saved in the hub's cache layout loads through the real timm + huggingface_hub path."""
    from safetensors.torch import save_file

    spec = get_backbone("tf_efficientnet_lite0")
    state = load_backbone(spec, 64).state_dict()
    head = {"classifier.weight": torch.zeros(1000, 1280), "classifier.bias": torch.zeros(1000)}
    snapshot = tmp_path / "models--timm--tf_efficientnet_lite0.in1k" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    save_file({**{k: v.contiguous() for k, v in state.items()}, **head}, snapshot / "model.safetensors")
    (snapshot / "config.json").write_text(json.dumps({"architecture": "tf_efficientnet_lite0", "num_classes": 1000}))
    (tmp_path / "models--timm--tf_efficientnet_lite0.in1k" / "refs").mkdir()
    (tmp_path / "models--timm--tf_efficientnet_lite0.in1k" / "refs" / "main").write_text("a" * 40)
    result = run_hub_script(tmp_path)
    assert result.get("error") is None
    assert result["offline_available"] is True
    assert result["max_difference"] < 1e-5


def test_unreachable_hub_names_the_backbone_the_reason_and_the_fix(tmp_path):
    result = run_hub_script(tmp_path)
    assert result["offline_available"] is False
    message = result["error"]
    assert "lite0_from_hub" in message and "timm/tf_efficientnet_lite0.in1k" in message
    assert "connect to the internet" in message and "hf download" in message and "scratch_cnn" in message


def test_zoo_command_marks_what_loads_offline():
    done = subprocess.run([sys.executable, "-m", "fmsteal", "zoo"], cwd=REPO, capture_output=True, text=True, timeout=120)
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:] if line and not line.startswith("norm")}
    assert " yes " in rows["tf_efficientnet_lite0"] and " no " in rows["vit_large_patch16_224"]
    assert " clip " in rows["vit_base_patch16_clip_224"] and " imagenet " in rows["resnet18"]
    assert len(rows) == len(list_backbones())
