"""The forecast log: every forecast made on market data is kept (a summary, not the paths), scored once its candles
close, and the record calibrates the next forecast of the same market and model, strictly from the past.

Kept per forecast: origin (the first forecast candle's open time), last close, settings, and per hour the upside
probability and the 50/80/95% band edges of the close as log returns from the last close (kronos.evaluation.scores).
Outcome: the realised log returns, once every forecast candle is in the store (stored candles are closed ones).
A logged forecast informs a new one only if its last candle closed before the new one's origin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.evaluation.calibration import MIN_COUNT, conformal_band, isotonic
from kronos.evaluation.scores import LEVELS, band, brier, hit_rate, level_key
from kronos.forecast import Forecast
from kronos.timeframes import timeframe_delta

MARKET_SOURCES = ("exchange", "store")  # custom files are no market: their forecasts are not logged


def log_forecast(store: CandleStore, candles: Candles, forecast: Forecast, model: str) -> bool:
    """Record a forecast of market candles under the model's identity (its weights' fingerprint); False when the
    candles are custom data, which is not logged."""
    if candles.source not in MARKET_SOURCES:
        return False
    bands = {key: [lo[0].tolist(), hi[0].tolist()] for key, (lo, hi) in _bands(forecast).items()}
    summary = {"model_name": forecast.model, "seed": forecast.seed, "settings": forecast.settings,
               "last_close": forecast.last_close, "upside": forecast.upside_probability().tolist(), "bands": bands}
    store.log_forecast(candles.exchange, candles.symbol, candles.timeframe, model, forecast.timestamps[0], summary)
    return True


@dataclass(frozen=True)
class TrackRecord:
    """How the logged forecasts of one market and model fared: counts, coverage per band, upside Brier score."""

    logged: int
    scored: int
    coverage: dict[str, float | None]  # band level key -> share of scored hours inside
    brier_upside: float | None  # over scored forecasts and hours; always answering 50% scores 0.25
    hit_rate: float | None

    def to_dict(self) -> dict:
        return {"logged": self.logged, "scored": self.scored, "coverage": self.coverage,
                "brier_upside": self.brier_upside, "brier_always_half": 0.25, "hit_rate": self.hit_rate}


def track_record(store: CandleStore, exchange: str, symbol: str, timeframe: str, model: str) -> TrackRecord:
    """Score the forecasts whose candles have closed since, then summarise every scored one."""
    scored = _scored(store, exchange, symbol, timeframe, model)
    logged = len(store.logged_forecasts(exchange, symbol, timeframe, model))
    if not scored:
        return TrackRecord(logged, 0, {level_key(level): None for level in LEVELS}, None, None)
    prob = np.concatenate([e["forecast"]["upside"] for e in scored])
    y = np.concatenate([e["outcome"]["returns"] for e in scored])
    inside = {key: np.concatenate([(np.array(e["forecast"]["bands"][key][0]) <= e["outcome"]["returns"])
                                   & (np.array(e["outcome"]["returns"]) <= np.array(e["forecast"]["bands"][key][1]))
                                   for e in scored]) for key in scored[0]["forecast"]["bands"]}
    return TrackRecord(logged, len(scored), {key: float(hits.mean()) for key, hits in inside.items()},
                       float(brier(prob, y > 0).mean()), float(hit_rate(prob, y > 0)))


@dataclass(frozen=True)
class CalibratedView:
    """A forecast's upside probability and bands next to their calibrated values, per hour, with the record's size."""

    last_close: float
    upside_raw: list[float]
    upside: list[float | None]  # None for hours with fewer than min_count known outcomes
    bands_raw: dict[str, list[list[float]]]  # level key -> [lower, upper] per hour, log returns
    bands: dict[str, list[list[float | None]]]
    known: list[int]  # known outcomes per hour

    def band_prices(self, key: str, hour: int, calibrated: bool) -> tuple[float, float] | None:
        """The band `key` ("80") at 1-based `hour` in prices, raw or calibrated (None when not calibrated)."""
        lo, hi = (self.bands if calibrated else self.bands_raw)[key]
        if lo[hour - 1] is None:
            return None
        return self.last_close * float(np.exp(lo[hour - 1])), self.last_close * float(np.exp(hi[hour - 1]))


def calibrated_view(store: CandleStore, exchange: str, symbol: str, timeframe: str, model: str,
                    forecast: Forecast, min_count: int = MIN_COUNT) -> CalibratedView:
    """The forecast calibrated on the logged forecasts whose outcomes were known at its origin (per hour: isotonic
    upside probability, conformal bands); raw values (and None) for hours with fewer than `min_count` of them."""
    step = timeframe_delta(timeframe)
    scored = [e for e in _scored(store, exchange, symbol, timeframe, model)
              if e["origin"] + step * len(e["outcome"]["returns"]) <= forecast.timestamps[0]]
    raw_prob = forecast.upside_probability()
    raw_bands = _bands(forecast)
    upside, bands, known = [], {key: [[], []] for key in raw_bands}, []
    for h in range(forecast.horizon):
        past = [e for e in scored if len(e["outcome"]["returns"]) > h]
        known.append(len(past))
        enough = len(past) >= min_count
        y = np.array([e["outcome"]["returns"][h] for e in past])
        prob = np.array([e["forecast"]["upside"][h] for e in past])
        upside.append(float(isotonic(prob, y > 0, raw_prob[h:h + 1])[0]) if enough else None)
        for key, (lo, hi) in raw_bands.items():
            if enough:
                past_lo, past_hi = (np.array([e["forecast"]["bands"][key][side][h] for e in past]) for side in (0, 1))
                new = conformal_band(lo[0, h], hi[0, h], past_lo, past_hi, y, float(key) / 100)
            bands[key][0].append(float(new[0]) if enough else None)
            bands[key][1].append(float(new[1]) if enough else None)
    return CalibratedView(forecast.last_close, raw_prob.tolist(), upside, {k: [lo[0].tolist(), hi[0].tolist()] for k, (lo, hi) in
                                                      raw_bands.items()}, bands, known)


def _bands(forecast: Forecast) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The forecast's 50/80/95% bands of the close as log returns from the last close: key -> lower, upper (1, H)."""
    returns = np.log(forecast.column("close") / forecast.last_close)[None]  # (1, S, H): one origin
    return {level_key(level): band(returns, level) for level in LEVELS}


def _scored(store: CandleStore, exchange: str, symbol: str, timeframe: str, model: str) -> list[dict]:
    """The market's logged forecasts by the model with outcomes, scoring those whose candles are now all stored."""
    entries = store.logged_forecasts(exchange, symbol, timeframe, model)
    step, latest = timeframe_delta(timeframe), store.latest_timestamp(exchange, symbol, timeframe)
    pending = [e for e in entries if e["outcome"] is None and latest is not None
               and e["origin"] + step * (len(e["forecast"]["upside"]) - 1) <= latest]  # its last candle is stored
    if pending:  # only the candles from the oldest such forecast's origin on
        rows = int((latest - min(e["origin"] for e in pending)) / step) + 1
        candles = store.load(exchange, symbol, timeframe, rows).set_index("timestamps")["close"]
        for entry in pending:
            hours = pd.DatetimeIndex([entry["origin"] + step * h for h in range(len(entry["forecast"]["upside"]))])
            if hours.isin(candles.index).all():
                returns = np.log(candles.loc[hours].to_numpy() / entry["forecast"]["last_close"]).tolist()
                entry["outcome"] = {"returns": returns}
                store.set_outcome(entry["id"], entry["outcome"])
    return [e for e in entries if e["outcome"] is not None]
