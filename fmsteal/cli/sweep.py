"""The `sweep` command: run a grid from a preset or a YAML/JSON file, with one overall progress bar."""

from __future__ import annotations

import argparse
import shlex
import sys

from tqdm import tqdm

from fmsteal.service.presets import PRESETS


def add_sweep_parser(subparsers) -> None:
    """Register `sweep` on the CLI's sub-command parsers."""
    sweep = subparsers.add_parser("sweep", help="run a grid of experiments (resumable) and write its table")
    grid = sweep.add_mutually_exclusive_group(required=True)
    grid.add_argument("--preset", choices=sorted(PRESETS), help="a named grid (fmsteal/service/presets.py)")
    grid.add_argument("--grid", help="a YAML or JSON file: victims, thieves, budgets, seeds, outputs, "
                                     "victim_modes, fixed")
    sweep.add_argument("--out", required=True, help="output folder: cards/, <grid>.csv, PROVENANCE.md")
    sweep.add_argument("--jobs", type=int, default=1, help="local worker processes (default 1); Ray schedules by its own CPUs")
    sweep.add_argument("--executor", choices=["local", "ray"], default="local",
                       help="local (default) or ray (needs `pip install ray`; uses the cluster ray.init() finds)")
    sweep.add_argument("--stop-after", type=float, metavar="MINUTES",
                       help="start no cell after MINUTES (running cells finish; rerun the command to resume)")
    sweep.add_argument("--list", action="store_true", help="print the cells and whether each is done, run nothing")


def sweep_main(args: argparse.Namespace) -> int:
    """Run the sweep `args` describe; 1 if a cell failed, else 0 (cells a time limit left are not failures)."""
    from fmsteal.service.sweep import Grid, card_path, run_sweep

    grid = Grid.from_preset(args.preset) if args.preset else Grid.from_file(args.grid)
    if args.list:
        for config in grid.cells():
            done = "done" if card_path(args.out, config).exists() else "todo"
            print(f"{done}  {config.job_id()}  {config.victim} ({config.victim_mode}) <- {config.thief}  "
                  f"{config.budget}q {config.output} seed {config.seed}")
        return 0
    bar = tqdm(unit="cell", desc=grid.name)

    def progress(event: dict) -> None:
        if event["kind"] == "sweep":
            bar.reset(total=event["total"])
            tqdm.write(f"{event['grid']}: {event['total']} cells, {event['skipped']} already done, "
                       f"{event['todo']} to run")
        else:
            bar.n = event["done"]
            bar.set_postfix_str(event["label"] if event["status"] == "started" else "")
            if event["status"] == "done":
                tqdm.write(f"done   {event['label']} ({event['seconds']:.0f}s)")
            elif event["status"] == "failed":
                tqdm.write(f"FAILED {event['label']}: {event['error']}")

    command = "python -m fmsteal " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    stop_after_s = None if args.stop_after is None else args.stop_after * 60
    try:
        summary = run_sweep(grid, args.out, executor=args.executor, jobs=args.jobs, progress=progress,
                            command=command, stop_after_s=stop_after_s)
    except KeyboardInterrupt:
        bar.close()
        print("Interrupted: the finished cells are kept (and noted in PROVENANCE.md); rerun the same command to "
              "resume.", file=sys.stderr)
        return 130
    bar.close()
    print(f"{summary['ran']} cells run, {summary['skipped']} skipped, {len(summary['failed'])} failed "
          f"in {summary['wall_s'] / 60:.1f} min; table: {summary['table']}")
    if summary["left"]:
        print(f"The {summary['note']}; rerun the same command to resume.")
    return 1 if summary["failed"] else 0
