"""Classroom mode in headless Chromium: the contrast scenario overlays two curves, a share link
reopens a run in a fresh browser, presenter mode enlarges the type. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import re



from browser_fixtures import ARTIFACTS, configure, open_page, status, wait_for_run


def test_the_contrast_scenario_overlays_both_victims(browser, app_url, cifar_subset):
    page = open_page(browser, app_url)
    configure(page, cifar_subset, budget=100, seed=31)
    page.locator("#scenario-contrast").click()
    page.wait_for_function("document.querySelector('#look-for').innerText.includes('Look for')", timeout=30_000)
    page.wait_for_function("() => { const p = document.querySelector('#comparison .js-plotly-plot');"
                           " return p && p.data && p.data.filter(t => t.x && t.x.length >= 5 &&"
                           " !t.name.includes('precomputed') && t.visible !== 'legendonly').length >= 2 }",
                           timeout=400_000)  # drawn, not only listed: runs queued before they had points show
    names = page.evaluate("() => document.querySelector('#comparison .js-plotly-plot').data.map(t => t.name)")
    assert any("Scratch CNN victim" in n for n in names) and any("EfficientNet-Lite0 victim" in n for n in names)
    assert all("label" in n and "100 q" in n for n in names)
    page.screenshot(path=ARTIFACTS / "classroom_contrast.png", full_page=True)

    page.reload()  # earlier runs stay on screen after a reload
    page.wait_for_function("() => { const p = document.querySelector('#comparison .js-plotly-plot');"
                           " return p && p.data && p.data.filter(t => !t.name.includes('precomputed')).length >= 2 }",
                           timeout=30_000)
    page.locator("#shown input").first.uncheck()  # hide one
    page.wait_for_function("() => document.querySelector('#comparison .js-plotly-plot').data"
                           ".filter(t => !t.name.includes('precomputed') && t.visible === 'legendonly').length === 1",
                           timeout=20_000)


def test_a_share_link_reopens_the_run_in_a_fresh_browser(browser, app_url, cifar_subset):
    page = open_page(browser, app_url)
    configure(page, cifar_subset, budget=120, seed=32, evaluations="default", image_size=32)  # every evaluation
    page.locator("#start").click()
    wait_for_run(page, "#confusion .heatmaplayer", 600_000)
    page.wait_for_selector("#transfer .barlayer .point", timeout=30_000)  # what the thief can do now
    assert "PGD on the stolen copy" in page.locator("#transfer").inner_text()
    assert "gaussian noise" in page.locator("#corruptions").inner_text()
    page.wait_for_selector("#transfer-examples img", timeout=30_000)  # clean and adversarial images, captioned
    captions = page.locator("#transfer-examples").inner_text()
    assert "clean: victim says" in captions and "adversarial: victim says" in captions
    summary = page.locator("#summary").inner_text()
    page.locator("#share").click()
    page.wait_for_function("document.querySelector('#share-link').innerText.includes('?run=')", timeout=20_000)
    link = re.search(r"\S+\?run=[A-Za-z0-9_-]+", page.locator("#share-link").inner_text()).group(0)
    assert "cifar-subset" not in link and "/tmp" not in link

    stranger = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    stranger.goto(link)
    stranger.wait_for_selector("#confusion .heatmaplayer", timeout=30_000)
    assert "Shared run" in status(stranger)
    assert stranger.locator("#summary").inner_text() == summary
    stranger.wait_for_selector("#transfer-examples img", timeout=30_000)
    stranger.screenshot(path=ARTIFACTS / "shared_run.png", full_page=True)
    stranger.goto(link.replace("?run=", "?run=x") + "zz")  # a wrong token shows nothing of anyone's
    stranger.wait_for_selector("#curve .js-plotly-plot")
    assert "Shared run" not in status(stranger)


def test_presenter_mode_enlarges_the_type_and_hides_the_advanced_controls(browser, app_url):
    page = open_page(browser, app_url)
    size = "() => parseFloat(getComputedStyle(document.querySelector('#status')).fontSize)"
    before = page.evaluate(size)
    page.locator("#presenter input").check()
    page.wait_for_function("document.body.classList.contains('presenter')")
    assert page.evaluate(size) > 1.3 * before
    assert not page.locator("#advanced").is_visible()
    page.keyboard.press("Tab")  # controls stay reachable from the keyboard
    assert page.evaluate("document.activeElement && document.activeElement.tagName") in ("INPUT", "BUTTON", "TEXTAREA")
    page.screenshot(path=ARTIFACTS / "presenter.png", full_page=True)
