"""What each unit of a run's work costs on this machine: the prices the phases' cost models use.

A `Pricing` couples a plan with measured speeds (`fmsteal.experiment.speed`) and with what earlier
runs left in the cache (`fmsteal.experiment.warm`), so a cost model reads like the work it prices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fmsteal.experiment import speed
from fmsteal.experiment.plan import Plan

__all__ = ["Pricing", "GPU_SPEEDUP"]

GPU_SPEEDUP = 40.0  # unmeasurable here (no GPU): a mid-range GPU with AMP against 2 CPU cores
STORED_PIXELS = {"tiny-imagenet": 64 * 64 * 3, "imagenet32": 32 * 32 * 3}  # bytes per stored image; CIFAR: 32 px


@dataclass
class Pricing:
    """Prices for one plan. `reused` names the cached work the run will not redo, for messages."""

    plan: Plan
    decoded: bool = False  # the decoded images are in the cache
    embedded: frozenset = frozenset()  # (backbone, px) whose features are in the cache
    victim_trained: bool = False  # the trained victim is in the cache
    data_key: dict | None = None  # the data's key for `fmsteal.experiment.warm` records
    reused: list[str] = field(default_factory=list)

    @property
    def _scale(self) -> float:
        return GPU_SPEEDUP if self.plan.device == "cuda" else 1.0

    def _backbone(self, name: str, size: int, kind: str = "forward") -> dict:
        from fmsteal.engine.zoo import get_backbone

        # measured on this machine's CPU; a GPU is priced by GPU_SPEEDUP (none here to time)
        return speed.backbone_speed(get_backbone(name), size, "cpu", kind)

    def forward(self, name: str, size: int, images: int) -> float:
        """Seconds to run `images` through a backbone (no gradients)."""
        return images / (self._backbone(name, size)["ips"] * self._scale)

    def train(self, name: str, size: int, images: int) -> float:
        """Seconds of training steps (forward, backward, augmentation) over `images` images."""
        return images / (self._backbone(name, size, "train")["ips"] * self._scale)

    def gradient(self, name: str, size: int, images: int) -> float:
        """Seconds of forward and backward passes to the input pixels (weights frozen) over `images` images."""
        return images / (self._backbone(name, size, "gradient")["ips"] * self._scale)

    def load_model(self, name: str, size: int) -> float:
        return self._backbone(name, size)["load_s"]

    def linear(self, feature_dim: int, sample_epochs: float) -> float:
        """Seconds of the training loop on a linear head over cached features."""
        return sample_epochs * speed.linear_seconds(feature_dim, "cpu") / self._scale

    def decode(self, images: int) -> float:
        return images / speed.decode_ips()

    def hashing(self, images: int) -> float:
        """Seconds to recognise `images` by content (how cached features are looked up)."""
        return images / speed.hash_ips(self.stored_pixels)

    def load_bytes(self, nbytes: float) -> float:
        return nbytes / speed.load_bytes_per_s()

    def test_pass(self, role: str) -> float:
        """Seconds for the victim or the thief to answer every test image: a lookup of cached features (LP)
        or its own network's forward passes (FFT)."""
        config = self.plan.config
        if getattr(config, f"{role}_mode") == "lp":
            return self.hashing(self.plan.n_test)
        return self.forward(getattr(config, role), getattr(self.plan, f"{role}_size"), self.plan.n_test)

    def evaluation_cached(self, name: str, params: dict) -> bool:
        """True when an earlier run left the features evaluation `name` asks for in the cache."""
        from fmsteal.experiment import warm

        config = self.plan.config
        return warm.is_cached(self.data_key, "evaluation", **warm.evaluation_fields(config, self.plan, name, params))

    def recipe(self, role: str):
        """The training recipe of the config's victim or thief (its preset, mode and backbone)."""
        from fmsteal.engine.recipes import recipe_for
        from fmsteal.engine.zoo import get_backbone

        config = self.plan.config
        spec = get_backbone(config.backbone(role))
        return recipe_for(config.preset, role, getattr(config, f"{role}_mode"), spec.family == "scratch", spec.timm_arch)

    def views(self, role: str, images: float) -> float:
        """Seconds to embed the augmented views a linear probe of `role` trains on, for `images` new images
        (nothing for FFT or a recipe without views)."""
        config, recipe = self.plan.config, self.recipe(role)
        if getattr(config, f"{role}_mode") != "lp" or not recipe.views:
            return 0.0
        return self.forward(config.backbone(role), getattr(self.plan, f"{role}_size"), images * recipe.views)

    def thief_training(self, answers: int, scored: int = 0) -> float:
        """Seconds to train the config's thief (its mode and recipe) on `answers` labelled images, every 10th
        kept for validation, then to score it on `scored` test images."""
        from fmsteal.adversary.thief import VALIDATION_EVERY
        from fmsteal.engine.zoo import get_backbone

        config, size, held = self.plan.config, self.plan.thief_size, 1 / VALIDATION_EVERY
        thief, epochs = get_backbone(config.backbone("thief")), self.recipe("thief").epochs
        if config.thief_mode == "lp":
            return self.linear(thief.feature_dim, (1 - held) * answers * epochs) + self.hashing(answers + scored)
        return (self.train(config.thief, size, (1 - held) * answers * epochs)
                + self.forward(config.thief, size, held * answers * epochs + scored))

    @property
    def stored_pixels(self) -> int:
        return STORED_PIXELS.get(self.plan.config.source, 32 * 32 * 3)
