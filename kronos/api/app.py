"""The HTTP API's app factory: the original endpoints (/predict_api, /predict_all, /predict_custom, /predict) and
/backtest, /track_record, /health on FastAPI.

The model loads once at start-up (`lifespan`) and reaches the routes through a typed dependency (kronos.api.deps);
forecasts run on kronos.serving.service's bounded pool. Answers are the typed models of kronos.schemas, declared on each
route; errors go through one handler (kronos.api.errors). With a token (KRONOS_API_TOKEN) every route but
/health wants it, and the OpenAPI document says so (a bearer security scheme, 401 on each route).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from kronos.api.calibrating import CalibrationPendingError, warm_start
from kronos.api.deps import NOT_LOADED, Runtime, require_token
from kronos.api.errors import MAX_BODY_BYTES, error_response, responses
from kronos.api.middleware import BodyLimit, BodyTimeout
from kronos.api.routes import backtest, forecasts, health, markets
from kronos.cancellation import DisconnectWatch
from kronos.data.store import CandleStore
from kronos.engine import Forecaster
from kronos.errors import KronosError
from kronos.serving.batching import Batcher
from kronos.serving.service import ForecastService, MarketData
from kronos.settings import SERVER_DEFAULTS, Environment, ModelChoice, ServerSettings

log = logging.getLogger("kronos.api")


def create_app(choice: ModelChoice | None = None, *, forecaster: Forecaster | None = None,
               max_context: int | None = None, server: ServerSettings = SERVER_DEFAULTS,
               service: ForecastService | None = None, store: CandleStore | None = None,
               compile: bool | None = None, token: str | None = None, warm: bool = True) -> FastAPI:
    """The API app; it loads `choice` (default: the environment's) at start-up unless given a `forecaster`, serves as
    `server` says (its pool, unless given a `service`; its deadlines), compiles its decode step when `compile`
    (default: KRONOS_COMPILE), wants `token` (default: KRONOS_API_TOKEN), and with `warm` starts the default
    market's calibration in the background when the store holds its candles (kronos.api.calibrating)."""
    env = Environment.read()
    runtime = Runtime(choice or env.model, max_context,
                      service or ForecastService(server.workers, server.queue_size, server.timeout),
                      MarketData(store or CandleStore(), server.exchange_timeout),
                      None if forecaster is None else Batcher(forecaster), env.compile if compile is None else compile,
                      token or env.api_token, calibration_wait=server.calibration_wait)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime.forecaster is None:
            _load(runtime)
        if warm and runtime.forecaster is not None:
            warm_start(runtime.calibrations, runtime.forecaster, runtime.market.candles, runtime.market.store)
        yield
        runtime.service.close()
        runtime.market.close()

    app = FastAPI(title="Kronos forecasts", version="1.0", lifespan=lifespan,
                  description="Probabilistic candle forecasts from Kronos: upside probability, volatility, paths.")
    app.state.runtime = runtime
    app.state.private_paths = _private_paths(runtime, env)
    for error in (KronosError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(error, error_response)
    app.add_exception_handler(CalibrationPendingError, _pending)
    app.add_middleware(DisconnectWatch)  # inside the body limit: it reads bodies the limit let through
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(BodyTimeout, timeout=server.body_timeout)  # outermost: it times the whole body's arrival
    guarded = ({"dependencies": [Depends(require_token)], "responses": responses(401)} if runtime.token else {})
    app.include_router(forecasts.router, **guarded)
    app.include_router(backtest.router, **guarded)
    app.include_router(markets.router, **guarded)
    app.include_router(health.router)
    made = app.openapi
    app.openapi = lambda: app.openapi_schema or backtest.name_the_scores(made())
    return app


def _pending(request: Request, error: Exception) -> JSONResponse:
    """202: the calibration is still running; its Retry-After and Location (the same request) in headers and body."""
    body = error.body if isinstance(error, CalibrationPendingError) else None
    if body is None:
        return error_response(request, error)
    return JSONResponse(body.model_dump(), status_code=202,
                        headers={"Retry-After": str(body.retry_after), "Location": body.location})


def _load(runtime: Runtime) -> None:
    """Load the model once (its forecasts batched across requests); on failure log the reason and keep a message
    for clients (naming no path) so /health and every forecast answer 503."""
    try:
        forecaster = Forecaster.from_pretrained(runtime.choice.model, runtime.choice.tokenizer,
                                                max_context=runtime.max_context)
    except KronosError as error:
        runtime.load_error = NOT_LOADED
        log.error("model not loaded: %s", error)
        return
    if runtime.compile:
        seconds = forecaster.compile_step()
        log.warning("decode step %s", "not compiled" if seconds is None else f"compiled in {seconds:.1f} s")
    runtime.forecaster = Batcher(forecaster)


def _private_paths(runtime: Runtime, env: Environment) -> tuple[str, ...]:
    """The server paths the app knows of (the store, the models folder, a local model's and tokenizer's), as given
    and resolved, longest first: the error handler keeps them out of what clients read."""
    # not the forecaster's name: that is its label (a run's name, a hub id), which answers give
    names = [runtime.market.store.path, env.models, runtime.choice.model, runtime.choice.tokenizer]
    found: set[str] = set()
    for name in filter(None, names):
        path = Path(name).expanduser()
        if path.is_absolute() or path.exists():
            found |= {str(path), str(path.resolve()), str(path.resolve().parent)}
    return tuple(sorted(found - {"/", "."}, key=len, reverse=True))
