"""The `run` command: progress bars per phase, a one-screen summary, a run card."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from fmsteal.experiment.cards import card_name, evaluation_findings, write_card
from fmsteal.cli.options import values_from_args
from fmsteal.experiment.config import FIELDS, ExperimentConfig
from fmsteal.engine.zoo import get_backbone


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The ExperimentConfig the `run` arguments describe (unset options take their declared defaults;
    `--no-<evaluation>` leaves that evaluation out of the default ones)."""
    config = ExperimentConfig(**values_from_args(args, FIELDS))
    skipped = getattr(args, "skipped", None)
    if not skipped:
        return config
    kept = [name for name in config.evaluation_names() if name not in skipped]
    return replace(config, evaluations=",".join(kept) or "none")


def run_main(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # bad options are refused before torch is imported
    from fmsteal.experiment.pipeline import run  # torch: seconds to import, so not for `--help`

    card = show_events(run(config))
    path = write_card(card, Path(args.out) / card_name(card))
    print(summary(card, path))
    return 0


def show_events(events) -> dict:
    """Print a run's events (a progress bar per step on a terminal, plain lines in logs); its card."""
    bar: tqdm | None = None
    card: dict = {}
    for event in events:
        kind = event["kind"]
        if kind == "progress":
            if bar is None or bar.total != event["total"] or event["done"] < bar.n:
                if bar is not None:
                    bar.close()
                bar = tqdm(total=event["total"], unit="step", leave=False, disable=None)  # none in logs
            bar.set_description(event["message"], refresh=False)
            bar.update(event["done"] - bar.n)
            continue
        if bar is not None:
            bar.close()
            bar = None
        if kind == "phase":
            tqdm.write(f"== {event['message']}")
        elif kind == "log":
            tqdm.write(f"   {event['message']}")
        elif kind == "checkpoint":
            tqdm.write(f"   {event['queries']:>7,} queries: agreement {event['agreement']:.1%}, "
                       f"thief accuracy {event['thief_accuracy']:.1%}")
        elif kind == "result":
            card = event["card"]
    return card


def summary(card: dict, path: Path) -> str:
    """The end-of-run summary in a few lines."""
    config = card["config"]
    victim, thief = get_backbone(config["victim"]), get_backbone(config["thief"])
    timings = ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in card["timings"].items())
    defence = card.get("defence")
    defended = [] if not defence else [
        f"Defence {defence['name']}: the strongest thief ({defence['strongest_thief']}) agrees "
        f"{defence['worst_case_agreement']:.2%}; honest users' accuracy {defence['api_accuracy']:.2%} "
        f"(undefended {defence['undefended_accuracy']:.2%})"]
    return "\n".join([
        "",
        f"Victim  {victim.label} ({config['victim_mode'].upper()}, {card['image_size']['victim']}px): "
        f"test accuracy {card['victim_accuracy']:.2%}",
        f"Thief   {thief.label} ({config['thief_mode'].upper()}, {card['image_size']['thief']}px) after "
        f"{card['queries_spent']:,} {config['output']} queries ({config['strategy']}):",
        f"        agreement {card['agreement']:.2%} on {card['test_size']:,} test images, "
        f"accuracy {card['thief_accuracy']:.2%}, macro-F1 {card['macro_f1']:.3f}",
        *defended,
        *(f"{name}: {finding}" for name, finding in evaluation_findings(card)),
        f"Device  {card['device']}; time: {timings}",
        f"Card    {path}",
    ])
