"""Public mode (as on a Space) in headless Chromium: no server-path field, a visitor's own images
uploaded as an archive, run and downloaded; a hostile archive refused."""

from __future__ import annotations

import io
import json
import tarfile

from browser_fixtures import ARTIFACTS, fill, open_page, status, wait_for_run


def archive_of(folder, path):
    """`folder` (train/<class>/..., test/<class>/...) as a .tar.gz at `path`."""
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(folder / split, arcname=split)
    return path


def test_a_visitor_uploads_runs_and_downloads(browser, public_app_url, public_runs, cifar_subset, tmp_path):
    page = open_page(browser, public_app_url)
    assert page.locator("#data-dir").count() == 0  # no server paths in public mode
    assert "runs on a CPU" in page.locator("#space-note").inner_text()
    page.get_by_text("Advanced").click()
    page.locator("#upload input[type=file]").set_input_files(str(archive_of(cifar_subset, tmp_path / "mine.tar.gz")))
    page.wait_for_function("document.querySelector('#upload-note').innerText.includes('mine.tar.gz')", timeout=60_000)
    assert "/tmp" not in page.locator("#upload-note").inner_text()
    fill(page, "image-size", 64)
    fill(page, "evaluations", "examples")
    fill(page, "budget", 100)
    page.wait_for_function("document.querySelector('#estimate').innerText.includes('Estimated time')", timeout=120_000)
    page.locator("#start").click()
    wait_for_run(page, "#confusion .heatmaplayer", 300_000)
    assert "Done" in status(page)
    with page.expect_download() as download:
        page.locator("#card-file").click()
    card = json.loads(open(download.value.path()).read())
    assert card["config"]["data_dir"] == "mine" and card["queries_spent"] == 100
    assert str(public_runs) not in download.value.url  # a copy out of Gradio's cache, not the run folder
    (stored,) = [path for path in public_runs.glob("*/*.json") if path.name != "meta.json"]
    for path in (stored, stored.with_suffix(".csv"), stored.parent / "meta.json"):  # by path: refused to anyone
        assert _status(f"{public_app_url}gradio_api/file={path}") == 403, path
    page.screenshot(path=ARTIFACTS / "public_upload_done.png", full_page=True)


def test_a_hostile_archive_is_refused_with_a_message(browser, public_app_url, tmp_path):
    hostile = tmp_path / "evil.tar.gz"
    with tarfile.open(hostile, "w:gz") as tar:
        data = b"not an image"
        member = tarfile.TarInfo("../../escape.jpg")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    page = open_page(browser, public_app_url)
    page.get_by_text("Advanced").click()
    page.locator("#upload input[type=file]").set_input_files(str(hostile))
    page.wait_for_function("document.querySelector('#upload-note').innerText.includes('refused')", timeout=60_000)
    assert not (tmp_path.parent / "escape.jpg").exists()


def _status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code
