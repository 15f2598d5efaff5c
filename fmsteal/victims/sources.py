"""The victim-source registry and `open_victim`: a spec string in, a `VictimHandle` out.

A source is a function `fn(target, *, num_classes, class_names, **params) -> VictimHandle`
registered with `@VICTIM_SOURCES.register(name, help=..., params=(Field, ...), target=..., example=...)`.
`target` is the spec after its prefix; `params` are the source's declared options (validated here);
`num_classes` and `class_names` are what the experiment knows of the victim's classes (None / ()
when it does not), checked against every answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fmsteal.errors import ConfigError
from fmsteal.registry import Registry, split_prefix
from fmsteal.victims.handle import VictimHandle

__all__ = ["VICTIM_SOURCES", "DEFAULT_SOURCE", "VictimSource", "parse_victim", "open_victim", "resolve_victim"]

VictimSource = Callable[..., VictimHandle]

VICTIM_SOURCES: Registry[VictimSource] = Registry(
    "victim source", modules=("fmsteal.victims.api", "fmsteal.victims.file", "fmsteal.victims.url",
                              "fmsteal.victims.space"))

DEFAULT_SOURCE = "zoo"  # a spec without a known prefix names a backbone trained here


def parse_victim(spec: str) -> tuple[str, str]:
    """`"url:http://host/predict"` -> `("url", "http://host/predict")`; no known prefix -> the default source."""
    return split_prefix(spec, VICTIM_SOURCES.names(), DEFAULT_SOURCE)


def open_victim(spec: str, params: dict | None = None, *, num_classes: int | None = None,
                class_names: Sequence[str] = ()) -> VictimHandle:
    """Open the victim `spec` (e.g. `file:model.onnx`) with its source's `params` (ConfigError if invalid)."""
    source, target = parse_victim(spec)
    if source not in VICTIM_SOURCES:
        examples = ", ".join(entry.meta.get("example", entry.name) for entry in VICTIM_SOURCES)
        raise ConfigError(f"Victim {spec!r} has no known source prefix; write it as one of: {examples}.")
    entry = VICTIM_SOURCES.get(source)
    if not target.strip():
        raise ConfigError(f"Victim {spec!r} names no {entry.meta.get('target', 'target')}; "
                          f"e.g. {entry.meta.get('example', source + ':...')}.")
    if num_classes is not None and num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer; got {num_classes}.")
    if class_names and num_classes not in (None, len(class_names)):
        raise ConfigError(f"{len(class_names)} class names were given for {num_classes} classes.")
    num_classes = num_classes or len(class_names) or None
    return entry.fn(target.strip(), num_classes=num_classes, class_names=tuple(class_names), **entry.validate(params))


def resolve_victim(victim: VictimHandle | str | Callable, params: dict | None = None, *,
                   num_classes: int | None = None, class_names: Sequence[str] = ()) -> VictimHandle:
    """A handle for whatever a user passes as the victim: a `VictimHandle` (as it is), a spec string
    (`open_victim`) or a callable from images to probabilities, logits or labels (`callable_victim`)."""
    if isinstance(victim, VictimHandle):
        if num_classes is not None and victim.num_classes not in (None, num_classes):
            raise ConfigError(f"{victim.description} predicts {victim.num_classes} classes, but {num_classes} "
                              f"are expected.")
        return victim
    if isinstance(victim, str):
        return open_victim(victim, params, num_classes=num_classes, class_names=class_names)
    if params:
        raise ConfigError(f"Options {', '.join(params)} apply to victim sources given by name, not to a callable.")
    from fmsteal.victims.api import callable_victim

    return callable_victim(victim, num_classes=num_classes or len(class_names) or None, class_names=class_names)
