"""The forecast answer, defined once: what `python -m kronos forecast` prints and the HTTP API's forecast routes
return. `kronos.engine.forecast.Forecast.answer` builds it; its `data` block comes from
`kronos.data.candles.Candles.describe`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from kronos.schemas.calibrated import Calibrated, Unavailable


class HourProbability(BaseModel):
    """The upside probability at one hour ahead."""

    hour: int = Field(description="hours ahead, 1-based")
    timestamp: str = Field(description="open time of the forecast candle, ISO 8601")
    probability: float = Field(description="share of paths whose close is above the last close")


class Row(BaseModel):
    """One candle's six values (null where not finite)."""

    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: float | None
    amount: float | None


class HourSummary(BaseModel):
    """The mean, minimum and maximum over paths of one forecast candle."""

    hour: int = Field(description="hours ahead, 1-based")
    timestamp: str = Field(description="open time of the forecast candle, ISO 8601")
    mean: Row
    min: Row
    max: Row


class UsedSettings(BaseModel):
    """The settings the forecast ran with (lookback as used: at most the candles available)."""

    horizon: int
    samples: int
    temperature: float
    top_p: float
    top_k: int
    lookback: int
    max_context: int


class DataBlock(BaseModel):
    """Where the candles came from."""

    source: Literal["exchange", "store", "csv", "json"]
    exchange: str | None
    symbol: str
    timeframe: str
    rows: int
    as_of: str = Field(description="open time of the newest candle, ISO 8601")
    is_stale: bool
    amount_is_estimated: bool
    notes: list[str]


class ForecastAnswer(BaseModel):
    """A forecast's summary: upside probability at hour_idx and for every hour, volatility amplification, and the
    mean/min/max over paths per hour."""

    model: str = Field(description="the model: its hub id, or a local checkpoint's run name (never a path)")
    seed: int
    settings: UsedSettings
    last_timestamp: str = Field(description="open time of the last candle the model saw, ISO 8601")
    last_close: float
    hour_idx: int = Field(description="the hour upside_probability describes")
    upside_probability: float
    upside_probability_all_hours: list[HourProbability]
    volatility_amplification_probability: float | None = Field(
        description="share of paths more volatile over the horizon than the last `horizon` candles (null below 3)")
    predictions: list[HourSummary]
    data: DataBlock
    calibrated: Calibrated | Unavailable | None = Field(
        None, description="with calibrate=true: the combined forecast (Kronos calibrated and pooled with volatility "
                          "baselines by a backtest of this market's recent history), or why it is unavailable")


class ForecastWithPaths(ForecastAnswer):
    """As ForecastAnswer, plus every path: all_samples[column]["pred-1".."pred-N"] = values per hour."""

    all_samples: dict[str, dict[str, list[float | None]]]


class ForecastWithFigure(ForecastAnswer):
    """As ForecastAnswer, plus the fan chart as a Plotly figure (JSON)."""

    figure: dict[str, Any]
