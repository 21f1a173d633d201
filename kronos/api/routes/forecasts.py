"""The forecast routes: /predict_api, /predict_all and /predict on a live market, /predict_custom on your candles.

Each answer is the CLI's (kronos.flows.answer, typed by kronos.schemas.forecast); identical requests in flight
share one computation on kronos.service's bounded pool.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

from fastapi import APIRouter, Query

from kronos.api.deps import ForecasterDep, Runtime, RuntimeDep
from kronos.api.errors import MAX_BODY_BYTES, responses
from kronos.api.requests import MAX_CUSTOM_ROWS, CustomBody, MarketQuery
from kronos.charts import fan_chart
from kronos.data.candles import Candles
from kronos.engine import ForecastSource
from kronos.flows import answer, forecast_candles
from kronos.forecast import Forecast
from kronos.schemas.forecast import ForecastAnswer, ForecastWithFigure, ForecastWithPaths
from kronos.summary import fingerprint

router = APIRouter()
MARKET_ERRORS = responses(404, 422, 429, 503)


@router.get("/predict_api", summary="Upside probability, volatility amplification and per-hour mean/min/max",
            responses=MARKET_ERRORS)
def predict_api(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep,
                forecaster: ForecasterDep) -> ForecastAnswer:
    forecast, candles, hour = _market_forecast(runtime, forecaster, query)
    return answer(forecast, candles, hour)


@router.get("/predict_all", summary="As /predict_api, plus every path (all_samples: pred-1..pred-N)",
            responses=MARKET_ERRORS)
def predict_all(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep,
                forecaster: ForecasterDep) -> ForecastWithPaths:
    forecast, candles, hour = _market_forecast(runtime, forecaster, query)
    return answer(forecast, candles, hour, all_samples=True)


@router.get("/predict", summary="As /predict_api, plus the fan chart as a Plotly figure (JSON)",
            responses=MARKET_ERRORS)
def predict(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep,
            forecaster: ForecasterDep) -> ForecastWithFigure:
    forecast, candles, hour = _market_forecast(runtime, forecaster, query)
    return ForecastWithFigure(**dict(answer(forecast, candles, hour)), figure=json.loads(fan_chart(forecast).to_json()))


@router.post("/predict_custom", summary="Forecast your own candles (original custom format); 422 lists problems",
             description=f"At most {MAX_CUSTOM_ROWS:,} candles and {MAX_BODY_BYTES // 2**20} MiB; the model sees the "
                         "latest `lookback` of them.",
             responses=responses(400, 413, 422, 429, 503))
def predict_custom(body: CustomBody, runtime: RuntimeDep, forecaster: ForecasterDep) -> ForecastAnswer:
    settings = body.forecast_settings()
    candles = body.candles()
    key = ("custom", fingerprint(candles.frame), dataclasses.replace(settings, hour_idx=None))
    forecast = runtime.service.run(key, lambda: forecast_candles(forecaster, candles, settings))
    return answer(forecast, candles, settings.hour_idx)


def _market_forecast(runtime: Runtime, forecaster: ForecastSource,
                     query: MarketQuery) -> tuple[Forecast, Candles, int | None]:
    """Fetch the market's candles and forecast them (identical concurrent requests share the work); also the hour
    the answer reports."""
    settings, market = query.forecast_settings(), query.market()
    key = ("market", market, dataclasses.replace(settings, hour_idx=None))

    def job() -> tuple[Forecast, Candles]:
        candles = runtime.market.candles(market, settings.lookback)
        return forecast_candles(forecaster, candles, settings, log=runtime.market.store), candles

    return *runtime.service.run(key, job), settings.hour_idx
