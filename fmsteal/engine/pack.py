"""A warm pack: the cache's decoded datasets, embeddings, trained victims and warm records in one tar file, so a fresh
server (a restarted Space) starts where the machine that made it left off, instead of embedding 60,000 images first
(280 s on two CPU cores).

`write_pack(out)` packs this cache; `install_pack(source)` unpacks a local file or `hf://<owner>/<repo>/<file>` (a
file of a Hub dataset repository, fetched with huggingface_hub) into it. Every member is checked on the way in:
regular files only, under the packed kinds, nothing outside the cache, each one's size and SHA-256 as the manifest
lists them; files the cache already holds are kept. The cache trusts a file only after its own checks (weights, data
and content fingerprints), so a pack made from other images or weights is simply not used. While an install runs, a
marker file in the cache says how far it is, so a run in any process (`await_pack`) waits for it instead of embedding
the same images.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from fmsteal.engine.cache import cache_root, write_text_atomic
from fmsteal.errors import DataError
from fmsteal.settings import current

__all__ = ["MANIFEST", "PACKED", "SPEEDS", "await_pack", "fetch_pack", "install_in_background", "install_pack", "write_pack"]

log = logging.getLogger(__name__)

PACKED = ("datasets", "embeddings", "victims", "warm")  # the cache's kinds a pack carries
SPEEDS = "speeds.json"  # and the measured speeds, kept per machine and torch version: another machine measures anew
MANIFEST = "fmsteal-pack.json"
FORMAT = 1
WAIT_SECONDS = 900.0  # a run waits this long at most for an install under way, then computes what it needs
HEARTBEAT_SECONDS = 5.0  # an install touches its marker this often; one untouched for 6 beats is a dead install's
_CHUNK = 1 << 20


def write_pack(out: str | Path) -> dict:
    """Pack this cache's files (`PACKED` kinds and `SPEEDS`) into the tar file `out` (written whole, then renamed);
    its manifest."""
    root, out = cache_root(), Path(out)
    files = sorted(p for kind in PACKED if (root / kind).is_dir() for p in (root / kind).rglob("*")
                   if p.is_file() and not p.name.startswith("."))
    files += [root / SPEEDS] if (root / SPEEDS).is_file() else []
    if not files:
        raise DataError(f"The cache {root} holds nothing to pack: run the experiments the pack should serve first.")
    listed = {p.relative_to(root).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    manifest = {"format": FORMAT, "files": listed, "bytes": sum(f["bytes"] for f in listed.values())}
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with tarfile.open(tmp, "w") as tar:
            data = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for name in listed:
                tar.add(root / name, arcname=name, recursive=False)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return manifest


def fetch_pack(source: str) -> Path:
    """The local file behind `source`: a path, or `hf://<owner>/<repo>/<file>` downloaded (and cached) by
    huggingface_hub from a Hub dataset repository. Raises DataError saying what to do."""
    if not source.startswith("hf://"):
        path = Path(source).expanduser()
        if not path.is_file():
            raise DataError(f"The warm pack {source} was not found: give a pack file `fmsteal pack` wrote, or "
                            "hf://<owner>/<repo>/<file> for one on the Hub.")
        return path
    parts = source[len("hf://"):].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise DataError(f"{source} is not a Hub file: write hf://<owner>/<repo>/<file in the dataset repo>.")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(f"{parts[0]}/{parts[1]}", parts[2], repo_type="dataset"))
    except Exception as error:  # offline, not found, no access: the run computes what it needs instead
        raise DataError(f"The warm pack {source} could not be fetched ({type(error).__name__}: {error}). Check the "
                        "name and the network, or unset FMSTEAL_WARM_PACK: runs then compute their own features.") from error


def install_pack(source: str) -> dict:
    """Unpack the pack `source` (see `fetch_pack`) into this cache, keeping the files it already holds: a summary
    (files added and kept, bytes, seconds). Raises DataError for a pack that is not one or fails a check."""
    began, root = time.monotonic(), cache_root()
    marker = root / "packs" / f"{hashlib.sha1(source.encode()).hexdigest()[:16]}.installing"
    marker.parent.mkdir(parents=True, exist_ok=True)
    _write_marker(marker, {"source": source, "done": 0, "total": 0})
    finished = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(marker, finished), daemon=True)
    beat.start()
    try:
        path = fetch_pack(source)
        summary = _unpack(path, root, marker, source)
    finally:
        finished.set()
        beat.join()
        marker.unlink(missing_ok=True)
    summary["seconds"] = round(time.monotonic() - began, 1)
    return summary


def install_in_background(source: str) -> threading.Thread:
    """`install_pack(source)` in a daemon thread (a server goes on serving while it unpacks), its outcome logged: a
    failed install leaves the runs to compute their own features."""

    def install() -> None:
        try:
            summary = install_pack(source)
            log.info("warm pack %s: %d files added, %d kept, %.1f s", source, summary["added"], summary["kept"],
                     summary["seconds"])
        except Exception as error:  # a bad pack or no network must not stop the server
            log.warning("warm pack not installed: %s", error)

    thread = threading.Thread(target=install, name="fmsteal-warm-pack", daemon=True)
    thread.start()
    return thread


def await_pack(timeout: float = WAIT_SECONDS) -> Iterator[dict]:
    """Progress events while a pack is being installed into this cache (by this or another process), until it is
    done or `timeout` seconds have passed; nothing when none is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _installing()
        if state is None:
            return
        done, total = state.get("done", 0), state.get("total", 0)
        yield {"kind": "progress", "phase": "data", "done": done, "total": max(total, 1),
               "message": f"Unpacking precomputed features ({done / 2**20:,.0f} of {total / 2**20:,.0f} MB)"
               if total else "Fetching precomputed features"}
        time.sleep(0.5)


def _unpack(path: Path, root: Path, marker: Path, source: str) -> dict:
    try:
        tar = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as error:
        raise DataError(f"{source} is not a warm pack ({error}): make one with `fmsteal pack`.") from error
    added = kept = written = 0
    with tar:
        manifest = _manifest(tar, source)
        listed, total = manifest["files"], manifest["bytes"]
        if total > current().cache_max_bytes:
            raise DataError(f"{source} holds {total / 2**30:.1f} GB, more than the cache may hold "
                            f"(FMSTEAL_CACHE_MAX_GB): raise it, or pack fewer experiments.")
        for member in tar:
            if member.name == MANIFEST:
                continue
            name = _checked_name(member, listed, source)
            target = root / name
            if target.exists():
                kept += 1
                continue
            _extract(tar, member, target, listed[name], source)
            added, written = added + 1, written + member.size
            _write_marker(marker, {"source": source, "done": written, "total": total})
    return {"added": added, "kept": kept, "bytes": written}


def _manifest(tar: tarfile.TarFile, source: str) -> dict:
    try:
        manifest = json.load(tar.extractfile(MANIFEST))
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{source} has no readable {MANIFEST}: it is not a warm pack `fmsteal pack` wrote.") from error
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise DataError(f"{source} is a warm pack of another format ({manifest.get('format')!r}): make it anew with "
                        "this version's `fmsteal pack`.")
    return manifest


def _checked_name(member: tarfile.TarInfo, listed: dict, source: str) -> str:
    path = PurePosixPath(member.name)
    allowed = member.name == SPEEDS or (len(path.parts) > 1 and path.parts[0] in PACKED)
    if (not member.isfile() or path.is_absolute() or ".." in path.parts or not allowed or member.name not in listed
            or listed[member.name]["bytes"] != member.size):
        raise DataError(f"{source} holds {member.name!r}, which a warm pack may not: nothing more was unpacked. "
                        "Use a pack `fmsteal pack` wrote.")
    return member.name


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, expected: dict, source: str) -> None:
    """One member, streamed to a temporary file beside `target`, renamed once its SHA-256 matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, tar.extractfile(member) as data:
            while chunk := data.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected["sha256"]:
            raise DataError(f"{source}: {member.name} does not match its checksum (a damaged download?): fetch the "
                            "pack again.")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _heartbeat(marker: Path, finished: threading.Event) -> None:
    while not finished.wait(HEARTBEAT_SECONDS):
        try:
            os.utime(marker)
        except OSError:
            return


def _installing() -> dict | None:
    """The state of an install under way in this cache (its marker touched lately), or None."""
    for marker in (cache_root() / "packs").glob("*.installing"):
        try:
            if time.time() - marker.stat().st_mtime > 6 * HEARTBEAT_SECONDS:
                continue  # its process died (a restarted server leaves such markers)
            return json.loads(marker.read_text())
        except (OSError, ValueError):
            continue  # gone or half written
    return None


def _write_marker(path: Path, state: dict) -> None:
    write_text_atomic(path, json.dumps(state))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
