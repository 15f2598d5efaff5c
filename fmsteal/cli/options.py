"""argparse options generated from declared fields (`fmsteal.fields.Field`): one option per field."""

from __future__ import annotations

import argparse

from fmsteal.errors import ConfigError
from fmsteal.fields import Field

__all__ = ["add_field_options", "values_from_args"]


def _typed(field: Field):
    """An argparse `type` that coerces through the field (so messages name the field and its range)."""

    def convert(text: str):
        try:
            return field.coerce(text)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = field.kind
    return convert


def add_field_options(parser: argparse.ArgumentParser, fields: tuple[Field, ...], required: tuple[str, ...] = ()) -> None:
    """`--field-name` for every field, with its type, help, default and valid values."""
    for field in fields:
        flag = "--" + field.name.replace("_", "-")
        default = "required" if field.name in required else f"default {field.default if field.default is not None else 'auto'}"
        help_text = f"{field.help} ({field.range_text()}; {default})"
        if field.repeat_flag:
            parser.add_argument(field.repeat_flag, dest=field.name, action="append", default=None, metavar="KEY=VALUE",
                                help=f"{field.help} (repeatable)")
        elif field.kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=_typed(field), default=None, required=field.name in required,
                                metavar=field.name.upper(), help=help_text)


def values_from_args(args: argparse.Namespace, fields: tuple[Field, ...]) -> dict:
    """The fields the command line set (unset ones are left to their declared defaults)."""
    values = {f.name: getattr(args, f.name) for f in fields if getattr(args, f.name, None) is not None}
    return {name: ",".join(v) if isinstance(v, list) else v for name, v in values.items()}
