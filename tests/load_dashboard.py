"""Load check, not a pytest test: 8 browser sessions forecasting at once against one dashboard server.

    python tests/load_dashboard.py [--sessions 8] [--rounds 2]
    python tests/load_dashboard.py --explore [--sessions 3] [--moves 6] [--apart 3]

Each session opens the live page with its own seed (so each one samples), in its own browser context, all
at the same time, and waits for its fan chart. Prints per-round timings, the server's CPU time, its memory
(resident now and its peak) and how often the model was loaded; exits 1 when a session failed or the model was
loaded more than once. Uses Kronos-mini's shapes with random weights and a recorded exchange (offline).

`--explore`: the sessions (default 3) explore at once, as analysts do: each opens the page with its own seed, then
moves a slider `--moves` times `--apart` seconds apart (Temperature up, Sample paths up, Horizon down, in turn),
waiting each time for the fan chart's redraw, so that calibrations run behind the sliders, then stays until its page
is calibrated (at most `--linger` seconds, default 600; each session's time to it is printed). The server's resident
memory is sampled every half second throughout; prints the peak while exploring against the target (under 1 GiB,
Community Cloud's smaller apps) and each session's redraw times.
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

from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_server import serve  # noqa: E402
from test_browser import CHROMIUM, CHROMIUM_ARGS, TRACE  # noqa: E402

from ui.widgets import NOT_YET  # noqa: E402  (app_server put the repository on the path)

TIMEOUT_MS = 300_000
TARGET_PEAK_MIB = 1024
MOVES = (("Temperature", "ArrowRight"), ("Sample paths", "ArrowRight"), ("Horizon (hours ahead)", "ArrowLeft"))
WEIGHTS = "The combined forecast at hour"  # the pool's caption: shown only with a calibrated headline
CALIBRATED = f"""() => {{ const t = document.body.innerText;
    return t.includes({WEIGHTS!r}) && !t.includes({NOT_YET!r}); }}"""
CHANGED = f"before => ({TRACE})('median') !== null && ({TRACE})('median') !== before"


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


async def explorer(browser, url: str, moves: int, apart_s: float, linger_s: float) -> list[float | None]:
    """Open the page, move the sliders `moves` times `apart_s` apart, then wait for its calibration (at most
    `linger_s`); the seconds of each redraw, then those from the last move to calibrated (None: not within)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 1400})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    redraws, moved = [], time.perf_counter()
    try:
        await page.goto(url)
        await page.wait_for_function(f"() => ({TRACE})('median') !== null")
        for number in range(moves):
            label, key = MOVES[number % len(MOVES)]
            before = await page.evaluate(f"() => ({TRACE})('median')")
            thumb = page.locator("[data-testid='stSlider']").filter(has_text=label).get_by_role("slider")
            await thumb.focus()
            started = moved = time.perf_counter()
            await thumb.press(key)
            await page.wait_for_function(CHANGED, arg=before, polling=200)
            redraws.append(time.perf_counter() - started)
            await asyncio.sleep(apart_s)
        try:
            await page.wait_for_function(CALIBRATED, polling=500, timeout=linger_s * 1000)
            redraws.append(time.perf_counter() - moved)
        except PlaywrightTimeout:
            redraws.append(None)
        if await page.locator("[data-testid='stException']").count():
            raise RuntimeError("the page shows an exception")
        return redraws
    finally:
        await context.close()


async def sampled_peak(pid: int, stop: asyncio.Event) -> float:
    """The highest resident memory of `pid` (MiB) seen every half second until `stop` is set."""
    peak = 0.0
    while not stop.is_set():
        peak = max(peak, memory_mb(pid)[0])
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass
    return peak


async def explore(sessions: int, moves: int, apart_s: float, linger_s: float) -> int:
    """`sessions` sessions exploring at once; print their redraw times and the server's peak memory."""
    with tempfile.TemporaryDirectory() as folder, serve(Path(folder)) as server:
        pid = server.process.pid
        async with async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            stop = asyncio.Event()
            sampler = asyncio.create_task(sampled_peak(pid, stop))
            started = time.perf_counter()
            results = await asyncio.gather(*(explorer(browser, f"{server.url}/?seed={7 + i}", moves, apart_s,
                                                      linger_s)
                                             for i in range(sessions)), return_exceptions=True)
            wall = time.perf_counter() - started
            stop.set()
            peak = await sampler
            await browser.close()
        errors = [r for r in results if not isinstance(r, list)]
        for number, result in enumerate(results, 1):
            if isinstance(result, list):
                *redraws, calibrated = result
                text = (f"redraws after each move {', '.join(f'{t:.1f}' for t in redraws)} s; calibrated "
                        f"{'not within --linger' if calibrated is None else f'{calibrated:.1f} s'} after the last")
            else:
                text = f"failed: {type(result).__name__}: {str(result)[:300]}"
            print(f"session {number}: {text}")
        verdict = "met" if peak < TARGET_PEAK_MIB else "NOT met"
        print(f"{sessions} sessions x {moves} moves {apart_s:g} s apart in {wall:.1f} s; server memory peak while "
              f"exploring {peak:.0f} MiB (sampled every 0.5 s; VmHWM {memory_mb(pid)[1]:.0f} MiB), target < "
              f"{TARGET_PEAK_MIB} MiB: {verdict}")
        return 1 if errors else 0


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
    parser.add_argument("--sessions", type=int, help="sessions at once (default 8; 3 with --explore)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--explore", action="store_true", help="sessions moving sliders while calibrations run")
    parser.add_argument("--moves", type=int, default=6, help="--explore: slider moves per session (default 6)")
    parser.add_argument("--apart", type=float, default=3.0, help="--explore: seconds between moves (default 3)")
    parser.add_argument("--linger", type=float, default=600,
                        help="--explore: seconds a session waits for its calibration after its moves (default 600)")
    arguments = parser.parse_args()
    if arguments.explore:
        sys.exit(asyncio.run(explore(arguments.sessions or 3, arguments.moves, arguments.apart,
                                         arguments.linger)))
    sys.exit(asyncio.run(main(arguments.sessions or 8, arguments.rounds)))
