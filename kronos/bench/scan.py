"""A scan's speed, on stored markets whose calibration is stored, and at first sight.

    python -m kronos.bench scan                                  # 20 stored markets, calibrations stored
    python -m kronos.bench scan --cli --markets 6                # the whole command only, on 6 such markets
    python -m kronos.bench scan --first-sight [--markets 20] [--origins 200] [--ray local] [--cpus 2]

Kronos-mini's shapes with random weights (saved to a temporary folder), synthetic hourly candles in a temporary store,
the live demo's settings (30 paths x 24 h, lookback 383): the settings its speed targets are set for.

Default: the whole `python -m kronos scan` command (process start included) on `--markets` stored markets whose
first-sight backtests (200 origins every 6 candles) are stored, every row combined (target: <= 5 s); then, in this
process, one forecast per market against the scan's shared generation loops (the same paths, checked; target >=
1.5x), and the scan's parts: forecasts, combining from the stored origins. To prepare the stored backtests with one
first sight, the markets share their candles but for the last 24 (which only the newest origin's outcome and the
scan's own forecast see), so each market's forecast and record differ while its origins' windows are stored once.
`--cli`: the whole command only (`--repeat` times, the best and the median), none of the in-process parts.
`--keep DIR`: the weights and the stored markets in DIR, kept after the run; a later run with the same DIR and
`--markets` reuses them and skips the preparation (minutes).

`--first-sight`: `--markets` markets of their own candles, each backtested at first sight (`--origins` origins every
6 candles) within the scan, market by market, on this machine; with `--ray`, again on that Ray cluster's actors
(`local`: a local Ray of `--cpus` CPUs, one actor each), its rows checked equal to the local ones, and what a
cluster of N machines like this one would take (the origins' forecasts split among them, the scoring on the caller).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kronos.data.store import CandleStore
from kronos.engine import Forecaster
from kronos.engine.synthetic import random_checkpoint, random_walk
from kronos.evaluation.combined import EVERY, ORIGINS, calibration_rows
from kronos.scan.combining import ScanCalibration
from kronos.scan.ranking import forecast_markets, scan
from kronos.scan.watchlist import fetch_watchlist, given
from kronos.schemas.markets import Scan
from kronos.settings import ForecastSettings, ModelChoice

TARGET_S, TARGET_SPEEDUP = 5.0, 1.5
SETTINGS = ForecastSettings()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=20)
    parser.add_argument("--first-sight", action="store_true", help="time first-sight backtests within the scan")
    parser.add_argument("--origins", type=int, default=ORIGINS, help="first sight: origins per market")
    parser.add_argument("--ray", metavar="ADDRESS",
                        help="first sight: also on this Ray cluster (auto, local, HOST:PORT)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of a local Ray (default 2)")
    parser.add_argument("--cli", action="store_true", help="time the whole scan command only")
    parser.add_argument("--repeat", type=int, default=3, help="--cli: runs of the command (default 3)")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="keep the weights and the prepared store in DIR; reuse them if DIR holds them")
    args = parser.parse_args(argv)
    symbols = [f"M{i:03d}/USDT" for i in range(args.markets)]
    kept = contextlib.nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory()
    with kept as name:
        folder = Path(name)
        ready = folder / f"prepared-{args.markets}"
        env = _weights(folder / "weights")
        forecaster = Forecaster.from_pretrained(env["KRONOS_MODEL"], env["KRONOS_TOKENIZER"])
        if args.first_sight:
            return _first_sight(args, folder, env, forecaster, symbols)
        store = CandleStore(folder / "store.sqlite")
        started = time.perf_counter()
        if not ready.exists():
            for symbol, frame in zip(symbols, _sharing(len(symbols)), strict=True):
                store.merge(frame, "binance", symbol, "1h")
            _scan(forecaster, symbols[:1], store, ScanCalibration(forecaster, store, run=True))
            ready.touch()
        prepared = time.perf_counter() - started
        if args.cli:
            return _cli_only(args, env, store, symbols, prepared)
        whole, combined = _command(env, store, symbols)
        single, batched, same = _loops(forecaster, store, symbols)
        raw_s = _timed(lambda: _scan(forecaster, symbols, store))
        _forget(forecaster)
        inline_s = _timed(lambda: _scan(forecaster, symbols, store, ScanCalibration(forecaster, store)))
    print(f"{args.markets} stored markets, calibrations stored ({ORIGINS} origins every {EVERY} candles, prepared by "
          f"one first sight in {prepared:.0f} s), {SETTINGS.samples} paths x {SETTINGS.horizon} h, lookback "
          f"{SETTINGS.lookback}, mini shapes (random weights), synthetic candles")
    print("| whole command (s) | target (s) | rows combined | separate forecasts (s) | shared loops (s) | speed-up "
          "| target | same paths | scan(), raw (s) | scan(), combined (s) | combining per market (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {whole:.1f} | <= {TARGET_S:g} | {combined} of {args.markets} | {single:.2f} | {batched:.2f} | "
          f"{single / batched:.2f}x | >= {TARGET_SPEEDUP}x | {same} | {raw_s:.2f} | {inline_s:.2f} | "
          f"{(inline_s - raw_s) / args.markets:.2f} |")


def _cli_only(args: argparse.Namespace, env: dict[str, str], store: CandleStore, symbols: list[str],
              prepared: float) -> None:
    """Time the whole scan command `--repeat` times on the stored, calibrated markets; print the table."""
    runs = [_command(env, store, symbols) for _ in range(max(1, args.repeat))]
    seconds = sorted(s for s, _ in runs)
    print(f"repeat scan, whole command: {args.markets} stored markets, calibrations stored (prepared in "
          f"{prepared:.0f} s), {SETTINGS.samples} paths x {SETTINGS.horizon} h, mini shapes (random weights)")
    print("| runs | best (s) | median (s) | target (s) | rows combined (each run) |")
    print("|---|---|---|---|---|")
    print(f"| {len(runs)} | {seconds[0]:.1f} | {seconds[len(seconds) // 2]:.1f} | <= {TARGET_S:g} | "
          f"{', '.join(f'{c} of {args.markets}' for _, c in runs)} |")


def _weights(folder: Path) -> dict[str, str]:
    """Kronos-mini's shapes with random weights in `folder`: those saved there before, else new ones."""
    if (folder / "tokenizer").exists():
        return {"KRONOS_MODEL": str(folder / "model"), "KRONOS_TOKENIZER": str(folder / "tokenizer")}
    return random_checkpoint(folder)


def _sharing(markets: int) -> list[pd.DataFrame]:
    """The markets' candles: one random walk, each market with its own last `horizon` candles (joined to it)."""
    base = random_walk(calibration_rows(SETTINGS.lookback, SETTINGS.horizon), seed=0)
    tail, frames = SETTINGS.horizon, []
    for i in range(markets):
        own = random_walk(tail + 1, seed=1000 + i)
        scale = base["close"].iloc[-tail - 1] / own["close"].iloc[0]
        part = own.iloc[1:].reset_index(drop=True)
        for column in ("open", "high", "low", "close", "amount"):
            part[column] *= scale
        part["timestamps"] = base["timestamps"].iloc[-tail:].to_numpy()
        frames.append(pd.concat([base.iloc[:-tail], part], ignore_index=True))
    return frames


def _scan(forecaster, symbols: list[str], store: CandleStore, combine: ScanCalibration | None = None) -> Scan:
    return scan(forecaster, given(symbols, "binance", "1h"), SETTINGS, store, live=False, combine=combine)


def _forget(forecaster: Forecaster) -> None:
    """Drop the histories the forecaster keeps (their encodings and prefixes), so that no timing reuses another's."""
    forecaster._generator.cache._histories.clear()


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _command(env: dict[str, str], store: CandleStore, symbols: list[str]) -> tuple[float, int]:
    """Seconds for the whole scan command on the stored markets, and how many of its rows are combined."""
    command = [sys.executable, "-m", "kronos", "scan", "--source", "store", "--symbols", *symbols, "--store",
               str(store.path), "--model", env["KRONOS_MODEL"], "--tokenizer", env["KRONOS_TOKENIZER"], "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return seconds, sum(row["basis"] == "combined" for row in json.loads(done.stdout)["rows"])


def _loops(forecaster: Forecaster, store: CandleStore, symbols: list[str]) -> tuple[float, float, bool]:
    """Seconds for one forecast per market and for the same markets in shared loops; whether the paths agree."""
    candles = [f.candles for f in fetch_watchlist(given(symbols, "binance", "1h"), SETTINGS.lookback, store,
                                                  live=False)]
    forecaster.forecast(candles[0].frame.iloc[:100], horizon=2, samples=2)  # warm-up on other rows
    started = time.perf_counter()
    alone = [forecaster.forecast(c.frame, **SETTINGS.engine_arguments(rows=len(c.frame))) for c in candles]
    single = time.perf_counter() - started
    _forget(forecaster)
    started = time.perf_counter()
    together = forecast_markets(forecaster, candles, SETTINGS)
    batched = time.perf_counter() - started
    _forget(forecaster)
    return single, batched, all(np.array_equal(a.paths, b.paths) for a, b in zip(alone, together, strict=True))


def _first_sight(args: argparse.Namespace, folder: Path, env: dict[str, str], forecaster: Forecaster,
                 symbols: list[str]) -> None:
    """Time the scan with every market's first sight, here and on Ray; print the table."""
    rows = calibration_rows(SETTINGS.lookback, SETTINGS.horizon, args.origins)

    def stored(name: str) -> CandleStore:
        store = CandleStore(folder / f"{name}.sqlite")
        for i, symbol in enumerate(symbols):
            store.merge(random_walk(rows, seed=i), "binance", symbol, "1h")
        return store

    near_store = stored("near")
    calibration = ScanCalibration(forecaster, near_store, run=True, origins=args.origins)
    made: dict[str, Scan] = {}
    local = _timed(lambda: made.update(near=_scan(forecaster, symbols, near_store, calibration)))
    scoring = _timed(lambda: _scan(forecaster, symbols, near_store, ScanCalibration(forecaster, near_store,
                                                                                    origins=args.origins)))
    print(f"first sight of {args.markets} markets ({args.origins} origins every {EVERY} candles each), "
          f"{SETTINGS.samples} paths x {SETTINGS.horizon} h, lookback {SETTINGS.lookback}, mini shapes "
          "(random weights)")
    print("| where | workers | scan with first sights (s) | per market (s) | rows equal to local |")
    print("|---|---|---|---|---|")
    print(f"| this machine | 1 | {local:.1f} | {local / args.markets:.1f} | |")
    forecasting = max(0.0, local - scoring)
    if args.ray:
        from kronos.serving.cluster import LOCAL, RayForecaster, connect

        connect(args.ray, num_cpus=args.cpus if args.ray == LOCAL else None)
        remote = RayForecaster(ModelChoice(env["KRONOS_MODEL"], env["KRONOS_TOKENIZER"]))
        far_store, workers = stored("far"), remote.workers
        try:
            seconds = _timed(lambda: made.update(far=_scan(remote, symbols, far_store, ScanCalibration(
                remote, far_store, run=True, origins=args.origins))))
        finally:
            remote.close()
        equal = [r.model_dump(exclude={"age_s"}) for r in made["far"].rows] == \
            [r.model_dump(exclude={"age_s"}) for r in made["near"].rows]
        print(f"| Ray ({args.ray}) | {workers} | {seconds:.1f} | {seconds / args.markets:.1f} | {equal} |")
    print(f"Of the local scan, {scoring:.1f} s is the scan and the scoring (a later scan, origins stored) and "
          f"{forecasting:.1f} s the origins' forecasts: a cluster of N machines like this one takes about "
          f"{scoring:.1f} + {forecasting:.1f} / N s for these markets.")
