"""The HTTP API: the original endpoints (/predict_api, /predict_all, /predict_custom, /predict) on FastAPI.

The model loads once at start-up; forecasts run on kronos.service's bounded pool. Every answer is the
CLI's JSON (`Forecast.to_dict`) plus `data`: where the candles came from. Every error is a JSON body
`{"error": ..., "problems": [...]}` with a 4xx or 503 status, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, AsyncIterator

import pandas as pd
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kronos.charts import fan_chart
from kronos.engine import Forecaster
from kronos.errors import DataUnavailableError, InvalidInputError, KronosError, WeightsUnavailableError
from kronos.forecast import Forecast
from kronos.market import Candles, UnknownMarketError, custom_candles
from kronos.service import ForecastService, MarketData, ServiceBusyError, ServiceTimeoutError
from kronos.settings import RANGES, ForecastSettings, ModelChoice
from kronos.store import CandleStore
from kronos.validation import read_json_text

MAX_BODY_BYTES = 4 * 2**20
MAX_CUSTOM_ROWS = 20_000
DEFAULTS = ForecastSettings()
SETTING_NAMES = tuple(f.name for f in dataclasses.fields(ForecastSettings))
STATUS = ((ServiceBusyError, 429), (ServiceTimeoutError, 503), (InvalidInputError, 422), (UnknownMarketError, 404),
          (WeightsUnavailableError, 503), (DataUnavailableError, 503), (KronosError, 400))
log = logging.getLogger("kronos.api")


def _ranged(name: str, description: str) -> Any:
    low, high = RANGES[name]
    return Field(getattr(DEFAULTS, name), ge=low, le=high, description=description)


class Settings(BaseModel):
    """Sampling settings shared by every forecast endpoint; ranges from kronos.settings.RANGES."""

    model_config = ConfigDict(extra="ignore")

    horizon: int = _ranged("horizon", "candles to forecast")
    samples: int = _ranged("samples", "Monte Carlo paths")
    temperature: float = _ranged("temperature", "sampling temperature")
    top_p: float = _ranged("top_p", "nucleus sampling: keep the most likely tokens up to this probability")
    top_k: int = _ranged("top_k", "keep the k most likely tokens (0: off)")
    lookback: int = _ranged("lookback", "history candles the model sees (fewer when fewer are available)")
    seed: int = _ranged("seed", "random seed: the same seed and data give the same answer")
    hour_idx: int | None = Field(None, ge=1, le=RANGES["horizon"][1],
                                 description="hour whose upside_probability is reported (1..horizon; default: horizon)")

    def forecast_settings(self) -> ForecastSettings:
        """The checked settings; InvalidInputError (e.g. hour_idx beyond the horizon)."""
        return ForecastSettings(**self.model_dump(include=set(SETTING_NAMES)))


class MarketQuery(Settings):
    """A forecast of a live market's latest candles."""

    align_to_hour: bool = Field(True, description="true: only closed candles; false: include the still-open one")
    exchange: str = Field("binance", max_length=32, description="ccxt exchange id asked first (then the others)")
    symbol: str = Field("BTC/USDT", max_length=32, description="market symbol, BASE/QUOTE")
    timeframe: str = Field("1h", max_length=8, description="candle length: 1m, 5m, 1h, 4h, 1d ...")


class CustomBody(Settings):
    """Your own candles in the original custom format, plus the settings."""

    timestamps: list[str | float] = Field(max_length=MAX_CUSTOM_ROWS,
                                          description="ISO 8601 times (UTC unless zoned) or epoch s/ms")
    open: list[float | str | None] = Field(max_length=MAX_CUSTOM_ROWS)
    high: list[float | str | None] = Field(max_length=MAX_CUSTOM_ROWS)
    low: list[float | str | None] = Field(max_length=MAX_CUSTOM_ROWS)
    close: list[float | str | None] = Field(max_length=MAX_CUSTOM_ROWS)
    volume: list[float | str | None] | None = Field(None, max_length=MAX_CUSTOM_ROWS)
    amount: list[float | str | None] | None = Field(None, max_length=MAX_CUSTOM_ROWS)

    def candles(self) -> Candles:
        """The body's candles checked by the project's validator; InvalidInputError listing every problem."""
        columns = self.model_dump(exclude=set(Settings.model_fields), exclude_none=True)
        return custom_candles(read_json_text(json.dumps(columns)), "request body", "json")


@dataclass
class Runtime:
    """What the routes share: the model (None when it failed to load, with the reason), the pool, the data."""

    choice: ModelChoice
    max_context: int | None
    service: ForecastService
    market: MarketData
    forecaster: Forecaster | None = None
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


def create_app(choice: ModelChoice | None = None, *, forecaster: Forecaster | None = None,
               max_context: int | None = None, service: ForecastService | None = None,
               store: CandleStore | None = None, exchange_deadline: float = 10.0) -> FastAPI:
    """The API app; it loads `choice` (default ModelChoice.from_env()) at start-up unless given a `forecaster`."""
    runtime = Runtime(choice or ModelChoice.from_env(), max_context, service or ForecastService(),
                      MarketData(store or CandleStore(), exchange_deadline), forecaster)

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
    _add_routes(app)
    return app


def _load(runtime: Runtime) -> None:
    """Load the model once; on failure keep the reason so /health and every forecast answer 503 with it."""
    try:
        runtime.forecaster = Forecaster.from_pretrained(runtime.choice.model, runtime.choice.tokenizer,
                                                        max_context=runtime.max_context)
    except KronosError as error:
        runtime.load_error = str(error)
        log.error("model not loaded: %s", error)


def _add_routes(app: FastAPI) -> None:
    @app.get("/health", summary="Whether the model is loaded and how busy the pool is")
    def health(runtime: RuntimeDep, forecaster: ForecasterDep) -> dict:
        return {"status": "ok", "model": forecaster.name, "max_context": forecaster.max_context,
                "workers": runtime.service.workers, "capacity": runtime.service.capacity,
                "pending": runtime.service.pending}

    @app.get("/predict_api", summary="Upside probability, volatility amplification and per-hour mean/min/max")
    def predict_api(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep) -> dict:
        return _answer(*_market_forecast(runtime, forecaster, query), query.hour_idx)

    @app.get("/predict_all", summary="As /predict_api, plus every path (all_samples: pred-1..pred-N)")
    def predict_all(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep) -> dict:
        return _answer(*_market_forecast(runtime, forecaster, query), query.hour_idx, all_samples=True)

    @app.get("/predict", summary="As /predict_api, plus the fan chart as a Plotly figure (JSON)")
    def predict(query: Annotated[MarketQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep) -> dict:
        forecast, candles = _market_forecast(runtime, forecaster, query)
        return {**_answer(forecast, candles, query.hour_idx), "figure": json.loads(fan_chart(forecast).to_json())}

    @app.post("/predict_custom", summary="Forecast your own candles (original custom format); 422 lists problems")
    def predict_custom(body: CustomBody, runtime: RuntimeDep, forecaster: ForecasterDep) -> dict:
        settings = body.forecast_settings()
        candles = body.candles()
        frame = candles.frame
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
        key = ("custom", digest, dataclasses.replace(settings, hour_idx=None))
        forecast = runtime.service.run(key, lambda: _forecast(forecaster, candles, settings))
        return _answer(forecast, candles, body.hour_idx)


def _market_forecast(runtime: Runtime, forecaster: Forecaster, query: MarketQuery) -> tuple[Forecast, Candles]:
    """Fetch the market's candles and forecast them; identical concurrent requests share the work."""
    settings = query.forecast_settings()
    mode = "aligned" if query.align_to_hour else "realtime"
    key = ("market", query.exchange, query.symbol, query.timeframe, mode, dataclasses.replace(settings, hour_idx=None))

    def job() -> tuple[Forecast, Candles]:
        candles = runtime.market.candles(query.exchange, query.symbol, query.timeframe, settings.lookback, mode)
        return _forecast(forecaster, candles, settings), candles

    return runtime.service.run(key, job)


def _forecast(forecaster: Forecaster, candles: Candles, settings: ForecastSettings) -> Forecast:
    """Forecast the candles with the settings, the lookback cut to the rows available."""
    arguments = settings.engine_arguments()
    arguments["lookback"] = min(settings.lookback, len(candles.frame))
    return forecaster.forecast(candles.frame, **arguments)


def _answer(forecast: Forecast, candles: Candles, hour_idx: int | None, all_samples: bool = False) -> dict:
    """The CLI's JSON: the forecast's summary plus `data`, which candles were used."""
    return {**forecast.to_dict(hour_idx=hour_idx, all_samples=all_samples), "data": candles.describe()}


def error_response(request: Request, error: Exception) -> JSONResponse:
    """Any error as JSON `{"error", "problems"}` with its status (and Retry-After when there is one)."""
    if isinstance(error, RequestValidationError):
        problems = [_describe(item) for item in error.errors()]
        status, message = 422, "; ".join(problems)
    elif isinstance(error, HTTPException):
        status, message, problems = error.status_code, str(error.detail), [str(error.detail)]
    elif isinstance(error, KronosError):
        status = next(code for kind, code in STATUS if isinstance(error, kind))
        message = str(error)
        problems = list(getattr(error, "problems", [message]))
    else:
        log.exception("unexpected error on %s", request.url.path, exc_info=error)
        status, message = 500, f"internal error ({type(error).__name__}); the server log has the details"
        problems = [message]
    retry = getattr(error, "retry_after", None)
    return JSONResponse({"error": message, "problems": problems}, status_code=status,
                        headers={"Retry-After": str(retry)} if retry else None)


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


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `serve` sub-command's options: address, model, pool size, deadlines."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--model", help="preset (mini, small, base), hub id or checkpoint directory (env KRONOS_MODEL)")
    parser.add_argument("--tokenizer", help="tokenizer hub id or directory (env KRONOS_TOKENIZER)")
    parser.add_argument("--max-context", type=int, help="context length (default: the model's)")
    parser.add_argument("--workers", type=int, default=1, help="forecasts computed at once (default 1)")
    parser.add_argument("--queue-size", type=int, default=16, help="forecasts waiting before 429 (default 16)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a request waits for its forecast")
    parser.add_argument("--exchange-timeout", type=float, default=10.0,
                        help="seconds to wait for the exchanges before answering from the local store (default 10)")


def serve_command(args: argparse.Namespace) -> int:
    """Run `serve`: load the model, then answer HTTP on --host:--port until interrupted."""
    import uvicorn

    env = ModelChoice.from_env()
    choice = ModelChoice(args.model or env.model, args.tokenizer or env.tokenizer)
    try:
        service = ForecastService(args.workers, args.queue_size, args.timeout)
    except ValueError as error:
        raise InvalidInputError(str(error)) from None
    app = create_app(choice, max_context=args.max_context, service=service, exchange_deadline=args.exchange_timeout)
    uvicorn.run(app, host=args.host, port=args.port)
    return 0
