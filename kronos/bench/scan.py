"""A scan's speed: the whole `python -m kronos scan` command on stored markets (process start included), and the same
markets' forecasts in a scan's shared generation loops against one forecast per market (the same paths, checked).

    python -m kronos.bench scan                        # 20 stored markets, on this machine
    python -m kronos.bench scan --markets 50 --ray local

Kronos-mini's shapes with random weights (saved to a temporary folder), synthetic hourly candles in a temporary store,
the live demo's settings (30 paths x 24 h, lookback 383), as the issue's targets state (the command <= 5 s, the scan
>= 1.5x over separate forecasts). With `--ray`, the scan also runs on that Ray cluster's actors (workers started and
weights loaded before the clock starts), and its rows are checked against the local ones.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kronos.data.store import CandleStore
from kronos.data.watchlist import fetch_watchlist, given
from kronos.engine import Forecaster
from kronos.markets import forecast_markets, scan
from kronos.settings import ForecastSettings, ModelChoice
from kronos.synthetic import random_checkpoint, random_walk

TARGET_S, TARGET_SPEEDUP = 5.0, 1.5
ROWS = 512


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=20)
    parser.add_argument("--ray", metavar="ADDRESS", help="also scan on this Ray cluster (auto, local, HOST:PORT)")
    args = parser.parse_args(argv)
    settings = ForecastSettings()
    symbols = [f"M{i:03d}/USDT" for i in range(args.markets)]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        env = random_checkpoint(folder / "weights")
        store = CandleStore(folder / "store.sqlite")
        for i, symbol in enumerate(symbols):
            store.merge(random_walk(ROWS, seed=i), "binance", symbol, "1h")
        command = [sys.executable, "-m", "kronos", "scan", "--source", "store", "--symbols", *symbols, "--store",
                   str(store.path), "--model", env["KRONOS_MODEL"], "--tokenizer", env["KRONOS_TOKENIZER"], "--json"]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        whole = time.perf_counter() - started
        single, batched, scanned, same = _engine(env, store, symbols, settings)
        far = _ray(args.ray, env, store, symbols, settings) if args.ray else None
    print(f"{args.markets} stored markets x {settings.samples} paths x {settings.horizon} h, lookback "
          f"{settings.lookback}, mini shapes (random weights), synthetic candles")
    print("| whole command (s) | target (s) | separate forecasts (s) | shared loops (s) | speed-up | target "
          "| scan() (s) | same paths |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {whole:.1f} | <= {TARGET_S:g} | {single:.2f} | {batched:.2f} | {single / batched:.2f}x "
          f"| >= {TARGET_SPEEDUP}x | {scanned:.2f} | {same} |")
    if far is not None:
        seconds, workers, equal = far
        print(f"Ray ({args.ray}, {workers} workers): scan() {seconds:.2f} s, rows equal to the local scan's: {equal}")


def _engine(env: dict[str, str], store: CandleStore, symbols: list[str],
            settings: ForecastSettings) -> tuple[float, float, float, bool]:
    """Seconds for one forecast per market, for the same markets in shared loops, and for the whole scan() (store
    reads and the forecast log included); whether the paths agree."""
    forecaster = Forecaster.from_pretrained(env["KRONOS_MODEL"], env["KRONOS_TOKENIZER"])
    candles = [f.candles for f in fetch_watchlist(given(symbols, "binance", "1h"), settings.lookback, store,
                                                  live=False)]
    forecaster.forecast(candles[0].frame.iloc[:100], horizon=2, samples=2)  # warm-up on other rows
    started = time.perf_counter()
    alone = [forecaster.forecast(c.frame, **settings.engine_arguments(rows=len(c.frame))) for c in candles]
    single = time.perf_counter() - started
    forecaster._histories.clear()  # nothing kept from the forecasts above
    started = time.perf_counter()
    together = forecast_markets(forecaster, candles, settings)
    batched = time.perf_counter() - started
    forecaster._histories.clear()
    started = time.perf_counter()
    scan(forecaster, given(symbols, "binance", "1h"), settings, store, live=False)
    scanned = time.perf_counter() - started
    same = all(np.array_equal(a.paths, b.paths) for a, b in zip(alone, together, strict=True))
    return single, batched, scanned, same


def _ray(address: str, env: dict[str, str], store: CandleStore, symbols: list[str],
         settings: ForecastSettings) -> tuple[float, int, bool]:
    """Seconds for scan() on the Ray cluster's actors (started beforehand), their count, and whether its rows equal
    the local scan's."""
    from kronos.distributed import RayForecaster, connect

    connect(address)
    remote = RayForecaster(ModelChoice(env["KRONOS_MODEL"], env["KRONOS_TOKENIZER"]))
    watchlist, workers = given(symbols, "binance", "1h"), remote.workers
    try:
        started = time.perf_counter()
        far = scan(remote, watchlist, settings, store, live=False)
        seconds = time.perf_counter() - started
    finally:
        remote.close()
    near = scan(Forecaster.from_pretrained(env["KRONOS_MODEL"], env["KRONOS_TOKENIZER"]), watchlist, settings, store,
                live=False)
    equal = [r.model_dump(exclude={"age_s"}) for r in far.rows] == [r.model_dump(exclude={"age_s"}) for r in near.rows]
    return seconds, workers, equal
