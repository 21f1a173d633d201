"""The HTTP API's own answers, defined once: the error body, health, and a market's track record."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """Every error's body: one sentence, and each problem found (the validator lists them all)."""

    error: str
    problems: list[str]


class Health(BaseModel):
    """The loaded model, how busy the pool is, and whether the local store can be used (`store`: "ok" or what is
    wrong; forecasts of exchange or custom data work without it). `store` is as of the request: the file's header
    read and a write tried then; its full integrity check runs at most once a minute, and `store_checked` (UTC) says
    when it last ran, whatever it found."""

    status: Literal["ok"]
    model: str
    max_context: int
    workers: int
    capacity: int
    pending: int
    store: str
    store_checked: datetime | None = None


class TrackRecordAnswer(BaseModel):
    """How the logged live forecasts of a market by the loaded model fared, once their candles closed."""

    exchange: str
    symbol: str
    timeframe: str
    model: str
    logged: int
    scored: int
    coverage: dict[str, float | None]
    brier_upside: float | None
    brier_always_half: float
    hit_rate: float | None


class CalibrationPending(BaseModel):
    """202 to a `calibrate=true` request whose calibration is still running (a background job): ask again, the
    same request, after `retry_after` seconds (the Retry-After header; `location`, the Location header, is that
    request). `origins`: the backtest origins of its newest usable, provisional record (0 while none is usable:
    `calibration=quick` answers 200 with it from the first one on); `progress`: the share of the record's missing
    origins forecast so far."""

    status: Literal["calibrating"]
    detail: str
    progress: float
    origins: int
    retry_after: int
    location: str
