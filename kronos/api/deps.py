"""What the routes depend on, typed: the app's Runtime, the model loaded at start-up, and the token check."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from kronos.cancellation import client_gone
from kronos.engine import ForecastSource
from kronos.errors import WeightsUnavailableError
from kronos.model.checkpoints import model_label
from kronos.serving.jobs import Jobs
from kronos.serving.service import ForecastService, MarketData
from kronos.settings import SERVER_DEFAULTS, ModelChoice

NOT_LOADED = "its weights could not be loaded (the server log says why)"


@dataclass
class Runtime:
    """What the routes share: the model (None when it failed to load), the pool, the data, the token if any, the
    calibrations' background registry and how long a request waits for its calibration."""

    choice: ModelChoice
    max_context: int | None
    service: ForecastService
    market: MarketData
    forecaster: ForecastSource | None = None
    compile: bool = False  # compile the decode step at start-up
    token: str | None = None  # KRONOS_API_TOKEN: wanted on every route but /health
    load_error: str = "the server is still starting"  # for clients: names no path
    calibrations: Jobs = field(default_factory=Jobs)
    calibration_wait: float = SERVER_DEFAULTS.calibration_wait

    @property
    def model_name(self) -> str:
        """How answers name the loaded model: a hub id or a local run's name, never a path."""
        return model_label(self.forecaster.name if self.forecaster is not None else self.choice.model)


def runtime_of(request: Request) -> Runtime:
    """The app's Runtime."""
    return request.app.state.runtime


def loaded_forecaster(request: Request) -> ForecastSource:
    """The model loaded at start-up; WeightsUnavailableError (503) when it could not be loaded."""
    runtime = runtime_of(request)
    if runtime.forecaster is None:
        raise WeightsUnavailableError(f"the model {runtime.model_name} is not loaded: {runtime.load_error}")
    return runtime.forecaster


bearer = HTTPBearer(auto_error=False, description="the server's KRONOS_API_TOKEN")


def require_token(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """401 unless the request carries `Authorization: Bearer <token>` with the server's token (compared in
    constant time); routes get this dependency only when a token is set."""
    expected = runtime_of(request).token or ""
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "this server wants its token: send `Authorization: Bearer <token>`",
                            headers={"WWW-Authenticate": "Bearer"})


def client_gone_event(request: Request) -> threading.Event:
    """Set once this request's client has closed its connection (kronos.cancellation.DisconnectWatch): the work
    asked for then stops at its next generation step and writes nothing more."""
    return client_gone(request.scope)


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
GoneDep = Annotated[threading.Event, Depends(client_gone_event)]
ForecasterDep = Annotated[ForecastSource, Depends(loaded_forecaster)]
