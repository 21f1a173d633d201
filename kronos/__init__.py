"""Kronos probabilistic forecasting: weight-compatible models, a cached Monte Carlo engine, data sources.

    from kronos import Forecaster
    forecaster = Forecaster.from_pretrained("mini")
    forecast = forecaster.forecast(history, horizon=24, samples=30, seed=1)
    forecast.paths            # (samples, horizon, 6): open, high, low, close, volume, amount
    forecast.upside_probability()

Importing the package loads nothing heavy: the names below are imported when first used, so that a
process can set itself up (kronos.process) before torch loads.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Forecaster": "kronos.engine",
    "Forecast": "kronos.engine.forecast",
    "KronosError": "kronos.errors",
    "InvalidInputError": "kronos.errors",
    "WeightsUnavailableError": "kronos.errors",
    "DataUnavailableError": "kronos.errors",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kronos' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
