"""The `calibrated` block of a forecast: the combined forecast (calibrated at first sight by the record of the
market's recent history, kronos.evaluation.anchored), or why it is unavailable.

Built by `kronos.evaluation.combined.combined_forecast(...).to_schema()`; the forecast answers of the API and CLI
and the dashboard pages carry this one model. Per-hour lists have H entries (hour h at index h - 1).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Band(BaseModel):
    """A central band of the close, in prices, per hour."""

    low: list[float]
    high: list[float]


class Record(BaseModel):
    """The record the calibration learnt from: backtest origins (`provisional` while the record, fitted newest first,
    holds fewer than its full `target`), scored live forecasts, the origins' span, and the combined forecast's CRPS
    skill against the random walk and upside Brier score, per hour."""

    origins: int
    target: int  # origins of the full record
    provisional: bool  # origins < target: the record is still growing, its figures will be refined
    live: int
    first: str
    last: str
    crps_skill: list[float | None]
    brier_upside: list[float | None]


class Calibrated(BaseModel):
    """The combined forecast per hour ahead: upside probability (at the chosen hour and every hour), volatility
    amplification probability, median close and 50/80/95% bands in prices, the pool's weights per component, the
    record, and a one-sentence summary of it."""

    model_config = ConfigDict(extra="forbid")

    upside_probability: float  # at the forecast's chosen hour
    upside_probability_all_hours: list[float]
    volatility_amplification_probability: float | None
    median: list[float]
    bands: dict[str, Band]  # "50", "80", "95"
    weights: dict[str, list[float]]  # component -> per hour
    pooled: list[bool]  # per hour: weights learnt from min_count known outcomes (else the default baseline alone)
    record: Record
    summary: str


class Unavailable(BaseModel):
    """Why the forecast could not be calibrated (e.g. how many rows it would need)."""

    model_config = ConfigDict(extra="forbid")

    unavailable: str
