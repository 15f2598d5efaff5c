"""The named data sources as plain data (no torch): hub datasets and named query pools."""

from __future__ import annotations

__all__ = ["CIFAR10_CLASSES", "HUB_DATASETS", "IMAGENET32_ENV", "NAMED_POOLS", "HUB_SIZES"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# name -> (hub dataset repo, folder of its parquet files, image column, label column, {split: file prefix})
HUB_DATASETS = {
    "cifar10": ("uoft-cs/cifar10", "plain_text", "img", "label", {"train": "train", "test": "test"}),
    "cifar100": ("uoft-cs/cifar100", "cifar100", "img", "fine_label", {"train": "train", "test": "test"}),
    "tiny-imagenet": ("zh-plus/tiny-imagenet", "data", "image", "label", {"train": "train", "test": "valid"}),
}

# The paper's query pool: Downsampled ImageNet 32x32 (Chrabaszcz et al., 2017). Its licence needs an
# image-net.org account, so nothing downloads it: FMSTEAL_IMAGENET32 names the unpacked folder of
# its official `train_data_batch_*` files.
IMAGENET32_ENV = "FMSTEAL_IMAGENET32"
NAMED_POOLS = ("imagenet32",)

# (train images, test images, classes) of each named source, for plans made before decoding anything.
HUB_SIZES = {"cifar10": (50_000, 10_000, 10), "cifar100": (50_000, 10_000, 100), "tiny-imagenet": (100_000, 10_000, 200),
             "imagenet32": (1_281_167, 0, 1000)}
