"""The `fmsteal` command: sub-commands `run`, `attack`, `sweep`, `pack`, `unpack`, `zoo`, `defences`."""

from __future__ import annotations

import argparse
import sys

from fmsteal.errors import FmstealError

LISTINGS = {"zoo": "list the backbones and which load offline here",
            "defences": "list the victim-side defences, their parameters, defaults and ranges"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="fmsteal", description="Watch a model-stealing attack happen.")
    commands = parser.add_subparsers(dest="command", required=True)
    if not (argv and argv[0] in LISTINGS):  # a listing needs none of the other commands' (heavy) imports
        _add_run_parser(commands)
        from fmsteal.cli.attack import add_attack_parser

        add_attack_parser(commands)
        try:
            from fmsteal.cli.sweep import add_sweep_parser
        except ImportError:
            add_sweep_parser = None
        if add_sweep_parser is not None:
            add_sweep_parser(commands)
        from fmsteal.cli.pack import add_pack_parsers

        add_pack_parsers(commands)
    for name, summary in LISTINGS.items():
        commands.add_parser(name, help=summary)
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from fmsteal.cli.run import run_main

            return run_main(args)
        if args.command == "attack":
            from fmsteal.cli.attack import attack_main

            return attack_main(args)
        if args.command == "defences":
            from fmsteal.cli.listings import defences_main

            return defences_main()
        if args.command in ("pack", "unpack"):
            from fmsteal.cli import pack

            return pack.pack_main(args) if args.command == "pack" else pack.unpack_main(args)
        if args.command == "zoo":
            from fmsteal.cli.listings import zoo_main

            return zoo_main()
        from fmsteal.cli.sweep import sweep_main

        return sweep_main(args)
    except FmstealError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _add_run_parser(commands) -> None:
    from fmsteal.cli.options import add_field_options
    from fmsteal.experiment.config import FIELDS

    from fmsteal.evaluation.registry import EVALUATIONS

    run = commands.add_parser("run", help="run one experiment and write its run card")
    add_field_options(run, FIELDS, required=("victim", "thief"))
    for entry in EVALUATIONS:  # --no-transfer and friends: skip one of the evaluations a run makes by default
        if entry.meta.get("default_on", True):
            run.add_argument(f"--no-{entry.name}", action="append_const", const=entry.name, dest="skipped",
                             default=[], help=f"skip the {entry.name} evaluation ({entry.help})")
    run.add_argument("--out", default="runs", help="folder for the run card (default runs/)")
