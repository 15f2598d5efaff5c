"""Local data (image folders, .tar.gz archives) listed within bounds: image files, stamps and counts.

`scan` counts a source's images for the estimate and stamps it for cache keys, walking each folder
once per input: its result is kept, keyed by the path and a quick stamp (the modification times of
the folder and of its sub-folders two levels down, which change whenever a file is added, removed or
renamed there; an archive's size and modification time) in memory, and an archive's also in the cache's
`listings/` (a fresh process need not read its 60,000 headers again). Loading a dataset lists it with
`list_local`, which refreshes the same memo.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import os
import tarfile
import threading
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

from fmsteal.engine.safe_fs import Clock, FileEntry, Limits, open_regular, os_error, walk
from fmsteal.engine.tar_names import Unreadable, tar_members
from fmsteal.engine.cache import keyed_file, write_text_atomic
from fmsteal.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "LAYOUT", "Local", "Scan", "archive_images", "file_stamp", "list_local", "scan"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUT = "Lay it out as train/<class>/*.jpg and test/<class>/*.jpg (one folder per class)."
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, ValueError)
_QUICK_ENTRIES = 10_000  # entries of one folder the quick stamp looks at
_MEMO_SIZE = 64


@dataclass(frozen=True)
class Scan:
    """Counts of a source's images (by the train/<class>/<image> layout) and its stamp for cache keys."""

    images: int
    train: int
    test: int
    classes: int
    stamp: str


@dataclass(frozen=True)
class Local:
    """A local source ready to read: its resolved path, the name messages use, its stamp and (a folder's) images."""

    path: Path
    shown: str
    stamp: str
    files: list[FileEntry] | None  # a folder's image files sorted by path; None for an archive

    def key(self, pool: bool) -> str:
        """What identifies the decoded images of this source in the cache (`data.source_key`)."""
        return f"{'pool|' if pool else ''}{self.path}|{self.stamp}"


_memo: OrderedDict[str, tuple[tuple, Scan]] = OrderedDict()
_memo_lock = threading.Lock()
_path_locks = [threading.Lock() for _ in range(32)]  # one per path hash: a path is walked by one thread at a time


def scan(path: Path, shown: str) -> Scan:
    """Counts and stamp of the folder or archive at the checked `path`, walked once per input."""
    with _path_locks[hash(str(path)) % len(_path_locks)]:  # a second caller waits for the first walk, then reuses it
        quick = _quick_stamp(path, shown)
        with _memo_lock:
            hit = _memo.get(str(path))
            if hit is not None and hit[0] == quick:
                _memo.move_to_end(str(path))
                return hit[1]
        if path.is_dir():
            result = _scan_folder(path, shown, Clock(Limits.listing(), shown, "Listing"))[0]
        else:  # an archive's quick stamp is its whole identity: its scan may outlive this process
            result = _stored(path, quick)
            if result is None:
                result = _scan_archive(path, shown, Clock(Limits.listing(), shown, "Listing"))
                _store(path, quick, result)
        _remember(path, quick, result)
        return result


def list_local(path: Path, shown: str) -> Local:
    """The checked `path` ready to read: a folder is walked (FMSTEAL_READ_SECONDS), an archive only stamped."""
    if not path.is_dir():
        return Local(path, shown, file_stamp(path, shown), None)
    quick = _quick_stamp(path, shown)
    result, images = _scan_folder(path, shown, Clock(Limits.reading(), shown))
    _remember(path, quick, result)
    return Local(path, shown, result.stamp, sorted(images, key=lambda f: f.parts))


def archive_images(path: Path, shown: str, clock: Clock) -> list[tuple[tuple[str, ...], bytes]]:
    """(path parts, bytes) of every image file in the .tar.gz archive at `path`, counted against `clock`."""
    images = []
    for member, archive in _members(path, shown, clock):
        if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
            images.append((Path(member.name).parts, archive.extractfile(member).read()))
    return images


def _scan_folder(path: Path, shown: str, clock: Clock) -> tuple[Scan, list[FileEntry]]:
    count = size = newest = 0
    images = []
    for entry, is_image in walk(path, shown, clock, IMAGE_SUFFIXES):
        count, size, newest = count + 1, size + entry.size, max(newest, entry.mtime_ns)
        if is_image:
            images.append(entry)
    stamp = f"{count}-{size}-{newest}"  # every file, as cache keys have always been stamped
    return _counts([f.parts for f in images], stamp), images


def _scan_archive(path: Path, shown: str, clock: Clock) -> Scan:
    try:
        names = _fast_names(path, shown, clock)
    except (Unreadable, *_ARCHIVE_ERRORS, OSError):
        clock.entries = clock.bytes = 0  # count again, with tarfile
        names = [Path(member.name).parts for member, _ in _members(path, shown, clock)
                 if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES)]
    return _counts(names, file_stamp(path, shown))


def _fast_names(path: Path, shown: str, clock: Clock) -> list[tuple[str, ...]]:
    """The image names of a tar archive from its headers alone (see `tar_names`)."""
    names = []
    with open_regular(path, shown) as handle:
        for name, regular, size in tar_members(handle):
            clock.entry()
            clock.data(size)
            if regular and name.lower().endswith(IMAGE_SUFFIXES):
                names.append(Path(name).parts)
    return names


def _members(path: Path, shown: str, clock: Clock):
    """(member, archive) of every member of a tar archive, counted against `clock` (entries and bytes)."""
    with open_regular(path, shown) as handle:
        try:
            with tarfile.open(fileobj=handle, mode="r:*") as archive:
                for member in archive:
                    clock.entry()
                    clock.data(max(member.size, 0))
                    yield member, archive
        except tarfile.ReadError:
            raise DataError(f"{shown!r} is neither a folder nor a .tar.gz archive of images. {LAYOUT}") from None
        except _ARCHIVE_ERRORS as error:
            raise DataError(f"{shown!r} is not a readable .tar.gz archive ({type(error).__name__}: {error}). "
                            "Re-create the archive.") from None
        except OSError as error:
            raise os_error(error, shown) from None


def _counts(names: list[tuple[str, ...]], stamp: str) -> Scan:
    split = {"train": 0, "test": 0}
    classes = set()
    for parts in names:
        if len(parts) >= 3 and parts[-3] in split:
            split[parts[-3]] += 1
            classes.add(parts[-2])
    return Scan(len(names), split["train"], split["test"], len(classes), stamp)


def file_stamp(path: Path, shown: str) -> str:
    """An archive's stamp for cache keys: its size and modification time."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise os_error(error, shown) from None
    return f"{info.st_size}-{info.st_mtime_ns}"


def _quick_stamp(path: Path, shown: str) -> tuple:
    """The path's identity and times, and for a folder those of its sub-folders two levels down."""
    try:
        info = os.stat(path)
        stamp = [(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)]
        if path.is_dir():
            for child in _subfolders(path):
                stamp.append((child.name, child.stat().st_mtime_ns))
                stamp.extend((f"{child.name}/{sub.name}", sub.stat().st_mtime_ns) for sub in _subfolders(Path(child.path)))
    except OSError as error:
        raise os_error(error, shown) from None
    return tuple(stamp)


def _subfolders(path: Path) -> list[os.DirEntry]:
    with os.scandir(path) as listing:
        found = []
        for i, entry in enumerate(listing):
            if i >= _QUICK_ENTRIES:
                break
            if entry.is_dir(follow_symlinks=False):
                found.append(entry)
    return sorted(found, key=lambda e: e.name)


def _stored_path(path: Path, quick: tuple) -> Path:
    return keyed_file("listings", [str(path), quick], ".json")


def _stored(path: Path, quick: tuple) -> Scan | None:
    """The scan a process left in the cache for this path and quick stamp, or None."""
    try:
        return Scan(**json.loads(_stored_path(path, quick).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _store(path: Path, quick: tuple, result: Scan) -> None:
    with contextlib.suppress(OSError):
        write_text_atomic(_stored_path(path, quick), json.dumps(asdict(result)))


def _remember(path: Path, quick: tuple, result: Scan) -> None:
    with _memo_lock:
        _memo[str(path)] = (quick, result)
        _memo.move_to_end(str(path))
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
