"""Gradio widgets generated from declared fields, read back by field name.

`Form(fields)` makes one widget per `fmsteal.fields.Field` (label, help, choices, range from the
declaration); `form.values(data)` turns a Gradio event's `{component: value}` into `{field name: value}`;
`api_function(fields, fn)` gives `fn(**values)` a signature with one typed, defaulted parameter per
field, so `gr.api` publishes the same names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import gradio as gr

from fmsteal.fields import Field

__all__ = ["Form", "api_function", "choice_labels"]

RADIO_MAX = 4  # up to this many choices show as a radio, more as a dropdown
AUTO = "auto"


def choice_labels(field: Field) -> list[tuple[str, str]] | list[str]:
    """A field's choices as (label, value) pairs: backbones say their family, size and availability."""
    allowed = list(field.allowed() or ())
    if field.name in ("victim", "thief"):
        from fmsteal.engine.zoo import get_backbone

        return [(get_backbone(name).describe(), name) for name in allowed]
    return ([AUTO] if field.optional else []) + allowed


def _widget(field: Field, value: object) -> gr.components.Component:
    elem_id = field.name.replace("_", "-")
    common = {"label": field.title, "info": field.help, "elem_id": elem_id}
    if field.allowed() is not None:
        choices = choice_labels(field)
        shown = AUTO if value is None else value
        if len(choices) <= RADIO_MAX:
            return gr.Radio(choices, value=shown, **common)
        return gr.Dropdown(choices, value=shown, **common)
    if field.kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if field.kind in ("int", "float"):
        label = f"{field.title} (0 = auto)" if field.optional else field.title
        return gr.Number(value or 0, precision=0 if field.kind == "int" else None, minimum=0 if field.optional
                         else field.minimum, maximum=field.maximum, **{**common, "label": label})
    return gr.Textbox("" if value is None else str(value), **common)


class Form:
    """One widget per field, in declaration order; `main` fields above, the rest under "Advanced"."""

    def __init__(self, fields: tuple[Field, ...], values: dict | None = None,
                 widgets: dict[str, Callable[[Field, object], gr.components.Component]] | None = None) -> None:
        self.fields = fields
        self.values_at_start = {f.name: f.default for f in fields} | (values or {})
        self.factories = widgets or {}
        self.widgets: dict[str, gr.components.Component] = {}

    def render(self, advanced: bool) -> None:
        """Create the widgets of the main (`advanced=False`) or advanced fields in the current layout block."""
        for field in self.fields:
            if field.advanced == advanced:
                make = self.factories.get(field.name, _widget)
                self.widgets[field.name] = make(field, self.values_at_start[field.name])

    @property
    def inputs(self) -> set:
        return set(self.widgets.values())

    def values(self, data: dict) -> dict:
        """`{field name: value}` from a Gradio event's `{component: value}`."""
        return {name: data[widget] for name, widget in self.widgets.items() if widget in data}


def api_function(fields: tuple[Field, ...], fn: Callable[..., object], name: str, doc: str,
                 first: tuple[str, type] | None = None) -> Callable[..., object]:
    """`fn(**values)` with one parameter per field (typed, defaulted), for `gr.api`; `first` = (name, type) of a
    required parameter before them (e.g. the caller's owner token)."""
    types = {"int": int, "float": float, "bool": bool, "str": str}

    def call(*args, **kwargs):
        bound = call.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        return fn(**bound.arguments)

    parameters = [inspect.Parameter(first[0], inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=first[1])] if first else []
    for field in fields:
        kind = types[field.kind] | None if field.optional else types[field.kind]
        parameters.append(inspect.Parameter(field.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=field.default,
                                            annotation=kind))
    returns = inspect.signature(fn).return_annotation
    call.__signature__ = inspect.Signature(parameters, return_annotation=returns)
    call.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returns}
    call.__name__, call.__doc__ = name, doc
    return call
