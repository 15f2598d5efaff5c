"""What a visitor sees of a job: a snapshot as plain data (no server paths) and its one-line status."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fmsteal.experiment.estimate import duration

if TYPE_CHECKING:
    from fmsteal.service.jobs import Job

__all__ = ["LOST", "TERMINAL", "default_describe", "lost_snapshot", "public_config", "snapshot_of", "status_line"]

TERMINAL = ("done", "failed", "cancelled", "lost")
LOST = ("This run is no longer on this server: it was lost when the server restarted (or its results expired). "
        "Start it again.")
Describe = Callable[[str], str]


def default_describe(path: str) -> str:
    """A data folder or archive as a visitor may see it: its last name only."""
    return Path(path).name or "data folder"


def _is_path(value: object) -> bool:
    return isinstance(value, str) and (os.path.isabs(value) or "/" in value or "\\" in value or value.startswith("~"))


def public_config(config: dict, describe: Describe = default_describe) -> dict:
    """The config with its data folder and query-pool folder replaced by their public descriptions."""
    shown = dict(config)
    for key in ("data_dir", "query_pool"):
        if _is_path(shown.get(key)):
            shown[key] = describe(shown[key])
    return shown


def _scrub(text: str | None, config: dict, describe: Describe) -> str | None:
    """`text` with the config's paths (as given and resolved) replaced by their descriptions."""
    if not text:
        return text
    for key in ("data_dir", "query_pool"):
        value = config.get(key)
        if _is_path(value):
            for form in sorted({value, os.path.realpath(os.path.expanduser(value))}, key=len, reverse=True):
                text = text.replace(form, describe(value))
    return text


def snapshot_of(job: Job, position: int, describe: Describe = default_describe, stopping_ahead: bool = False) -> dict:
    """Plain data for the page: status, queue position, phase, progress, ETA, curve points, logs, card.

    No absolute server paths: the config shows its data's description and the card has no file path
    (downloads go through `JobStore.files`).
    """
    phase, phase_start, progress, checkpoints, logs, sizes, stolen, phases = None, 0.0, None, [], [], None, None, {}
    for event in job.events:
        kind = event["kind"]
        if kind == "plan":
            sizes, phases = event["image_size"], event["estimate"]["phases"]
        elif kind == "stolen":
            stolen = event["card"]
        elif kind == "phase":
            phase, phase_start, progress = event["phase"], event["elapsed_s"], None
        elif kind == "progress":
            progress = event
        elif kind == "checkpoint":
            checkpoints.append(event)
        elif kind == "log":
            logs.append(_scrub(event["message"], job.config, describe))
    elapsed = (job.finished or time.time()) - job.started if job.started else 0.0
    card = job.card and {**job.card, "config": public_config(job.card["config"], describe)}
    stolen = None if card or not stolen else {**stolen, "config": public_config(stolen["config"], describe)}
    return {
        "id": job.id, "status": job.status, "position": position, "stopping_ahead": stopping_ahead,
        "started": job.started is not None,
        "config": public_config(job.config, describe), "error": _scrub(job.error, job.config, describe),
        "phase": phase, "progress": progress and {k: progress[k] for k in ("done", "total", "message")},
        "checkpoints": checkpoints, "logs": logs, "card": card, "stolen": stolen, "has_files": job.saved,
        "skipping": job.skip.is_set(),
        "image_size": (job.card or {}).get("image_size", sizes),
        "elapsed_s": round(elapsed, 1), "estimate_s": job.estimate_s, "version": job.version,
        "eta_s": _eta(job, phase, phase_start, progress, checkpoints, elapsed, phases),
    }


def lost_snapshot(job_id: str) -> dict:
    """What a poll of an unknown job (or somebody else's) gets: a terminal status that says to start again."""
    return {"id": job_id, "status": "lost", "position": 0, "stopping_ahead": False, "started": False,
            "config": None, "error": LOST,
            "phase": None, "progress": None, "checkpoints": [], "logs": [], "card": None, "stolen": None,
            "has_files": False, "skipping": False,
            "image_size": None, "elapsed_s": 0.0, "estimate_s": None, "version": 0, "eta_s": None}


def _eta(job: Job, phase, phase_start: float, progress, checkpoints: list[dict], elapsed: float,
         phases: dict) -> float | None:
    """Seconds left: from the queries spent while stealing, from batch progress while embedding, from the
    evaluations' own estimate while evaluating, else from the up-front estimate."""
    if job.status != "running":
        return None
    in_phase = max(elapsed - phase_start, 0.0)
    if job.skip.is_set() and phase in ("evaluate", "card"):
        return 0.0
    evaluations = 0.0 if job.skip.is_set() else phases.get("evaluate", 0.0)
    if phase == "evaluate" and "evaluate" in phases:
        return round(max(phases["evaluate"] - in_phase, 0.0), 1)
    if phase == "steal" and checkpoints:
        spent, budget = checkpoints[-1]["queries"], job.config["budget"]
        return round(in_phase * (budget - spent) / max(spent, 1) + evaluations, 1)
    if phase == "embed" and progress and progress["done"]:
        return round(in_phase * (progress["total"] - progress["done"]) / progress["done"], 1)
    if job.estimate_s:
        return round(max(job.estimate_s - elapsed, 0.0), 1)
    return None


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def status_line(snapshot: dict | None) -> str:
    """One line of markdown: status, queue position, phase, progress and time left."""
    if snapshot is None:
        return "Pick a victim and a thief, then press **Start**."
    status = snapshot["status"]
    if status == "queued":
        position = snapshot["position"]
        if position <= 1:
            wait = " (waiting for a cancelled run to stop)" if snapshot["stopping_ahead"] else ""
            return f"**Queued**: position 1, next up{wait}."
        return (f"**Queued**: the server is busy, you are {_ordinal(position)} in line "
                f"(position {position}, {position - 1} run(s) ahead).")
    if status in ("failed", "lost"):
        return f"**{status.capitalize()}**: {snapshot['error']}"
    if status == "cancelled":
        reason = f" {snapshot['error']}" if snapshot["error"] else ""
        when = f"after {duration(snapshot['elapsed_s'])}" if snapshot["started"] else "before it started"
        return f"**Cancelled** {when}.{reason}"
    if status == "done":
        took = snapshot["card"]["timings"].get("total", snapshot["elapsed_s"])
        return f"**Done** in {duration(took)}."
    parts = [f"**Running** · phase **{snapshot['phase'] or 'starting'}**"]
    progress = snapshot["progress"]
    if progress and progress["total"]:
        parts.append(f"{progress['message']} {100 * progress['done'] / progress['total']:.0f}%")
    if snapshot["checkpoints"]:
        last = snapshot["checkpoints"][-1]
        parts.append(f"{last['queries']:,}/{snapshot['config']['budget']:,} queries")
    parts.append(f"{duration(snapshot['elapsed_s'])} elapsed")
    if snapshot["eta_s"] is not None:
        scope = {"embed": " in this step", "steal": "" if snapshot["skipping"] else " (the evaluations included)",
                 "evaluate": " for the evaluations (the result is above)"}.get(snapshot["phase"], "")
        if snapshot["skipping"] and snapshot["phase"] == "evaluate":
            scope = ": skipping the evaluations (the result is above)"
        parts.append(f"~{duration(snapshot['eta_s'])} left{scope}")
    return " · ".join(parts)
