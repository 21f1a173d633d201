"""Kronos probabilistic forecasting: weight-compatible models, a cached Monte Carlo engine, data sources.

    from kronos import Forecaster
    forecaster = Forecaster.from_pretrained("mini")
    forecast = forecaster.forecast(history, horizon=24, samples=30, seed=1)
    forecast.paths            # (samples, horizon, 6): open, high, low, close, volume, amount
    forecast.upside_probability()
"""

from kronos.engine import Forecaster
from kronos.errors import DataUnavailableError, InvalidInputError, KronosError, WeightsUnavailableError
from kronos.forecast import Forecast

__all__ = ["Forecaster", "Forecast", "KronosError", "InvalidInputError", "WeightsUnavailableError",
           "DataUnavailableError"]
