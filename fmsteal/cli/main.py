"""Command line: `python -m fmsteal run|sweep|zoo`."""

from __future__ import annotations

import argparse
import sys

from fmsteal.errors import FmstealError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmsteal", description="Watch a model-stealing attack happen.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(commands)
    commands.add_parser("zoo", help="list the backbones and which load offline here")
    try:
        from fmsteal.cli.sweep import add_sweep_parser
    except ImportError:
        add_sweep_parser = None
    if add_sweep_parser is not None:
        add_sweep_parser(commands)
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from fmsteal.cli.run import run_main

            return run_main(args)
        if args.command == "zoo":
            from fmsteal.cli.run import zoo_main

            return zoo_main()
        from fmsteal.cli.sweep import sweep_main

        return sweep_main(args)
    except FmstealError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _add_run_parser(commands) -> None:
    run = commands.add_parser("run", help="run one experiment and write its run card")
    run.add_argument("--victim", required=True, help="victim backbone (see `zoo`)")
    run.add_argument("--thief", required=True, help="thief backbone (see `zoo`)")
    run.add_argument("--budget", type=int, default=5000, help="queries the thief may send (default 5000)")
    data = run.add_mutually_exclusive_group()
    data.add_argument("--data-dir", help="image folder or .tar.gz laid out train/<class>/, test/<class>/")
    data.add_argument("--dataset", default="cifar10", help="hub dataset (default cifar10)")
    run.add_argument("--query-pool", default="heldout", help="heldout (default), cifar10/cifar100/tiny-imagenet, imagenet32 (set FMSTEAL_IMAGENET32) or an image folder")
    run.add_argument("--victim-mode", choices=["lp", "fft"], default=None, help="lp (default) or fft; scratch: fft")
    run.add_argument("--thief-mode", choices=["lp", "fft"], default=None, help="lp (default) or fft")
    run.add_argument("--output", choices=["label", "topk", "probs", "rounded"], default="label")
    run.add_argument("--top-k", type=int, default=3)
    run.add_argument("--decimals", type=int, default=2)
    run.add_argument("--strategy", choices=["random", "entropy", "kcenter"], default="random")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    run.add_argument("--image-size", type=int, default=None, help="input px (default: native on GPU, small on CPU)")
    run.add_argument("--preset", choices=["fast", "paper"], default="fast", help="training hyperparameters")
    run.add_argument("--train-per-class", type=int, default=None, help="use a stratified subset of the train split")
    run.add_argument("--test-per-class", type=int, default=None, help="use a stratified subset of the test split")
    run.add_argument("--out", default="runs", help="folder for the run card (default runs/)")

