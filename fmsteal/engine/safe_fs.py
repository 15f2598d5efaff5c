"""Reading user-named files and folders within bounds.

Only regular files and folders are read, never devices, pipes, sockets or the system's pseudo
folders; paths stay inside FMSTEAL_DATA_ROOTS when it is set (and inside the uploads folder and the
configured default data on a public server); every walk is limited in entries, depth, bytes and
time; every OS error becomes a DataError. Messages name a path as its user typed it, never resolved.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fmsteal import settings
from fmsteal.cancel import check
from fmsteal.errors import DataError

__all__ = ["Clock", "FileEntry", "Limits", "MAX_DEPTH", "MAX_OTHER_FILES", "SYSTEM_DIRS", "checked_path",
           "os_error", "read_regular", "open_regular", "shown_name", "walk"]

SYSTEM_DIRS = tuple(Path(p) for p in ("/proc", "/sys", "/dev", "/run"))  # never data, never walked into
MAX_DEPTH = 8  # folders nested deeper than this in a data folder are refused
MAX_OTHER_FILES = 10_000  # a "data folder" with more files that are not images is not one (`/`, `/usr`, ...)


@dataclass(frozen=True)
class Limits:
    """Bounds on one walk or read: entries, bytes of images, seconds, and the variables that set them."""

    files: int
    data_bytes: int
    seconds: float
    seconds_env: str
    files_env: str = "FMSTEAL_MAX_FILES"
    bytes_env: str = "FMSTEAL_MAX_DATA_GB"

    @classmethod
    def listing(cls) -> "Limits":
        """For counting and stamping (the estimate, cache keys): FMSTEAL_WALK_SECONDS."""
        s = settings.current()
        return cls(s.max_files, s.max_data_bytes, s.walk_seconds, "FMSTEAL_WALK_SECONDS")

    @classmethod
    def reading(cls) -> "Limits":
        """For reading a dataset's files in a run: FMSTEAL_READ_SECONDS."""
        s = settings.current()
        return cls(s.max_files, s.max_data_bytes, s.read_seconds, "FMSTEAL_READ_SECONDS")


class Clock:
    """Counts entries and bytes against `limits` and raises a DataError past any of them (or on cancel)."""

    def __init__(self, limits: Limits, shown: str, what: str = "Reading"):
        self.limits, self.shown, self.what = limits, shown, what
        self.deadline = time.monotonic() + limits.seconds
        self.entries = self.bytes = 0

    def entry(self) -> None:
        """Count one entry (file, folder or archive member)."""
        self.entries += 1
        if self.entries > self.limits.files:
            raise DataError(f"{self.shown!r} holds more than {self.limits.files:,} files or folders "
                            f"({self.limits.files_env}). Use a smaller folder or archive.")
        if self.entries % 256 == 0:
            self.tick()

    def data(self, size: int) -> None:
        """Count `size` bytes of images."""
        self.bytes += size
        if self.bytes > self.limits.data_bytes:
            raise DataError(f"{self.shown!r} holds more than {_amount(self.limits.data_bytes)} of images "
                            f"({self.limits.bytes_env}). Use a smaller dataset.")

    def tick(self) -> None:
        """Raise when the time is up or the run was cancelled."""
        check()
        if time.monotonic() > self.deadline:
            raise DataError(f"{self.what} {self.shown!r} took longer than {self.limits.seconds:g} s "
                            f"({self.limits.seconds_env}); it holds too many files or is too slow to read. "
                            "Use a smaller folder or archive.")


def _amount(size: int) -> str:
    return f"{size / 2**30:.1f} GB" if size >= 2**30 else f"{size / 2**20:.0f} MB"


@dataclass(frozen=True)
class FileEntry:
    """A regular file found by `walk`: its parts relative to the walked folder, its path, size and mtime."""

    parts: tuple[str, ...]
    path: Path
    size: int
    mtime_ns: int


def shown_name(source: str) -> str:
    """How messages name `source`: as typed, except an upload, named by its folder alone."""
    try:
        path = Path(source).expanduser().resolve()
        if path.is_relative_to(settings.current().uploads.resolve()):
            return path.name
    except (OSError, RuntimeError, ValueError):
        pass
    return source


def os_error(error: BaseException, shown: str) -> DataError:
    """A DataError for an OSError met while reading `shown` (the path as the user typed it)."""
    code = getattr(error, "errno", None)
    reason = {
        errno.ENOENT: "does not exist. Check the path",
        errno.EACCES: "cannot be read: permission denied",
        errno.EPERM: "cannot be read: permission denied",
        errno.ELOOP: "is a loop of symbolic links",
        errno.ENOTDIR: "does not exist (a part of it is not a folder). Check the path",
        errno.ENAMETOOLONG: "is too long a path",
        errno.EMFILE: "cannot be opened: too many files are open on the server. Try again later",
        errno.ENFILE: "cannot be opened: too many files are open on the server. Try again later",
    }.get(code)
    if reason is None:
        text = getattr(error, "strerror", None) or type(error).__name__
        reason = f"cannot be read ({text})"
    return DataError(f"{shown!r} {reason}.")


def _allowed_roots() -> tuple[Path, ...] | None:
    """Folders user-named paths must lie in (None: anywhere but the system folders)."""
    s = settings.current()
    roots = list(s.data_roots)
    if s.public and s.data_dir:
        roots.append(Path(s.data_dir))
    if not roots and not s.public:
        return None
    return tuple(root.expanduser().resolve() for root in [*roots, s.uploads])


def checked_path(source: str) -> Path:
    """The resolved path of a user-named data folder or archive, or a DataError saying why it cannot be read.

    Refused: paths outside the allowed roots (checked before existence, so nothing outside them can be
    probed), the system's pseudo folders, missing paths, and anything but a regular file or folder.
    """
    shown = shown_name(source)
    try:
        path = Path(source).expanduser().resolve()
    except RuntimeError:  # Python 3.11 reports a symlink loop this way
        raise DataError(f"{shown!r} is a loop of symbolic links.") from None
    except OSError as error:
        raise os_error(error, shown) from None
    roots = _allowed_roots()
    if roots is not None and not any(path.is_relative_to(root) for root in roots):
        s = settings.current()
        configured = os.pathsep.join(str(r) for r in s.data_roots)
        where = f"the folders in FMSTEAL_DATA_ROOTS ({configured})" if configured and not s.public else "uploaded archives"
        raise DataError(f"{shown!r} is outside the data this server may read: use {where}.")
    if _in_system_dir(path) or _in_system_dir(Path(os.path.abspath(os.path.expanduser(source)))):  # /proc/self/cwd
        raise DataError(f"{shown!r} is a system path, not data. Point to an image folder or a .tar.gz archive.")
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise os_error(error, shown) from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise DataError(f"{shown!r} is not a regular file or folder (a device, pipe or socket). "
                        "Point to an image folder or a .tar.gz archive.")
    return path


def open_regular(path: Path, shown: str):
    """`path` opened for binary reading, refused unless it is a regular file (opening a pipe never blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise os_error(error, shown) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataError(f"{shown!r} is not a regular file (a device, pipe or socket).")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path, shown: str, limit: int = -1) -> bytes:
    """The first `limit` bytes (all with -1) of a regular file."""
    with open_regular(path, shown) as handle:
        try:
            return handle.read(limit)
        except OSError as error:
            raise os_error(error, shown) from None


def walk(root: Path, shown: str, clock: Clock, suffixes: tuple[str, ...]) -> Iterator[tuple[FileEntry, bool]]:
    """Every regular file under the folder `root`, with whether its name ends in one of `suffixes`.

    Bounded by `clock` (entries, bytes of matching files, time), by MAX_DEPTH and by MAX_OTHER_FILES
    files not matching; follows symbolic links to files and (once each) to folders; skips devices,
    pipes, sockets and the system folders; raises DataError on every OS error.
    """
    seen = {_identity(root, shown)}
    stack: list[tuple[Path, tuple[str, ...]]] = [(root, ())]
    others = 0
    while stack:
        folder, parts = stack.pop()
        clock.tick()
        where = "/".join((shown.rstrip("/"), *parts)) if parts else shown
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as error:
            raise os_error(error, where) from None
        for entry in entries:
            clock.entry()
            path, here = Path(entry.path), (*parts, entry.name)
            try:
                info = entry.stat(follow_symlinks=True)
            except OSError as error:
                if entry.is_symlink():
                    continue  # a dangling link is not data
                raise os_error(error, "/".join((shown.rstrip("/"), *here))) from None
            if stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) in seen or _in_system_dir(path.resolve() if entry.is_symlink() else path):
                    continue
                if len(here) > MAX_DEPTH:
                    raise DataError(f"{shown!r} nests folders more than {MAX_DEPTH} deep; a dataset is laid out "
                                    "train/<class>/<image> and test/<class>/<image>. Point to its top folder.")
                seen.add((info.st_dev, info.st_ino))
                stack.append((path, here))
            elif stat.S_ISREG(info.st_mode):
                matches = entry.name.lower().endswith(suffixes)
                if matches:
                    clock.data(info.st_size)
                else:
                    others += 1
                    if others > MAX_OTHER_FILES:
                        raise DataError(f"{shown!r} holds more than {MAX_OTHER_FILES:,} files that are not images "
                                        f"({', '.join(suffixes)}): it is not an image folder. Point to one.")
                yield FileEntry(here, path, info.st_size, info.st_mtime_ns), matches


def _in_system_dir(path: Path) -> bool:
    return any(path == d or path.is_relative_to(d) for d in SYSTEM_DIRS)


def _identity(folder: Path, shown: str) -> tuple[int, int]:
    try:
        info = os.stat(folder)
    except OSError as error:
        raise os_error(error, shown) from None
    return info.st_dev, info.st_ino
