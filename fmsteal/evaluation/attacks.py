"""L-infinity evasion attacks in pixel space: FGSM, PGD, the random-sign floor, and uint8 rounding.

Images are [0, 1] floats (n x 3 x H x W); every result stays within `eps` of the clean image and
inside [0, 1]. Untargeted: each step climbs the cross-entropy of the given labels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fmsteal.cancel import check

__all__ = ["fgsm", "input_gradient", "pgd", "quantize", "sign_noise"]


def input_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d(cross-entropy)/d(pixels); weights get no gradient (only the input is asked for)."""
    x = images.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels.to(x.device), reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): one step of size `eps`."""
    check()
    return (images + eps * input_gradient(model, images, labels).sign()).clamp(0, 1).detach()


def pgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, step: float, steps: int,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018); a uniform random start in the ball when `generator` is given."""
    adversarial = images.detach()
    if generator is not None:
        start = torch.rand(images.shape, generator=generator).to(images.device) * 2 - 1
        adversarial = (images + eps * start).clamp(0, 1)
    for _ in range(steps):
        check()
        adversarial = adversarial + step * input_gradient(model, adversarial, labels).sign()
        adversarial = torch.minimum(torch.maximum(adversarial, images - eps), images + eps).clamp(0, 1).detach()
    return adversarial


def sign_noise(images: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """Every pixel moved by +eps or -eps at random: the same L-inf size as the attacks, no gradient."""
    signs = torch.randint(0, 2, images.shape, generator=generator).to(images.device) * 2 - 1
    return (images + eps * signs).clamp(0, 1)


def quantize(adversarial: torch.Tensor, clean: torch.Tensor, eps: float) -> torch.Tensor:
    """The uint8 image an attacker would send: rounded to pixel levels, still within `eps` of uint8 `clean`."""
    limit = math.floor(eps * 255 + 1e-6)
    delta = (adversarial.detach().float().cpu() * 255 - clean.float()).round().clamp(-limit, limit)
    return (clean.float() + delta).clamp(0, 255).to(torch.uint8)
