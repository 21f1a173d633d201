"""The forecast answer, defined once: what `python -m kronos forecast` prints and the HTTP API's forecast routes
return. `kronos.engine.forecast.Forecast.answer` builds it; its `data` block comes from
`kronos.data.candles.Candles.describe`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.settings import ForecastSettings


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


UNANSWERED = ("seed", "hour_idx")  # settings an answer states once, beside its `settings`


def _unanswered(schema: dict[str, Any]) -> None:
    """The answers' schema of UsedSettings: without the fields they leave out."""
    for name in UNANSWERED:
        schema["properties"].pop(name, None)


class UsedSettings(ForecastSettings):
    """The settings a forecast ran with, as the engine reports them: the sampling settings (lookback as used: at most
    the candles available; the seed given or drawn), the model's context and, for more paths of a kept forecast, the
    index of its first path. The engine makes it from values its own checks passed (`reported`), which may go past
    the front ends' ranges (more paths, a longer horizon); answers come from the front ends, within them.

    As an answer's `settings` (model_dump, JSON) it leaves out the seed and hour_idx, the answer's own, and a
    first_path of 0."""

    model_config = ConfigDict(json_schema_extra=_unanswered)

    max_context: int = Field(description="the model's context length, in candles")
    first_path: int = Field(0, ge=0, description="the index of the first of these paths among its seed's paths")

    @classmethod
    def reported(cls, **values: Any) -> UsedSettings:
        """The engine's report of checked values, unchecked here (its limits are not the front ends')."""
        return cls.model_construct(**values)

    @model_serializer(mode="wrap")
    def _as_answered(self, handler: SerializerFunctionWrapHandler):  # unannotated: the schema stays the fields'
        values = handler(self)
        for name in (*UNANSWERED, *(() if self.first_path else ("first_path",))):
            values.pop(name, None)
        return values


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
