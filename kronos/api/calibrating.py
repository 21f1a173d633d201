"""`calibrate=true` on the HTTP API: the calibration runs as a background job of the app's registry
(kronos.serving.jobs: one computing
at a time, the newest first, in fair turns, its forecasts yielding to plain ones), shared by every request with the
same data and settings. A request waits for it at most `calibration_wait` seconds (ServerSettings): then it answers
with the calibrated block (`quick`, the default: the newest usable record, provisional at first; `full`: the full
record), else 202 with Retry-After and Location (the same request) and a CalibrationPending body. Each request holds
a lease on the job that lasts HOLD_S seconds past its wait: a client that stops asking lets it lapse, and a job
nobody holds a lease on any more is cancelled. The app also starts the default market's calibration at start-up
(`warm_start`) when the store holds its candles, so that the first request usually finds it ready."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Literal

from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.engine import ForecastSource, Progress
from kronos.engine.forecast import Forecast
from kronos.errors import KronosError, StoreUnavailableError
from kronos.evaluation.combined import calibration_rows
from kronos.flows import calibrated, forecast_candles
from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.schemas.service import CalibrationPending
from kronos.serving.jobs import Job, Jobs
from kronos.serving.pieces import Yielding
from kronos.settings import FORECAST_DEFAULTS, ForecastSettings, MarketChoice
from kronos.views.texts import fingerprint

RETRY_AFTER_S = 2  # a 202's Retry-After: the next request waits calibration_wait again, so soon is fine
HOLD_S = 30.0  # how long past its wait a request's lease on the calibration lasts
POLL_S = 0.05
Choice = Literal["quick", "full"]
log = logging.getLogger("kronos.api")


class CalibrationPendingError(Exception):
    """The calibration did not reach what the request asked for within its wait: answered 202 (`body`)."""

    def __init__(self, body: CalibrationPending):
        super().__init__(body.detail)
        self.body = body


def calibration_key(forecaster: ForecastSource, candles: Candles, settings: ForecastSettings) -> Hashable:
    """What a calibrated block depends on: the weights, the candles (where from, their contents), the settings."""
    return ("calibration", forecaster.fingerprint, candles.source, candles.exchange, candles.symbol,
            candles.timeframe, fingerprint(candles.frame), settings)


def start_calibration(jobs: Jobs, forecaster: ForecastSource, candles: Candles, forecast: Forecast,
                      settings: ForecastSettings, store: CandleStore | None, waiter: Hashable | None,
                      hold_s: float | None = None) -> Job[Calibrated | Unavailable]:
    """The calibration of `forecast` (of `candles` with `settings`) as a job of `jobs`, joined when there is one;
    `waiter` leases it for `hold_s` seconds (None: a warm start, kept whoever waits)."""
    def work(progress: Progress, publish: Callable[[Calibrated], None]) -> Calibrated | Unavailable:
        return calibrated(Yielding(forecaster), candles, forecast, store, settings.hour_idx, progress,
                          publish=publish)

    return jobs.start(calibration_key(forecaster, candles, settings), work, waiter, hold_s)


def await_calibration(job: Job[Calibrated | Unavailable], choice: Choice, wait_s: float, location: str,
                      gone: Callable[[], bool] = lambda: False) -> Calibrated | Unavailable:
    """The block the request asked for once the job has it, within `wait_s` seconds; CalibrationPendingError (202)
    after that, the job's error if it failed."""
    deadline = time.monotonic() + wait_s
    while not job.done and not (choice == "quick" and job.latest is not None) and not gone():
        left = deadline - time.monotonic()
        if left <= 0:
            raise CalibrationPendingError(pending(job, location))
        job.wait(min(POLL_S, left))
    if job.done:
        return job.result()
    if job.latest is None:  # the client went away: nobody reads this
        raise CalibrationPendingError(pending(job, location))
    return job.latest


def pending(job: Job[Calibrated | Unavailable], location: str) -> CalibrationPending:
    """The 202 body of a calibration still running."""
    latest = job.latest
    origins = latest.record.origins if isinstance(latest, Calibrated) else 0
    usable = (f"its newest usable record holds {origins} origins (calibration=quick answers with it)" if origins
              else "no record is usable yet")
    return CalibrationPending(status="calibrating", progress=round(job.fraction, 4), origins=origins,
                              retry_after=RETRY_AFTER_S, location=location,
                              detail=f"the calibration is running ({job.fraction:.0%} of its missing origins "
                                     f"forecast; {usable}): ask again, the same request, after {RETRY_AFTER_S} s")


def warm_start(jobs: Jobs, forecaster: ForecastSource, candles_of: Callable[[MarketChoice, int], Candles],
               store: CandleStore, market: MarketChoice = MarketChoice()) -> Job | None:
    """When the store holds `market`'s candles, queue a job that loads them as a request would (`candles_of`),
    forecasts them at the default settings and starts their calibration, kept whoever comes; else None."""
    try:
        if store.latest_timestamp(market.exchange, market.symbol, market.timeframe) is None:
            return None
    except StoreUnavailableError:
        return None
    settings = FORECAST_DEFAULTS

    def work(progress: Progress, publish: Callable[[object], None]) -> None:
        try:
            candles = candles_of(market, calibration_rows(settings.lookback, settings.horizon))
            forecast = forecast_candles(forecaster, candles, settings)
        except KronosError as error:  # nothing to warm: the first request will say why
            log.warning("warm start skipped: %s", error.public())
            return
        start_calibration(jobs, forecaster, candles, forecast, settings, store, None)

    return jobs.start(("warm start", market, forecaster.fingerprint), work)
