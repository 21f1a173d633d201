"""A scan's combined forecasts (issue 17), market by market: each from the backtest of the market's recent history
(kronos.evaluation.combined.first_sight), its origins taken from the store when they are all there, else run.

- Inline (`ScanCalibration`, the default): only the markets whose origins are all stored are combined (scoring
  only, about a second each); the others keep their raw figures, noted, and are listed in `pending`.
- Within the call (`run=True`, `python -m kronos scan --calibrate`, GET /scan?calibrate=true): the missing
  backtests run market by market (tens of seconds each the first time), within `budget` generated candle steps
  (origins x paths x horizon, each market counted by the origins it lacks); the markets beyond it stay pending.
- In the background (the Markets page): the pending markets' `market_combined` queue as jobs of the dashboard's
  process-wide registry (kronos.jobs, shared with the other pages' calibrations), run one at a time; the page polls
  them.
The forecaster may be a RayForecaster (kronos.distributed): the backtests' origins then run on the cluster's actors,
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
from kronos.evaluation.backtest import KEPT_EVERY, Backtest
from kronos.evaluation.combined import ORIGINS, calibrated_block, first_sight
from kronos.forecast import Forecast
from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.schemas.markets import Combined

WAITING = "not calibrated yet: its first-sight backtest has not run"


class NotStored(Exception):
    """A backtest would have to forecast: not every origin is in the store (`histories`: its first batch of them,
    all the missing ones when fewer than KEPT_EVERY)."""

    def __init__(self, histories: int):
        super().__init__(f"{histories} forecasts needed")
        self.histories = histories


class StoredOnly:
    """A forecaster's identity that forecasts nothing: a backtest run with it succeeds only on stored origins."""

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
    """The market's combined figures at the 1-based hour, from the backtest of its recent history (stored origins
    reused, the others forecast by `forecaster`), or why it can have none (e.g. too few candles)."""
    result = first_sight(forecaster, candles.frame, forecast, store, progress, origins=origins)
    if isinstance(result, Unavailable):
        return f"no combined forecast: {result.unavailable}"
    return combined_figures(calibrated_block(result, hour, 0, f"{candles.symbol} {candles.timeframe}"), result, hour,
                            forecast.last_close)


def combined_figures(block: Calibrated, result: Backtest, hour: int, close: float) -> Combined:
    """A ranking row's figures at the hour: the combined upside probability, median and 80% band as returns from the
    last close, its volatility amplification probability, the calibrated model's CRPS skill against the market's best
    baseline (mean CRPS over the hours on the backtest's origins) and the pool's weight for it."""
    h, band = hour - 1, block.bands["80"]
    skill = float(result.skill_best["model_calibrated"]["crps"][h])
    return Combined(upside_probability=block.upside_probability_all_hours[h],
                    expected_return=block.median[h] / close - 1, return_low=band.low[h] / close - 1,
                    return_high=band.high[h] / close - 1,
                    volatility_amplification_probability=block.volatility_amplification_probability,
                    crps_skill=skill if np.isfinite(skill) else None,
                    model_weight=block.weights["model_calibrated"][h])


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
    """A scan's `combine` hook (kronos.markets.scan): stored calibrations inline; with `run`, the missing backtests
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
            return market_combined(StoredOnly(self.forecaster), candles, forecast, self.store, hour,
                                   origins=self.origins)
        except NotStored as missing:
            origins = missing.histories if missing.histories < KEPT_EVERY else self.origins
        cost = origins * forecast.samples * forecast.horizon
        if self.run and (self.budget is None or cost <= self.budget):
            self.budget = None if self.budget is None else self.budget - cost
            tell = None if self.tell is None else (lambda done, total: self.tell(candles.symbol, done, total))
            return market_combined(self.forecaster, candles, forecast, self.store, hour, tell, self.origins)
        self.pending.append(Pending(candles, forecast, hour))
        return self.waiting
