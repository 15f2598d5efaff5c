"""Classroom mode in headless Chromium: the contrast scenario overlays two curves, a share link
reopens a run in a fresh browser (result first on a phone), presenter mode enlarges type, plots and buttons;
at 1024x768 and 390x844 no plot text is cut or overlaps. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import re

from browser_fixtures import (ARTIFACTS, configure, font_size, layout_faults, open_page, status, wait_for_clean_layout,
                              wait_for_larger_font, wait_for_run)


PROJECTOR, PHONE = (1024, 768), (390, 844)
HEATMAP_NUMBERS = "#results-heatmap .heatmaplayer text"


def cut_galleries(page) -> list[str]:
    """The gallery captions shown cut short and the galleries wider than the page shows."""
    return page.evaluate("() => [...document.querySelectorAll('#gallery, #transfer-examples')].flatMap((g) => ["
                         " ...g.querySelectorAll('.caption-label'), g.querySelector('.grid-container')])"
                         ".filter((e) => e.scrollWidth > e.clientWidth + 1 || e.scrollWidth > e.parentElement.clientWidth"
                         " || e.scrollHeight > e.clientHeight + 1 && e.classList.contains('caption-label'))"
                         ".map((e) => `${e.closest('[id]').id}: ${e.textContent.slice(0, 60)}`)")


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

    stranger = browser.new_context(viewport={"width": PROJECTOR[0], "height": PROJECTOR[1]}).new_page()
    stranger.goto(link)
    stranger.wait_for_selector("#confusion .heatmaplayer", timeout=30_000)
    assert "Shared run" in status(stranger)
    assert stranger.locator("#summary").inner_text() == summary
    stranger.wait_for_selector("#transfer-examples img", timeout=30_000)
    assert layout_faults(stranger) == [] and cut_galleries(stranger) == []
    phone = browser.new_context(viewport={"width": PHONE[0], "height": PHONE[1]}).new_page()
    phone.goto(link)
    phone.wait_for_selector("#confusion .heatmaplayer", timeout=30_000)
    assert phone.evaluate("document.querySelector('#curve').getBoundingClientRect().top") < PHONE[1] / 2  # result first
    assert layout_faults(phone) == []
    phone.screenshot(path=ARTIFACTS / "shared_run_phone.png", full_page=True)
    stranger.goto(link.replace("?run=", "?run=x") + "zz")  # a wrong token shows nothing of anyone's
    stranger.wait_for_selector("#curve .js-plotly-plot")
    assert "Shared run" not in status(stranger)


def test_presenter_mode_enlarges_type_plots_and_buttons_and_cuts_nothing_at_1024_or_on_a_phone(browser, app_url):
    page = open_page(browser, app_url, PROJECTOR)
    assert layout_faults(page) == []
    assert not page.locator("#confusion .xtick").count()  # before a run: a message, not empty axes
    assert "appears at the end" in page.locator("#confusion").inner_text()
    page.get_by_role("tab", name="Results").click()
    page.wait_for_selector(HEATMAP_NUMBERS)
    numbers = font_size(page, HEATMAP_NUMBERS)
    assert layout_faults(page) == []
    page.get_by_role("tab", name="Steal a model").click()
    measured = ("#status", "#start", "#scenarios button", "#curve .ytick text", "#curve .annotation-text")
    before = {selector: font_size(page, selector) for selector in measured}
    page.locator("#presenter input").check()
    page.wait_for_function("document.body.classList.contains('presenter')")
    for selector, size in before.items():
        wait_for_larger_font(page, selector, 1.3 * size)
    assert not page.locator("#advanced").is_visible()
    assert layout_faults(page) == []
    page.keyboard.press("Tab")  # controls stay reachable from the keyboard
    assert page.evaluate("document.activeElement && document.activeElement.tagName") in ("INPUT", "BUTTON", "TEXTAREA")
    page.screenshot(path=ARTIFACTS / "presenter.png", full_page=True)
    page.get_by_role("tab", name="Results").click()  # plots drawn after the switch are enlarged too
    wait_for_larger_font(page, HEATMAP_NUMBERS, 1.3 * numbers)
    wait_for_larger_font(page, "#defence-plot .xtick text", 15)
    assert layout_faults(page) == []
    page.screenshot(path=ARTIFACTS / "presenter_results.png", full_page=True)

    phone = open_page(browser, app_url, PHONE)
    assert layout_faults(phone) == []
    phone.screenshot(path=ARTIFACTS / "phone.png", full_page=True)
    phone.get_by_role("tab", name="Results").click()  # wide plots scroll sideways rather than cut their text
    phone.wait_for_selector(HEATMAP_NUMBERS)
    assert layout_faults(phone) == []
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    phone.screenshot(path=ARTIFACTS / "phone_results.png", full_page=True)
    phone.get_by_role("tab", name="Steal a model").click()  # presenter mode set while Results is hidden
    phone.locator("#presenter input").check()
    phone.get_by_role("tab", name="Results").click()
    wait_for_larger_font(phone, HEATMAP_NUMBERS, 1.3 * numbers)
    wait_for_clean_layout(phone)
