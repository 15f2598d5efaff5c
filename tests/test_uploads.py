"""Visitors' uploads: good archives of real CIFAR-10 images load; hostile ones are refused before anything is written."""

import io
import os
import struct
import subprocess
import sys
import tarfile
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine_fixtures import zeros_tar_gz
from fmsteal.engine.data import load_pool, load_splits
from fmsteal.errors import DataError
from fmsteal.service.uploads import belongs_to, extract_upload, remove_uploads, sweep_uploads


@pytest.fixture(scope="module")
def cifar_files(cifar_mini) -> dict[str, bytes]:
    """4 train and 2 test JPEGs of each CIFAR-10 class, by their path in the archive."""
    wanted, files = {"train": 4, "test": 2}, {}
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(cifar_mini) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 3 and taken.get(parts[:2], 0) < wanted[parts[0]]:
                taken[parts[:2]] = taken.get(parts[:2], 0) + 1
                files[member.name] = tar.extractfile(member).read()
            if len(files) == 60:
                break
    return files


def make_tar(path: Path, files: dict[str, bytes], extra=(), mode="w:gz") -> Path:
    """A tar of `files` plus `extra` TarInfo entries (links, devices, ...) placed first."""
    with tarfile.open(path, mode) as tar:
        for info in extra:
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_zip(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link, as `zip --symlinks` stores it
            archive.writestr(info, target)
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.devmajor, info.devminor = 1, 5  # /dev/zero
    return info


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if not p.is_dir()] if folder.exists() else []


@pytest.fixture
def place(tmp_path):
    """(uploads root, a folder outside it that hostile archives aim at)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    return tmp_path / "uploads", outside


@pytest.mark.parametrize("kind", ["tar.gz", "tar.bz2", "tar.xz", "tar", "zip"])
def test_a_good_archive_of_cifar_images_extracts_and_loads(cifar_files, tmp_path, place, kind):
    root, _ = place
    files = {f"pets/{name}": data for name, data in cifar_files.items()}
    path = tmp_path / f"mine.{kind}"
    archive = make_zip(path, files) if kind == "zip" else make_tar(path, files, mode=f"w:{kind[4:]}")
    upload = extract_upload(archive, "visitor-a", name=f"my photos.{kind}", root=root)
    assert upload.description == f"my photos.{kind}: 40 training and 20 test images in 10 classes"
    assert str(tmp_path) not in upload.description and upload.path.is_relative_to(root)
    assert sorted(p.relative_to(upload.path).as_posix() for p in files_under(upload.path)) == sorted(files)
    splits = load_splits(str(upload.path))
    assert splits.train.images.shape == (40, 3, 32, 32) and splits.train.class_names[0] == "airplane"
    first = next(name for name in files if "/train/airplane/" in name)
    expected = np.asarray(Image.open(io.BytesIO(files[first])).convert("RGB")).transpose(2, 0, 1)
    assert any(np.array_equal(expected, image) for image in splits.train.images.numpy()[:4])


def test_an_archive_without_splits_is_a_query_pool(cifar_files, tmp_path, place):
    files = {f"street/{i}.jpg": data for i, data in enumerate(list(cifar_files.values())[:7])}
    upload = extract_upload(make_zip(tmp_path / "pool.zip", files), "v", pool=True, root=place[0])
    assert upload.description == "pool.zip: 7 images"
    assert load_pool(str(upload.path)).images.shape == (7, 3, 32, 32)
    with pytest.raises(DataError, match="has no images under train/<class>/"):
        extract_upload(tmp_path / "pool.zip", "v", root=place[0])


def _big_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (PIL reads the size without the pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _hostile(cifar_files, tmp_path, outside, case):
    """(archive, message) of one hostile case; every case aims its writes at `outside`."""
    good = {f"d/{name}": data for name, data in list(cifar_files.items())}
    jpeg = next(iter(cifar_files.values()))
    if case == "traversal":
        return make_tar(tmp_path / "a.tar.gz", {**good, "d/train/cat/../../../../outside/evil.jpg": jpeg}), "outside the archive"
    if case == "absolute":
        return make_tar(tmp_path / "a.tar.gz", {**good, f"{outside}/evil.jpg": jpeg}), "absolute"
    if case == "symlink":  # a folder link out of the upload, then a file written through it
        return make_tar(tmp_path / "a.tar.gz", {**good, "d/train/cat/x/evil.jpg": jpeg},
                        [entry("d/train/cat/x", tarfile.SYMTYPE, str(outside))]), "link"
    if case == "hardlink":
        return make_tar(tmp_path / "a.tar.gz", good, [entry("d/train/cat/passwd.jpg", tarfile.LNKTYPE, "/etc/passwd")]), "link"
    if case == "device":
        return make_tar(tmp_path / "a.tar.gz", good, [entry("d/train/cat/zero.jpg", tarfile.CHRTYPE)]), "not a regular file"
    if case == "fifo":
        return make_tar(tmp_path / "a.tar.gz", good, [entry("d/train/cat/pipe.jpg", tarfile.FIFOTYPE)]), "not a regular file"
    if case == "zip-traversal":
        return make_zip(tmp_path / "a.zip", {**good, "../outside/evil.jpg": jpeg}), "outside the archive"
    if case == "zip-absolute":
        return make_zip(tmp_path / "a.zip", {**good, f"{outside}/evil.jpg": jpeg}), "absolute"
    if case == "zip-symlink":
        return make_zip(tmp_path / "a.zip", good, {"d/train/cat/x": str(outside)}), "link"
    if case == "count":  # 60 images + folders over a cap of 50 entries
        return make_tar(tmp_path / "a.tar.gz", good), "more than 50 files.*FMSTEAL_UPLOAD_MAX_FILES"
    if case == "size":  # 5 MB of zeros declared in one member's header: a few KB compressed
        archive = make_tar(tmp_path / "a.tar.gz", {**good, "d/train/cat/big.jpg": bytes(5 * 2**20)})
        return archive, "more than 1 MB.*FMSTEAL_UPLOAD_MAX_MB"
    if case == "skipped":  # a file that is no image, 3 MB once decompressed, over a cap of 1 MB
        return make_tar(tmp_path / "a.tar.gz", {**good, "d/notes.bin": bytes(3 * 2**20)}), \
            "more than 1 MB once decompressed.*FMSTEAL_UPLOAD_MAX_MB"
    if case == "pax":  # a 2 MB extended header, which tarfile would read into memory at once
        with tarfile.open(tmp_path / "a.tar.gz", "w:gz", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("d/train/cat/x.jpg")
            info.pax_headers = {"comment": "x" * 2 * 2**20}
            tar.addfile(info)
        return tmp_path / "a.tar.gz", "header record over 1 MB"
    if case == "truncated":  # a real CIFAR JPEG cut short: its header is whole, its end is missing
        return make_tar(tmp_path / "a.tar.gz", {**good, "d/train/cat/cut.jpg": jpeg[:-100]}), \
            "d/train/cat/cut.jpg is truncated"
    if case == "zip-truncated":
        return make_zip(tmp_path / "a.zip", {**good, "d/train/cat/cut.png": _png(jpeg)[:-20]}), \
            "d/train/cat/cut.png is truncated"
    if case == "pixels":  # 60,000 x 60,000 pixels claimed by a 100-byte PNG: over PIL's own bomb limit too
        return make_zip(tmp_path / "a.zip", {**good, "d/train/cat/bomb.png": _big_png(60_000, 60_000)}), "over the cap"
    if case == "pixels-cap":
        archive = make_zip(tmp_path / "a.zip", {**good, "d/train/cat/wide.png": _big_png(5000, 3000)})
        return archive, "5000x3000 pixels, over the cap of 10,000,000"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["traversal", "absolute", "symlink", "hardlink", "device", "fifo", "zip-traversal",
                                  "zip-absolute", "zip-symlink", "count", "size", "skipped", "pax", "truncated",
                                  "zip-truncated", "pixels", "pixels-cap"])
def test_hostile_archives_are_refused_and_leave_nothing_behind(cifar_files, tmp_path, place, monkeypatch, case):
    root, outside = place
    monkeypatch.setenv("FMSTEAL_UPLOAD_MAX_FILES", "50" if case == "count" else "1000")
    monkeypatch.setenv("FMSTEAL_UPLOAD_MAX_MB", "1")
    monkeypatch.setenv("FMSTEAL_MAX_IMAGE_PIXELS", "10000000")
    archive, message = _hostile(cifar_files, tmp_path, outside, case)
    with pytest.raises(DataError, match=message) as refused:
        extract_upload(archive, "visitor", root=root)
    assert str(tmp_path) not in str(refused.value)  # names the archive, never a server path
    assert files_under(outside) == [] and list(root.glob("*")) == []  # not even the visitor's folder
    assert not (tmp_path / "evil.jpg").exists()


def _png(jpeg: bytes) -> bytes:
    """A real image re-encoded as PNG."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_whole_images_with_trailing_padding_are_accepted(cifar_files, tmp_path, place):
    files = {name: data + bytes(100) if i % 2 else data for i, (name, data) in enumerate(cifar_files.items())}
    files["train/cat/whole.png"] = _png(next(iter(cifar_files.values())))
    upload = extract_upload(make_zip(tmp_path / "padded.zip", files), "v", root=place[0])
    assert upload.description == "padded.zip: 41 training and 20 test images in 10 classes"


_MEASURE = """
import re, sys
from pathlib import Path
from fmsteal.errors import DataError
from fmsteal.service.uploads import extract_upload
def status(field):
    return int(re.search(field + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from the RSS now
idle = status("VmRSS")
try:
    extract_upload(sys.argv[1], "visitor", root=Path(sys.argv[2]))
except DataError as error:
    print(error)
print((status("VmHWM") - idle) // 1024)
"""


def test_400_mb_of_zeros_named_jpg_is_refused_in_bounded_memory(tmp_path, place):
    """The image check reads at most 1 MB of an entry to find its header (it read the whole entry, twice)."""
    archive = zeros_tar_gz(tmp_path / "zeros.tar.gz", "d/train/cat/zero.jpg", 400 * 2**20)
    assert archive.stat().st_size < 2**20
    started = time.monotonic()
    ran = subprocess.run([sys.executable, "-c", _MEASURE, str(archive), str(place[0])], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    message, grown = ran.stdout.strip().splitlines()
    print(f"peak RSS growth {grown} MB, {time.monotonic() - started:.1f} s with the interpreter's start")
    assert "zero.jpg is not an image that can be read (no image header in its first 1 MB)" in message
    assert int(grown) < 100 and files_under(place[0]) == []


def _zip_of_empty_files(path: Path, count: int) -> Path:
    """A zip of `count` empty files, written record by record (zipfile takes ~30 s for 10^6)."""
    local, central = [], []
    for i in range(count):
        name = f"{i:07d}.bin".encode()
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0,
                                   0, 30 * i + len(name) * i) + name)
        local.append(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name)
    body, listing = b"".join(local), b"".join(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(listing), len(body), 0)
    path.write_bytes(body + listing + end)
    return path


def test_a_zip_listing_300_000_files_is_refused_before_zipfile_reads_its_listing(tmp_path, place, monkeypatch):
    """zipfile builds an object per listed file (a 25 MB zip of 300,000 took 150 MB); the listing is counted first."""
    monkeypatch.setenv("FMSTEAL_UPLOAD_MAX_FILES", "1000")
    archive = _zip_of_empty_files(tmp_path / "many.zip", 300_000)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="holds more than 1,000 files or folders .FMSTEAL_UPLOAD_MAX_FILES"):
            extract_upload(archive, "visitor", root=place[0])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20 and files_under(place[0]) == []


def test_the_time_limit_interrupts_a_single_long_entry(tmp_path, place, monkeypatch):
    """4 GB of zeros in one skipped entry (~14 s to decompress) under no byte cap: stopped at the time limit."""
    monkeypatch.setenv("FMSTEAL_UPLOAD_MAX_MB", str(2**20))
    monkeypatch.setenv("FMSTEAL_READ_SECONDS", "0.5")
    archive = zeros_tar_gz(tmp_path / "slow.tar.gz", "d/notes.bin", 4 * 2**30)
    started = time.monotonic()
    with pytest.raises(DataError, match=r"Extracting 'slow.tar.gz' took longer than 0.5 s \(FMSTEAL_READ_SECONDS\)"):
        extract_upload(archive, "visitor", root=place[0])
    assert time.monotonic() - started < 4
    assert files_under(place[0]) == []


def test_entries_bigger_than_their_headers_say_are_caught_while_extracting(cifar_files, tmp_path, place):
    """A zip whose central directory understates a file's size: the bytes read, not the header, decide."""
    name, data = next(iter(cifar_files.items()))
    files = {f"d/{n}": d for n, d in cifar_files.items()}
    archive = make_zip(tmp_path / "lie.zip", files)
    raw = bytearray(archive.read_bytes())
    central = raw.index(b"PK\x01\x02")  # the first file's central-directory record
    struct.pack_into("<I", raw, central + 24, 100)  # its uncompressed size: 100 bytes
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="readable archive|header says"):
        extract_upload(archive, "visitor", root=place[0])
    assert files_under(place[0]) == []


@pytest.mark.parametrize("content, message", [
    (b"just text", "not a readable .zip or .tar.gz"),
    (b"\x1f\x8b\x07" + bytes(7) + b"data", "not a readable archive .BadGzipFile"),  # gzip, unknown method
    (None, "encrypted"),
], ids=["text", "corrupt-gzip", "encrypted"])
def test_unreadable_and_encrypted_archives_say_so(tmp_path, place, content, message):
    path = tmp_path / "x.zip"
    if content is None:  # the encryption flag set on an otherwise plain zip
        make_zip(path, {"a/train/c/1.jpg": b"x"})
        raw = bytearray(path.read_bytes())
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            at = raw.index(signature)
            struct.pack_into("<H", raw, at + offset, 1)
        path.write_bytes(bytes(raw))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        extract_upload(path, "v", root=place[0])


def test_uploads_are_per_visitor_and_deleted_on_leaving_or_expiry(cifar_files, tmp_path, place):
    root, _ = place
    archive = make_tar(tmp_path / "d.tar.gz", cifar_files)
    first, second = extract_upload(archive, "alice", root=root), extract_upload(archive, "bob", root=root)
    assert first.path != second.path
    assert belongs_to(first.path / "train", "alice", root=root) and not belongs_to(first.path, "bob", root=root)
    assert not belongs_to(first.path / ".." / ".." / "..", "alice", root=root)
    remove_uploads("alice", root=root)
    assert not first.path.exists() and second.path.exists()
    third = extract_upload(archive, "carol", root=root)
    old = time.time() - 3 * 3600
    os.utime(second.path.parent, (old, old))
    assert sweep_uploads(2 * 3600, root=root) == 1
    assert not second.path.exists() and third.path.exists()
    assert sorted(p.name for p in root.iterdir()) == [third.path.parent.parent.name]
