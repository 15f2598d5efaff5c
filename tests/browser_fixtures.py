"""Headless Chromium (Debian's chromium, driven by Playwright) for the browser tests: the fixture and page helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

try:
    import playwright.sync_api as playwright
except ImportError:  # the browser tests skip; everything else still runs
    playwright = None
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-gpu"]
POINTS = "#curve .scatterlayer .trace:first-child .point"


@pytest.fixture(scope="module")
def browser():
    if playwright is None:
        pytest.skip("needs Playwright's Python package (pip install -r requirements-dev.txt)")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def open_page(browser, url: str, size: tuple[int, int] = (1400, 1000)):
    page = browser.new_context(viewport={"width": size[0], "height": size[1]}).new_page()
    page.goto(url)
    page.wait_for_selector("#curve .js-plotly-plot")
    return page


def pick(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option).first.click()


def fill(page, elem_id: str, value: object) -> None:
    box = page.locator(f"#{elem_id} input:not([type=range]), #{elem_id} textarea").first
    box.fill(str(value))
    box.press("Tab")


def configure(page, data_dir: Path, budget: int, seed: int, fft: bool = False, evaluations: str = "examples",
              image_size: int = 64) -> None:
    """The form set for a small run on `data_dir` (evaluations: only the cheap ones unless asked)."""
    page.get_by_text("Advanced").click()
    fill(page, "data-dir", data_dir)
    fill(page, "evaluations", evaluations)
    fill(page, "image-size", image_size)
    fill(page, "seed", seed)
    if fft:
        page.locator("#victim-mode").get_by_text("fft", exact=True).click()
        page.locator("#thief-mode").get_by_text("fft", exact=True).click()
    fill(page, "budget", budget)
    try:  # generous: on a loaded 2-core CI machine another visitor's job shares the CPU
        page.wait_for_function("document.querySelector('#estimate').innerText.includes('Estimated time')",
                               timeout=120_000)
    except playwright.Error:
        page.screenshot(path=ARTIFACTS / "estimate_missing.png", full_page=True)
        pytest.fail(f"no estimate after configuring; the page shows: {page.locator('#estimate').inner_text()!r}")


def status(page) -> str:
    return page.locator("#status").inner_text()


def wait_for_start(page, elem_id: str, text: str, timeout_ms: int = 60_000) -> None:
    """Wait until #elem_id's text starts with `text`; on timeout, fail with what it reads instead."""
    try:
        page.wait_for_function(f"document.querySelector('#{elem_id}').innerText.startsWith({json.dumps(text)})",
                               timeout=timeout_ms)
    except playwright.Error:
        pytest.fail(f"#{elem_id} should start with {text!r}; it reads {page.locator(f'#{elem_id}').inner_text()!r}")


def wait_for_run(page, selector: str, timeout_ms: int = 240_000) -> None:
    """Wait for a run's output to be drawn; on timeout, fail with the page's status line and a screenshot."""
    try:
        page.wait_for_selector(selector, timeout=timeout_ms)
    except playwright.Error:
        page.screenshot(path=ARTIFACTS / "run_missing.png", full_page=True)
        pytest.fail(f"{selector} not drawn within {timeout_ms / 1000:.0f} s; the status line reads {status(page)!r}")


LAYOUT_FAULTS = r"""(root) => {
  const faults = [], box = (e) => e.getBoundingClientRect();
  const meet = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const name = (e) => `${e.closest('[id]').id}: "${e.textContent.slice(0, 40)}"`;
  const wide = document.documentElement.scrollWidth;
  if (wide > innerWidth + 1) faults.push(`page ${wide} px wide`);
  for (const gd of document.querySelectorAll(`${root} .js-plotly-plot`)) {
    const plot = box(gd);
    if (!plot.width) continue;
    const labels = [...gd.querySelectorAll('.gtitle, .annotation-text, g[class$=title] > text, g[class$=tick] > text, .textpoint text, '
                                           + '.legendtext')].filter((e) => box(e).width);  // every subplot's too
    for (const e of labels) {
      const r = box(e);
      if (r.left < plot.left - 1 || r.right > plot.right + 1 || r.top < plot.top - 1 || r.bottom > plot.bottom + 1)
        faults.push(`${name(e)} cut by its plot`);
    }
    // a slanted label's box is not its ink: only upright ones are compared
    const upright = labels.filter((e) => !/rotate\((?!0\))/.test(e.getAttribute('transform') || ''));
    upright.forEach((a, i) => upright.slice(i + 1).forEach((b) => {
      if (meet(box(a), box(b))) faults.push(`${name(a)} over ${name(b)}`);
    }));
    const area = gd.querySelector('.nsewdrag'), label = gd.closest('.block').querySelector('[data-testid=block-label]');
    for (const title of gd.querySelectorAll('.gtitle')) {
      if (area && box(title).bottom > box(area).top + 1) faults.push(`${name(title)} runs into its plot`);
      if (label && meet(box(title), box(label))) faults.push(`${name(title)} under the block label`);
    }
  }
  return faults;
}"""


def layout_faults(page, root: str = "body") -> list[str]:
    """What the page under `root` cuts or piles up: the page wider than the window; a plot's title, annotation, axis
    or legend text outside its plot, over another, running into the plot area or under the block's label."""
    return page.evaluate(LAYOUT_FAULTS, root)


def wait_for_clean_layout(page, timeout_ms: int = 10_000) -> None:
    """Wait until `layout_faults` finds nothing (plots redraw and resize asynchronously); fail naming what it finds."""
    try:
        page.wait_for_function(f"() => ({LAYOUT_FAULTS})('body').length === 0", timeout=timeout_ms)
    except playwright.Error:
        pytest.fail(f"layout faults: {layout_faults(page)}")


def font_size(page, selector: str) -> float:
    """The smallest computed font size (px) of the elements `selector` matches (at least one must)."""
    sizes = page.evaluate("(s) => [...document.querySelectorAll(s)].map((e) => parseFloat(getComputedStyle(e).fontSize))",
                          selector)
    assert sizes, f"nothing matches {selector}"
    return min(sizes)


def wait_for_larger_font(page, selector: str, than: float, timeout_ms: int = 10_000) -> None:
    """Wait until every element `selector` matches has a font larger than `than` px (plots redraw asynchronously)."""
    page.wait_for_function("([s, px]) => { const found = [...document.querySelectorAll(s)];"
                           " return found.length && found.every((e) => parseFloat(getComputedStyle(e).fontSize) > px) }",
                           arg=[selector, than], timeout=timeout_ms)
