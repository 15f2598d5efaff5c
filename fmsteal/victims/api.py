"""The `api` source: a Python callable, `api:module:function`, importable from the current directory.

The callable takes n x 3 x H x W float images in [0, 1] (a torch tensor on the CPU) and returns
probabilities, logits or labels for them (a tensor, NumPy array or list; the rule is in
`fmsteal.victims.answers`), or a dict `{"probabilities"|"logits"|"labels": ...}` saying which.
`function` may be a dotted path (`mymodel:net.forward`) and may be any callable object, such as an
`nn.Module` instance; it runs under `torch.no_grad()`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

import torch

from fmsteal.errors import ConfigError
from fmsteal.fields import Field
from fmsteal.victims.handle import VictimHandle
from fmsteal.victims.sources import VICTIM_SOURCES

__all__ = ["callable_victim", "import_callable"]


def callable_victim(fn: Callable[[torch.Tensor], object], description: str | None = None, *,
                    num_classes: int | None = None, class_names: Sequence[str] = (),
                    batch_size: int = 0) -> VictimHandle:
    """A `VictimHandle` over a Python callable from [0, 1] images to probabilities, logits or labels."""
    if not callable(fn):
        raise ConfigError(f"A victim must be callable (images -> probabilities, logits or labels); "
                          f"got {type(fn).__name__}.")

    def answer(images: torch.Tensor) -> object:
        with torch.no_grad():
            return fn(images)

    name = description or f"the victim {getattr(fn, '__qualname__', type(fn).__name__)}"
    return VictimHandle(answer, name, num_classes=num_classes, class_names=class_names, batch_size=batch_size)


def import_callable(target: str) -> Callable:
    """The object named `module:attribute[.attribute]`, imported with the current directory on sys.path."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"Victim api {target!r} must be written module:function, e.g. api:mymodel:predict "
                          f"for the function predict in mymodel.py in the current directory.")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise ConfigError(f"No module {module_name!r} in the current directory ({os.getcwd()}) or on "
                              f"sys.path: run from the folder holding {module_name.split('.')[0]}.py.") from None
        raise ConfigError(f"Importing {module_name!r} failed: {error}. Install what it needs.") from None
    except Exception as error:  # the user's module may raise anything at import
        raise ConfigError(f"Importing {module_name!r} failed: {type(error).__name__}: {error}") from error
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{module_name!r} has no {attribute!r} (missing {part!r}).")
        obj = getattr(obj, part)
    if isinstance(obj, type) or not callable(obj):
        raise ConfigError(f"{target!r} is {'a class' if isinstance(obj, type) else 'not callable'}; point at a "
                          f"function (or an instance such as a model) taking images and returning scores or labels.")
    return obj


@VICTIM_SOURCES.register(
    "api", help="a Python callable importable from the current directory (images -> probabilities, logits or labels)",
    params=(Field("batch_size", "int", 0, "images per call (0: as many as the attack asks at once)", minimum=0),),
    target="module:function", example="api:mymodel:predict", flag="--victim-api")
def api_victim(target: str, *, num_classes: int | None, class_names: Sequence[str], batch_size: int) -> VictimHandle:
    return callable_victim(import_callable(target), f"api:{target}", num_classes=num_classes,
                           class_names=class_names, batch_size=batch_size)
