"""Registries for fmsteal's extension points, in the style of timm's `register_model`.

A `Registry` is a named table filled by a decorator: `@OUTPUT_MODES.register("label", help=...)`.
Lookup, listing and the "unknown name" message live here once. `split_prefix` is the one parser
for names with a source prefix (`file:model.onnx`, `url:https://...`), as timm's `hf-hub:`.
Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fmsteal.errors import ConfigError
from fmsteal.fields import Field, validate_params

__all__ = ["Entry", "Registry", "split_prefix"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[F]):
    """One registered implementation: its name, function, one-line help, typed parameters, extras."""

    name: str
    fn: F
    help: str
    params: tuple[Field, ...] = ()
    meta: dict = field(default_factory=dict)

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def validate(self, values: dict | None) -> dict:
        """`values` checked against the parameters and completed with defaults (ConfigError otherwise)."""
        return validate_params(f"{self.name}", self.params, values or {})


class Registry(Generic[F]):
    """A table of named implementations of one extension point."""

    def __init__(self, kind: str, modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[F]] = {}
        self._modules = modules  # modules whose import fills the table (imported on first lookup)

    def register(self, name: str, help: str, params: tuple[Field, ...] = (), **meta) -> Callable[[F], F]:
        """Decorator: add the function under `name` (a second entry of one name is a bug)."""

        def add(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice.")
            self._entries[name] = Entry(name, fn, help, tuple(params), meta)
            return fn

        return add

    def _load(self) -> None:
        import importlib

        while self._modules:
            module, self._modules = self._modules[0], self._modules[1:]
            importlib.import_module(module)

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(self._entries)

    def get(self, name: str) -> Entry[F]:
        """The entry called `name`; a ConfigError naming the valid choices otherwise."""
        self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"Unknown {self.kind} {name!r}: use one of {', '.join(self._entries)}.") from None

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[F]]:
        self._load()
        return iter(list(self._entries.values()))


def split_prefix(name: str, prefixes: tuple[str, ...], default: str) -> tuple[str, str]:
    """`"file:model.onnx"` -> `("file", "model.onnx")`; a name without a known prefix gets `default`."""
    head, sep, rest = name.partition(":")
    if sep and head in prefixes:
        return head, rest
    return default, name
