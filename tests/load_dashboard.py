"""Load check, not a pytest test: 8 browser sessions forecasting at once against one dashboard server.

    python tests/load_dashboard.py [--sessions 8] [--rounds 2]

Each session opens the live page with its own seed (so each one samples), in its own browser context, all
at the same time, and waits for its fan chart. Prints per-round timings, the server's CPU time, its memory
(resident now and its peak) and how often the model was loaded; exits 1 when a session failed or the model was
loaded more than once. Uses Kronos-mini's shapes with random weights and a recorded exchange (offline).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_server import serve  # noqa: E402
from test_browser import CHROMIUM, CHROMIUM_ARGS, TRACE  # noqa: E402

TIMEOUT_MS = 300_000


def memory_mb(pid: int) -> tuple[float, float]:
    """Resident memory of a process now and at its peak (VmRSS, VmHWM), in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM"))


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def session(browser, url: str) -> float:
    """Open the live page in a fresh context and return the seconds until its fan chart is drawn."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    started = time.perf_counter()
    try:
        await page.goto(url, timeout=TIMEOUT_MS)
        await page.wait_for_function(f"() => ({TRACE})('median') !== null", timeout=TIMEOUT_MS)
        if await page.locator("[data-testid='stException']").count():
            raise RuntimeError("the page shows an exception")
        return time.perf_counter() - started
    finally:
        await context.close()


async def main(sessions: int, rounds: int) -> int:
    with tempfile.TemporaryDirectory() as folder, serve(Path(folder)) as server:
        pid = server.process.pid
        async with async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            warm = await session(browser, f"{server.url}/?seed=1")
            print(f"warm-up session (model load, candles, first forecast): {warm:.1f} s; "
                  f"server memory {memory_mb(pid)[0]:.0f} MiB")
            failed = 0
            for number in range(1, rounds + 1):
                started, cpu = time.perf_counter(), cpu_seconds(pid)
                results = await asyncio.gather(*(session(browser, f"{server.url}/?seed={number * 100 + i}")
                                                 for i in range(sessions)), return_exceptions=True)
                wall, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
                times = [r for r in results if isinstance(r, float)]
                errors = [r for r in results if not isinstance(r, float)]
                failed += len(errors)
                now, peak = memory_mb(pid)
                print(f"round {number}: {len(times)}/{sessions} sessions completed in {wall:.1f} s "
                      f"(each {min(times, default=0):.1f} / {statistics.median(times or [0]):.1f} / "
                      f"{max(times, default=0):.1f} s min/median/max; server CPU {cpu:.1f} s); "
                      f"server memory {now:.0f} MiB, "
                      f"peak so far {peak:.0f} MiB")
                for error in errors:
                    print(f"  failed: {type(error).__name__}: {str(error)[:300]}")
            await browser.close()
        loads = server.log_text().count("loaded model")
        print(f"model loaded {loads} time(s) for {1 + sessions * rounds} sessions")
        return 1 if failed or loads != 1 else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.sessions, arguments.rounds)))
