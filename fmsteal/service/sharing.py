"""Share links: a finished run's results reopened by an unguessable token, revealing nothing else.

`share(card, folder)` stores a public copy of the card (the data folder reduced to its name, no
server paths) under a random token and returns the token; `shared(token, folder)` reads it back,
or None for an unknown or malformed token.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

from fmsteal.experiment.cards import write_card

__all__ = ["share", "shared", "public_card"]

TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def public_card(card: dict) -> dict:
    """The card as anyone may see it: the data folder named, not located."""
    config = dict(card["config"])
    if config.get("data_dir"):
        config["data_dir"] = Path(config["data_dir"]).name
    return {**card, "config": config}


def share(card: dict, folder: Path) -> str:
    """Store a public copy of `card` and return its token (a second share of one card gets the same token)."""
    created = f"{card.get('created', '')}|{json.dumps(card['config'], sort_keys=True)}"
    index = folder / "index.json"
    try:
        known = json.loads(index.read_text())
    except (OSError, ValueError):
        known = {}
    if created in known and (folder / f"{known[created]}.json").exists():
        return known[created]
    token = secrets.token_urlsafe(16)
    write_card(public_card(card), folder / f"{token}.json")
    write_card({**known, created: token}, index)
    return token


def shared(token: str | None, folder: Path) -> dict | None:
    """The shared card of `token`, or None."""
    if not token or not TOKEN.match(token):
        return None
    try:
        return json.loads((folder / f"{token}.json").read_text())
    except (OSError, ValueError):
        return None
