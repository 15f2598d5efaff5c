"""Fixtures for the app tests: a small CIFAR-10 image folder and a launched app."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def extract_subset(archive: Path, dest: Path, train: int = 30, test: int = 20) -> Path:
    """Copy the first `train`/`test` images per class of a train/<class>/*.jpg archive into `dest`."""
    wanted = {"train": train, "test": test}
    taken: Counter = Counter()
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[0] not in wanted:
                continue
            if taken[parts[:2]] < wanted[parts[0]]:
                taken[parts[:2]] += 1
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    return dest


@pytest.fixture(scope="session")
def cifar_subset(cifar_mini: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 train and 20 test images per CIFAR-10 class, as an image folder."""
    return extract_subset(cifar_mini, tmp_path_factory.mktemp("cifar-subset"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_app(cache: Path, tmp_path_factory: pytest.TempPathFactory, runs: Path | None = None, **extra_env: str):
    """`python app.py` on a free port with its own run folder (`runs`, or a new one): (url, server process, log file)."""
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               FMSTEAL_CACHE=str(cache), FMSTEAL_RUNS=str(runs or tmp_path_factory.mktemp("runs")),
               GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", **extra_env)
    log = (tmp_path_factory.mktemp("app-log") / "app.log").open("w")
    server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            pytest.fail(f"app.py exited with {server.returncode}; see {log.name}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return url, server, log
        except OSError:
            time.sleep(0.5)
    server.kill()
    pytest.fail(f"app.py did not serve {url} within 120 s; see {log.name}")


def stop_app(server: subprocess.Popen, log) -> None:
    server.terminate()
    server.wait(timeout=20)
    log.close()


@pytest.fixture(scope="session")
def app_url(session_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The app in local mode (server paths allowed), stopped at the end."""
    url, server, log = launch_app(session_cache, tmp_path_factory)
    yield url
    stop_app(server, log)


PUBLIC_UPLOAD_MAX_MB = 8  # the public app's upload cap under test: above every archive the tests upload


@pytest.fixture(scope="session")
def public_gradio_temp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the public app's Gradio stores uploads (GRADIO_TEMP_DIR)."""
    return tmp_path_factory.mktemp("public-gradio-temp")


@pytest.fixture(scope="session")
def public_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The public app's run folder (FMSTEAL_RUNS)."""
    return tmp_path_factory.mktemp("public-runs")


@pytest.fixture(scope="session")
def public_uploads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the public app extracts visitors' uploads (FMSTEAL_UPLOADS)."""
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="session")
def public_app(tmp_path_factory: pytest.TempPathFactory, public_gradio_temp: Path, public_runs: Path,
               public_uploads: Path) -> tuple[str, int]:
    """The app in public mode, as on a freshly started Hugging Face Space (uploads only, visitor limits, an empty
    cache of its own: nothing measured or decoded yet): (its URL, its server's process id), stopped at the end."""
    url, server, log = launch_app(tmp_path_factory.mktemp("public-cache"), tmp_path_factory, public_runs,
                                  FMSTEAL_PUBLIC="1",
                                  FMSTEAL_UPLOADS=str(public_uploads),
                                  FMSTEAL_UPLOAD_MAX_MB=str(PUBLIC_UPLOAD_MAX_MB),
                                  GRADIO_TEMP_DIR=str(public_gradio_temp))
    yield url, server.pid
    stop_app(server, log)


@pytest.fixture(scope="session")
def public_app_url(public_app: tuple[str, int]) -> str:
    """The URL of the app in public mode."""
    return public_app[0]


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's VmRSS or VmHWM (its peak since the last reset), in MB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:")) / 1024
