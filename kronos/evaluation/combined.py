"""Calibrated at first sight: a forecast of a market, combined and calibrated by the record of the market's recent
history (kronos.evaluation.anchored), the one function every front end calls (`combined_forecast`), and the one
sentence of its record.

The record takes the forecast's own sampling settings and lookback, up to ORIGINS origins every EVERY candles
(anchored to the clock; fewer when the frame is shorter, down to what the pool needs to learn: min_count known
outcomes at the forecast), and the default seed, so forecasts drawn with any seed share it. What it fitted is
kept in the store, so a later forecast of the same market evaluates only the origins since, if any. It is usable
early: its newest origins are forecast first and provisional records published as it grows (`publish`; `quick`
answers with the first). The forecast itself is the run after the record: its raw paths are pooled with the
baselines by the weights learnt there, the pool's upside and volatility amplification probabilities mapped and its
bands given conformal margins (kronos.evaluation.issuing). Scored live forecasts of the market
(kronos.evaluation.record) are counted in the record; they carry no paths, so they do not join the pool's fit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from kronos.data.store import CandleStore
from kronos.engine import ForecastSource
from kronos.engine.forecast import Forecast
from kronos.errors import InvalidInputError
from kronos.evaluation.anchored import (
    EVERY,
    ORIGINS,
    RecordFit,
    calibration_rows,
    fit_record,
    issue_latest,
    minimum_origins,
    record_sampling,
)
from kronos.evaluation.backtest import Latest
from kronos.evaluation.calibration import MIN_COUNT
from kronos.evaluation.record import scored
from kronos.evaluation.registry import BASELINES, CALIBRATED, REFERENCE
from kronos.model.checkpoints import model_label
from kronos.schemas.calibrated import Band, Calibrated, Record, Unavailable

__all__ = ["EVERY", "ORIGINS", "calibrated_block", "calibration_rows", "combined_forecast", "first_sight",
           "minimum_origins", "record_sentence"]


def combined_forecast(forecaster: ForecastSource, frame: pd.DataFrame, forecast: Forecast,
                      store: CandleStore | None = None, progress: Callable[[int, int], None] | None = None, *,
                      market: tuple[str, str, str] | None = None, hour_idx: int | None = None,
                      publish: Callable[[Calibrated], None] | None = None, quick: bool = False,
                      origins: int = ORIGINS, every: int = EVERY,
                      min_count: int = MIN_COUNT) -> Calibrated | Unavailable:
    """The `calibrated` block of `forecast` (made by `forecaster` after the last row of `frame`): the combined
    forecast from the record of the frame's recent history (what the store keeps reused), or why it is unavailable.
    `market` (exchange, symbol, timeframe) names the market in the record and counts its scored live forecasts;
    `publish` gets the block of each provisional record and of the final one, `quick` returns the first."""
    hour = forecast.hour_index(hour_idx)
    live = 0 if market is None or store is None else len(scored(store, *market, forecaster.fingerprint))
    label = "this data" if market is None else f"{market[1]} {market[2]}"

    def block(record: RecordFit) -> Calibrated:
        return calibrated_block(record, issue_latest(record, forecast), hour, live, label)

    result = first_sight(forecaster, frame, forecast, store, progress, origins=origins, every=every,
                         min_count=min_count, publish=None if publish is None else (lambda r: publish(block(r))),
                         quick=quick)
    return result if isinstance(result, Unavailable) else block(result)


def first_sight(forecaster: ForecastSource, frame: pd.DataFrame, forecast: Forecast, store: CandleStore | None = None,
                progress: Callable[[int, int], None] | None = None, *,
                publish: Callable[[RecordFit], None] | None = None, quick: bool = False, origins: int = ORIGINS,
                every: int = EVERY,
                min_count: int = MIN_COUNT) -> RecordFit | Unavailable:
    """The record behind `forecast`'s combined forecast (`issue_latest(record, forecast)` issues it), what the store
    keeps reused, or why there can be none (kronos.evaluation.anchored.fit_record)."""
    if forecast.last_timestamp != frame["timestamps"].iloc[-1]:
        raise InvalidInputError("the forecast must start after the frame's last row")
    return fit_record(forecaster, frame, record_sampling(forecast), store, progress=progress, publish=publish,
                      quick=quick, origins=origins, every=every, min_count=min_count)


def calibrated_block(record: RecordFit, latest: Latest, hour: int, live: int, label: str) -> Calibrated:
    """The `calibrated` block of a record's latest forecast: prices from its log returns, the record's figures."""
    close = latest.last_close
    bands = {key: Band(low=(close * np.exp(lo)).tolist(), high=(close * np.exp(hi)).tolist())
             for key, (lo, hi) in latest.bands_combined.items()}
    summary = Record(origins=record.origins, target=record.target, provisional=record.provisional, live=live,
                     first=record.origin_times[0].isoformat(), last=record.origin_times[-1].isoformat(),
                     crps_skill=[_finite(v) for v in record.skill("combined", REFERENCE)],
                     brier_upside=[_finite(v) for v in record.brier_upside])
    return Calibrated(
        upside_probability=float(latest.upside_combined[hour - 1]),
        upside_probability_all_hours=latest.upside_combined.tolist(),
        volatility_amplification_probability=latest.volatility_amplification_combined,
        median=(close * np.exp(latest.median_combined)).tolist(), bands=bands,
        weights={name: weights.tolist() for name, weights in latest.weights.items()},
        pooled=latest.pooled.tolist(), record=summary, summary=record_sentence(record, latest, label))


def record_sentence(record: RecordFit, latest: Latest, label: str, hour: int | None = None) -> str:
    """One plain sentence of the record at `hour` (default: the horizon): how the model's calibrated distribution
    scored against the best baseline over the record's origins (saying when the record is still growing), and the
    weight the latest forecast gives it."""
    hour = hour or record.settings.forecast.horizon
    best = min(BASELINES, key=lambda name: record.crps(name)[hour - 1])
    gap = 1 - record.crps(CALIBRATED)[hour - 1] / record.crps(best)[hour - 1]
    than = f"{abs(gap):.0%} {'better' if gap >= 0 else 'worse'} than the {BASELINES[best].label} baseline"
    growing = f" (a provisional record, growing to {record.target})" if record.provisional else ""
    return (f"Over the last {record.origins} forecasts of {label}{growing}, {model_label(record.model)}'s {hour} h "
            f"distribution scored {than}; the forecast below gives it "
            f"{latest.weights[CALIBRATED][hour - 1]:.0%} weight.")


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
