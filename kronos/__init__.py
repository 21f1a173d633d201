"""Kronos probabilistic forecasting: weight-compatible models, a cached Monte Carlo engine, data sources.

    from kronos import Forecaster
    forecaster = Forecaster.from_pretrained("mini")
    forecast = forecaster.forecast(history, horizon=24, samples=30, seed=1)
    forecast.paths            # (samples, horizon, 6): open, high, low, close, volume, amount
    forecast.upside_probability()
"""

import os

# Idle OpenMP threads sleep instead of spinning: with the spin default, a forecast slows down
# ten-fold as soon as another process or a concurrent forecast keeps the cores busy. Takes effect
# only when kronos is imported before torch; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from kronos.engine import Forecaster  # noqa: E402
from kronos.errors import DataUnavailableError, InvalidInputError, KronosError, WeightsUnavailableError  # noqa: E402
from kronos.forecast import Forecast  # noqa: E402

__all__ = ["Forecaster", "Forecast", "KronosError", "InvalidInputError", "WeightsUnavailableError",
           "DataUnavailableError"]
