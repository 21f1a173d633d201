"""A scan's combined forecasts (issue 17), market by market: each from the backtest of the market's recent history
(kronos.evaluation.combined.first_sight), its origins taken from the store when they are all there, else run.

- Inline (`ScanCalibration`, the default): only the markets whose origins are all stored are combined (scoring
  only, about a second each); the others keep their raw figures, noted, and are listed in `pending`.
- Within the call (`run=True`, `python -m kronos scan --calibrate`, GET /scan?calibrate=true): the missing
  backtests run market by market (tens of seconds each the first time), within `budget` generated candle steps
  (origins x paths x horizon, each market counted by the origins it lacks); the markets beyond it stay pending.
- In the background (`BACKGROUND`, the Markets page): pending markets queue on one thread shared by every session of
  the process, run one at a time; the page polls their results.
The forecaster may be a RayForecaster (kronos.distributed): the backtests' origins then run on the cluster's actors,
each with its own seed, and come back to be written to this store, the same to the bit as here.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.engine import ForecastSource, Progress
from kronos.errors import KronosError
from kronos.evaluation.backtest import KEPT_EVERY, Backtest
from kronos.evaluation.combined import ORIGINS, calibrated_block, first_sight
from kronos.forecast import Forecast
from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.schemas.markets import Combined

logger = logging.getLogger("kronos.calibrations")
KEPT_RESULTS = 2000  # the background's results kept, the oldest dropped first
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


Job = Callable[[Progress], "Combined | str"]


class Background:
    """First-sight backtests queued by any session of this process, run one at a time on one daemon thread; each
    result (a market's combined figures, or why it has none) kept under its key."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queue: OrderedDict[tuple, Job] = OrderedDict()
        self._results: OrderedDict[tuple, Combined | str] = OrderedDict()
        self._running: tuple | None = None
        self._fraction = 0.0
        self._thread: threading.Thread | None = None

    def submit(self, key: tuple, job: Job) -> None:
        """Queue the job unless its key is queued, running or done."""
        with self._lock:
            if key in self._queue or key in self._results or key == self._running:
                return
            self._queue[key] = job
            if self._thread is None:  # the thread clears this under the lock as it ends
                self._thread = threading.Thread(target=self._serve, name="kronos-first-sight", daemon=True)
                self._thread.start()

    def result(self, key: tuple) -> Combined | str | None:
        """The job's result, or None while it is queued or running (or was never submitted)."""
        with self._lock:
            return self._results.get(key)

    def state(self, keys: Sequence[tuple]) -> tuple[tuple | None, float, int]:
        """Among `keys`: the one running and its progress (0-1), and how many are still queued."""
        with self._lock:
            running = self._running if self._running in keys else None
            return running, self._fraction if running else 0.0, sum(k in self._queue for k in keys)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty (tests, benchmarks); False on timeout."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _serve(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running, self._thread = None, None
                    return
                self._running, job = self._queue.popitem(last=False)
                self._fraction = 0.0
            try:
                result = job(self._progress)
            except KronosError as error:
                result = f"no combined forecast: {error.public()}"
            except Exception:  # the thread serves every session: one market's failure must not stop it
                logger.exception("first-sight backtest failed")
                result = "no combined forecast: its backtest failed (see the server's log)"
            with self._lock:
                self._results[self._running] = result
                while len(self._results) > KEPT_RESULTS:
                    self._results.popitem(last=False)

    def _progress(self, done: int, total: int) -> None:
        self._fraction = done / total if total else 0.0


BACKGROUND = Background()
