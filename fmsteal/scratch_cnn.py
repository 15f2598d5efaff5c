"""A small CNN trained from scratch: the conventional victim that needs no pretrained weights."""

from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ScratchCNN(nn.Sequential):
    """Three VGG-style blocks (64-128-256) and global pooling: 256 features, about 1.2M weights."""

    num_features = 256

    def __init__(self) -> None:
        super().__init__(_block(3, 64), _block(64, 128), _block(128, 256), nn.AdaptiveAvgPool2d(1), nn.Flatten())
