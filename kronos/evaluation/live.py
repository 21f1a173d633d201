"""A live forecast calibrated on its forecast log (kronos.evaluation.record), with the backtest's own functions:
the probability map (kronos.evaluation.probability) and conformal bands (kronos.evaluation.calibration).

A logged forecast informs a new one only if its last candle closed before the new one's origin. Per hour, with at
least `min_count` such forecasts the upside probability is mapped and the bands get their conformal margins; else the
calibrated values are None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kronos.data.store import CandleStore
from kronos.engine.forecast import Forecast
from kronos.evaluation.calibration import MIN_COUNT, conformal_band
from kronos.evaluation.probability import DEFAULT_MAP, recalibrate
from kronos.evaluation.record import forecast_bands, scored
from kronos.timeframes import timeframe_delta


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
    """The forecast calibrated on the scored logged forecasts whose outcomes were known at its origin (per hour: the
    probability map, conformal bands); raw values (and None) for hours with fewer than `min_count` of them."""
    step = timeframe_delta(timeframe)
    past = [e for e in scored(store, exchange, symbol, timeframe, model)
            if e["origin"] + step * len(e["outcome"]["returns"]) <= forecast.timestamps[0]]
    raw_prob, raw_bands = forecast.upside_probability(), forecast_bands(forecast)
    eps = 1 / (2 * (forecast.samples + 1))
    upside, bands, known = [], {key: [[], []] for key in raw_bands}, []
    for h in range(forecast.horizon):
        rows = [e for e in past if len(e["outcome"]["returns"]) > h]
        known.append(len(rows))
        enough = len(rows) >= min_count
        y = np.array([e["outcome"]["returns"][h] for e in rows])
        prob = np.array([e["forecast"]["upside"][h] for e in rows] + [raw_prob[h]])  # the past, then the new one
        mapped = recalibrate(prob, np.append(y > 0, False), np.append(np.zeros(len(rows), int), len(rows)),
                             np.arange(len(prob)), DEFAULT_MAP, min_count, eps)[0][-1]
        upside.append(float(mapped) if enough else None)
        for key, (lo, hi) in raw_bands.items():
            if enough:
                past_lo, past_hi = (np.array([e["forecast"]["bands"][key][side][h] for e in rows]) for side in (0, 1))
                new = conformal_band(lo[0, h], hi[0, h], past_lo, past_hi, y, float(key) / 100)
            bands[key][0].append(float(new[0]) if enough else None)
            bands[key][1].append(float(new[1]) if enough else None)
    return CalibratedView(forecast.last_close, raw_prob.tolist(), upside,
                          {k: [lo[0].tolist(), hi[0].tolist()] for k, (lo, hi) in raw_bands.items()}, bands, known)
