"""Benchmark, not a pytest test: how soon the live page's headline is calibrated while an analyst explores.

    python tests/bench_dashboard.py [--rows 3300] [--timeout 900] [--json figures.json] [--skip links,samples]

Headless Chromium (Playwright) against `streamlit run dashboard.py` (tests/app_server.py, every exchange offline so
the page answers from the store) with Kronos-mini's shapes (random weights) and a fresh store of the last `--rows`
hourly BTC/USDT candles of ../shared/data/btcusdt_1h_binance.csv.gz. In one sitting it measures, in seconds:

- `first`: from the page's first fan chart to the first calibrated headline, and to the full (not provisional) record;
- `temperature`: after one step of the Temperature slider, to calibrated;
- `samples`: after three steps of the Sample paths slider 3 s apart, from the last to calibrated;
- `link 20 paths`, `link horizon 12`: opening a link with fewer paths / a shorter horizon than the calibrated
  defaults, to calibrated (and to its first chart).

"Calibrated" is what the page shows then: the pool's weights caption ("The combined forecast at hour ...") with no
"not calibrated yet" anywhere; "full" is that caption without "provisional". A wait past `--timeout` is reported as
not reached and the run goes on. It also prints the server's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_server import ROOT, serve  # noqa: E402
from data_frames import REAL_DATA  # noqa: E402
from load_dashboard import CALIBRATED, WEIGHTS, memory_mb  # noqa: E402
from test_browser import CHROMIUM, CHROMIUM_ARGS, TRACE  # noqa: E402

sys.path.insert(0, str(ROOT))
from kronos.data.store import CandleStore  # noqa: E402
from ui.widgets import NOT_YET  # noqa: E402

PROVISIONAL = "provisional, refined"
FULL = f"""() => {{ const t = document.body.innerText;
    return t.includes({WEIGHTS!r}) && !t.includes({NOT_YET!r}) && !t.includes({PROVISIONAL!r}); }}"""
FIGURE = f"() => ({TRACE})('median') !== null"
CHANGED = f"before => ({TRACE})('median') !== null && ({TRACE})('median') !== before"
TARGETS = {"first": 15, "temperature": 15, "samples": 15, "link 20 paths": 5, "link horizon 12": 5}
STEPS = ("first", "temperature", "samples", "links")


class Sitting:
    """One browser tab on the dashboard: waits that return the seconds they took, or None past the timeout."""

    def __init__(self, page, url: str, timeout_s: float):
        self.page, self.url, self.timeout_ms = page, url, timeout_s * 1000

    def until(self, script: str, started: float, arg=None) -> float | None:
        """Seconds from `started` until `script` holds on the page (None: not within the timeout)."""
        try:
            self.page.wait_for_function(script, arg=arg, timeout=self.timeout_ms, polling=200)
        except PlaywrightTimeout:
            return None
        if self.page.locator("[data-testid='stException']").count():
            raise RuntimeError("the page shows an exception")
        return time.perf_counter() - started

    def open(self, query: str) -> tuple[float, float | None]:
        """Open the page at `query`; seconds to its first chart, and from then to calibrated."""
        started = time.perf_counter()
        self.page.goto(self.url + query, timeout=self.timeout_ms)
        drawn = self.until(FIGURE, started)
        if drawn is None:
            raise RuntimeError(f"no chart within the timeout for {query}")
        calibrated = self.until(CALIBRATED, started)
        return drawn, None if calibrated is None else calibrated - drawn

    def step(self, label: str) -> None:
        """Press → once on the sidebar slider called `label`."""
        thumb = self.page.locator("[data-testid='stSlider']").filter(has_text=label).get_by_role("slider")
        thumb.focus()
        thumb.press("ArrowRight")

    def steps(self, label: str, times: int, apart_s: float, drawn: str) -> dict[str, float | None]:
        """Step `label` `times` times `apart_s` apart; seconds after the last until the page shows `drawn` (its
        redraw: "chart") and until it is calibrated."""
        for _ in range(times - 1):
            self.step(label)
            time.sleep(apart_s)
        before = self.page.evaluate(f"() => ({TRACE})('median')")
        self.step(label)
        started = time.perf_counter()
        chart = self.until(drawn, started, arg=before)
        return {"chart": chart, "calibrated": None if chart is None else self.until(CALIBRATED, started)}


def fresh_store(folder: Path, rows: int) -> int:
    """The store the server will read: the last `rows` real hourly BTC/USDT candles; how many it holds."""
    frame = pd.read_csv(REAL_DATA, parse_dates=["timestamps"]).tail(rows).reset_index(drop=True)
    return CandleStore(folder / "candles.sqlite").merge(frame, "binance", "BTC/USDT", "1h")


def measure(sitting: Sitting, skip: set[str]) -> dict[str, dict[str, float | None]]:
    """Every step not in `skip`, in order, on one server: its figures in seconds."""
    found: dict[str, dict[str, float | None]] = {}
    drawn, calibrated = sitting.open("/")
    found["first"] = {"chart": drawn, "calibrated": calibrated}
    if "first" not in skip and calibrated is not None:
        found["first"]["full"] = sitting.until(FULL, time.perf_counter() - calibrated)  # from the first chart
    progress("first", found["first"])
    if "temperature" not in skip:
        found["temperature"] = sitting.steps("Temperature", 1, 0, CHANGED)
        progress("temperature", found["temperature"])
    if "samples" not in skip:
        found["samples"] = sitting.steps("Sample paths", 3, 3.0,
                                         "() => document.body.innerText.includes('· 33 paths ·')")
        progress("samples", found["samples"])
    if "links" not in skip:
        for name, query in (("link 20 paths", "/?samples=20"), ("link horizon 12", "/?horizon=12")):
            drawn, calibrated = sitting.open(query)
            found[name] = {"chart": drawn, "calibrated": None if calibrated is None else drawn + calibrated}
            progress(name, found[name])
    return found


def progress(name: str, values: dict[str, float | None]) -> None:
    """One step's figures on stderr as they come (a long sitting shows where it is)."""
    print(f"{name}: " + ", ".join(f"{k} {'not reached' if v is None else f'{v:.1f} s'}" for k, v in values.items()),
          file=sys.stderr, flush=True)


def table(found: dict[str, dict[str, float | None]], rows: int, peak_mib: float) -> str:
    """The figures as a markdown table."""
    def text(value: float | None) -> str:
        return "not reached" if value is None else f"{value:.1f}"

    lines = [f"Live page, Kronos-mini shapes (random weights), {rows} stored BTC/USDT 1h candles, default settings "
             "(30 paths x 24 h); seconds",
             "| step | measured from | to first chart | to calibrated | to full record | target (calibrated) |",
             "|---|---|---|---|---|---|"]
    origin = {"first": "opening the page (chart), the first chart (the rest)", "temperature": "the step",
              "samples": "the last of 3 steps",
              "link 20 paths": "opening the link", "link horizon 12": "opening the link"}
    for name, values in found.items():
        lines.append(f"| {name} | {origin[name]} | {text(values['chart']) if 'chart' in values else ''} | "
                     f"{text(values['calibrated'])} | {text(values['full']) if 'full' in values else ''} | "
                     f"<= {TARGETS[name]} |")
    lines.append(f"server's peak resident memory: {peak_mib:.0f} MiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the sitting, print the table (and write --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3300, help="stored candles (default 3300)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds any one wait may take (default 900)")
    parser.add_argument("--skip", default="", help=f"comma-separated steps to leave out, of {','.join(STEPS)}")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(STEPS):
        parser.error(f"--skip: unknown steps {sorted(skip - set(STEPS))}; known: {', '.join(STEPS)}")
    with tempfile.TemporaryDirectory() as folder:
        rows = fresh_store(Path(folder), args.rows)
        with serve(Path(folder), exchange="offline") as server, sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1500})
            found = measure(Sitting(page, server.url, args.timeout), skip)
            peak = memory_mb(server.process.pid)[1]
            browser.close()
    print(table(found, rows, peak))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "peak_mib": round(peak), "seconds": found}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
