"""What callers may rely on of "something that forecasts": a Forecaster, or a Batcher running one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import pandas as pd

from kronos.engine.forecast import Forecast
from kronos.settings import FORECAST_DEFAULTS

Progress = Callable[[int, int], None]  # progress(step, total), called after every generated step


@runtime_checkable
class ForecastSource(Protocol):
    """A loaded model's forecasts: `forecast`, `forecast_many`, their argument check, and the model's identity."""

    @property
    def name(self) -> str:
        """The model's name (a preset, hub id or checkpoint directory)."""

    @property
    def max_context(self) -> int:
        """The predictor's window, in candles."""

    @property
    def fingerprint(self) -> str:
        """A short hash of the weights: the identity results are stored under."""

    def check_arguments(self, horizon: int, samples: int, temperature: float, top_p: float, top_k: int,
                        seeds: Sequence[int | None] = ()) -> None:
        """Raise InvalidInputError naming each bad sampling argument and its allowed range."""

    def forecast(self, history: pd.DataFrame, *, horizon: int = FORECAST_DEFAULTS.horizon,
                 samples: int = FORECAST_DEFAULTS.samples, temperature: float = FORECAST_DEFAULTS.temperature,
                 top_p: float = FORECAST_DEFAULTS.top_p, top_k: int = FORECAST_DEFAULTS.top_k,
                 lookback: int | None = None, seed: int | None = None, progress: Progress | None = None) -> Forecast:
        """`samples` paths of `horizon` future candles after `history` (see Forecaster.forecast)."""

    def forecast_many(self, histories: Sequence[pd.DataFrame], *, horizon: int = FORECAST_DEFAULTS.horizon,
                      samples: int | Sequence[int] = FORECAST_DEFAULTS.samples,
                      temperature: float = FORECAST_DEFAULTS.temperature, top_p: float = FORECAST_DEFAULTS.top_p,
                      top_k: int = FORECAST_DEFAULTS.top_k, lookback: int | None = None,
                      seeds: Sequence[int | None] | None = None, progress: Progress | None = None,
                      first_path: int = 0) -> list[Forecast]:
        """`forecast` of several histories with the same settings, one seed (and optionally a sample count) each;
        with `first_path` F, paths F .. F + samples - 1 of each seed's (how a kept forecast gets more paths)."""
