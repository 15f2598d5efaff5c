"""Warm packs: a cache packed on one server and unpacked into a fresh one serves the same run without a backbone pass;
hostile or damaged packs are refused; the Hub route; a run waits for an install under way."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from engine_fixtures import run_to_card

from fmsteal.cli.main import main
from fmsteal.engine import pack
from fmsteal.errors import DataError
from fmsteal.experiment.estimate import estimate


def test_a_pack_serves_a_fresh_cache_the_same_run_without_a_backbone_pass(tiny_config, tmp_path, monkeypatch, capsys):
    config = tiny_config(seed=46, evaluations="none")
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path / "made-here"))
    first, _ = run_to_card(config)
    assert first["backbone_images_forwarded"] > 0
    assert main(["pack", str(tmp_path / "warm.tar")]) == 0
    assert "FMSTEAL_WARM_PACK=" in capsys.readouterr().out
    with tarfile.open(tmp_path / "warm.tar") as tar:  # the measured speeds travel too (kept per machine)
        assert {"speeds.json", pack.MANIFEST} <= set(tar.getnames())
        assert any(name.startswith("embeddings/") for name in tar.getnames())
        assert not any(Path(name).name.startswith(".") for name in tar.getnames())  # no seal or temporary file

    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path / "fresh-server"))
    (tmp_path / "fresh-server").mkdir()  # a server of this kind: it has measured its speeds
    (tmp_path / "fresh-server" / "speeds.json").write_bytes((tmp_path / "made-here" / "speeds.json").read_bytes())
    cold = estimate(config)
    assert main(["unpack", str(tmp_path / "warm.tar")]) == 0
    assert "files" in capsys.readouterr().out
    warm = estimate(config)  # the records came along: the estimate knows what the pack holds
    assert warm["phases"]["embed"] < cold["phases"]["embed"] / 10 and not cold["reused"]
    assert any("victim" in reused for reused in warm["reused"]), warm["reused"]
    again, events = run_to_card(config)
    assert again["backbone_images_forwarded"] == 0  # every feature came from the pack
    assert not any(e["kind"] == "progress" and e.get("phase") == "embed" for e in events)
    for key in ("agreement", "victim_accuracy", "thief_accuracy", "confusion"):
        assert again[key] == first[key], key
    assert main(["unpack", str(tmp_path / "warm.tar")]) == 0  # a second time: everything kept
    assert "Unpacked 0 files" in capsys.readouterr().out


def _pack_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], manifest: dict | None) -> Path:
    with tarfile.open(path, "w") as tar:
        if manifest is not None:
            data = json.dumps(manifest).encode()
            info = tarfile.TarInfo(pack.MANIFEST)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _listed(*members: tuple[tarfile.TarInfo, bytes], sha256: str | None = None) -> dict:
    import hashlib

    files = {info.name: {"bytes": info.size, "sha256": sha256 or hashlib.sha256(data).hexdigest()}
             for info, data in members}
    return {"format": 1, "files": files, "bytes": sum(f["bytes"] for f in files.values())}


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


@pytest.mark.parametrize("case, message", [
    ("escape", "which a warm pack may not"),
    ("absolute", "which a warm pack may not"),
    ("symlink", "which a warm pack may not"),
    ("outside the kinds", "which a warm pack may not"),
    ("unlisted", "which a warm pack may not"),
    ("damaged", "does not match its checksum"),
    ("no manifest", "no readable fmsteal-pack.json"),
    ("other format", "another format"),
    ("not a tar", "is not a warm pack"),
    ("too large", "more than the cache may hold"),
])
def test_a_hostile_or_damaged_pack_is_refused_with_what_to_do(tmp_path, monkeypatch, case, message):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FMSTEAL_CACHE", str(cache))
    good = _file("embeddings/x/96px-a.pt", b"features")
    members = {"escape": [_file("embeddings/../../evil.txt", b"x")], "absolute": [_file("/tmp/evil.txt", b"x")],
               "symlink": [_link("embeddings/link.pt", "/etc/passwd")], "outside the kinds": [_file("victims.json", b"{}")],
               "unlisted": [good, _file("victims/extra.pt", b"x")], "damaged": [good], "no manifest": [good],
               "other format": [good], "not a tar": [], "too large": [good]}[case]
    if case == "too large":
        monkeypatch.setenv("FMSTEAL_CACHE_MAX_GB", str(4 / 2**30))  # four bytes
    manifest = {"damaged": _listed(good, sha256="0" * 64), "no manifest": None,
                "other format": {**_listed(good), "format": 99},
                "unlisted": _listed(good)}.get(case, _listed(*members))
    path = _pack_with(tmp_path / "pack.tar", members, manifest)
    if case == "not a tar":
        path.write_bytes(b"this is no tar file" * 100)
    with pytest.raises(DataError, match=message):
        pack.install_pack(str(path))
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    assert not any(p.name.endswith(".tmp") for p in cache.rglob("*"))  # no half-written file left behind
    assert not list((cache / "packs").glob("*.installing"))  # and no marker a run would wait for


def test_the_hub_route_downloads_the_named_file_from_a_dataset_repo(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path / "cache"))
    member = _file("embeddings/x/96px-a.pt", b"features")
    local = _pack_with(tmp_path / "warm.tar", [member], _listed(member))
    asked = []

    def download(repo_id, filename, repo_type=None, **kwargs):  # the Hub cannot be reached here
        asked.append((repo_id, filename, repo_type))
        return str(local)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    summary = pack.install_pack("hf://someone/fmsteal-warm/packs/cifar10.tar")
    assert asked == [("someone/fmsteal-warm", "packs/cifar10.tar", "dataset")]
    assert summary["added"] == 1 and (tmp_path / "cache" / "embeddings/x/96px-a.pt").read_bytes() == b"features"
    with pytest.raises(DataError, match="hf://<owner>/<repo>/<file"):
        pack.install_pack("hf://someone/only-a-repo")


def test_an_unreachable_hub_fails_the_install_and_leaves_runs_to_compute(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path / "cache"))
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what a server without network sees (read at import, and here)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="unset FMSTEAL_WARM_PACK"):
        pack.install_pack("hf://someone/fmsteal-warm/cifar10.tar")
    with caplog.at_level("WARNING"):
        pack.install_in_background("hf://someone/fmsteal-warm/cifar10.tar").join(60)
    assert "warm pack not installed" in caplog.text
    assert list(pack.await_pack(timeout=5)) == []  # nothing to wait for: a run goes on at once


def test_a_run_waits_for_an_install_under_way_and_not_for_a_dead_one(tmp_path, monkeypatch):
    monkeypatch.setenv("FMSTEAL_CACHE", str(tmp_path / "cache"))
    markers = tmp_path / "cache" / "packs"
    markers.mkdir(parents=True)
    dead = markers / "old.installing"
    dead.write_text(json.dumps({"done": 1, "total": 2}))
    os.utime(dead, (time.time() - 3600, time.time() - 3600))  # left by a server that was restarted
    assert list(pack.await_pack(timeout=5)) == []
    live = markers / "live.installing"
    live.write_text(json.dumps({"done": 3 * 2**20, "total": 8 * 2**20}))
    threading.Timer(1.2, live.unlink).start()  # the install finishes
    began = time.monotonic()
    events = list(pack.await_pack(timeout=30))
    assert 1.0 < time.monotonic() - began < 10
    assert events and events[0]["message"] == "Unpacking precomputed features (3 of 8 MB)"
