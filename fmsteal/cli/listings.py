"""The `zoo` and `defences` commands: listings that import no torch, so they answer in a moment."""

from __future__ import annotations

from fmsteal.engine.zoo import CIFAR_MEAN, CLIP_MEAN, HALF, IMAGENET_MEAN, list_backbones

__all__ = ["defences_main", "normalisation_name", "zoo_main"]


def zoo_main() -> int:
    """`fmsteal zoo`: every backbone, its family, size, native resolution, input scaling and weights' source."""
    print(f"{'name':28} {'label':18} {'family':12} {'params':>8} {'native':>6}  {'norm':8}  {'offline':7}  weights")
    for spec in list_backbones():
        offline = "yes" if spec.offline_available() else "no"
        print(f"{spec.name:28} {spec.label:18} {spec.family:12} {spec.params_m:>7.2f}M {spec.native_size:>5}px"
              f"  {normalisation_name(spec):8}  {offline:7}  {spec.weight_source}")
    print("\nnorm: input mean/std (imagenet, clip, cifar, or 0.5 = mean and std both 0.5)")
    return 0


def normalisation_name(spec) -> str:
    """A short name for a backbone's input mean/std."""
    names = {IMAGENET_MEAN: "imagenet", CLIP_MEAN: "clip", CIFAR_MEAN: "cifar", HALF: "0.5"}
    return names.get(spec.mean, ",".join(f"{m:.3f}" for m in spec.mean))


def defences_main() -> int:
    """`fmsteal defences`: every defence with its parameters (type, range, default)."""
    from fmsteal.adversary.defences import DEFENCES

    for entry in DEFENCES:
        print(f"{entry.name:24} {entry.help}")
        for field in entry.params:
            print(f"{'':26}{field.name}: {field.range_text()}, default {field.default!r} ({field.help})")
    print("\nUse: fmsteal run ... --defence NAME --defence-param KEY=VALUE [--defence-param ...]")
    return 0
