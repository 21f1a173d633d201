"""A scan's combined forecasts, market by market: each from the record of the market's recent history
(kronos.evaluation.combined.first_sight), answered from the store when it lacks no origin, else fitted.

- Inline (`ScanCalibration`, the default): only the markets whose records lack no origin's paths are combined
  (milliseconds of evaluation when the store keeps their fitted records); the others keep their raw figures, noted,
  and are listed in `pending`.
- Within the call (`run=True`, `python -m kronos scan --calibrate`, GET /scan?calibrate=true): the missing
  origins are forecast market by market (tens of seconds each the first time), within `budget` generated candle
  steps (origins x paths x horizon, each market counted by the origins it lacks); the markets beyond it stay
  pending.
- In the background (the Markets page): the pending markets' `market_combined` queue as jobs of the dashboard's
  process-wide registry (kronos.serving.jobs, shared with the other pages' calibrations), run one at a time; the page
  polls
  them.
The forecaster may be a RayForecaster (kronos.serving.cluster): the backtests' origins then run on the cluster's actors,
each with its own seed, and come back to be written to this store, the same to the bit as here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.engine import ForecastSource, Progress
from kronos.engine.forecast import Forecast
from kronos.evaluation.anchored import RecordFit, issue_latest, lacking, record_sampling
from kronos.evaluation.combined import ORIGINS, calibrated_block, first_sight
from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.schemas.markets import Combined

WAITING = "not calibrated yet: its first-sight backtest has not run"


class NotStored(Exception):
    """A record would have to forecast: not every origin is in the store (`histories`: those asked for at once)."""

    def __init__(self, histories: int):
        super().__init__(f"{histories} forecasts needed")
        self.histories = histories


class StoredOnly:
    """A forecaster's identity that forecasts nothing: a record fitted with it succeeds only on stored origins."""

    def __init__(self, forecaster: ForecastSource):
        self._forecaster = forecaster
        self.name, self.max_context, self.fingerprint = forecaster.name, forecaster.max_context, forecaster.fingerprint

    def check_arguments(self, *arguments: Any, **named: Any) -> None:
        self._forecaster.check_arguments(*arguments, **named)

    def forecast(self, history: Any, **arguments: Any) -> Forecast:
        raise NotStored(1)

    def forecast_many(self, histories: Sequence[Any], **arguments: Any) -> list[Forecast]:
        raise NotStored(len(histories))


def market_combined(forecaster: ForecastSource, candles: Candles, forecast: Forecast, store: CandleStore | None,
                    hour: int, progress: Progress | None = None, origins: int = ORIGINS) -> Combined | str:
    """The market's combined figures at the 1-based hour, from the record of its recent history (what the store keeps
    reused, the missing origins forecast by `forecaster`), or why it can have none (e.g. too few candles)."""
    result = first_sight(forecaster, candles.frame, forecast, store, progress, origins=origins)
    if isinstance(result, Unavailable):
        return f"no combined forecast: {result.unavailable}"
    block = calibrated_block(result, issue_latest(result, forecast), hour, 0, f"{candles.symbol} {candles.timeframe}")
    return combined_figures(block, result, hour, forecast.last_close)


def combined_figures(block: Calibrated, record: RecordFit, hour: int, close: float) -> Combined:
    """A ranking row's figures at the hour: the combined upside probability, median and 80% band as returns from the
    last close, its volatility amplification probability, the calibrated model's CRPS skill against the market's best
    baseline (mean CRPS over the hours on the record's origins), the pool's weight for it, and the record's size."""
    h, band = hour - 1, block.bands["80"]
    skill = float(record.skill("model_calibrated", record.best_baseline)[h])
    return Combined(upside_probability=block.upside_probability_all_hours[h],
                    expected_return=block.median[h] / close - 1, return_low=band.low[h] / close - 1,
                    return_high=band.high[h] / close - 1,
                    volatility_amplification_probability=block.volatility_amplification_probability,
                    crps_skill=skill if np.isfinite(skill) else None,
                    model_weight=block.weights["model_calibrated"][h], record_origins=record.origins,
                    provisional=record.provisional)


@dataclass(frozen=True, eq=False)
class Pending:
    """A market whose combined forecast waits for its first-sight backtest."""

    candles: Candles
    forecast: Forecast
    hour: int

    def key(self, fingerprint: str) -> tuple:
        """What its result depends on: the weights, the market, the forecast's data end and settings, the hour."""
        c, f = self.candles, self.forecast
        return (fingerprint, c.exchange, c.symbol, c.timeframe, f.last_timestamp.isoformat(), f.horizon, f.samples,
                tuple(sorted(f.settings.items())), self.hour)


@dataclass(eq=False)
class ScanCalibration:
    """A scan's `combine` hook (kronos.scan.ranking.scan): stored calibrations inline; with `run`, the missing backtests
    within `budget` steps (None: no limit), reporting `tell(symbol, done, total)`; the rest noted `waiting`."""

    forecaster: ForecastSource
    store: CandleStore | None
    run: bool = False
    budget: int | None = None
    tell: Callable[[str, int, int], None] | None = None
    waiting: str = WAITING
    origins: int = ORIGINS
    pending: list[Pending] = field(default_factory=list)

    def __call__(self, candles: Candles, forecast: Forecast, hour: int) -> Combined | str:
        try:
            origins = lacking(self.forecaster, candles.frame, record_sampling(forecast), self.store,
                              origins=self.origins)
            if origins == 0:
                return market_combined(StoredOnly(self.forecaster), candles, forecast, self.store, hour,
                                       origins=self.origins)
        except NotStored:  # an origin's paths went (evicted) meanwhile
            origins = self.origins
        cost = origins * forecast.samples * forecast.horizon
        if self.run and (self.budget is None or cost <= self.budget):
            self.budget = None if self.budget is None else self.budget - cost
            tell = None if self.tell is None else (lambda done, total: self.tell(candles.symbol, done, total))
            return market_combined(self.forecaster, candles, forecast, self.store, hour, tell, self.origins)
        self.pending.append(Pending(candles, forecast, hour))
        return self.waiting
