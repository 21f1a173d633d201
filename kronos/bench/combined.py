"""The combined forecast's targets on real candles: a useless model (random Kronos-mini-shaped weights) must do no
harm, and which probability map scores best out of sample.

    python -m kronos.bench combined --csv btcusdt_1h.csv.gz [--rows 8760] [--every 12] [--store paths.sqlite]
    python -m kronos.bench combined --first-sight [--csv btcusdt_1h.csv.gz]

The last `rows` candles (default: a year of hours) after a lookback; origins every `every` rows; 30 paths x 24 h,
lookback 256. Prints, per forecaster, CRPS (1e-4 log return) at hours 1, 6, 12, 24, the 80% band's coverage at 24 h,
the upside Brier score at 1 and 24 h and the pool's mean weights; then the targets (combined CRPS within 2% of the
random walk's at 1, 6, 12, 24 h, upside Brier <= 0.26, 80% coverage 75-85%); then the combined upside Brier per
probability map, every map fitted at each origin on the outcomes known there. `--store` keeps the model's paths, so
a rerun only scores.

`--first-sight` times `combined_forecast` (200 origins every 6 candles, 30 paths x 24 h, lookback 383, mini shapes)
on the 2,048 latest candles: the first call, then a forecast one candle later and one six candles later (one new
origin), which must add under a second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kronos.bench.backtest import _candles
from kronos.data.store import CandleStore
from kronos.engine.synthetic import random_forecaster, random_walk
from kronos.evaluation.backtest import BacktestSettings, run_backtest
from kronos.evaluation.combined import combined_forecast
from kronos.evaluation.probability import MAPS
from kronos.evaluation.registry import REFERENCE, TRAILING
from kronos.settings import ForecastSettings

HOURS = (1, 6, 12, 24)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", help="hourly candles")
    parser.add_argument("--rows", type=int, default=8760, help="the latest rows whose hours are scored")
    parser.add_argument("--every", type=int, default=12)
    parser.add_argument("--store", help="a store file keeping the model's paths between runs")
    parser.add_argument("--first-sight", action="store_true", help="time calibrated at first sight and later calls")
    args = parser.parse_args(argv)
    if args.first_sight:
        return _first_sight(_candles(args.csv) if args.csv else random_walk(2048 + 6))
    if not args.csv:
        parser.error("--csv is needed")
    frame = _candles(args.csv)
    lookback, horizon = 256, 24
    origins = (args.rows - horizon) // args.every + 1
    settings = BacktestSettings(ForecastSettings(horizon=horizon, samples=30, lookback=lookback), origins=origins,
                                every=args.every)
    frame = frame.iloc[-(args.rows + lookback):].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as folder:
        store = CandleStore(args.store or Path(folder) / "store.sqlite")
        started = time.perf_counter()
        results = {name: run_backtest(random_forecaster("mini"), frame, settings, store=store, upside_map=name)
                   for name in MAPS}
        took = time.perf_counter() - started
    _print_tables(results, args.every, lookback, took)


def _first_sight(candles: pd.DataFrame) -> None:
    """Seconds of combined_forecast at first sight, one candle later and six candles later, on one store."""
    forecaster, times = random_forecaster("mini"), []
    with tempfile.TemporaryDirectory() as folder:
        store = CandleStore(Path(folder) / "store.sqlite")
        for later in (0, 1, 6):
            frame = candles.iloc[len(candles) - 2054 + later:len(candles) - 6 + later].reset_index(drop=True)
            forecast = forecaster.forecast(frame, horizon=24, samples=30, lookback=383, seed=later)
            started = time.perf_counter()
            block = combined_forecast(forecaster, frame, forecast, store)
            times.append(time.perf_counter() - started)
    print(f"calibrated at first sight: {block.record.origins} origins every 6 candles, 30 paths x 24 h, lookback 383, "
          "mini shapes")
    print("| first sight (s) | target (s) | one candle later (s) | six candles later (s) | target (s) |")
    print("|---|---|---|---|---|")
    print(f"| {times[0]:.1f} | <= 30 | {times[1]:.2f} | {times[2]:.2f} | < 1 |")
    print(block.summary)


def _print_tables(results: dict, every: int, lookback: int, took: float) -> None:
    """The scores of every forecaster (the platt map's run), the pool's weights, the targets, and each map's Brier."""
    result = results["platt"]
    print(f"{len(result.origin_times)} origins every {every} rows, {result.origin_times[0]:%Y-%m-%d} to "
          f"{result.origin_times[-1]:%Y-%m-%d}, 30 paths x 24 h, lookback {lookback}, random mini weights "
          f"({took:.0f} s)")
    print("| forecaster | CRPS h1 | h6 | h12 | h24 | 80% band h24 | Brier upside h1 / h24 |")
    print("|---|---|---|---|---|---|---|")
    for name, scores in result.scores.items():
        if name == TRAILING:
            print(f"| {name} | | | | | | {scores.brier_upside[0]:.3f} / {scores.brier_upside[-1]:.3f} |")
            continue
        crps = " | ".join(f"{1e4 * scores.crps[h - 1]:.1f}" for h in HOURS)
        print(f"| {name} | {crps} | {scores.coverage['80'][-1]:.0%} | {scores.brier_upside[0]:.3f} / "
              f"{scores.brier_upside[-1]:.3f} |")
    print("mean pool weights per component at h1/h6/h12/h24: " + "; ".join(
        f"{name} " + "/".join(f"{w[h - 1]:.2f}" for h in HOURS) for name, w in result.weights.items()))
    combined, walk = result.scores["combined"], result.scores[REFERENCE]
    ratio = combined.crps[[h - 1 for h in HOURS]] / walk.crps[[h - 1 for h in HOURS]]
    within = bool((ratio <= 1.02).all())
    print(f"targets: CRPS / random walk at {HOURS}: {np.round(ratio, 4).tolist()} (<= 1.02: {within}); "
          f"upside Brier max {combined.brier_upside.max():.3f} (<= 0.26: {bool(combined.brier_upside.max() <= 0.26)}); "
          f"80% coverage {combined.coverage['80'].min():.0%}-{combined.coverage['80'].max():.0%} (75-85%)")
    print("| map | combined upside Brier h1 | h6 | h12 | h24 | mean | vol. amplification Brier |")
    print("|---|---|---|---|---|---|---|")
    for name, run in results.items():
        brier = run.scores["combined"].brier_upside
        print(f"| {name} | " + " | ".join(f"{brier[h - 1]:.4f}" for h in HOURS) + f" | {brier.mean():.4f} | "
              f"{run.scores['combined'].brier_vol_amp:.4f} |")
