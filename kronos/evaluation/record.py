"""The forecast log: every forecast made on market data is kept (a summary, not the paths); `score_closed` is the
explicit step that writes the outcomes of forecasts whose candles have closed; `track_record` and `scored` only read.

Kept per forecast: origin (the first forecast candle's open time), last close, settings, and per hour the upside
probability and the 50/80/95% band edges of the close as log returns from the last close (kronos.evaluation.scores).
Outcome: the realised log returns, once every forecast candle is in the store (stored candles are closed ones).
The calibrated view of a live forecast on this log is kronos.evaluation.live's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.engine.forecast import Forecast
from kronos.evaluation.scores import LEVELS, band, brier, hit_rate, level_key
from kronos.timeframes import timeframe_delta

MARKET_SOURCES = ("exchange", "store")  # custom files are no market: their forecasts are not logged


def log_forecast(store: CandleStore, candles: Candles, forecast: Forecast, model: str) -> bool:
    """Record a forecast of market candles under the model's identity (its weights' fingerprint); False when the
    candles are custom data, which is not logged."""
    if candles.source not in MARKET_SOURCES:
        return False
    bands = {key: [lo[0].tolist(), hi[0].tolist()] for key, (lo, hi) in forecast_bands(forecast).items()}
    summary = {"model_name": forecast.model, "seed": forecast.seed, "settings": forecast.settings,
               "last_close": forecast.last_close, "upside": forecast.upside_probability().tolist(), "bands": bands}
    store.log_forecast(candles.exchange, candles.symbol, candles.timeframe, model, forecast.timestamps[0], summary)
    return True


def forecast_bands(forecast: Forecast) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The forecast's 50/80/95% bands of the close as log returns from the last close: key -> lower, upper (1, H)."""
    returns = np.log(forecast.column("close") / forecast.last_close)[None]  # (1, S, H): one origin
    return {level_key(level): band(returns, level) for level in LEVELS}


def score_closed(store: CandleStore, exchange: str, symbol: str, timeframe: str, model: str) -> int:
    """Write the outcome of every logged forecast of the market by the model whose candles are now all stored
    (reading the candles from the oldest such forecast's origin on); how many were scored."""
    entries = store.logged_forecasts(exchange, symbol, timeframe, model)
    step, latest = timeframe_delta(timeframe), store.latest_timestamp(exchange, symbol, timeframe)
    pending = [e for e in entries if e["outcome"] is None and latest is not None
               and e["origin"] + step * (len(e["forecast"]["upside"]) - 1) <= latest]  # its last candle is stored
    if not pending:
        return 0
    rows = int((latest - min(e["origin"] for e in pending)) / step) + 1
    candles = store.load(exchange, symbol, timeframe, rows).set_index("timestamps")["close"]
    done = 0
    for entry in pending:
        hours = pd.DatetimeIndex([entry["origin"] + step * h for h in range(len(entry["forecast"]["upside"]))])
        if hours.isin(candles.index).all():
            returns = np.log(candles.loc[hours].to_numpy() / entry["forecast"]["last_close"]).tolist()
            store.set_outcome(entry["id"], {"returns": returns})
            done += 1
    return done


def scored(store: CandleStore, exchange: str, symbol: str, timeframe: str, model: str) -> list[dict]:
    """The market's logged forecasts by the model that have an outcome (see `score_closed`), oldest first."""
    return [e for e in store.logged_forecasts(exchange, symbol, timeframe, model) if e["outcome"] is not None]


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
    """Summarise every scored forecast of the market by the model (it writes nothing: `score_closed` first)."""
    done = scored(store, exchange, symbol, timeframe, model)
    logged = len(store.logged_forecasts(exchange, symbol, timeframe, model))
    if not done:
        return TrackRecord(logged, 0, {level_key(level): None for level in LEVELS}, None, None)
    prob = np.concatenate([e["forecast"]["upside"] for e in done])
    y = np.concatenate([e["outcome"]["returns"] for e in done])
    inside = {key: np.concatenate([(np.array(e["forecast"]["bands"][key][0]) <= e["outcome"]["returns"])
                                   & (np.array(e["outcome"]["returns"]) <= np.array(e["forecast"]["bands"][key][1]))
                                   for e in done]) for key in done[0]["forecast"]["bands"]}
    return TrackRecord(logged, len(done), {key: float(hits.mean()) for key, hits in inside.items()},
                       float(brier(prob, y > 0).mean()), float(hit_rate(prob, y > 0)))
