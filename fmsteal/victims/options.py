"""Command-line options for victim sources, made from the registry: `--victim-url URL` and friends.

`add_victim_arguments(parser)` adds one flag per source that declares one (`--victim-api`,
`--victim-file`, `--victim-url`, `--victim-space`; mutually exclusive) and each source option as
`--victim-<option>` (`--victim-timeout`, `--victim-rate`, `--victim-answer-log`, ...), prefixed so
they never clash with the attack's own options. `victim_from_arguments(args)` returns the spec and
the options the user set, ready for `open_victim(spec, params)`.
"""

from __future__ import annotations

import argparse

from fmsteal.errors import ConfigError
from fmsteal.victims.sources import VICTIM_SOURCES, parse_victim

__all__ = ["add_victim_arguments", "victim_from_arguments"]


def add_victim_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """The source flags (one of them `required`, if so) and every source option, each defaulting to unset."""
    group = parser.add_argument_group("victim", "the model under attack, from one source")
    choice = group.add_mutually_exclusive_group(required=required)
    options: dict[str, dict[str, list[str]]] = {}  # option -> its help text -> the sources that give it
    for entry in VICTIM_SOURCES:
        if "flag" in entry.meta:
            example = parse_victim(entry.meta["example"])[1]  # the flag takes the target without its prefix
            choice.add_argument(entry.meta["flag"], metavar=entry.meta.get("target", "TARGET"), default=None,
                                dest=_dest(entry.name), help=f"{entry.help} (e.g. {entry.meta['flag']} {example})")
        for field in entry.params:
            text = f"{field.help} (default {field.default!r})"
            options.setdefault(field.name, {}).setdefault(text, []).append(entry.name)
    for name, helps in options.items():
        group.add_argument(f"--victim-{name.replace('_', '-')}", dest=f"victim_option_{name}", default=None,
                           metavar=name.upper(), help="; ".join(f"{', '.join(sources)}: {text}"
                                                                for text, sources in helps.items()))


def victim_from_arguments(args: argparse.Namespace) -> tuple[str, dict] | None:
    """(spec, the options given on the command line) of the chosen source; None when no source flag was given.
    A ConfigError names options the chosen source does not take."""
    chosen = [(e, getattr(args, _dest(e.name), None)) for e in VICTIM_SOURCES if "flag" in e.meta]
    entry, target = next(((e, t) for e, t in chosen if t is not None), (None, None))
    given = {key.removeprefix("victim_option_"): value for key, value in vars(args).items()
             if key.startswith("victim_option_") and value is not None}
    if entry is None:
        if given:
            raise ConfigError(f"--victim-{next(iter(given)).replace('_', '-')} needs a victim source: "
                              f"{', '.join(e.meta['flag'] for e, _ in chosen)}.")
        return None
    known = {field.name for field in entry.params}
    foreign = sorted(set(given) - known)
    if foreign:
        takes = ", ".join(f"--victim-{n.replace('_', '-')}" for n in sorted(known)) or "no options"
        raise ConfigError(f"{entry.meta['flag']} takes {takes}; not --victim-{foreign[0].replace('_', '-')}.")
    return f"{entry.name}:{target}", given


def _dest(source: str) -> str:
    return f"victim_source_{source}"
