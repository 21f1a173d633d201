"""The evaluation routes: POST /backtest (a walk-forward backtest of your candles) and GET /track_record (how the
logged live forecasts fared)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from kronos.api.deps import ForecasterDep, RuntimeDep
from kronos.api.errors import MAX_BODY_BYTES, responses
from kronos.api.requests import BUDGET, MAX_CUSTOM_ROWS, BacktestBody, MarketOnly
from kronos.evaluation.backtest import check_backtest, run_backtest
from kronos.evaluation.record import track_record
from kronos.schemas.forecast import DataBlock
from kronos.schemas.service import TrackRecordAnswer
from kronos.summary import fingerprint

router = APIRouter()


class BacktestAnswer(BaseModel):
    """A backtest: per forecaster (model, model_calibrated, random_walk, bootstrap, trailing_frequency) the scores
    per hour ahead (crps, brier_upside, coverage {"50", "80", "95"}, ...), skill against the random walk, and `data`.

    Here until kronos.schemas.backtest defines the backtest's shape once."""

    settings: dict[str, Any]
    model: str
    origins: int
    origin_times: list[str]
    reused: int
    baseline_window: int
    calibrated_origins: list[int]
    scores: dict[str, dict[str, Any]]
    skill: dict[str, dict[str, list[float | None]]]
    latest: dict[str, Any] | None = None
    data: DataBlock


@router.post("/backtest", summary="Walk-forward backtest of your candles: the model, calibrated, against baselines",
             description=f"Candles as for /predict_custom (at most {MAX_CUSTOM_ROWS:,}, {MAX_BODY_BYTES // 2**20} "
                         f"MiB). The work is bounded: {BUDGET}. Settings that the candles cannot hold (too few rows "
                         "for lookback + horizon, a horizon not shorter than the lookback) are answered 422 at once.",
             responses=responses(400, 413, 422, 429, 503))
def backtest(body: BacktestBody, runtime: RuntimeDep, forecaster: ForecasterDep) -> BacktestAnswer:
    settings, candles = body.backtest_settings(), body.candles()
    check_backtest(settings, len(candles.frame))
    key = ("backtest", fingerprint(candles.frame), settings, body.calibrate)
    result = runtime.service.run(key, lambda: run_backtest(forecaster, candles.frame, settings,
                                                           store=runtime.market.store, latest=body.calibrate))
    return BacktestAnswer(**{**result.to_dict(), "model": runtime.model_name}, data=candles.describe())


@router.get("/track_record", summary="The record of the live forecasts of a market by the loaded model",
            responses=responses(422, 503))
def get_track_record(query: Annotated[MarketOnly, Query()], runtime: RuntimeDep,
                     forecaster: ForecasterDep) -> TrackRecordAnswer:
    market = query.market()
    found = track_record(runtime.market.store, market.exchange, market.symbol, market.timeframe,
                         forecaster.fingerprint)
    return TrackRecordAnswer(exchange=market.exchange, symbol=market.symbol, timeframe=market.timeframe,
                             model=runtime.model_name, **found.to_dict())
