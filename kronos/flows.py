"""The flows every front end shares: candles + settings -> forecast -> answer. The CLI, the HTTP API and the
dashboard parse their input, call these, and print or show what comes back."""

from __future__ import annotations

import logging
from collections.abc import Callable

from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.engine import ForecastSource, Progress
from kronos.errors import StoreUnavailableError
from kronos.evaluation.combined import combined_forecast
from kronos.evaluation.record import MARKET_SOURCES, log_forecast
from kronos.forecast import Forecast
from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.schemas.forecast import ForecastAnswer
from kronos.settings import ForecastSettings

logger = logging.getLogger("kronos.flows")


def forecast_candles(forecaster: ForecastSource, candles: Candles, settings: ForecastSettings,
                     progress: Progress | None = None, log: CandleStore | None = None) -> Forecast:
    """Forecast the candles with the settings, the lookback cut to the rows there are (the forecast's
    `settings["lookback"]` says how many were used); a forecast of market candles is recorded in `log`'s forecast
    log, to be scored once its candles close: best-effort, a store that cannot take it gives a logged warning."""
    arguments = settings.engine_arguments(rows=len(candles.frame))
    forecast = forecaster.forecast(candles.frame, **arguments, progress=progress)
    if log is not None:
        _logged(log, candles, forecast, forecaster.fingerprint)
    return forecast


def _logged(store: CandleStore, candles: Candles, forecast: Forecast, model: str) -> bool:
    """Log a forecast of market candles in the store's forecast log; False, with a logged warning, when the store
    cannot take it (the forecast stands)."""
    try:
        return log_forecast(store, candles, forecast, model)
    except StoreUnavailableError as error:
        logger.warning("warning: the forecast was not logged: %s", error)
        return False


def answer(forecast: Forecast, candles: Candles, hour_idx: int | None = None, all_samples: bool = False,
           calibration: Calibrated | Unavailable | None = None) -> ForecastAnswer:
    """The answer of the CLI and the API: the forecast's summary plus `data`, where the candles came from (a
    ForecastWithPaths with `all_samples`), and its `calibrated` block when one was made (`calibrated(...)`)."""
    summary = forecast.answer(candles.describe(), hour_idx=hour_idx, all_samples=all_samples)
    return summary if calibration is None else summary.model_copy(update={"calibrated": calibration})


def calibrated(forecaster: ForecastSource, candles: Candles, forecast: Forecast, store: CandleStore | None,
               hour_idx: int | None = None, progress: Progress | None = None, *,
               publish: Callable[[Calibrated], None] | None = None, quick: bool = False) -> Calibrated | Unavailable:
    """The forecast's `calibrated` block: the combined forecast, from the record of the candles' recent history
    (what it fitted kept in and reused from `store`), or why it is unavailable (e.g. too few rows). The record is
    fitted newest first: `publish` gets the block of each provisional record and of the final one; `quick` returns
    the first (its `record.provisional` says which)."""
    market = (candles.exchange, candles.symbol, candles.timeframe) if candles.source in MARKET_SOURCES else None
    return combined_forecast(forecaster, candles.frame, forecast, store, progress, market=market, hour_idx=hour_idx,
                             publish=publish, quick=quick)
