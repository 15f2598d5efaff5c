"""ExperimentConfig: every choice of one experiment, validated, plain data, with a stable id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from fmsteal.attack.blackbox import OUTPUT_MODES
from fmsteal.engine.data import HUB_DATASETS
from fmsteal.errors import ConfigError
from fmsteal.attack.thief import STRATEGIES
from fmsteal.engine.zoo import get_backbone

MODES = ("lp", "fft")
DEVICES = ("auto", "cpu", "cuda")
PRESETS = ("fast", "paper")


@dataclass(frozen=True)
class ExperimentConfig:
    """One victim, one thief, one budget: everything `fmsteal.experiment.run` needs."""

    victim: str
    thief: str
    budget: int = 5000
    dataset: str = "cifar10"
    data_dir: str | None = None
    query_pool: str = "heldout"
    victim_mode: str = "lp"
    thief_mode: str = "lp"
    output: str = "label"
    top_k: int = 3
    decimals: int = 2
    strategy: str = "random"
    seed: int = 0
    device: str = "auto"
    image_size: int | None = None
    preset: str = "fast"
    train_per_class: int | None = None
    test_per_class: int | None = None

    def __post_init__(self) -> None:
        for role in ("victim", "thief"):
            spec = get_backbone(getattr(self, role))
            mode = getattr(self, f"{role}_mode")
            _choice(f"{role}_mode", mode, MODES)
            if spec.family == "scratch" and mode != "fft":
                raise ConfigError(f"{spec.name} has no pretrained weights to probe: set {role}_mode to 'fft'.")
        _choice("output", self.output, OUTPUT_MODES)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("device", self.device, DEVICES)
        _choice("preset", self.preset, PRESETS)
        _integer("budget", self.budget, 1, "the number of images the thief may send to the victim")
        _integer("seed", self.seed, 0, "a non-negative integer")
        _integer("top_k", self.top_k, 1, "how many classes a top-k answer lists")
        _integer("decimals", self.decimals, 0, "decimals kept in rounded probabilities")
        for name in ("image_size", "train_per_class", "test_per_class"):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), 8 if name == "image_size" else 1, "a positive integer or None")
        if self.data_dir is None and self.dataset not in HUB_DATASETS:
            raise ConfigError(f"Unknown dataset {self.dataset!r}: use one of {', '.join(HUB_DATASETS)} or set data_dir.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ExperimentConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"Unknown config fields {unknown}; known fields: {sorted(known)}.")
        return cls(**values)

    def job_id(self) -> str:
        """A short stable hash of the config: equal configs share results."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    @property
    def source(self) -> str:
        """Where the labelled data comes from: the data folder/archive or the hub dataset name."""
        return self.data_dir or self.dataset


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def _integer(name: str, value: object, minimum: int, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer ({meaning}); got {value!r}.")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum} ({meaning}); got {value}.")
