"""User-named paths: hostile or hopeless ones are answered within seconds with a message naming the path as typed."""

import errno
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmsteal.engine.data import count_images, load_pool, load_splits
from fmsteal.engine.safe_fs import MAX_DEPTH, checked_path, open_regular, os_error
from fmsteal.errors import DataError

NOBODY = 65534


def dataset(root: Path, per_class: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")
    return root


def answered(call, source: str, seconds: float = 5.0) -> str:
    """The DataError message `call(source)` raises, checked to come within `seconds`."""
    started = time.monotonic()
    with pytest.raises(DataError) as error:
        call(source)
    assert time.monotonic() - started < seconds, f"{source!r} took {time.monotonic() - started:.1f} s"
    return str(error.value)


@pytest.mark.parametrize("call", [count_images, load_splits, load_pool])
def test_the_filesystem_root_is_answered_within_seconds(call):
    message = answered(call, "/", seconds=10)
    assert message.startswith("'/'") and ("not an image folder" in message or "deep" in message)


@pytest.mark.parametrize("call", [count_images, load_splits, load_pool])
@pytest.mark.parametrize("source", ["/dev/zero", "/proc/self/cwd", "/proc/self/environ", "/sys/kernel"])
def test_devices_and_system_paths_are_refused_at_once(call, source):
    assert answered(call, source, seconds=1) == (f"{source!r} is a system path, not data. "
                                                 "Point to an image folder or a .tar.gz archive.")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    pipe = tmp_path / "data.tar.gz"
    os.mkfifo(pipe)
    for call in (count_images, load_splits, load_pool):
        assert "is not a regular file or folder (a device, pipe or socket)" in answered(call, str(pipe), seconds=1)
    with pytest.raises(DataError, match="not a regular file"):
        open_regular(pipe, "pipe")  # opening for reading would block forever without O_NONBLOCK
    link = tmp_path / "zero.tar.gz"
    link.symlink_to("/dev/zero")
    assert "system path" in answered(count_images, str(link), seconds=1)


def test_pipes_and_dangling_links_inside_a_data_folder_are_skipped(tmp_path):
    folder = dataset(tmp_path / "data")
    os.mkfifo(folder / "train" / "cat" / "stuck.jpg")
    (folder / "train" / "dog" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / "train" / "loop").symlink_to(folder)  # a folder loop is walked once
    started = time.monotonic()
    assert count_images(str(folder)) == (4, 4, 2)
    assert load_splits(str(folder)).train.images.shape == (4, 3, 8, 8)
    assert time.monotonic() - started < 10


def _in_child_as_nobody(source: str) -> str:
    """The message count_images(source) gives in a forked child running as user nobody (root reads anything)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            count_images(source)
            text = "no error"
        except DataError as error:
            text = f"DataError: {error}"
        except BaseException as error:
            text = f"{type(error).__name__}: {error}"
        os.write(write, text.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    return text


@pytest.fixture
def shared_tmp():
    """A folder user nobody can enter (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="fmsteal-perm-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


def _message_as_unprivileged(source: str) -> str:
    if os.geteuid() != 0:
        with pytest.raises(DataError) as error:
            count_images(source)
        return f"DataError: {error.value}"
    return _in_child_as_nobody(source)


def test_a_permission_denied_folder_is_answered_with_a_message(shared_tmp):
    locked = dataset(shared_tmp / "locked")
    for path in [locked, *locked.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    locked.chmod(0o000)
    started = time.monotonic()
    assert _message_as_unprivileged(str(locked)) == f"DataError: {str(locked)!r} cannot be read: permission denied."
    inner = dataset(shared_tmp / "inner")
    for path in [inner, *inner.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (inner / "train" / "cat").chmod(0o000)
    assert _message_as_unprivileged(str(inner)) == f"DataError: '{inner}/train/cat' cannot be read: permission denied."
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("code, text", [
    (errno.ENOENT, "does not exist"), (errno.EACCES, "permission denied"), (errno.ELOOP, "loop of symbolic links"),
    (errno.EMFILE, "too many files are open"), (errno.EIO, "cannot be read (Input/output error)"),
])
def test_os_errors_become_messages_without_the_resolved_path(code, text):
    error = OSError(code, os.strerror(code), "/srv/secret/resolved/path")
    message = str(os_error(error, "~/data"))
    assert message.startswith("'~/data' ") and text in message and "/srv/secret" not in message


def test_messages_name_the_path_as_typed_never_resolved(tmp_path, monkeypatch):
    real = tmp_path / "real-location"
    (real / "just-a-folder").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "link").symlink_to(real)
    for typed in ("~/link", str(tmp_path / "link")):
        message = answered(count_images, typed, seconds=2)
        assert f"{typed!r} has no images under train/<class>/" in message and "real-location" not in message
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert answered(load_splits, str(loop), seconds=2) == f"{str(loop)!r} is a loop of symbolic links."


def test_data_roots_limit_what_may_be_read_and_probed(tmp_path, monkeypatch):
    allowed, elsewhere = dataset(tmp_path / "allowed"), dataset(tmp_path / "elsewhere")
    monkeypatch.setenv("FMSTEAL_DATA_ROOTS", str(allowed))
    assert count_images(str(allowed)) == (4, 4, 2)
    for source in (str(elsewhere), str(tmp_path / "missing"), f"{allowed}/../elsewhere", "/etc/passwd"):
        assert "is outside the data this server may read" in answered(count_images, source, seconds=1)
    monkeypatch.setenv("FMSTEAL_PUBLIC", "1")
    monkeypatch.setenv("FMSTEAL_DATA_ROOTS", "")
    monkeypatch.setenv("FMSTEAL_DATA_DIR", "")
    assert "use uploaded archives" in answered(count_images, str(allowed), seconds=1)


def test_walks_are_bounded_in_files_depth_and_time(tmp_path, monkeypatch):
    folder = dataset(tmp_path / "data", per_class=5)
    monkeypatch.setenv("FMSTEAL_MAX_FILES", "12")
    assert "holds more than 12 files or folders (FMSTEAL_MAX_FILES)" in answered(count_images, str(folder))
    monkeypatch.delenv("FMSTEAL_MAX_FILES")
    monkeypatch.setenv("FMSTEAL_WALK_SECONDS", "0")
    assert "Listing" in answered(count_images, str(folder)) and "FMSTEAL_WALK_SECONDS" in answered(count_images, str(folder))
    monkeypatch.delenv("FMSTEAL_WALK_SECONDS")
    monkeypatch.setenv("FMSTEAL_READ_SECONDS", "0")
    assert "FMSTEAL_READ_SECONDS" in answered(load_splits, str(folder))
    monkeypatch.delenv("FMSTEAL_READ_SECONDS")
    deep = tmp_path / "deep" / Path(*[f"d{i}" for i in range(MAX_DEPTH + 1)])
    deep.mkdir(parents=True)
    assert f"nests folders more than {MAX_DEPTH} deep" in answered(count_images, str(tmp_path / "deep"))
    junk = tmp_path / "junk"
    junk.mkdir()
    monkeypatch.setattr("fmsteal.engine.safe_fs.MAX_OTHER_FILES", 20)
    for i in range(21):
        (junk / f"{i}.txt").touch()
    assert "files that are not images" in answered(count_images, str(junk))


def test_checked_path_returns_the_resolved_regular_file_or_folder(tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(b"")
    assert checked_path(str(tmp_path / "x" / ".." / "a.tar.gz")) == (tmp_path / "a.tar.gz").resolve()
