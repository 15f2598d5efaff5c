"""A small CNN trained from scratch: the conventional victim that needs no pretrained weights."""

from torch import nn


def _block(c_in: int, c_out: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
                   nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class ScratchCNN(nn.Sequential):
    """VGG-style blocks (32-64-128 channels) and global pooling: 128 features, 0.28M weights.

    Small on purpose: it trains on 25,000 CIFAR images in a few minutes on two CPU cores.
    """

    num_features = 128

    def __init__(self) -> None:
        super().__init__(_block(3, 32, 1), _block(32, 64, 2), _block(64, 128, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
