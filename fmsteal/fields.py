"""Declared fields: a choice's type, allowed values or range, default, help and UI label, once.

Experiment configurations, defence parameters and evaluation parameters are tuples of `Field`s;
the CLI's options, the app's widgets and validation are generated from them. Imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fmsteal.errors import ConfigError

__all__ = ["Field", "validate_params", "parse_int_list", "parse_params"]

Choices = tuple[str, ...] | Callable[[], tuple[str, ...]]


@dataclass(frozen=True)
class Field:
    """One declared choice. `kind` is "str", "int", "float" or "bool"; `choices` may be a callable
    (read lazily from a registry); `optional` admits None ("auto"/"all" in the UI)."""

    name: str
    kind: str
    default: object
    help: str
    label: str = ""
    choices: Choices | None = None
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False
    advanced: bool = True  # shown under the app's "Advanced" section
    public: bool = True  # offered to anonymous visitors of a public Space
    repeat_flag: str | None = None  # CLI: a repeatable option (e.g. --defence-param K=V) whose values join with ","

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def allowed(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices

    def range_text(self) -> str:
        """The valid values in words, for messages and help."""
        allowed = self.allowed()
        if allowed is not None:
            return "one of " + ", ".join(map(str, allowed))
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "any text"
        low = "" if self.minimum is None else _number(self.minimum)
        high = "" if self.maximum is None else _number(self.maximum)
        span = f"{low} to {high}" if low and high else f">= {low}" if low else f"<= {high}" if high else ""
        return f"{'an integer' if self.kind == 'int' else 'a number'} {span}".rstrip()

    def coerce(self, value: object) -> object:
        """`value` converted from text or a widget's number to this field's type (ConfigError if it cannot be)."""
        if value is None or (self.optional and value in ("", "auto", "all")):
            if self.optional:
                return None
            raise ConfigError(f"{self.name} needs a value ({self.range_text()}).")
        try:
            if self.kind == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                return int(value) if not isinstance(value, bool) else _fail()
            if self.kind == "float":
                return float(value) if not isinstance(value, bool) else _fail()
            if self.kind == "bool":
                if isinstance(value, str):
                    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[value.lower()]
                return bool(value)
            return str(value).strip()
        except (ValueError, TypeError, KeyError, OverflowError):
            raise ConfigError(f"{self.name} must be {self.range_text()}; got {value!r}.") from None

    def check(self, value: object) -> None:
        """ConfigError naming the field and its valid values when `value` is not one of them."""
        if value is None and self.optional:
            return
        allowed = self.allowed()
        if self.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{self.name} must be {self.range_text()}; got {value!r}.")
        if self.kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value):
            raise ConfigError(f"{self.name} must be {self.range_text()}; got {value!r}.")
        if self.kind == "bool" and not isinstance(value, bool):
            raise ConfigError(f"{self.name} must be true or false; got {value!r}.")
        if self.kind == "str" and not isinstance(value, str):
            raise ConfigError(f"{self.name} must be text; got {value!r}.")
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{self.name} must be {self.range_text()}; got {value!r}.")
        too_low = self.minimum is not None and value < self.minimum
        too_high = self.maximum is not None and value > self.maximum
        if too_low or too_high:
            raise ConfigError(f"{self.name} must be {self.range_text()}; got {value!r}.")


def _number(value: float) -> str:
    return f"{value:,}" if float(value).is_integer() else f"{value:g}"


def _fail():
    raise ValueError


def validate_params(owner: str, fields: tuple[Field, ...], values: dict) -> dict:
    """`values` coerced and checked against `fields`, completed with defaults; unknown keys refused."""
    known = {f.name: f for f in fields}
    unknown = sorted(set(values) - set(known))
    if unknown:
        valid = ", ".join(f"{f.name} ({f.range_text()}, default {f.default})" for f in fields) or "none"
        raise ConfigError(f"{owner} has no parameter {', '.join(unknown)}; its parameters: {valid}.")
    out = {}
    for f in fields:
        value = f.coerce(values[f.name]) if f.name in values else f.default
        f.check(value)
        out[f.name] = value
    return out


def parse_params(text: str | None, owner: str = "parameters") -> dict[str, str]:
    """"sigma=0.1, keep_argmax=false" -> {"sigma": "0.1", "keep_argmax": "false"} (values stay text)."""
    out = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{owner}: write each parameter as KEY=VALUE, separated by commas; got {part.strip()!r}.")
        out[key.strip()] = value.strip()
    return out


def parse_int_list(text: str, low: int, high: int, what: str, example: str) -> list[int]:
    """"8, 2,2" -> [2, 8]: the distinct integers of a comma-separated list, sorted; a ConfigError naming `what`,
    its range and an `example` unless every part is an integer from `low` to `high`."""
    try:
        values = sorted({int(part) for part in text.replace(" ", "").split(",") if part})
    except ValueError:
        values = []
    if not values or not all(low <= v <= high for v in values):
        raise ConfigError(f"{what} must be integers from {low} to {high} separated by commas, e.g. {example}; "
                          f"got {text!r}.")
    return values
