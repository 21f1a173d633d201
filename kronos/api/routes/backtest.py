"""The evaluation routes: POST /backtest (a walk-forward backtest of your candles) and GET /track_record (how the
logged live forecasts fared)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kronos.api.deps import ForecasterDep, GoneDep, RuntimeDep
from kronos.api.errors import MAX_BODY_BYTES, responses
from kronos.api.requests import BUDGET, MAX_CUSTOM_ROWS, BacktestBody, MarketOnly
from kronos.evaluation.backtest import check_backtest, run_backtest
from kronos.evaluation.registry import forecasters
from kronos.flows import backtest_answer, track_record
from kronos.schemas.backtest import TRAILING, BacktestAnswer
from kronos.schemas.service import TrackRecordAnswer
from kronos.views.texts import fingerprint

router = APIRouter()


@router.post("/backtest", summary="Walk-forward backtest of your candles: the model, calibrated, against baselines",
             description=f"Candles as for /predict_custom (at most {MAX_CUSTOM_ROWS:,}, {MAX_BODY_BYTES // 2**20} "
                         f"MiB). The work is bounded: {BUDGET}. Settings that the candles cannot hold (too few rows "
                         "for lookback + horizon, a horizon not shorter than the lookback) are answered 422 at once.",
             responses=responses(400, 408, 413, 422, 429, 503))
def backtest(body: BacktestBody, runtime: RuntimeDep, forecaster: ForecasterDep, gone: GoneDep) -> BacktestAnswer:
    settings, candles = body.backtest_settings(), body.candles()
    check_backtest(settings, len(candles.frame))
    key = ("backtest", fingerprint(candles.frame), settings, body.calibrate)
    result = runtime.service.run(key, lambda: run_backtest(forecaster, candles.frame, settings,
                                                           store=runtime.market.store, latest=body.calibrate),
                                 cancel=gone)
    return backtest_answer(result, candles, model=runtime.model_name)


def name_the_scores(document: dict) -> dict:
    """The OpenAPI `document` (changed in place) with BacktestScores naming its keys: a property per forecaster of
    the registry, and the trailing frequency (the schema alone says "forecaster -> scores")."""
    schemas = document["components"]["schemas"]
    found = schemas["BacktestScores"]
    every, upside = found["additionalProperties"]["anyOf"]  # the two kinds' references
    names = forecasters()
    schemas["BacktestScores"] = {
        "properties": {**{name: dict(every) for name in names}, TRAILING: upside}, "additionalProperties": False,
        "type": "object", "required": [*names, TRAILING], "title": found["title"], "description": found["description"]}
    return document


@router.get("/track_record", summary="The record of the live forecasts of a market by the loaded model",
            responses=responses(422, 503))
def get_track_record(query: Annotated[MarketOnly, Query()], runtime: RuntimeDep,
                     forecaster: ForecasterDep) -> TrackRecordAnswer:
    market = query.market()
    found = track_record(runtime.market.store, market.exchange, market.symbol, market.timeframe,
                         forecaster.fingerprint)
    return TrackRecordAnswer(exchange=market.exchange, symbol=market.symbol, timeframe=market.timeframe,
                             model=runtime.model_name, **found.to_dict())
