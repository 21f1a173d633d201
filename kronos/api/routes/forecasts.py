"""The forecast routes: /predict_api, /predict_all and /predict on a live market, /predict_custom on your candles.

Each answer is the CLI's (kronos.flows.answer, typed by kronos.schemas.forecast); identical requests in flight
share one computation on kronos.serving.service's bounded pool. With `calibrate=true` (after the budget check of
kronos.api.requests) the calibration runs as a background job the request waits for a while, else answers 202
with Retry-After (kronos.api.calibrating).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Annotated

from fastapi import APIRouter, Query, Request

from kronos.api.calibrating import HOLD_S, Choice, await_calibration, start_calibration
from kronos.api.deps import ForecasterDep, GoneDep, Runtime, RuntimeDep
from kronos.api.errors import MAX_BODY_BYTES, responses
from kronos.api.requests import MAX_CUSTOM_ROWS, CustomBody, MarketQuery
from kronos.data.candles import Candles
from kronos.engine import ForecastSource
from kronos.engine.forecast import Forecast
from kronos.evaluation.combined import calibration_rows
from kronos.flows import answer, forecast_candles
from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.schemas.forecast import ForecastAnswer, ForecastWithFigure, ForecastWithPaths
from kronos.settings import ForecastSettings
from kronos.views.charts import fan_chart
from kronos.views.texts import fingerprint

router = APIRouter()
MARKET_ERRORS = responses(202, 404, 422, 429, 503)
CALIBRATED = ("With `calibrate=true` the answer's `calibrated` block is the combined forecast, calibrated by a "
              "backtest of the market's recent history: a background job shared by identical requests, waited for "
              "a few seconds (the server's calibration_wait), else the answer is 202 with Retry-After: ask again, "
              "the same request, until it is 200. `calibration=quick` answers from the first usable (provisional) "
              "record on, `full` (default) with the full record; `calibrated.record` says which (`provisional`, "
              "`origins`). Later calls reuse the stored origins.")
Calibration = Calibrated | Unavailable | None


@router.get("/predict_api", summary="Upside probability, volatility amplification and per-hour mean/min/max",
            description=CALIBRATED, responses=MARKET_ERRORS)
def predict_api(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep,
                gone: GoneDep, request: Request) -> ForecastAnswer:
    forecast, candles, block, hour = _market_forecast(runtime, forecaster, query, gone, _location(request))
    return answer(forecast, candles, hour, calibration=block)


@router.get("/predict_all", summary="As /predict_api, plus every path (all_samples: pred-1..pred-N)",
            description=CALIBRATED, responses=MARKET_ERRORS)
def predict_all(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep,
                gone: GoneDep, request: Request) -> ForecastWithPaths:
    forecast, candles, block, hour = _market_forecast(runtime, forecaster, query, gone, _location(request))
    return answer(forecast, candles, hour, all_samples=True, calibration=block)


@router.get("/predict", summary="As /predict_api, plus the fan chart as a Plotly figure (JSON)",
            description=CALIBRATED, responses=MARKET_ERRORS)
def predict(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep,
            gone: GoneDep, request: Request) -> ForecastWithFigure:
    forecast, candles, block, hour = _market_forecast(runtime, forecaster, query, gone, _location(request))
    return ForecastWithFigure(**dict(answer(forecast, candles, hour, calibration=block)),
                              figure=json.loads(fan_chart(forecast, calibrated=block if isinstance(
                                  block, Calibrated) else None).to_json()))


@router.post("/predict_custom", summary="Forecast your own candles (original custom format); 422 lists problems",
             description=f"At most {MAX_CUSTOM_ROWS:,} candles and {MAX_BODY_BYTES // 2**20} MiB; the model sees the "
                         "latest `lookback` of them. With `calibrate=true` the answer's `calibrated` block is the "
                         "combined forecast, calibrated by a backtest of the candles' history (as on the market "
                         "routes: waited for a few seconds, else 202 with Retry-After: send the same body again; "
                         "later calls on the same candles reuse the stored origins), or `{unavailable: why}` naming "
                         "the rows it would need.",
             responses=responses(202, 400, 408, 413, 422, 429, 503))
def predict_custom(body: CustomBody, runtime: RuntimeDep, forecaster: ForecasterDep,
                   gone: GoneDep, request: Request) -> ForecastAnswer:
    settings = body.forecast_settings()
    candles = body.candles()
    key = ("custom", fingerprint(candles.frame), *_shared(settings, body.calibrate))
    forecast = runtime.service.run(key, lambda: forecast_candles(forecaster, candles, settings), cancel=gone)
    block = _calibration(runtime, forecaster, candles, forecast, settings, body.calibration, gone,
                         _location(request)) if body.calibrate else None
    return answer(forecast, candles, settings.hour_idx, calibration=block)


def _market_forecast(runtime: Runtime, forecaster: ForecastSource, query: MarketQuery, gone: threading.Event,
                     location: str) -> tuple[Forecast, Candles, Calibration, int | None]:
    """Fetch the market's candles and forecast them (identical concurrent requests share the work), and calibrate
    the forecast when asked; also the hour the answer reports."""
    settings, market = query.forecast_settings(), query.market()
    key = ("market", market, *_shared(settings, query.calibrate))
    rows = calibration_rows(settings.lookback, settings.horizon) if query.calibrate else settings.lookback

    def job() -> tuple[Forecast, Candles]:
        candles = runtime.market.candles(market, rows)
        return forecast_candles(forecaster, candles, settings, log=runtime.market.store), candles

    forecast, candles = runtime.service.run(key, job, cancel=gone)
    block = _calibration(runtime, forecaster, candles, forecast, settings, query.calibration, gone,
                         location) if query.calibrate else None
    return forecast, candles, block, settings.hour_idx


def _shared(settings: ForecastSettings, calibrate: bool) -> tuple:
    """What decides a job's result besides its candles: the settings (the hour only matters to the calibrated block's
    upside probability) and whether it calibrates."""
    return dataclasses.replace(settings, hour_idx=settings.hour_idx if calibrate else None), calibrate


def _calibration(runtime: Runtime, forecaster: ForecastSource, candles: Candles, forecast: Forecast,
                 settings: ForecastSettings, choice: Choice, gone: threading.Event, location: str) -> Calibration:
    """The forecast's calibrated block (its origins kept in and reused from the server's store), from the background
    job this request waits for at most the server's calibration_wait; CalibrationPendingError (202) after that."""
    wait_s = runtime.calibration_wait
    job = start_calibration(runtime.calibrations, forecaster, candles, forecast, settings, runtime.market.store,
                            waiter=object(), hold_s=wait_s + HOLD_S)
    return await_calibration(job, choice, wait_s, location, gone.is_set)


def _location(request: Request) -> str:
    """Where to ask again: this very request (its path and query)."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")
