"""The forecast routes: /predict_api, /predict_all and /predict on a live market, /predict_custom on your candles.

Each answer is the CLI's (kronos.flows.answer, typed by kronos.schemas.forecast); identical requests in flight
share one computation on kronos.service's bounded pool. With `calibrate=true` the job also runs the calibration's
backtest (kronos.flows.calibrated) on that pool, under its timeout, after the budget check of kronos.api.requests.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Annotated

from fastapi import APIRouter, Query

from kronos.api.deps import ForecasterDep, GoneDep, Runtime, RuntimeDep
from kronos.api.errors import MAX_BODY_BYTES, responses
from kronos.api.requests import MAX_CUSTOM_ROWS, CustomBody, MarketQuery
from kronos.charts import fan_chart
from kronos.data.candles import Candles
from kronos.engine import ForecastSource
from kronos.evaluation.combined import calibration_rows
from kronos.flows import answer, calibrated, forecast_candles
from kronos.forecast import Forecast
from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.schemas.forecast import ForecastAnswer, ForecastWithFigure, ForecastWithPaths
from kronos.settings import ForecastSettings
from kronos.summary import fingerprint

router = APIRouter()
MARKET_ERRORS = responses(404, 422, 429, 503)
CALIBRATED = ("With `calibrate=true` the answer's `calibrated` block is the combined forecast, calibrated by a "
              "backtest of the market's recent history within the call: a first call may take tens of seconds, later "
              "ones reuse the stored origins.")
Calibration = Calibrated | Unavailable | None


@router.get("/predict_api", summary="Upside probability, volatility amplification and per-hour mean/min/max",
            description=CALIBRATED, responses=MARKET_ERRORS)
def predict_api(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep,
                gone: GoneDep) -> ForecastAnswer:
    forecast, candles, block, hour = _market_forecast(runtime, forecaster, query, gone)
    return answer(forecast, candles, hour, calibration=block)


@router.get("/predict_all", summary="As /predict_api, plus every path (all_samples: pred-1..pred-N)",
            description=CALIBRATED, responses=MARKET_ERRORS)
def predict_all(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep,
                gone: GoneDep) -> ForecastWithPaths:
    forecast, candles, block, hour = _market_forecast(runtime, forecaster, query, gone)
    return answer(forecast, candles, hour, all_samples=True, calibration=block)


@router.get("/predict", summary="As /predict_api, plus the fan chart as a Plotly figure (JSON)",
            description=CALIBRATED, responses=MARKET_ERRORS)
def predict(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep,
            gone: GoneDep) -> ForecastWithFigure:
    forecast, candles, block, hour = _market_forecast(runtime, forecaster, query, gone)
    return ForecastWithFigure(**dict(answer(forecast, candles, hour, calibration=block)),
                              figure=json.loads(fan_chart(forecast, calibrated=block if isinstance(
                                  block, Calibrated) else None).to_json()))


@router.post("/predict_custom", summary="Forecast your own candles (original custom format); 422 lists problems",
             description=f"At most {MAX_CUSTOM_ROWS:,} candles and {MAX_BODY_BYTES // 2**20} MiB; the model sees the "
                         "latest `lookback` of them. With `calibrate=true` the answer's `calibrated` block is the "
                         "combined forecast, calibrated by a backtest of the candles' history within the call (a first "
                         "call may take tens of seconds, later ones on the same candles reuse the stored origins), or "
                         "`{unavailable: why}` naming the rows it would need.",
             responses=responses(400, 408, 413, 422, 429, 503))
def predict_custom(body: CustomBody, runtime: RuntimeDep, forecaster: ForecasterDep,
                   gone: GoneDep) -> ForecastAnswer:
    settings = body.forecast_settings()
    candles = body.candles()
    key = ("custom", fingerprint(candles.frame), *_shared(settings, body.calibrate))
    forecast, block = runtime.service.run(key, lambda: _forecast(runtime, forecaster, candles, settings,
                                                                 body.calibrate, log=False), cancel=gone)
    return answer(forecast, candles, settings.hour_idx, calibration=block)


def _market_forecast(runtime: Runtime, forecaster: ForecastSource, query: MarketQuery,
                     gone: threading.Event) -> tuple[Forecast, Candles, Calibration, int | None]:
    """Fetch the market's candles and forecast (and calibrate) them (identical concurrent requests share the work);
    also the hour the answer reports."""
    settings, market = query.forecast_settings(), query.market()
    key = ("market", market, *_shared(settings, query.calibrate))
    rows = calibration_rows(settings.lookback, settings.horizon) if query.calibrate else settings.lookback

    def job() -> tuple[Forecast, Calibration, Candles]:
        candles = runtime.market.candles(market, rows)
        return *_forecast(runtime, forecaster, candles, settings, query.calibrate, log=True), candles

    forecast, block, candles = runtime.service.run(key, job, cancel=gone)
    return forecast, candles, block, settings.hour_idx


def _shared(settings: ForecastSettings, calibrate: bool) -> tuple:
    """What decides a job's result besides its candles: the settings (the hour only matters to the calibrated block's
    upside probability) and whether it calibrates."""
    return dataclasses.replace(settings, hour_idx=settings.hour_idx if calibrate else None), calibrate


def _forecast(runtime: Runtime, forecaster: ForecastSource, candles: Candles, settings: ForecastSettings,
              calibrate: bool, log: bool) -> tuple[Forecast, Calibration]:
    """The forecast (logged when `log`: market candles) and, when asked, its calibrated block (origins kept in and
    reused from the server's store)."""
    store = runtime.market.store
    forecast = forecast_candles(forecaster, candles, settings, log=store if log else None)
    return forecast, calibrated(forecaster, candles, forecast, store, settings.hour_idx) if calibrate else None
