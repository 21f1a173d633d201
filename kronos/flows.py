"""The flows every front end shares: candles + settings -> forecast -> answer. The CLI, the HTTP API and the
dashboard parse their input, call these, and print or show what comes back."""

from __future__ import annotations

from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.engine import ForecastSource, Progress
from kronos.evaluation.record import log_forecast
from kronos.forecast import Forecast
from kronos.settings import ForecastSettings


def forecast_candles(forecaster: ForecastSource, candles: Candles, settings: ForecastSettings,
                     progress: Progress | None = None, log: CandleStore | None = None) -> Forecast:
    """Forecast the candles with the settings, the lookback cut to the rows there are (the forecast's
    `settings["lookback"]` says how many were used); a forecast of market candles is recorded in `log`'s forecast
    log, to be scored once its candles close."""
    forecast = forecaster.forecast(candles.frame, **settings.engine_arguments(rows=len(candles.frame)),
                                   progress=progress)
    if log is not None:
        log_forecast(log, candles, forecast, forecaster.fingerprint)
    return forecast


def answer(forecast: Forecast, candles: Candles, hour_idx: int | None = None, all_samples: bool = False) -> dict:
    """The JSON answer of the CLI and the API: the forecast's summary plus `data`, where the candles came from."""
    return {**forecast.to_dict(hour_idx=hour_idx, all_samples=all_samples), "data": candles.describe()}
