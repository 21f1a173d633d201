"""The flows every front end shares: candles + settings -> forecast -> answer, a backtest's answer, the track record
of the live forecasts. The CLI, the HTTP API and the dashboard parse their input, call these, and print or show
what comes back."""

from __future__ import annotations

import logging
from collections.abc import Callable

from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.engine import ForecastSource, Progress
from kronos.engine.forecast import Forecast
from kronos.errors import StoreUnavailableError
from kronos.evaluation import record
from kronos.evaluation.backtest import Backtest
from kronos.evaluation.combined import combined_forecast
from kronos.evaluation.record import MARKET_SOURCES, TrackRecord, log_forecast
from kronos.schemas.backtest import BacktestAnswer
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


def backtest_answer(result: Backtest, candles: Candles, model: str | None = None) -> BacktestAnswer:
    """The answer of a backtest of the candles, for the CLI and the API: its result and `data`, where the candles
    came from; `model` names the weights in place of the result's own name (the API's names no path)."""
    values = dict(result.to_schema())  # the fields as they are: typed models stay typed
    return BacktestAnswer(**values | ({} if model is None else {"model": model}), data=candles.describe())


def track_record(store: CandleStore, exchange: str, symbol: str, timeframe: str, model: str) -> TrackRecord:
    """The record of the market's live forecasts by the model (its weights' fingerprint), after writing the outcome
    of each whose candles have closed since it was last looked at."""
    record.score_closed(store, exchange, symbol, timeframe, model)
    return record.track_record(store, exchange, symbol, timeframe, model)
