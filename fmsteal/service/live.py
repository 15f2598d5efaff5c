"""What the page's live panel shows for one visitor's session of runs, as plain data.

A session is the list of job ids a browser started (kept in its BrowserState); every read goes
through the job store with the visitor's owner token, so a page sees only its own runs.
"""

from __future__ import annotations

import base64
import io

from fmsteal.adversary.thieves import REPEATS
from fmsteal.service.jobs import TERMINAL, JobStore

__all__ = ["read_session", "known", "current_job", "session_runs", "session_signature", "gallery_items",
           "defence_summary"]

Snapshots = dict[str, dict | None]


def read_session(store: JobStore, session: list[str] | None, owner: str) -> Snapshots:
    """Each of the session's jobs read once, in order: everything one poll draws comes from this one read, so a
    job that finishes mid-poll cannot leave the page marked as showing a state it never drew."""
    return {job_id: store.snapshot(job_id, owner) for job_id in session or []}


def known(snapshots: Snapshots) -> list[str]:
    """The session's jobs the server still knows (lost ones dropped)."""
    return [j for j, snap in snapshots.items() if (snap or {}).get("status", "lost") != "lost"]


def current_job(snapshots: Snapshots) -> str:
    """The job the status line follows: the first still queued or running, else the last."""
    active = [j for j, snap in snapshots.items() if snap and snap["status"] not in TERMINAL]
    return active[0] if active else next(reversed(snapshots), "")


def session_runs(snapshots: Snapshots) -> list[dict]:
    """The session's runs with curve points: {"id", "config", "points", "status"}."""
    runs = []
    for job_id, snap in snapshots.items():
        if snap and snap["config"] and (snap["card"] or snap["checkpoints"]):
            runs.append({"id": job_id, "config": snap["config"], "status": snap["status"],
                         "sizes": snap.get("image_size"),  # the plan's before the card: the reference cannot change
                         "points": snap["card"]["curve"] if snap["card"] else snap["checkpoints"]})
    return runs


def session_signature(snapshots: Snapshots) -> str:
    """Changes exactly when a figure would: a checkpoint, a card or a status arrived for some run."""
    parts = []
    for job_id, snap in snapshots.items():
        snap = snap or {}
        parts.append(f"{job_id}:{len(snap.get('checkpoints') or [])}:{snap.get('stolen') is not None}:"
                     f"{snap.get('card') is not None}:{snap.get('status')}")
    return "|".join(parts)


def gallery_items(card: dict | None) -> list[tuple]:
    """(image, caption) pairs of the card's agree/disagree examples."""
    from PIL import Image

    items = []
    for example in (card or {}).get("examples") or []:
        image = Image.open(io.BytesIO(base64.b64decode(example["image_png"])))
        said = (f"agree: both say {example['victim']}" if example["agree"]
                else f"DISAGREE: victim {example['victim']}, thief {example['thief']}")
        items.append((image, f"{said} (true {example['true']})"))
    return items


def defence_summary(card: dict | None) -> str:
    """A defended run's trade-off in one paragraph: protection (the thief's agreement) against cost (honest users)."""
    defence = (card or {}).get("defence")
    if not defence:
        return ""
    text = (f"\n\n**Defence: {defence['name']}.** The thief agrees with the undefended victim on "
            f"{100 * card['agreement']:.1f}% of the test images and with the defended API on "
            f"{100 * defence['agreement_with_api']:.1f}%. Cost to honest users: accuracy "
            f"{100 * defence['undefended_accuracy']:.1f}% → {100 * defence['api_accuracy']:.1f}%, "
            f"{100 * defence['answers_changed']:.1f}% of the thief's answers changed")
    if defence.get("mean_l1") is not None:
        text += f", mean L1 change {defence['mean_l1']:.3f}"
    thieves = defence.get("thieves") or {}
    others = []
    if thieves.get("argmax", {}).get("agreement") not in (None, card["agreement"]):
        others.append(f"a thief that keeps only each answer's top class agrees on "
                      f"{100 * thieves['argmax']['agreement']:.1f}%")
    for name, who in (("invert", "a thief that knows the defence and undoes it"),
                      ("simulate", "a thief that knows the defence's rule and fits its model through it")):
        if name in thieves:
            others.append(f"{who}, on {100 * thieves[name]['agreement']:.1f}%")
    if "repeat" in thieves:
        others.append(f"with the same budget, a thief that asks each of {REPEATS} times fewer images {REPEATS} times "
                      f"and learns the mean answer, on {100 * thieves['repeat']['agreement']:.1f}%")
    if others:
        text += (f". Against the same API, {'; '.join(others)} (the strongest, the {defence['strongest_thief']} thief, "
                 "is the defender's worst case)")
    if "detected_at" in defence:
        caught = (f"flagged the thief after {defence['detected_at']:,} queries" if defence["detected_at"]
                  else "never flagged the thief")
        text += f". PRADA {caught}"
        if defence.get("false_alarm_rate") is not None:
            clients = defence["benign_clients"]
            text += (f"; on {clients} honest client{'s' * (clients != 1)} ({defence['benign_queries_per_client']:,} "
                     f"shuffled test images each) it raised {100 * defence['false_alarm_rate']:.0f}% false alarms")
    if "watermark_thief" in defence:
        text += (f". Watermark: p = {defence['watermark_thief']['p_value']:.2g} for the stolen copy, "
                 f"{defence['watermark_innocent']['p_value']:.2g} for an innocent model")
    return text + ". Compare its curve with the undefended one (Defended vs undefended)."
