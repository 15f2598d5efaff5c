"""Run cards on disk: one JSON file per experiment, written atomically; the curve as CSV."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

__all__ = ["CURVE_COLUMNS", "attack_card_name", "card_name", "curve_csv", "evaluation_findings", "read_card", "write_card"]

CURVE_COLUMNS = ("queries", "agreement", "thief_accuracy", "macro_f1")


def write_card(card: dict, path: str | Path) -> Path:
    """Write `card` as JSON at `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as file:
        json.dump(card, file, indent=1)
    os.replace(tmp, path)
    return path


def read_card(path: str | Path) -> dict:
    """The run card at `path`."""
    return json.loads(Path(path).read_text())


def card_name(card: dict) -> str:
    """A readable file name: victim-thief-budget-output-seed-jobid.json."""
    from fmsteal.experiment.config import ExperimentConfig

    config = ExperimentConfig.from_dict(card["config"])
    return (f"{config.victim}__{config.thief}__{config.budget}q__{config.output}__seed{config.seed}"
            f"__{config.job_id()}.json")


def attack_card_name(card: dict) -> str:
    """The file name of an attack's card: thief, budget and a digest of its whole config (the victim's spec,
    options and fingerprint among it), so distinct victims or settings never share a card."""
    config = card["config"]
    digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"attack__{config['thief']}__{config['budget']}q__{digest}.json"


def curve_csv(card: dict) -> str:
    """The card's agreement-vs-queries curve as CSV text."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(card["curve"])
    return buffer.getvalue()


def evaluation_findings(card: dict | None) -> list[tuple[str, str]]:
    """(name, finding) of every evaluation result in `card` that states its own finding (e.g. transfer-sweep)."""
    return [(name, value["finding"]) for name, value in (card or {}).items()
            if isinstance(value, dict) and isinstance(value.get("finding"), str)]
