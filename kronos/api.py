"""The HTTP API: the original endpoints (/predict_api, /predict_all, /predict_custom, /predict) on FastAPI.

The model loads once at start-up (`lifespan`) and reaches the routes through a typed dependency; forecasts
run on kronos.service's bounded pool. Every answer is the CLI's JSON (kronos.flows.answer) and is declared
as a response model; every error is a JSON body `{"error": ..., "problems": [...]}` whose status comes from
one table (STATUS) and is declared on each route that can return it; never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, AsyncIterator, Literal

import ccxt
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kronos.batching import Batcher
from kronos.charts import fan_chart
from kronos.data.candles import Candles, custom_candles
from kronos.data.reading import read_json_text
from kronos.data.store import CandleStore
from kronos.data.validation import FEATURE_COLUMNS, MIN_ROWS
from kronos.engine import Forecaster
from kronos.errors import (DataUnavailableError, InvalidInputError, KronosError, ServiceBusyError, ServiceTimeoutError,
                           UnknownMarketError, WeightsUnavailableError)
from kronos.evaluation.backtest import BacktestSettings, run_backtest
from kronos.evaluation.record import score_closed, track_record
from kronos.flows import answer, forecast_candles
from kronos.forecast import Forecast
from kronos.service import ForecastService, MarketData
from kronos.settings import DEFAULTS, RANGES, SYMBOL_PATTERN, Environment, ForecastSettings, MarketChoice, ModelChoice
from kronos.summary import fingerprint
from kronos.timeframes import TIMEFRAMES

MAX_BODY_BYTES = 4 * 2**20
MAX_CUSTOM_ROWS = 20_000
MAX_API_ORIGINS = 500  # a backtest request stays within the request timeout
LATEST_EPOCH_MS = 4_102_444_800_000  # 2100-01-01 in milliseconds: epoch numbers above it are no candle times
SETTING_NAMES = tuple(f.name for f in dataclasses.fields(ForecastSettings))
STATUS = ((ServiceBusyError, 429), (ServiceTimeoutError, 503), (InvalidInputError, 422), (UnknownMarketError, 404),
          (WeightsUnavailableError, 503), (DataUnavailableError, 503), (KronosError, 400))
log = logging.getLogger("kronos.api")


class ErrorBody(BaseModel):
    """Every error's body: one sentence, and each problem found (the validator lists them all)."""

    error: str
    problems: list[str]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route: each status it can return besides 200, with the error body's schema."""
    meaning = {400: "the body could not be read as JSON", 404: "unknown exchange, symbol or timeframe", 405: "method not allowed (the Allow header lists them)",
               413: f"request body over {MAX_BODY_BYTES // 2**20} MiB",
               422: "invalid parameters or candles; `problems` says what to fix",
               429: "busy: every worker and queue place is taken; retry after Retry-After seconds",
               503: "model or market data unavailable, or the forecast took too long; retry later"}
    return {code: {"model": ErrorBody, "description": meaning[code]} for code in codes}


def _ranged(name: str, description: str) -> Any:
    low, high = RANGES[name]
    return Field(getattr(DEFAULTS, name), ge=low, le=high, description=description)


class Settings(BaseModel):
    """Sampling settings shared by every forecast endpoint; defaults and ranges from kronos.settings."""

    model_config = ConfigDict(extra="ignore")

    horizon: int = _ranged("horizon", "candles to forecast")
    samples: int = _ranged("samples", "Monte Carlo paths")
    temperature: float = _ranged("temperature", "sampling temperature")
    top_p: float = _ranged("top_p", "nucleus sampling: keep the most likely tokens up to this probability")
    top_k: int = _ranged("top_k", "keep the k most likely tokens (0: off)")
    lookback: int = _ranged("lookback", "history candles the model sees (fewer when fewer are available)")
    seed: int = _ranged("seed", "random seed: the same seed and data give the same answer")
    hour_idx: int | None = Field(None, ge=1, le=RANGES["horizon"][1],
                                 description="hour whose upside_probability is reported (default and beyond the "
                                             "horizon: the horizon's last hour)")

    def forecast_settings(self) -> ForecastSettings:
        """The checked settings, hour_idx capped at the horizon."""
        values = self.model_dump(include=set(SETTING_NAMES))
        values["hour_idx"] = None if self.hour_idx is None else min(self.hour_idx, self.horizon)
        return ForecastSettings(**values)


class MarketOnly(BaseModel):
    """A market: exchange, symbol and timeframe."""

    model_config = ConfigDict(extra="ignore")

    exchange: Literal[tuple(ccxt.exchanges)] = Field(  # type: ignore[valid-type]
        MarketChoice.exchange, description="ccxt exchange id asked first (then binance, okx, bybit, kraken)")
    symbol: str = Field(MarketChoice.symbol, pattern=SYMBOL_PATTERN, description="market symbol, BASE/QUOTE")
    timeframe: Literal[TIMEFRAMES] = Field(MarketChoice.timeframe, description="candle length")  # type: ignore[valid-type]

    def market(self) -> MarketChoice:
        return MarketChoice(self.exchange, self.symbol, self.timeframe)


class MarketQuery(Settings, MarketOnly):
    """A forecast of a live market's latest candles."""

    align_to_hour: bool = Field(True, description="true: only closed candles; false: include the still-open one")

    def market(self) -> MarketChoice:
        return MarketChoice(self.exchange, self.symbol, self.timeframe, "aligned" if self.align_to_hour else "realtime")


Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Stamp = datetime | Annotated[float, Field(ge=0, le=LATEST_EPOCH_MS, allow_inf_nan=False)]


class CustomBody(Settings):
    """Your own candles in the original custom format, plus the settings.

    The lists must have equal lengths, one value per candle; timestamps must differ and high must not be
    below low: rules across lists that the schema cannot state, answered with 422 and what to fix.
    """

    timestamps: list[Stamp] = Field(min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS,
                                    description="ISO 8601 times (UTC unless zoned) or epoch seconds/milliseconds")
    open: list[Price] = Field(min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)
    high: list[Price] = Field(min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)
    low: list[Price] = Field(min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)
    close: list[Price] = Field(min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)
    volume: list[Price] | None = Field(None, min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)
    amount: list[Price] | None = Field(None, min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)

    def candles(self) -> Candles:
        """The body's candles checked by the project's validator; InvalidInputError listing every problem."""
        columns = self.model_dump(mode="json", include={"timestamps", *FEATURE_COLUMNS}, exclude_none=True)
        return custom_candles(read_json_text(json.dumps(columns)), "request body", "json")


class BacktestBody(CustomBody):
    """Your own candles (as for /predict_custom), the sampling settings, and where the backtest's origins fall."""

    origins: int = Field(BacktestSettings.origins, ge=1, le=MAX_API_ORIGINS,
                         description="forecast origins, the latest ones that leave the lookback before and the horizon "
                                     "after them")
    every: int = Field(BacktestSettings.every, ge=1, le=1000, description="rows between origins")
    min_count: int = Field(BacktestSettings.min_count, ge=1, le=1000,
                           description="known outcomes before an origin is calibrated")
    calibrate: bool = Field(False, description="also forecast after the last candle, calibrated on the record")

    def backtest_settings(self) -> BacktestSettings:
        sampling = self.forecast_settings().engine_arguments()
        return BacktestSettings(origins=self.origins, every=self.every, min_count=self.min_count, **sampling)


class HourProbability(BaseModel):
    hour: int
    timestamp: str
    probability: float


class Row(BaseModel):
    """One candle's six values (null where not finite)."""

    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: float | None
    amount: float | None


class HourSummary(BaseModel):
    hour: int
    timestamp: str
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
    as_of: str
    is_stale: bool
    amount_is_estimated: bool
    notes: list[str]


class ForecastAnswer(BaseModel):
    """A forecast's summary: upside probability at hour_idx and for every hour, volatility amplification, and the
    mean/min/max over paths per hour."""

    model: str
    seed: int
    settings: UsedSettings
    last_timestamp: str
    last_close: float
    hour_idx: int
    upside_probability: float
    upside_probability_all_hours: list[HourProbability]
    volatility_amplification_probability: float | None
    predictions: list[HourSummary]
    data: DataBlock


class ForecastWithPaths(ForecastAnswer):
    """As ForecastAnswer, plus every path: all_samples[column]["pred-1".."pred-N"] = values per hour."""

    all_samples: dict[str, dict[str, list[float | None]]]


class ForecastWithFigure(ForecastAnswer):
    """As ForecastAnswer, plus the fan chart as a Plotly figure (JSON)."""

    figure: dict[str, Any]


class BacktestAnswer(BaseModel):
    """A backtest: per forecaster (model, model_calibrated, random_walk, bootstrap, trailing_frequency) the scores
    per hour ahead (crps, brier_upside, coverage {"50", "80", "95"}, ...), skill against the random walk, and `data`."""

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


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    max_context: int
    workers: int
    capacity: int
    pending: int


@dataclass
class Runtime:
    """What the routes share: the model (None when it failed to load, with the reason), the pool, the data."""

    choice: ModelChoice
    max_context: int | None
    service: ForecastService
    market: MarketData
    forecaster: Forecaster | None = None
    compile: bool = False  # compile the decode step at start-up
    load_error: str = "the server is still starting"


def runtime_of(request: Request) -> Runtime:
    """The app's Runtime."""
    return request.app.state.runtime


def loaded_forecaster(request: Request) -> Forecaster:
    """The model loaded at start-up; WeightsUnavailableError (503) when it could not be loaded."""
    runtime = runtime_of(request)
    if runtime.forecaster is None:
        raise WeightsUnavailableError(f"the model {runtime.choice.model} is not loaded: {runtime.load_error}")
    return runtime.forecaster


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
ForecasterDep = Annotated[Forecaster, Depends(loaded_forecaster)]
router = APIRouter()


@router.get("/health", summary="Whether the model is loaded and how busy the pool is", responses=_errors(503))
def health(runtime: RuntimeDep, forecaster: ForecasterDep) -> Health:
    return Health(status="ok", model=forecaster.name, max_context=forecaster.max_context,
                  workers=runtime.service.workers, capacity=runtime.service.capacity,
                  pending=runtime.service.pending)


MARKET_ERRORS = _errors(404, 422, 429, 503)


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
def predict(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep) -> ForecastWithFigure:
    forecast, candles, hour = _market_forecast(runtime, forecaster, query)
    return {**answer(forecast, candles, hour),
            "figure": json.loads(fan_chart(forecast).to_json())}


@router.post("/predict_custom", summary="Forecast your own candles (original custom format); 422 lists problems",
             responses=_errors(400, 413, 422, 429, 503))
def predict_custom(body: CustomBody, runtime: RuntimeDep, forecaster: ForecasterDep) -> ForecastAnswer:
    settings = body.forecast_settings()
    candles = body.candles()
    key = ("custom", fingerprint(candles.frame), dataclasses.replace(settings, hour_idx=None))
    forecast = runtime.service.run(key, lambda: forecast_candles(forecaster, candles, settings))
    return answer(forecast, candles, settings.hour_idx)


@router.post("/backtest", summary="Walk-forward backtest of your candles: the model, calibrated, against baselines",
             responses=_errors(400, 413, 422, 429, 503))
def backtest(body: BacktestBody, runtime: RuntimeDep, forecaster: ForecasterDep) -> BacktestAnswer:
    settings, candles = body.backtest_settings(), body.candles()
    key = ("backtest", fingerprint(candles.frame), settings, body.calibrate)
    result = runtime.service.run(key, lambda: run_backtest(forecaster, candles.frame, settings,
                                                           store=runtime.market.store, latest=body.calibrate))
    return {**result.to_dict(), "data": candles.describe()}


@router.get("/track_record", summary="The record of the live forecasts of a market by the loaded model",
            responses=_errors(422, 503))
def get_track_record(query: Annotated[MarketOnly, Query()], runtime: RuntimeDep,
                     forecaster: ForecasterDep) -> TrackRecordAnswer:
    market = query.market()
    score_closed(runtime.market.store, market.exchange, market.symbol, market.timeframe, forecaster.fingerprint)
    found = track_record(runtime.market.store, market.exchange, market.symbol, market.timeframe,
                         forecaster.fingerprint)
    return {"exchange": market.exchange, "symbol": market.symbol, "timeframe": market.timeframe,
            "model": forecaster.name, **found.to_dict()}


def _market_forecast(runtime: Runtime, forecaster: Forecaster,
                     query: MarketQuery) -> tuple[Forecast, Candles, int | None]:
    """Fetch the market's candles and forecast them (identical concurrent requests share the work); also the hour
    the answer reports."""
    settings, market = query.forecast_settings(), query.market()
    key = ("market", market, dataclasses.replace(settings, hour_idx=None))

    def job() -> tuple[Forecast, Candles]:
        candles = runtime.market.candles(market, settings.lookback)
        return forecast_candles(forecaster, candles, settings, log=runtime.market.store), candles

    return *runtime.service.run(key, job), settings.hour_idx


def create_app(choice: ModelChoice | None = None, *, forecaster: Forecaster | None = None,
               max_context: int | None = None, service: ForecastService | None = None,
               store: CandleStore | None = None, exchange_deadline: float = 10.0,
               compile: bool | None = None) -> FastAPI:
    """The API app; it loads `choice` (default: the environment's) at start-up unless given a `forecaster`, and
    compiles its decode step when `compile` (default: KRONOS_COMPILE)."""
    env = Environment.read()
    runtime = Runtime(choice or env.model, max_context, service or ForecastService(),
                      MarketData(store or CandleStore(), exchange_deadline),
                      None if forecaster is None else Batcher(forecaster), env.compile if compile is None else compile)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime.forecaster is None:
            _load(runtime)
        yield
        runtime.service.close()
        runtime.market.close()

    app = FastAPI(title="Kronos forecasts", version="1.0", lifespan=lifespan,
                  description="Probabilistic candle forecasts from Kronos: upside probability, volatility, paths.")
    app.state.runtime = runtime
    for error in (KronosError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(error, error_response)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.include_router(router)
    return app


def _load(runtime: Runtime) -> None:
    """Load the model once (its forecasts batched across requests); on failure keep the reason so /health and every
    forecast answer 503 with it."""
    try:
        forecaster = Forecaster.from_pretrained(runtime.choice.model, runtime.choice.tokenizer,
                                                max_context=runtime.max_context)
    except KronosError as error:
        runtime.load_error = str(error)
        log.error("model not loaded: %s", error)
        return
    if runtime.compile:
        seconds = forecaster.compile_step()
        log.warning("decode step %s", "not compiled" if seconds is None else f"compiled in {seconds:.1f} s")
    runtime.forecaster = Batcher(forecaster)


def error_response(request: Request, error: Exception) -> JSONResponse:
    """Any error as JSON `{"error", "problems"}` with its status and headers (Retry-After, Allow)."""
    headers = {}
    if isinstance(error, RequestValidationError):
        problems = [_describe(item) for item in error.errors()]
        status, message = 422, "; ".join(problems)
    elif isinstance(error, HTTPException):
        status, message, problems = error.status_code, str(error.detail), [str(error.detail)]
        headers = dict(error.headers or {})
    elif isinstance(error, KronosError):
        status = next(code for kind, code in STATUS if isinstance(error, kind))
        message = str(error)
        problems = list(getattr(error, "problems", [message]))
    else:
        log.exception("unexpected error on %s", request.url.path, exc_info=error)
        status, message = 500, f"internal error ({type(error).__name__}); the server log has the details"
        problems = [message]
    retry = getattr(error, "retry_after", None)
    if retry:
        headers["Retry-After"] = str(retry)
    return JSONResponse({"error": message, "problems": problems}, status_code=status, headers=headers or None)


def _describe(item: dict) -> str:
    """One request-validation problem as `where: what (got value)`."""
    where = ".".join(str(part) for part in item.get("loc", ())[1:]) or "request"
    got = f" (got {item['input']!r:.60})" if "input" in item and not isinstance(item["input"], (dict, list)) else ""
    return f"{where}: {item.get('msg', 'invalid')}{got}"


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before any of it reaches the app."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        chunks, size, more = [], int(declared) if declared.isdigit() else 0, True
        while more and size <= self.limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size, more = sum(map(len, chunks)), message.get("more_body", False)
        if size > self.limit:
            text = f"the request body is over {self.limit // 2**20} MiB; send fewer candles (the lookback is enough)"
            return await JSONResponse({"error": text, "problems": [text]}, status_code=413)(scope, receive, send)
        body: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return body.pop() if body else await receive()

        await self.app(scope, replay, send)
