"""Grids of experiments: expand into cells, run them resumably (here, in processes or on Ray), tabulate.

A cell is one `ExperimentConfig`; its run card is `out_dir/cards/<job_id>.json`, written atomically
when the cell finishes, so a cell with a card is done and a cell without one is (re)run. The
embedding and victim caches (FMSTEAL_CACHE) are shared by all cells: cells are ordered so that a
victim is trained once per seed and reused by every thief, and in parallel runs the first cell of
each new victim or thief backbone runs alone so no two processes embed the same images.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from fmsteal.adversary.defences import DEFENCES, plan_defence
from fmsteal.adversary.thieves import THIEVES
from fmsteal.experiment.cards import read_card, write_card
from fmsteal.experiment.config import ExperimentConfig
from fmsteal.errors import Cancelled, ConfigError, FmstealError
from fmsteal.fields import parse_params
from fmsteal.service.conditions import counted
from fmsteal.service.presets import PRESETS
from fmsteal.engine.zoo import get_backbone

REPO = Path(__file__).resolve().parents[2]
AXES = ("victims", "thieves", "budgets", "seeds", "outputs", "victim_modes", "defences")
TABLE_COLUMNS = ["source", "dataset", "victim_mode", "victim", "victim_label", "thief", "thief_label", "budget",
                 "output", "seed", "agreement", "victim_acc", "thief_acc", "macro_f1", "strategy"]
# Added to the table when the grid has defences: the whole run's trade-off, repeated on each checkpoint row.
# Each thief besides the default one has its agreement as `<thief>_agreement` (empty where it does not apply).
THIEF_COLUMNS = [f"{name}_agreement" for name in THIEVES.names() if name != "distil"]
DEFENCE_COLUMNS = ["defence", "defence_params", "api_accuracy", "answers_changed", "mean_l1", "agreement_with_api",
                   "detected_at", "false_alarm_rate", "out_of_distribution_fraction", "marked_fraction",
                   "worst_case_agreement", "strongest_thief", *THIEF_COLUMNS,
                   "watermark_thief_log10_p", "watermark_innocent_log10_p"]
Progress = Callable[[dict], None]


@dataclass(frozen=True)
class Grid:
    """Axes crossed into cells plus config fields shared by all; relative paths resolve against base_dir."""

    name: str
    victims: tuple[str, ...]
    thieves: tuple[str, ...]
    budgets: tuple[int, ...] = (5000,)
    seeds: tuple[int, ...] = (0,)
    outputs: tuple[str, ...] = ("label",)
    victim_modes: tuple[str, ...] = ("auto",)  # "auto": the backbone's default (LP; FFT for scratch)
    defences: tuple[str, ...] = ("none",)  # "name" or "name:KEY=VALUE,KEY=VALUE"; crossed with the outputs they fit
    fixed: dict = field(default_factory=dict)
    base_dir: Path = REPO

    @classmethod
    def from_dict(cls, name: str, spec: dict, base_dir: Path = REPO) -> "Grid":
        unknown = sorted(set(spec) - set(AXES) - {"fixed", "name"})
        if unknown:
            raise ConfigError(f"Unknown grid keys {unknown}: use {', '.join(AXES)}, fixed (and name).")
        missing = [axis for axis in ("victims", "thieves") if not spec.get(axis)]
        if missing:
            raise ConfigError(f"A grid needs at least one entry in {' and '.join(missing)}.")
        axes = {axis: tuple(_as_list(spec[axis])) for axis in AXES if axis in spec}
        for bad in ("victim", "thief") + tuple(a[:-1] for a in AXES[2:]):
            if bad in spec.get("fixed", {}):
                raise ConfigError(f"{bad!r} is an axis of the grid: list it under {bad}s, not under fixed.")
        for entry in axes.get("defences", ()):
            defence, params = split_defence(entry)
            DEFENCES.get(defence).validate(parse_params(params, f"defence {entry!r}"))  # names the valid choices
        return cls(name=spec.get("name", name), fixed=dict(spec.get("fixed", {})), base_dir=Path(base_dir), **axes)

    @classmethod
    def from_preset(cls, name: str) -> "Grid":
        if name not in PRESETS:
            raise ConfigError(f"Unknown sweep preset {name!r}: use one of {', '.join(PRESETS)}.")
        return cls.from_dict(name, PRESETS[name])

    @classmethod
    def from_file(cls, path: str | Path) -> "Grid":
        """A grid from a YAML or JSON file; its name defaults to the file's stem."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Grid file {str(path)!r} does not exist.")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            spec = yaml.safe_load(text)
        else:
            spec = json.loads(text)
        if not isinstance(spec, dict):
            raise ConfigError(f"Grid file {str(path)!r} must hold a mapping of axes and fixed fields.")
        return cls.from_dict(path.stem, spec, path.resolve().parent)

    @property
    def defended(self) -> bool:
        return self.defences != ("none",)

    def cells(self) -> list[ExperimentConfig]:
        """Every distinct cell, ordered victim-major so each victim is trained once and then reused.

        A defence is crossed only with the outputs it fits (`plan_defence`): noise on a probability
        answer and on a label answer, but a top-1-preserving defence on probabilities alone."""
        cells = {}
        for victim, mode, seed, thief, entry, output, budget in itertools.product(
                self.victims, self.victim_modes, self.seeds, self.thieves, self.defences, self.outputs, self.budgets):
            defence, params = split_defence(entry)
            if not defence_fits(defence, params, output):
                continue
            mode = get_backbone(victim).default_mode if mode == "auto" else mode
            config = ExperimentConfig(**{**self.fixed, "victim": victim, "thief": thief, "budget": budget,
                                         "seed": seed, "output": output, "victim_mode": mode,
                                         "defence": defence, "defence_params": params})
            cells.setdefault(config.job_id(), config)
        return list(cells.values())

    def resolved(self, config: ExperimentConfig) -> ExperimentConfig:
        """`config` with its relative data folder / query-pool path made absolute against base_dir."""
        paths = {}
        if config.data_dir and not Path(config.data_dir).expanduser().is_absolute():
            paths["data_dir"] = str((self.base_dir / config.data_dir).resolve())
        pool = config.query_pool
        if ("/" in pool or pool.endswith((".tar.gz", ".tgz"))) and not Path(pool).expanduser().is_absolute():
            paths["query_pool"] = str((self.base_dir / pool).resolve())
        return replace(config, **paths)


def split_defence(entry: str) -> tuple[str, str]:
    """"gaussian-noise:sigma=0.1,keep_argmax=true" -> ("gaussian-noise", "sigma=0.1,keep_argmax=true")."""
    name, _, params = entry.partition(":")
    return name.strip(), params.strip()


def defence_fits(defence: str, params: str, output: str) -> bool:
    """Whether the (valid) defence can act on answers in `output` mode."""
    try:
        plan_defence(defence, parse_params(params), output)
    except ConfigError:
        return False
    return True


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def card_path(out_dir: str | Path, config: ExperimentConfig) -> Path:
    """Where the run card of `config` lives in a sweep's output folder."""
    return Path(out_dir) / "cards" / f"{config.job_id()}.json"


def measured_status(grid: Grid, out_dir: str | Path) -> str:
    """One sentence: are all of `grid`'s cells measured in `out_dir`, and if not, which victims and seeds lack
    cells and the command that resumes them."""
    cells = grid.cells()
    missing = [config for config in cells if not card_path(out_dir, config).exists()]
    if not missing:
        return f"All {len(cells)} cells of `{grid.name}` are measured."
    seeds: dict[str, set] = {}
    for config in missing:
        seeds.setdefault(f"{get_backbone(config.victim).label} ({config.victim_mode.upper()})", set()).add(config.seed)
    which = "; ".join(f"{victim} seed{'s' * (len(found) > 1)} {', '.join(map(str, sorted(found)))}"
                      for victim, found in seeds.items())
    return (f"**Not measured yet:** {len(missing)} of the {len(cells)} cells of `{grid.name}` ({which}); "
            f"`python -m fmsteal sweep --preset {grid.name} --out precomputed/{grid.name}` resumes them.")


def run_sweep(grid: Grid, out_dir: str | Path, executor: str = "local", jobs: int = 1,
              progress: Progress | None = None, cancel: threading.Event | None = None,
              command: str | None = None, stop_after_s: float | None = None) -> dict:
    """Run every cell of `grid` that has no run card yet; write the cards, the table and the provenance.

    executor "local" runs cells in this process (jobs=1) or in `jobs` worker processes; "ray" submits
    them as Ray tasks (to the cluster `ray.init()` finds, or a running `ray.init(...)`). `progress`
    receives plain dicts: one {"kind": "sweep", ...}, then {"kind": "cell", "status": ...} per cell.
    `stop_after_s` (local executor): no cell starts once that many seconds have passed; running cells finish.
    Returns a summary: counts, failures (cells without a card: rerun to retry), cells `left` by a time limit (or
    an interruption, noted in the provenance too), table path, wall time.
    """
    if executor not in ("local", "ray"):
        raise ConfigError(f"executor must be 'local' or 'ray'; got {executor!r}.")
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1; got {jobs}.")
    if stop_after_s is not None and (executor == "ray" or stop_after_s < 0):
        raise ConfigError("A time limit needs the local executor and a limit of 0 or more minutes; "
                          f"got {stop_after_s / 60:g} min with the {executor} executor.")
    out_dir, started = Path(out_dir), time.perf_counter()
    in_time = (lambda: True) if stop_after_s is None else (lambda: time.perf_counter() - started < stop_after_s)
    emit = progress or (lambda event: None)
    cells = grid.cells()
    todo = [config for config in cells if not card_path(out_dir, config).exists()]
    waiting = {config.job_id() for config in todo}
    summary = {"grid": grid.name, "cells": len(cells), "skipped": len(cells) - len(todo), "ran": 0, "failed": [],
               "left": 0}
    emit({"kind": "sweep", "grid": grid.name, "total": len(cells), "skipped": summary["skipped"], "todo": len(todo)})
    done = summary["skipped"]
    for config in cells:
        if config.job_id() not in waiting:
            emit(_cell_event("skipped", config, done, len(cells)))
    stopped = "interrupted"
    try:
        if executor == "ray":
            results = _ray_results(grid, todo)
        elif jobs > 1:
            results = _pool_results(grid, todo, jobs, cancel, in_time)
        else:
            results = _serial_results(grid, todo, cancel, lambda c: emit(_cell_event("started", c, done, len(cells))),
                                      in_time)
        for config, outcome in results:
            done += 1
            if "card" in outcome:
                card = {**outcome["card"], "config": config.to_dict(), "sweep": {"grid": grid.name}}
                write_card(card, card_path(out_dir, config))
                summary["ran"] += 1
                emit(_cell_event("done", config, done, len(cells), seconds=card["timings"]["total"]))
            else:
                summary["failed"].append({"job_id": config.job_id(), "error": outcome["error"]})
                emit(_cell_event("failed", config, done, len(cells), error=outcome["error"]))
        if stop_after_s is not None:  # the only way to end early without raising
            stopped = f"time limit of {stop_after_s / 60:g} min reached"
    finally:
        summary["left"] = left = len(todo) - summary["ran"] - len(summary["failed"])
        if left:
            summary["note"] = f"{stopped}: {counted(left, 'cell')} left"
        summary["table"] = str(write_table(grid, out_dir))
        summary["wall_s"] = round(time.perf_counter() - started, 1)
        _record(grid, out_dir, summary, executor, jobs, command)
    return summary


def _cell_event(status: str, config: ExperimentConfig, done: int, total: int, **extra) -> dict:
    defended = "" if config.defence == "none" else f", {config.defence} {config.defence_params}".rstrip()
    label = (f"{config.victim} ({config.victim_mode}) <- {config.thief}, {config.budget:,}q {config.output}, "
             f"seed {config.seed}{defended}")
    return {"kind": "cell", "status": status, "job_id": config.job_id(), "label": label, "done": done,
            "total": total, **extra}


def run_cell(config: dict, cancel: threading.Event | None = None) -> dict:
    """Run one (resolved) config to its end: {"card": card}, or {"error": message} if it failed.

    Errors meant for the user fail the cell; Cancelled and anything else (a bug) propagate.
    """
    from fmsteal.experiment.pipeline import run

    try:
        card = None
        for event in run(ExperimentConfig.from_dict(config), cancel):
            card = event.get("card", card)
        return {"card": card}
    except Cancelled:
        raise
    except FmstealError as error:
        return {"error": str(error)}


def _serial_results(grid: Grid, todo: list[ExperimentConfig], cancel: threading.Event | None,
                    started: Callable[[ExperimentConfig], None],
                    in_time: Callable[[], bool]) -> Iterator[tuple[ExperimentConfig, dict]]:
    """Cells in this process while `in_time()`; `cancel` stops the running cell within seconds (raises Cancelled)."""
    for config in todo:
        if not in_time():
            return
        started(config)
        yield config, run_cell(grid.resolved(config).to_dict(), cancel)


def warm_first(todo: list[ExperimentConfig]) -> tuple[list[ExperimentConfig], list[ExperimentConfig]]:
    """(cells that first need a victim or a thief backbone on some data, the rest): run the first alone."""
    seen, warm, rest = set(), [], []
    for config in todo:
        data = (config.source, config.query_pool, config.image_size, config.train_per_class, config.test_per_class)
        needs = {("victim", config.victim, config.victim_mode, config.seed, config.preset) + data,
                 ("thief", config.thief, config.thief_mode) + data}
        (warm if needs - seen else rest).append(config)
        seen |= needs
    return warm, rest


def _pool_results(grid: Grid, todo: list[ExperimentConfig], jobs: int, cancel: threading.Event | None,
                  in_time: Callable[[], bool]) -> Iterator[tuple[ExperimentConfig, dict]]:
    """Cells in `jobs` spawned worker processes, each with its share of the CPU threads; none starts
    once `in_time()` is false (running ones finish)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // jobs)
    warm, rest = warm_first(todo)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_limit_threads, initargs=(threads,)) as pool:
        for batch, width in ((warm, 1), (rest, jobs)):
            queue, running = list(batch), {}
            while queue or running:
                if cancel is not None and cancel.is_set():
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise Cancelled("The sweep was cancelled; finished cells keep their run cards.")
                if not in_time():
                    queue.clear()
                while queue and len(running) < width:
                    config = queue.pop(0)
                    running[pool.submit(run_cell, grid.resolved(config).to_dict())] = config
                finished, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield running.pop(future), future.result()


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _ray_results(grid: Grid, todo: list[ExperimentConfig]) -> Iterator[tuple[ExperimentConfig, dict]]:
    """Cells as Ray tasks (one CPU each); first cells of new backbones one at a time, then all at once."""
    try:
        import ray
    except ImportError as error:
        raise ConfigError("The ray executor needs Ray: `pip install ray` (or use --executor local).") from error
    if not ray.is_initialized():
        ray.init()
    task = ray.remote(num_cpus=1)(run_cell)
    warm, rest = warm_first(todo)
    for config in warm:
        yield config, ray.get(task.remote(grid.resolved(config).to_dict()))
    pending = {task.remote(grid.resolved(config).to_dict()): config for config in rest}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(ready[0]), ray.get(ready[0])


def table_rows(grid: Grid, out_dir: str | Path) -> list[dict]:
    """One tidy row per finished cell x curve checkpoint, in cell order."""
    rows = []
    for config in grid.cells():
        path = card_path(out_dir, config)
        if not path.exists():
            continue
        card = read_card(path)
        common = {"source": "fmsteal", "dataset": config.dataset, "victim_mode": config.victim_mode,
                  "victim": config.victim, "victim_label": get_backbone(config.victim).label,
                  "thief": config.thief, "thief_label": get_backbone(config.thief).label,
                  "output": config.output, "seed": config.seed, "victim_acc": card["victim_accuracy"],
                  "strategy": config.strategy, **(defence_columns(config, card.get("defence")) if grid.defended else {}),
                  **evaluation_columns(config, card)}
        for point in card["curve"]:
            rows.append({**common, "budget": point["queries"], "agreement": point["agreement"],
                         "thief_acc": point["thief_accuracy"], "macro_f1": point["macro_f1"]})
    return rows


def evaluation_columns(config: ExperimentConfig, card: dict) -> dict:
    """The columns each of the cell's evaluations gives its result (`columns` in its registry entry)."""
    from fmsteal.evaluation.registry import EVALUATIONS

    out = {}
    for name in config.evaluation_names():
        columns = EVALUATIONS.get(name).meta.get("columns")
        if columns is not None and card.get(name) is not None:
            out.update(columns(card[name]))
    return out


def defence_columns(config: ExperimentConfig, result: dict | None) -> dict:
    """The DEFENCE_COLUMNS of one cell from its card's `defence` object (an undefended cell has none)."""
    result = result or {}
    columns = {key: result.get(key) for key in DEFENCE_COLUMNS[2:]}  # the defence's report, by name
    thieves = result.get("thieves", {})
    columns.update({column: thieves.get(column.removesuffix("_agreement"), {}).get("agreement")
                    for column in THIEF_COLUMNS})
    for side in ("thief", "innocent"):
        columns[f"watermark_{side}_log10_p"] = result.get(f"watermark_{side}", {}).get("log10_p_value")
    return {"defence": config.defence, "defence_params": config.defence_params, **columns}


def write_table(grid: Grid, out_dir: str | Path) -> Path:
    """Write `out_dir/<grid>.csv` (atomically) from the cards present; returns its path."""
    import pandas as pd

    path = Path(out_dir) / f"{grid.name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    rows = table_rows(grid, out_dir)
    columns = TABLE_COLUMNS + (DEFENCE_COLUMNS if grid.defended else [])
    columns += list(dict.fromkeys(key for row in rows for key in row if key not in columns))  # evaluations'
    pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def _record(grid: Grid, out_dir: Path, summary: dict, executor: str, jobs: int, command: str | None) -> None:
    """Append this invocation to sweep_log.jsonl and rewrite PROVENANCE.md from the whole log."""
    import torch

    entry = {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "command": command or " ".join([Path(sys.executable).name] + sys.argv),
             "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, "
                        f"{'CUDA' if torch.cuda.is_available() else 'no GPU'}, {platform.platform()})",
             "versions": f"python {platform.python_version()}, torch {torch.__version__}",
             "executor": executor, "jobs": jobs,
             **{key: summary[key] for key in ("cells", "skipped", "ran", "wall_s")},
             "failed": len(summary["failed"]), **({"note": summary["note"]} if "note" in summary else {})}
    with (out_dir / "sweep_log.jsonl").open("a") as file:
        file.write(json.dumps(entry) + "\n")
    render_provenance(grid, out_dir)


def render_provenance(grid: Grid, out_dir: Path) -> None:
    """Rewrite out_dir/PROVENANCE.md from the whole sweep_log.jsonl and the run cards."""
    log = out_dir / "sweep_log.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    cards = [read_card(card_path(out_dir, c)) for c in grid.cells() if card_path(out_dir, c).exists()]
    compute = sum(card["timings"]["total"] for card in cards)
    lines = [f"# Provenance: sweep `{grid.name}`", "",
             f"Written by `fmsteal.service.sweep` (do not edit). {len(cards)} run cards in `cards/` "
             f"({compute / 3600:.2f} h of cell time in total); the table `{grid.name}.csv` is built from them.", "",
             "| finished (UTC) | command | machine | versions | executor | cells | skipped | ran | failed | wall time"
             " |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {e['finished']} | `{e['command']}`{_note(e)} | {e['machine']} | {e['versions']} "
              f"| {e['executor']} x{e['jobs']} | {e['cells']} | {e['skipped']} | {e['ran']} | {e['failed']} "
              f"| {e['wall_s'] / 60:.1f} min |" for e in entries]
    (out_dir / "PROVENANCE.md").write_text("\n".join(lines) + "\n")


def _note(entry: dict) -> str:
    return f" ({entry['note']})" if "note" in entry else ""
