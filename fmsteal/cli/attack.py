"""The `attack` command: steal your own model (a Python function, a file, an HTTP API, a Space)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmsteal.cli.options import add_field_options, values_from_args
from fmsteal.cli.run import show_events
from fmsteal.errors import ConfigError
from fmsteal.experiment.cards import attack_card_name, write_card
from fmsteal.experiment.config import field_named

__all__ = ["add_attack_parser", "attack_main"]

OPTIONS = ("thief", "budget", "output", "top_k", "decimals", "strategy", "seed", "device", "image_size", "preset",
           "thief_mode")


def add_attack_parser(commands) -> None:
    """Register `attack` on the CLI's sub-command parsers."""
    from fmsteal.victims.options import add_victim_arguments

    parser = commands.add_parser("attack", help="steal your own model: a function, an ONNX/TorchScript file, "
                                                "an HTTP API or a Gradio Space")
    add_victim_arguments(parser, required=True)
    parser.add_argument("--test", required=True, help="labelled test images: a dataset name (cifar10, ...), or a "
                                                      "folder / .tar.gz laid out test/<class>/*.jpg (and train/)")
    parser.add_argument("--pool", default=None, help="the images the thief may send: a dataset name, a folder or "
                                                     "archive (default: the train split of --test)")
    add_field_options(parser, tuple(field_named(name) for name in OPTIONS))
    parser.add_argument("--max-test", type=int, default=None, metavar="N",
                        help="score on at most N test images (a seeded random subset): at most N evaluation queries "
                             "(default: every test image)")
    parser.add_argument("--out", default="runs", help="folder for the run card (default runs/)")


def attack_main(args: argparse.Namespace) -> int:
    from fmsteal.experiment.attack import attack
    from fmsteal.victims.options import victim_from_arguments

    spec, params = victim_from_arguments(args)
    values = values_from_args(args, tuple(field_named(name) for name in OPTIONS))
    if not args.test:
        raise ConfigError("--test names the labelled images the copy is scored on.")
    card = show_events(attack(spec, pool=args.pool or args.test, test=args.test, victim_params=params,
                              max_test=args.max_test, **values))
    path = write_card(card, Path(args.out) / attack_card_name(card))
    print(f"\nAgreement with the victim {card['agreement']:.2%} on {card['test_size']:,} test images after "
          f"{card['queries_spent']:,} {card['config']['output']} queries (+{card['evaluation_queries']:,} evaluation "
          f"queries); thief accuracy {card['thief_accuracy']:.2%}, victim accuracy {card['victim_accuracy']:.2%}."
          f"{_traffic(card['victim_accounting'])}"
          f"\nCard    {path}")
    return 0


def _traffic(accounting: dict) -> str:
    """What the victim was asked, from the card's `victim_accounting` (counts that are 0 left out)."""
    extra = ((accounting["replayed"], "answered from the answer log"), (accounting["probes"], "probe images"),
             (accounting["failed_attempts"], "failed request(s) retried"))
    return f"\nVictim  {accounting['sent']:,} images sent" + "".join(f", {n:,} {what}" for n, what in extra if n)
