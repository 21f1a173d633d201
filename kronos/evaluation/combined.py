"""Calibrated at first sight: a forecast of a market, combined and calibrated by a backtest of the market's recent
history, the one function every front end calls (`combined_forecast`), and the one sentence of its record.

The backtest (kronos.evaluation.backtest) takes the forecast's own sampling settings and lookback, ORIGINS origins
every EVERY candles (fewer when the frame is shorter, down to what the pool needs to learn: min_count known outcomes
at the forecast), and the default seed, so forecasts drawn with any seed share its stored origins. Its origins are
aligned to the clock (an origin's first forecast candle opens at a multiple of EVERY candles since the epoch), so a
later forecast of the same market finds every origin but the new ones in the store and only scores. The forecast
itself is the backtest's latest run: its raw paths are pooled with the baselines by the weights learnt at its
origin, the pool's upside and volatility amplification probabilities mapped and its bands given conformal margins
(kronos.evaluation.forecasters). Scored live forecasts of the market (kronos.evaluation.record) are counted in the
record; they carry no paths, so they do not join the pool's fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from kronos.data.store import CandleStore
from kronos.engine import ForecastSource
from kronos.errors import InvalidInputError
from kronos.evaluation.backtest import Backtest, BacktestSettings, rows_needed, run_backtest
from kronos.evaluation.baselines import FIRST_ROWS, FIT_WINDOW
from kronos.evaluation.calibration import MIN_COUNT
from kronos.evaluation.forecasters import BASELINES
from kronos.evaluation.pooling import DEFAULT
from kronos.evaluation.record import scored
from kronos.forecast import Forecast, model_label
from kronos.schemas.calibrated import Band, Calibrated, Record, Unavailable
from kronos.settings import FORECAST_DEFAULTS, ForecastSettings

ORIGINS, EVERY = 200, 6
LABELS = {"random_walk": "random walk", "bootstrap": "bootstrap", "ewma": "EWMA", "garch": "GARCH(1,1)"}


def minimum_origins(horizon: int, every: int, min_count: int) -> int:
    """Origins a backtest needs for the forecast after them to have `min_count` known outcomes at every hour."""
    return min_count + math.ceil(horizon / every)


def calibration_rows(lookback: int, horizon: int, origins: int = ORIGINS, every: int = EVERY) -> int:
    """The most candles a forecast's calibration reads (its backtest's origins, one step of clock alignment, the
    GARCH fit window before them): what a front end loads to calibrate; fewer rows give fewer origins."""
    return lookback + horizon + origins * every + FIT_WINDOW + FIRST_ROWS


def combined_forecast(forecaster: ForecastSource, frame: pd.DataFrame, forecast: Forecast,
                      store: CandleStore | None = None, progress: Callable[[int, int], None] | None = None, *,
                      market: tuple[str, str, str] | None = None, hour_idx: int | None = None,
                      origins: int = ORIGINS, every: int = EVERY,
                      min_count: int = MIN_COUNT) -> Calibrated | Unavailable:
    """The `calibrated` block of `forecast` (made by `forecaster` after the last row of `frame`): the combined
    forecast from a backtest of the frame's recent history (stored origins reused), or why it is unavailable.
    `market` (exchange, symbol, timeframe) names the market in the record and counts its scored live forecasts."""
    result = first_sight(forecaster, frame, forecast, store, progress, origins=origins, every=every,
                         min_count=min_count)
    if isinstance(result, Unavailable):
        return result
    live = 0 if market is None or store is None else len(scored(store, *market, forecaster.fingerprint))
    label = "this data" if market is None else f"{market[1]} {market[2]}"
    return calibrated_block(result, forecast.hour_index(hour_idx), live, label)


def first_sight(forecaster: ForecastSource, frame: pd.DataFrame, forecast: Forecast, store: CandleStore | None = None,
                progress: Callable[[int, int], None] | None = None, *, origins: int = ORIGINS, every: int = EVERY,
                min_count: int = MIN_COUNT) -> Backtest | Unavailable:
    """The backtest behind `forecast`'s combined forecast (its latest run is `forecast`), stored origins reused, or
    why there can be none."""
    if forecast.last_timestamp != frame["timestamps"].iloc[-1]:
        raise InvalidInputError("the forecast must start after the frame's last row")
    used = forecast.settings
    lookback, horizon = int(used.get("lookback", len(forecast.history))), forecast.horizon
    end = _aligned_end(pd.DatetimeIndex(frame["timestamps"]), horizon, every)
    fewest = minimum_origins(horizon, every, min_count)
    available = 0 if end is None else max(0, (end - horizon - lookback) // every + 1)
    if available < fewest:
        needed = lookback + horizon + (fewest - 1) * every + every
        return Unavailable(unavailable=f"calibration needs about {needed} rows of history ({fewest} backtest origins "
                                       f"every {every} rows with a lookback of {lookback}); there are {len(frame)}")
    sampling = ForecastSettings(horizon=horizon, samples=forecast.samples, lookback=lookback,
                                temperature=used["temperature"], top_p=used["top_p"], top_k=used["top_k"],
                                seed=FORECAST_DEFAULTS.seed)
    settings = BacktestSettings(sampling, origins=min(origins, available), every=every, min_count=min_count)
    keep = rows_needed(settings) + len(frame) - end + FIT_WINDOW + FIRST_ROWS  # all that the backtest reads
    cut = max(0, len(frame) - keep)
    return run_backtest(forecaster, frame.iloc[cut:].reset_index(drop=True), settings, store=store, live=forecast,
                        end=end - cut, progress=progress)


def _aligned_end(stamps: pd.DatetimeIndex, horizon: int, every: int) -> int | None:
    """The largest frame length whose last origin (row end - horizon) opens at a multiple of `every` steps."""
    if len(stamps) < horizon + 2:
        return None
    step = (stamps[-1] - stamps[-2]).value
    counts = stamps.asi8 // step  # steps since the epoch
    for end in range(len(stamps), max(horizon, len(stamps) - every * 4), -1):
        if counts[end - horizon] % every == 0:
            return end
    return len(stamps)  # irregular stamps: the frame's own end


def calibrated_block(result: Backtest, hour: int, live: int, label: str) -> Calibrated:
    """The `calibrated` block of a backtest's latest forecast: prices from its log returns, the record's figures."""
    latest = result.latest
    close = latest.last_close
    bands = {key: Band(low=(close * np.exp(lo)).tolist(), high=(close * np.exp(hi)).tolist())
             for key, (lo, hi) in latest.bands_combined.items()}
    combined = result.scores["combined"]
    record = Record(origins=len(result.origin_times), live=live, first=result.origin_times[0].isoformat(),
                    last=result.origin_times[-1].isoformat(),
                    crps_skill=[_finite(v) for v in result.skill["combined"]["crps"]],
                    brier_upside=[_finite(v) for v in combined.brier_upside])
    return Calibrated(
        upside_probability=float(latest.upside_combined[hour - 1]),
        upside_probability_all_hours=latest.upside_combined.tolist(),
        volatility_amplification_probability=latest.volatility_amplification_combined,
        median=(close * np.exp(latest.median_combined)).tolist(), bands=bands,
        weights={name: weights.tolist() for name, weights in latest.weights.items()},
        pooled=latest.pooled.tolist(), record=record, summary=record_sentence(result, label))


def record_sentence(result: Backtest, label: str, hour: int | None = None) -> str:
    """One plain sentence of the record at `hour` (default: the horizon): how the model's calibrated distribution
    scored against the best baseline over the backtest's origins, and the weight the latest forecast gives it."""
    hour = hour or result.settings.forecast.horizon
    best = min(BASELINES, key=lambda name: result.scores[name].crps[hour - 1])
    gap = 1 - result.scores["model_calibrated"].crps[hour - 1] / result.scores[best].crps[hour - 1]
    than = f"{abs(gap):.0%} {'better' if gap >= 0 else 'worse'} than the {LABELS[best]} baseline"
    said = (f"Over the last {len(result.origin_times)} forecasts of {label}, {model_label(result.model)}'s {hour} h "
            f"distribution scored {than}")
    latest = result.latest
    if latest is None:
        return said + "."
    if not latest.pooled[hour - 1]:
        return (f"{said}; until {result.settings.min_count} outcomes are known the forecast below is the "
                f"{LABELS[DEFAULT]} baseline alone.")
    return f"{said}; the forecast below gives it {latest.weights['model_calibrated'][hour - 1]:.0%} weight."


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
