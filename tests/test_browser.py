"""The dashboard in a real browser: Playwright driving Debian's Chromium against a server on a free port.

The server uses Kronos-mini's shapes with random weights and a recorded Binance (tests/app_server.py), so
nothing reaches the network. The test saves screenshots (under docs/ with
KRONOS_SCREENSHOTS=docs, the pictures of the README and docs/dashboard.md; else in a temporary folder) and prints
the time from a slider change to the fan
chart's redraw (docs/benchmarks.md records it; it is not asserted).
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path

import pytest
from app_server import serve

playwright = pytest.importorskip("playwright.sync_api", reason="the browser test needs `pip install playwright`")

ROOT = Path(__file__).resolve().parents[1]
PARITY_CSV = Path(__file__).parent / "fixtures" / "kronos_parity" / "input.csv"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
WAIT_MS = 180_000  # generous: the first forecast loads the model on two busy cores
LINK = "/?seed=42&samples=10&horizon=12"  # a calibration (200 origins x 10 paths x 12 h) of seconds, not minutes
# The traces of the first Plotly chart on the page whose legend names `name`, as JSON (or null).
TRACE = """name => { for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const found = (plot.data || []).find(t => t.name === name);
    if (found) return JSON.stringify(found.y); } return null; }"""

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="the browser test needs Debian's chromium "
                                                                "(apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A Chromium page next to a dashboard server with the demo checkpoint and a recorded exchange."""
    with serve(tmp_path_factory.mktemp("dashboard")) as server, playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1440, "height": 1500})
        tab.set_default_timeout(WAIT_MS)
        tab.server = server
        yield tab
        browser.close()
        assert server.log_text().count("loaded model") == 1, server.log_text()[-3000:]


def trace(page, name: str) -> str | None:
    """The y values (as JSON) of the first trace called `name` in any Plotly chart on the page."""
    return page.evaluate(TRACE, name)


def settled(page) -> None:
    """Wait until the app has finished running and no exception is on the page."""
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
    page.wait_for_timeout(500)
    assert page.locator("[data-testid='stException']").count() == 0


def slider_redraw_seconds(page, label: str) -> float:
    """Press → on a sidebar slider and time until the fan chart's median changes."""
    before = trace(page, "median")
    thumb = page.locator("[data-testid='stSlider']").filter(has_text=label).get_by_role("slider")
    thumb.focus()
    started = time.perf_counter()
    thumb.press("ArrowRight")
    page.wait_for_function(f"before => ({TRACE})('median') !== before && ({TRACE})('median') !== null", arg=before,
                           polling="raf")
    return time.perf_counter() - started


def test_the_dashboard_in_a_browser(page, tmp_path):
    shots = ROOT / os.environ["KRONOS_SCREENSHOTS"] if os.environ.get("KRONOS_SCREENSHOTS") else tmp_path
    page.goto(page.server.url + LINK)
    page.wait_for_function(f"() => ({TRACE})('median') !== null")
    assert page.get_by_text("Live data from binance").count() == 1
    page.get_by_text(re.compile(r"Over the last \d+ forecasts of BTC/USDT 1h")).wait_for()  # calibrated behind
    page.wait_for_function(f"() => ({TRACE})('Kronos alone: median') !== null")
    settled(page)
    assert page.get_by_text("not calibrated yet").count() == 0 and page.get_by_text("Kronos alone ").count() >= 2
    page.screenshot(path=shots / "live.png")

    times = [slider_redraw_seconds(page, "Temperature") for _ in range(3)]
    print(f"\nslider change -> fan chart redrawn: {', '.join(f'{t:.2f}' for t in times)} s "
          f"(median {statistics.median(times):.2f} s; mini shapes, lookback 512, 12 h, 10 paths; each change "
          "also starts a calibration in the background)")
    page.wait_for_function("() => location.search.includes('temperature=1.15')")
    settled(page)

    page.get_by_role("link", name="Custom data").click()
    page.locator("input[type=file]").set_input_files(PARITY_CSV)
    page.get_by_text("Custom CSV data 'input.csv'").wait_for()
    page.wait_for_function(f"() => ({TRACE})('median') !== null")
    page.get_by_text("Not calibrated: calibration needs about").wait_for()  # 200 rows are too few
    settled(page)
    page.screenshot(path=shots / "custom_data.png")

    page.get_by_role("link", name="Sample paths").click()
    page.wait_for_function(f"() => ({TRACE})('path 10') !== null")
    settled(page)
    assert "temperature=1.15" in page.url and "seed=42" in page.url  # the settings followed to the other page
    page.screenshot(path=shots / "sample_paths.png")

    page.get_by_role("link", name="Markets").click()  # the stored BTC/USDT candles, scanned and ranked
    page.get_by_text("My symbols").click()
    page.get_by_text("Stored candles only").click()
    settled(page)
    page.get_by_role("button", name="Scan").click()
    page.wait_for_function(f"() => ({TRACE})('markets') !== null")  # the upside-against-risk scatter
    settled(page)
    assert page.get_by_role("button", name="Download ranking (CSV)").count() == 1
    page.screenshot(path=shots / "markets.png")
