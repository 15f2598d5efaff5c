"""Visitors' uploads: a .zip or .tar.gz of images laid out train/<class>/..., test/<class>/....

An archive is read in one forward pass, with bounded memory, and checked as it goes: every entry's
name (no absolute paths, no `..`), its kind (regular files and folders only: no links, devices or
pipes), the entry count (a zip's listing is counted before zipfile reads it), every byte
decompressed (skipped entries too), the time (checked at every read, so it interrupts a long entry)
and each image's header (found within its first 1 MB), pixel count, byte count and end (a truncated
image is refused). Images are written, each into a new file, inside the upload's own new folder,
which is deleted with all it holds when any check fails: a refused archive leaves nothing behind.
Each upload lives in FMSTEAL_UPLOADS/<visitor>/<random>/ and is deleted by `remove_uploads` when its
visitor's session ends or by `sweep_uploads` once older than FMSTEAL_UPLOAD_HOURS. Messages name the
archive by its file name only, never a server path.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import re
import secrets
import shutil
import stat
import struct
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fmsteal import settings
from fmsteal.engine.decode import HEADER_BYTES, MAX_HEADER_BYTES, image_size
from fmsteal.engine.listing import IMAGE_SUFFIXES, LAYOUT
from fmsteal.engine.safe_fs import MAX_DEPTH, Clock, Limits, open_regular
from fmsteal.errors import DataError

__all__ = ["Upload", "belongs_to", "extract_upload", "remove_uploads", "sweep_uploads"]

_CHUNK = 1 << 20  # the most bytes read at once (a tar header record over it is refused)
_TAIL_BYTES = 4096  # the last bytes of an image kept to check that it is whole: its end and any padding after it
_PADDING = b"\0\xff\r\n\t "  # bytes some writers add after an image's end
_MAX_ZIP_LISTING = 64 * 2**20  # a zip's central directory (~100 bytes a file: 70,000 files fill 7 MB)
_COMPRESSIONS = ((b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")), (b"BZh", bz2.BZ2File),
                 (b"\xfd7zXZ\0", lzma.LZMAFile))
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError,
                   NotImplementedError, RuntimeError, ValueError)


@dataclass(frozen=True)
class Upload:
    """An extracted upload: the folder to load (`load_splits`/`load_pool`) and what to tell its visitor."""

    path: Path
    description: str  # e.g. "pets.zip: 600 training and 200 test images in 2 classes"; names no server path


@dataclass(frozen=True)
class _Entry:
    """One archive entry: its name, kind ("file", "dir", "link", "device", "other"), declared size, opener."""

    name: str
    kind: str
    size: int
    open: Callable[[], object]


def extract_upload(archive: str | os.PathLike, visitor: str, name: str | None = None, pool: bool = False,
                   root: Path | None = None) -> Upload:
    """Extract the images of the archive at `archive` into a new folder of `visitor`'s, checking as it goes.

    `name` is the file name the visitor gave (default: the archive's); with `pool`, images need no
    train/test layout (a query pool). Raises DataError, saying what to change, when the archive breaks a
    rule or a cap (FMSTEAL_UPLOAD_MAX_FILES, FMSTEAL_UPLOAD_MAX_MB, FMSTEAL_MAX_IMAGE_PIXELS,
    FMSTEAL_READ_SECONDS); the new folder is then deleted with all it holds.
    """
    shown = Path(name or os.fspath(archive)).name or "upload"
    s = settings.current()
    limits = Limits(s.upload_max_files, s.upload_max_bytes, s.read_seconds, "FMSTEAL_READ_SECONDS",
                    "FMSTEAL_UPLOAD_MAX_FILES", "FMSTEAL_UPLOAD_MAX_MB")
    folder = (root or s.uploads) / _visitor_folder(visitor) / secrets.token_hex(12)
    target = folder / _stem(shown)
    try:
        with open_regular(Path(archive), shown) as handle:
            if os.fstat(handle.fileno()).st_size > s.upload_max_bytes:
                raise DataError(f"{shown!r} is larger than {s.upload_max_bytes / 2**20:.0f} MB "
                                "(FMSTEAL_UPLOAD_MAX_MB). Upload fewer or smaller images.")
            target.mkdir(parents=True, mode=0o700)
            clock = Clock(limits, shown, "Extracting")
            with _archive_errors(shown):
                images = _extract(handle, shown, clock, _Budget(s.upload_max_bytes, clock), s.max_image_pixels,
                                  target)
        description = _describe(images, shown, pool)
    except BaseException as error:
        _remove(folder)
        if isinstance(error, OSError):
            raise DataError(f"{shown!r} could not be extracted ({error.strerror or type(error).__name__}). "
                            "Try again later.") from None
        raise
    return Upload(target, description)


def remove_uploads(visitor: str, root: Path | None = None) -> None:
    """Delete every upload of `visitor` (call it when the visitor's session ends)."""
    shutil.rmtree((root or settings.current().uploads) / _visitor_folder(visitor), ignore_errors=True)


def sweep_uploads(max_age_seconds: float | None = None, root: Path | None = None) -> int:
    """Delete uploads older than `max_age_seconds` (default FMSTEAL_UPLOAD_HOURS); how many were deleted.

    Call it at start and then periodically.
    """
    s = settings.current()
    root = root or s.uploads
    limit = s.upload_seconds if max_age_seconds is None else max_age_seconds
    removed = 0
    for visitor in list(root.iterdir()) if root.is_dir() else []:
        for upload in list(visitor.iterdir()) if visitor.is_dir() and not visitor.is_symlink() else []:
            try:
                expired = time.time() - upload.lstat().st_mtime > limit
            except FileNotFoundError:  # removed meanwhile (its visitor left)
                continue
            if expired:
                shutil.rmtree(upload, ignore_errors=True)
                removed += 1
        try:
            visitor.rmdir()  # only when empty
        except OSError:
            pass
    return removed


def belongs_to(path: str | os.PathLike, visitor: str, root: Path | None = None) -> bool:
    """True when `path` lies inside one of `visitor`'s uploads (check it before running on a path a request names)."""
    try:
        home = ((root or settings.current().uploads) / _visitor_folder(visitor)).resolve()
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):
        return False
    return resolved != home and resolved.is_relative_to(home)


def _describe(plan: set[tuple[str, ...]], shown: str, pool: bool) -> str:
    """One sentence about the upload's images; DataError when they are not laid out as needed."""
    classes: dict[str, set[str]] = {"train": set(), "test": set()}
    counts = {"train": 0, "test": 0}
    for parts in plan:
        if len(parts) >= 3 and parts[-3] in counts:
            counts[parts[-3]] += 1
            classes[parts[-3]].add(parts[-2])
    if pool and not counts["train"]:
        if not plan:
            raise DataError(f"{shown!r} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        return f"{shown}: {len(plan):,} images"
    for split in counts:
        if not counts[split]:
            raise DataError(f"{shown!r} has no images under {split}/<class>/. {LAYOUT}")
    if classes["train"] != classes["test"] or len(classes["train"]) < 2:
        missing, extra = sorted(classes["train"] - classes["test"]), sorted(classes["test"] - classes["train"])
        raise DataError(f"{shown!r}: the train and test splits must have the same classes (at least two). "
                        f"Missing from test: {missing or 'none'}; in test but not train: {extra or 'none'}.")
    return (f"{shown}: {counts['train']:,} training and {counts['test']:,} test images "
            f"in {len(classes['train'])} classes")


def _extract(handle, shown: str, clock: Clock, budget: _Budget, max_pixels: int,
             target: Path) -> set[tuple[str, ...]]:
    """Check every entry of the archive and write its images under `target`; the parts of the images written."""
    written: set[tuple[str, ...]] = set()
    for entry in _entries(handle, shown, budget):
        clock.entry()
        parts = _safe_parts(entry.name, shown)
        if entry.kind == "link":
            raise DataError(f"{shown!r} holds a link ({'/'.join(parts)}); links are not accepted. "
                            "Archive the images themselves.")
        if entry.kind in ("device", "other"):
            raise DataError(f"{shown!r} holds {'/'.join(parts)}, which is not a regular file or folder. "
                            "Archive only folders of images.")
        if entry.kind == "dir" or not parts or _ignored(parts) or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
            continue
        if parts in written:
            raise DataError(f"{shown!r} holds {'/'.join(parts)} twice. Re-create the archive.")
        clock.data(entry.size)
        path = target.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with entry.open() as stream:
            _store(stream, path, entry.size, shown, parts, max_pixels)
        written.add(parts)
    return written


def _store(stream, path: Path, size: int, shown: str, parts: tuple[str, ...], max_pixels: int) -> None:
    """Copy the image `parts` of `size` declared bytes from `stream` into a new file at `path`, checking it on the
    way: its header (within MAX_HEADER_BYTES), its pixel count, its byte count and its end (not truncated)."""
    where, label = "/".join(parts), parts[-2] if len(parts) > 1 else ""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    head, tail, known, count = b"", b"", False, 0
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(_CHUNK if count else HEADER_BYTES):
            count += len(chunk)
            if count > size:
                raise DataError(f"{shown!r}: {where} holds more bytes than its header says. "
                                "Re-create the archive.")
            if not known:
                head = (head + chunk)[:MAX_HEADER_BYTES]
                known = image_size(head, label, where, max_pixels) is not None
                if not known and len(head) == MAX_HEADER_BYTES:
                    break
            tail = (tail + chunk)[-_TAIL_BYTES:]
            out.write(chunk)
    if not known:
        why = f" (no image header in its first {MAX_HEADER_BYTES // 2**20} MB)" if len(head) == MAX_HEADER_BYTES else ""
        raise DataError(f"{shown!r}: {where} is not an image that can be read{why}. Remove or fix it.")
    if count != size:
        raise DataError(f"{shown!r}: {where} holds fewer bytes than its header says. "
                        "Re-create the archive.")
    if not _complete(head, tail, size):
        raise DataError(f"{shown!r}: {where} is truncated (its image data ends early). "
                        "Remove it or upload it whole.")


def _complete(head: bytes, tail: bytes, size: int) -> bool:
    """Whether an image whose first and last bytes are `head` and `tail` ends as its format says it must."""
    end = tail.rstrip(_PADDING)
    if head.startswith(b"\xff\xd8"):  # JPEG: the end-of-image marker
        return end.endswith(b"\xff\xd9")
    if head.startswith(b"\x89PNG"):  # PNG: the IEND chunk
        return end.endswith(b"IEND\xaeB`\x82")
    if head.startswith(b"BM"):  # BMP: the file size its header gives
        return int.from_bytes(head[2:6], "little") <= size
    if head.startswith(b"RIFF"):  # WebP: the RIFF size
        return int.from_bytes(head[4:8], "little") + 8 <= size
    return True


class _Budget:
    """Counts the bytes decompressed from an archive against a cap, and ticks `clock` at every read."""

    def __init__(self, cap: int, clock: Clock):
        self.cap, self.clock, self.used = cap, clock, 0

    def spend(self, size: int) -> None:
        self.used += size
        if self.used > self.cap:
            raise DataError(f"{self.clock.shown!r} holds more than {self.cap / 2**20:,.0f} MB once decompressed "
                            "(FMSTEAL_UPLOAD_MAX_MB). Upload fewer or smaller images.")
        self.clock.tick()


class _Counted:
    """A stream read forward only, at most _CHUNK bytes a read, every byte counted by `budget` (seeks forward read)."""

    def __init__(self, raw, budget: _Budget):
        self.raw, self.budget, self.position = raw, budget, 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > _CHUNK:
            raise DataError(f"{self.budget.clock.shown!r} holds a header record over {_CHUNK // 2**20} MB. "
                            "Re-create the archive.")
        try:
            data = self.raw.read(size)
        except (OSError, EOFError) as error:  # a corrupt compressed stream (gzip and bz2 raise OSError)
            raise _unreadable(self.budget.clock.shown, error) from None
        self.position += len(data)
        self.budget.spend(len(data))
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        goal = offset + (self.position if whence == os.SEEK_CUR else 0)
        if whence == os.SEEK_END or goal < self.position:
            raise ValueError("the archive is read forward only")
        while self.position < goal and self.read(min(_CHUNK, goal - self.position)):
            pass
        return self.position

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> "_Counted":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def _archive_errors(shown: str) -> Iterator[None]:
    """Turn the errors of a corrupt or unreadable archive into a DataError."""
    try:
        yield
    except tarfile.ReadError:
        raise DataError(f"{shown!r} is not a readable .zip or .tar.gz archive. Upload the images as one of those. "
                        f"{LAYOUT}") from None
    except _ARCHIVE_ERRORS as error:
        raise _unreadable(shown, error) from None


def _unreadable(shown: str, error: BaseException) -> DataError:
    return DataError(f"{shown!r} is not a readable archive ({type(error).__name__}: {error}). Re-create it.")


def _entries(handle, shown: str, budget: _Budget) -> Iterator[_Entry]:
    """The entries of the .zip or tar (.tar.gz, .tgz, .tar.bz2, .tar.xz) archive open in `handle`, read in one
    forward pass: every byte decompressed is counted by `budget`."""
    handle.seek(0)
    if zipfile.is_zipfile(handle):
        _check_zip_listing(handle, shown, Clock(budget.clock.limits, shown, "Listing"))
        handle.seek(0)
        with zipfile.ZipFile(handle) as archive:
            for info in archive.infolist():
                yield _zip_entry(archive, info, shown, budget)
        return
    handle.seek(0)
    magic = handle.read(6)
    handle.seek(0)
    opener = next((open_ for prefix, open_ in _COMPRESSIONS if magic.startswith(prefix)), None)
    with _Counted(opener(handle) if opener else handle, budget) as stream, \
            tarfile.open(fileobj=stream, mode="r:") as archive:
        for member in archive:
            yield _Entry(member.name, _tar_kind(member), member.size, lambda member=member: archive.extractfile(member))


def _check_zip_listing(handle, shown: str, clock: Clock) -> None:
    """Count a zip's entries on `clock` walking its central directory record by record, and refuse one over
    _MAX_ZIP_LISTING bytes, before zipfile reads it whole and builds an object for every entry."""
    end = zipfile._EndRecData(handle)  # zipfile's own reader of the end record (zip64 too); private but stable
    if not end:
        return  # ZipFile says what is wrong
    size = end[zipfile._ECD_SIZE]
    if size > _MAX_ZIP_LISTING:
        raise DataError(f"{shown!r} lists its files in more than {_MAX_ZIP_LISTING // 2**20} MB. "
                        "Upload fewer files, or an archive made without comments or extra fields.")
    position = start = end[zipfile._ECD_LOCATION] - size
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        position = start = start - zipfile.sizeEndCentDir64 - zipfile.sizeEndCentDir64Locator
    while position < start + size:
        handle.seek(position)
        record = handle.read(46)
        if len(record) < 46 or not record.startswith(b"PK\x01\x02"):
            return  # ZipFile says what is wrong
        clock.entry()
        position += 46 + sum(struct.unpack("<3H", record[28:34]))  # its name, extra field and comment


def _zip_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str, budget: _Budget) -> _Entry:
    if info.flag_bits & 0x1:
        raise DataError(f"{shown!r} is encrypted. Upload an archive without a password.")
    file_type = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0  # Unix-made zips only
    if info.is_dir():
        kind = "dir"
    elif file_type == stat.S_IFLNK:
        kind = "link"
    elif file_type not in (0, stat.S_IFREG):
        kind = "device"
    else:
        kind = "file"
    return _Entry(info.filename, kind, info.file_size,
                  lambda: _Counted(archive.open(info), budget))  # zipfile stops at file_size


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "dir"
    if member.issym() or member.islnk():
        return "link"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device"
    return "file" if member.isreg() and not member.issparse() else "other"


def _safe_parts(name: str, shown: str) -> tuple[str, ...]:
    """The entry's path parts, or a DataError for absolute paths, `..`, drive letters and control characters."""
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text) or any(ord(c) < 32 for c in text):
        raise DataError(f"{shown!r} holds an entry with an absolute or invalid path. "
                        "Archive the folder with relative paths (train/<class>/..., test/<class>/...).")
    parts = tuple(part for part in text.split("/") if part not in ("", "."))
    if ".." in parts:
        raise DataError(f"{shown!r} holds an entry that points outside the archive ({name[:80]!r}). "
                        "Re-create it with relative paths.")
    if len(parts) > MAX_DEPTH + 1 or any(len(part.encode()) > 255 for part in parts):
        raise DataError(f"{shown!r} holds a path nested too deep or with too long a name ({name[:80]!r}).")
    return parts


def _ignored(parts: tuple[str, ...]) -> bool:
    """macOS resource forks and hidden files, which archivers add beside the images."""
    return parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts)


def _remove(folder: Path) -> None:
    """Delete an upload's folder, and its visitor's folder when that is left empty."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:
        pass


def _visitor_folder(visitor: str) -> str:
    return hashlib.sha256(visitor.encode()).hexdigest()[:32]


def _stem(name: str) -> str:
    stem = re.sub(r"(\.tar\.gz|\.tgz|\.tar\.bz2|\.tar\.xz|\.tar|\.zip)$", "", name, flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:64] or "upload"
