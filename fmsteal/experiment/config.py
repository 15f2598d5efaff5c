"""ExperimentConfig: every choice of one experiment, declared once, validated, plain data, with a stable id.

`FIELDS` declares each choice (type, allowed values or range, default, help, label); the dataclass,
its validation, the CLI's options and the app's widgets are all made from it. Adding a choice is
one `Field` here plus its use. Importing this module imports no torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from fmsteal.errors import ConfigError
from fmsteal.fields import Field

__all__ = ["ExperimentConfig", "FIELDS", "field_named", "MAX_SEED", "ADDED_LATER"]

MAX_SEED = 2**31 - 1


def _backbones() -> tuple[str, ...]:
    from fmsteal.engine.zoo import ZOO

    return tuple(ZOO)


def _input_scalings() -> tuple[str, ...]:
    from fmsteal.engine.zoo import INPUT_SCALINGS

    return tuple(INPUT_SCALINGS)


def _registry(module: str, name: str):
    import importlib

    return getattr(importlib.import_module(module), name)


def _output_modes() -> tuple[str, ...]:
    return _registry("fmsteal.adversary.outputs", "OUTPUT_MODES").names()


def _strategies() -> tuple[str, ...]:
    return _registry("fmsteal.adversary.strategies", "STRATEGIES").names()


def _hub_datasets() -> tuple[str, ...]:
    from fmsteal.engine.catalog import HUB_DATASETS

    return tuple(HUB_DATASETS)


FIELDS: tuple[Field, ...] = (
    Field("victim", "str", "tf_efficientnet_lite0", "the model being stolen: a backbone + a head trained on the dataset",
          "Victim backbone", choices=_backbones, advanced=False),
    Field("thief", "str", "tf_efficientnet_lite0", "the attacker's public pretrained model", "Thief backbone",
          choices=_backbones, advanced=False),
    Field("budget", "int", 5000, "images the thief may send to the victim's API", "Query budget",
          minimum=1, maximum=1_000_000, advanced=False),
    Field("dataset", "str", "cifar10", "the labelled dataset from the Hugging Face Hub (when no data folder is given)",
          "Dataset (Hugging Face Hub)", choices=_hub_datasets),
    Field("data_dir", "str", None, "an image folder or .tar.gz laid out train/<class>/*.jpg and test/<class>/*.jpg",
          "Data folder or .tar.gz", optional=True, public=False),
    Field("query_pool", "str", "heldout", "'heldout' (half of the train split), cifar10/cifar100/tiny-imagenet, "
          "imagenet32 (needs FMSTEAL_IMAGENET32) or an image folder", "Query pool"),
    Field("victim_mode", "str", None, "lp = linear probe (frozen backbone), fft = full fine-tuning; "
          "default: lp, or fft for the scratch CNN", "Victim training", choices=("lp", "fft"), optional=True),
    Field("thief_mode", "str", None, "lp = linear probe, fft = full fine-tuning; default: lp, or fft for the scratch CNN",
          "Thief training", choices=("lp", "fft"), optional=True),
    Field("output", "str", "label", "what the victim's API answers", "Victim answers", choices=_output_modes),
    Field("top_k", "int", 3, "how many classes a top-k answer lists", "Top-k", minimum=1, maximum=100),
    Field("decimals", "int", 2, "decimals kept in rounded probabilities", "Decimals", minimum=0, maximum=8),
    Field("strategy", "str", "random", "how the thief picks its queries", "Query selection", choices=_strategies),
    Field("seed", "int", 0, "the random seed of data split, training and selection", "Seed",
          minimum=0, maximum=MAX_SEED),
    Field("device", "str", "auto", "auto = CUDA when present, else CPU", "Device", choices=("auto", "cpu", "cuda")),
    Field("image_size", "int", None, "input size in px (default: native on a GPU, smaller on a CPU)",
          "Image size (px)", minimum=8, maximum=1024, optional=True),
    Field("victim_inputs", "str", "backbone", "how the victim's input pixels are scaled: its backbone's own "
          "mean/std, cifar10 statistics (the authors' victims) or raw [0, 1] pixels (the authors' thieves)",
          "Victim input scaling", choices=_input_scalings),
    Field("thief_inputs", "str", "backbone", "how the thief's input pixels are scaled (as victim_inputs)",
          "Thief input scaling", choices=_input_scalings),
    Field("preset", "str", "fast", "training hyperparameters: fast (CPU-friendly) or paper (the authors' recipe)",
          "Training preset", choices=("fast", "paper")),
    Field("train_per_class", "int", None, "use the first N train images of each class (default: all)",
          "Train images/class", minimum=1, maximum=10**7, optional=True),
    Field("test_per_class", "int", None, "use the first N test images of each class (default: all)",
          "Test images/class", minimum=1, maximum=10**7, optional=True),
    Field("defence", "str", "none", "a defence inside the victim's API, between its probabilities and the answer",
          "Defence", choices=lambda: _registry("fmsteal.adversary.defences", "DEFENCES").names()),
    Field("defence_params", "str", "", "the defence's parameters as KEY=VALUE, separated by commas (see "
          "`fmsteal defences`)", "Defence parameters", repeat_flag="--defence-param"),
    Field("evaluations", "str", "default", "what to measure after the theft: 'default' (every evaluation on by "
          "default), 'none', or evaluation names separated by commas ('default' among them: the default ones too)",
          "Evaluations"),
)
# Fields added after run cards were first published: left out of the job id at their default, so the
# ids (and file names) of earlier cards, precomputed grids included, stay valid.
ADDED_LATER = ("defence", "defence_params", "evaluations", "victim_inputs", "thief_inputs")
_BY_NAME = {f.name: f for f in FIELDS}


def field_named(name: str) -> Field:
    return _BY_NAME[name]


_Base = dataclasses.make_dataclass(
    "_ConfigFields", [(f.name, object, dataclasses.field(default=f.default)) for f in FIELDS], frozen=True)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(_Base):
    """One victim, one thief, one budget: everything `fmsteal.experiment.run` needs.

    Modes left unset take the backbone's default (LP; FFT for the scratch CNN, which has nothing to probe).
    """

    def __post_init__(self) -> None:
        for f in FIELDS:
            f.check(getattr(self, f.name))
        from fmsteal.engine.zoo import get_backbone

        for role in ("victim", "thief"):
            spec = get_backbone(getattr(self, role))
            mode = getattr(self, f"{role}_mode")
            if mode is None:
                object.__setattr__(self, f"{role}_mode", spec.default_mode)
            elif spec.family == "scratch" and mode != "fft":
                raise ConfigError(f"{spec.name} has no pretrained weights to probe: set {role}_mode to 'fft'.")
        if self.data_dir is not None and not self.data_dir.strip():
            object.__setattr__(self, "data_dir", None)
        if self.evaluations not in ("default", "none"):
            self.evaluation_names()  # validates the names
        if self.defence != "none" or self.defence_params:
            self.defence_plan()  # validates the defence, its parameters and its fit to the output mode

    def defence_plan(self):
        """The validated defence and the output mode the defended API answers in (`plan_defence`)."""
        from fmsteal.adversary.defences import plan_defence
        from fmsteal.fields import parse_params

        return plan_defence(self.defence, parse_params(self.defence_params, f"defence {self.defence!r}"),
                            self.output, self.top_k, self.decimals)

    def evaluation_names(self) -> list[str]:
        """The evaluations this run performs, in registry order ("default" in a list stands for every default one:
        `default,transfer-sweep`)."""
        from fmsteal.evaluation.registry import EVALUATIONS

        if self.evaluations == "none":
            return []
        names = {name.strip() for name in self.evaluations.split(",") if name.strip()}
        for name in names - {"default"}:
            EVALUATIONS.get(name)  # ConfigError naming the valid evaluations
        return [entry.name for entry in EVALUATIONS
                if entry.name in names or ("default" in names and entry.meta.get("default_on", True))]

    def backbone(self, role: str) -> str:
        """The zoo name of the victim's or thief's backbone with its input scaling (`resnet18@raw`)."""
        from fmsteal.engine.zoo import scaled_name

        return scaled_name(getattr(self, role), getattr(self, f"{role}_inputs"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ExperimentConfig":
        unknown = sorted(set(values) - set(_BY_NAME))
        if unknown:
            raise ConfigError(f"Unknown config fields {unknown}; known fields: {sorted(_BY_NAME)}.")
        return cls(**values)

    @classmethod
    def from_inputs(cls, values: dict) -> "ExperimentConfig":
        """A config from loosely typed inputs (text, widget numbers; 0 or "" = unset for optional fields)."""
        coerced = {}
        for name, value in values.items():
            f = _BY_NAME.get(name)
            if f is None:
                raise ConfigError(f"Unknown config field {name!r}; known fields: {', '.join(_BY_NAME)}.")
            if f.optional and value in (0, "", None, "auto"):
                value = None
            coerced[name] = f.coerce(value)
        return cls(**coerced)

    def job_id(self) -> str:
        """A short stable hash of the config: equal configs share results."""
        values = {k: v for k, v in self.to_dict().items() if not (k in ADDED_LATER and v == _BY_NAME[k].default)}
        return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def source(self) -> str:
        """Where the labelled data comes from: the data folder/archive or the hub dataset name."""
        return self.data_dir or self.dataset
