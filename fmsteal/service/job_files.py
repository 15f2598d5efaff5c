"""Run files on disk: one folder per job, named by its unguessable id, with the run card, its curve as
CSV and `meta.json` (a hash of the owner's token, the config's hash, when the run finished).

Only a caller presenting the owner's token reaches a job's files; raw tokens are never written.
`expire` deletes folders older than a time limit; `remove_partial` the half-written files of killed runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fmsteal.experiment.cards import card_name, curve_csv, read_card, write_card

__all__ = ["RunFiles", "StoredRun", "browser_secret", "owner_hash", "valid_job_id"]

META = "meta.json"
MARK = ".fmsteal-run"  # written first: a folder with it but no meta is a killed run's
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
log = logging.getLogger(__name__)


def owner_hash(owner: str) -> str:
    """What is kept of an owner token: its SHA-256 (tokens are random, so no salt is needed)."""
    return hashlib.sha256(owner.encode()).hexdigest()


def valid_job_id(job_id: object) -> bool:
    """True for a string shaped like the ids `secrets.token_urlsafe` makes (safe as a folder name)."""
    return isinstance(job_id, str) and _JOB_ID.fullmatch(job_id) is not None


def browser_secret(folder: str | Path) -> str:
    """A secret that outlives restarts, kept in `folder/.browser-secret` (created private): what
    `gr.BrowserState(secret=...)` needs so a browser's stored owner token still decrypts after a restart
    (Gradio's default secret changes at every start)."""
    path = Path(folder) / ".browser-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".browser-secret.{os.getpid()}.{threading.get_ident()}")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(secrets.token_urlsafe(32))
        try:
            os.link(tmp, path)  # atomic: the first writer wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


@dataclass(frozen=True)
class StoredRun:
    """A finished run's files and who may read them."""

    job_id: str
    owner: str  # owner_hash of the token
    config_id: str
    card_path: Path
    finished: float


class RunFiles:
    """Run folders under `root`, with an in-memory index from (owner, config id) to the latest run."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], str] = {}
        for meta in sorted(self.root.glob(f"*/{META}"), key=lambda p: p.stat().st_mtime):
            run = self._read(meta.parent.name)
            if run is not None:
                self._latest[(run.owner, run.config_id)] = run.job_id

    def save(self, job_id: str, owner: str, config_id: str, card: dict) -> Path:
        """Write the card, its CSV and then `meta.json` (so a folder with meta is complete); the card's path."""
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARK).touch()
        path = write_card(card, folder / card_name(card))
        path.with_suffix(".csv").write_text(curve_csv(card))
        meta = {"owner": owner, "config_id": config_id, "card": path.name, "finished": time.time()}
        write_card(meta, folder / META)
        with self._lock:
            self._latest[(owner, config_id)] = job_id
        return path

    def load(self, job_id: str, owner: str) -> tuple[StoredRun, dict] | None:
        """The run and its card when `owner` (a hash) owns it; None for anyone else or a missing run."""
        run = self._read(job_id)
        if run is None or not hmac.compare_digest(run.owner, owner):
            return None
        try:
            return run, read_card(run.card_path)
        except (OSError, ValueError):
            return None

    def find(self, owner: str, config_id: str) -> str | None:
        """The id of `owner`'s latest finished run of this config, if its files are still here."""
        with self._lock:
            job_id = self._latest.get((owner, config_id))
        return job_id if job_id and (self.root / job_id / META).is_file() else None

    def downloads(self, job_id: str, owner: str) -> tuple[Path, Path] | None:
        """(card JSON, curve CSV) of `owner`'s run, writing the CSV if only the card is there."""
        found = self.load(job_id, owner)
        if found is None:
            return None
        run, card = found
        csv = run.card_path.with_suffix(".csv")
        if not csv.is_file():
            csv.write_text(curve_csv(card))
        return run.card_path, csv

    def expire(self, max_age_s: float, now: float | None = None) -> list[str]:
        """Delete run folders that finished more than `max_age_s` ago; their ids."""
        cutoff = (time.time() if now is None else now) - max_age_s
        gone = []
        for meta in self.root.glob(f"*/{META}"):
            run = self._read(meta.parent.name)
            if run is not None and run.finished < cutoff:
                shutil.rmtree(meta.parent, ignore_errors=True)
                gone.append(run.job_id)
        with self._lock:
            self._latest = {key: job_id for key, job_id in self._latest.items() if job_id not in gone}
        return gone

    def remove_partial(self) -> int:
        """Delete what killed runs left behind (their folders without meta, temporary files); how many."""
        removed = 0
        for mark in self.root.glob(f"*/{MARK}"):
            folder = mark.parent
            if not (folder / META).exists():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
            else:
                for tmp in folder.glob("*.tmp"):
                    tmp.unlink(missing_ok=True)
                    removed += 1
        return removed

    def _read(self, job_id: str) -> StoredRun | None:
        if not valid_job_id(job_id):
            return None
        folder = self.root / job_id
        try:
            meta = json.loads((folder / META).read_text())
            return StoredRun(job_id, meta["owner"], meta["config_id"], folder / Path(meta["card"]).name,
                             float(meta["finished"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("unreadable run folder %s: %s", job_id, error)
            return None
