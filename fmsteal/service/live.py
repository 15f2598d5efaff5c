"""What the page's live panel shows for one visitor's session of runs, as plain data.

A session is the list of job ids a browser started (kept in its BrowserState); every read goes
through the job store with the visitor's owner token, so a page sees only its own runs.
"""

from __future__ import annotations

import base64
import io

from fmsteal.service.jobs import TERMINAL, JobStore

__all__ = ["known", "current_job", "session_runs", "session_signature", "gallery_items"]


def known(store: JobStore, session: list[str] | None, owner: str) -> list[str]:
    """The session's jobs the server still knows (lost ones dropped)."""
    return [j for j in session or [] if (store.snapshot(j, owner) or {}).get("status", "lost") != "lost"]


def current_job(store: JobStore, session: list[str], owner: str) -> str:
    """The job the status line follows: the first still queued or running, else the last."""
    statuses = {j: (store.snapshot(j, owner) or {}).get("status") for j in session}
    active = [j for j, status in statuses.items() if status and status not in TERMINAL]
    return active[0] if active else (session[-1] if session else "")


def session_runs(store: JobStore, session: list[str], owner: str) -> list[dict]:
    """The session's runs with curve points: {"id", "config", "points", "status"}."""
    runs = []
    for job_id in session:
        snap = store.snapshot(job_id, owner)
        if snap and snap["config"] and (snap["card"] or snap["checkpoints"]):
            runs.append({"id": job_id, "config": snap["config"], "status": snap["status"],
                         "points": snap["card"]["curve"] if snap["card"] else snap["checkpoints"]})
    return runs


def session_signature(store: JobStore, session: list[str], owner: str) -> str:
    """Changes exactly when a figure would: a checkpoint, a card or a status arrived for some run."""
    parts = []
    for job_id in session:
        snap = store.snapshot(job_id, owner) or {}
        parts.append(f"{job_id}:{len(snap.get('checkpoints') or [])}:{snap.get('card') is not None}:{snap.get('status')}")
    return "|".join(parts)


def gallery_items(card: dict | None) -> list[tuple]:
    """(image, caption) pairs of the card's agree/disagree examples."""
    from PIL import Image

    items = []
    for example in (card or {}).get("examples") or []:
        image = Image.open(io.BytesIO(base64.b64decode(example["image_png"])))
        mark = "agree" if example["agree"] else "DISAGREE"
        items.append((image, f"{mark}: victim {example['victim']}, thief {example['thief']} (true {example['true']})"))
    return items
