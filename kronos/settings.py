"""Every default, range and help text of a forecast, once: sampling settings, backtests' origin limits, the market,
the model, the server, the environment.

The engine, the command line, the HTTP API and the dashboard (sidebar and links) take their defaults, limits and
help texts (each field's metadata or pydantic description, `help_texts`) from here, so they cannot drift apart: the
sampling settings are one pydantic model, ForecastSettings, whose fields the API's queries inherit and whose bounds
(RANGES) and titles the sidebar reads. The defaults are the live BTC/USDT demo's.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from kronos.errors import ConfigurationError, InvalidInputError, excerpt
from kronos.timeframes import timeframe_delta

SEED_RANGE = (0, 2**31 - 1)
MAX_ENGINE_SAMPLES = 1000
EXCHANGES = ("binance", "okx", "bybit", "kraken")  # asked in this order: the chosen one first, then the others
MODES = ("aligned", "realtime")  # aligned drops the still-open candle, realtime keeps it
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,19}/[A-Za-z0-9][A-Za-z0-9._-]{0,19}$"

# The work one HTTP request may ask for, in generated candle steps: origins x paths x horizon (a forecast is one
# origin). The backtest benchmark generates about 3,600 a second (mini, 30 paths, lookback 383, 2 CPU cores:
# docs/benchmarks.md), so 300,000 take about 80 s, within the server's default 120 s request timeout (ServerSettings)
# with room for the rest of the request. A forecast (at most 100 paths x 48 hours = 4,800) always fits. More is refused
# (422) before any work.
MAX_REQUEST_WORK = 300_000

# Scans (kronos.scan.ranking): the default watchlist, and the budget of one GET /scan request or Markets page scan (the
# command line may scan up to SCAN_MAX_MARKETS_CLI markets, on a Ray cluster for large ones).
SCAN_TOP, SCAN_QUOTE = 20, "USDT"  # the top 20 USDT markets by 24 h quote volume
SCAN_MAX_MARKETS = 50  # markets one request may scan
SCAN_MAX_PATHS = 1500  # markets x samples one request may ask for (50 markets x 30 paths)
SCAN_MAX_MARKETS_CLI = 1000


def _setting(default: Any, help: str) -> Any:
    """A dataclass field with its help text, read by the CLI (--help), the API (OpenAPI) and the sidebar (tooltips)."""
    return dataclasses.field(default=default, metadata={"help": help})


def help_texts(settings: type) -> dict[str, str]:
    """The help text of each field of a settings dataclass (its metadata) or pydantic model (its description)."""
    if issubclass(settings, BaseModel):
        return {name: field.description for name, field in settings.model_fields.items() if field.description}
    return {field.name: field.metadata["help"] for field in dataclasses.fields(settings) if "help" in field.metadata}


def draw_seed() -> int:
    """A fresh random seed inside SEED_RANGE, so that every front end accepts it back."""
    return secrets.randbelow(SEED_RANGE[1] + 1)


def bounds(model: type[BaseModel], name: str) -> tuple[Any, Any]:
    """A field's (minimum, maximum): its `ge` and `le` constraints."""
    limits = {key: getattr(rule, key) for rule in model.model_fields[name].metadata for key in ("ge", "le")
              if hasattr(rule, key)}
    return limits["ge"], limits["le"]


def _hour_problem(horizon: object, hour_idx: object) -> str:
    return f"hour_idx must be between 1 and the horizon ({horizon}), got {hour_idx}"


class ForecastSettings(BaseModel):
    """Sampling settings of one forecast; `lookback` is how many of the latest candles the model sees.

    Each field's bounds are every front end's (the Python engine also takes more samples and a longer horizon), its
    description the help text and its title the sidebar's label. Made with bad values it raises InvalidInputError
    naming each one (`invalid`); validated as a field of another model, pydantic's ValidationError."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon: int = Field(24, ge=1, le=48, title="Horizon (hours ahead)", description="candles to forecast")
    samples: int = Field(30, ge=1, le=100, title="Sample paths", description="Monte Carlo paths")
    temperature: float = Field(1.0, ge=0.1, le=2.0, title="Temperature",
                               description="sampling temperature: above 1 spreads the paths, below 1 narrows them")
    top_p: float = Field(0.95, ge=0.1, le=1.0, title="Top-p",
                         description="nucleus sampling: keep the most likely tokens up to this probability")
    top_k: int = Field(0, ge=0, le=100, title="Top-k (0 = off)", description="keep the k most likely tokens (0: off)")
    lookback: int = Field(383, ge=32, le=2048, title="Lookback (candles)",
                          description="history candles the model sees (fewer when fewer are available)")
    seed: int = Field(42, ge=SEED_RANGE[0], le=SEED_RANGE[1], title="Seed",
                      description="random seed: the same seed, settings and data give the same paths")
    hour_idx: int | None = Field(None, ge=1, title="Hour index",
                                 description="hour ahead whose upside probability is reported (default: the horizon)")

    def __init__(self, **values: Any):
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise invalid(error, values) from None

    @model_validator(mode="after")
    def _hour_within_horizon(self) -> ForecastSettings:
        if self.hour_idx is not None and self.hour_idx > self.horizon:
            raise PydanticCustomError("hour_idx", _hour_problem(self.horizon, self.hour_idx))
        return self

    def engine_arguments(self, rows: int | None = None) -> dict:
        """Keyword arguments for Forecaster.forecast; with `rows`, the lookback is cut to the rows available."""
        arguments = self.model_dump(include=set(SAMPLING_NAMES))
        if rows is not None:
            arguments["lookback"] = min(self.lookback, rows)
        return arguments

    def to_query(self) -> dict[str, str]:
        """The settings as URL query parameters (strings)."""
        return {k: str(v) for k, v in self.model_dump(include=set(SETTING_NAMES), exclude_none=True).items()}

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> ForecastSettings:
        """Settings from URL query parameters; unknown keys are ignored, bad values raise InvalidInputError."""
        return ForecastSettings(**{name: params[name] for name in SETTING_NAMES if name in params})


SETTING_NAMES = tuple(ForecastSettings.model_fields)
SAMPLING_NAMES = tuple(name for name in SETTING_NAMES if name != "hour_idx")  # the engine's keyword arguments
# name: (minimum, maximum) of every front end, from the fields' bounds
RANGES = {name: bounds(ForecastSettings, name) for name in SAMPLING_NAMES}
BOUND_ERRORS = ("greater_than_equal", "less_than_equal", "greater_than", "less_than")
NUMBER_ERRORS = ("int_parsing", "int_type", "float_parsing", "float_type")


def invalid(error: ValidationError, values: Mapping[str, Any]) -> InvalidInputError:
    """pydantic's ValidationError of settings made from `values`, as InvalidInputError worded for people: a setting
    out of range with its bounds, a value that is no number quoted, any other fault as `field: message`."""
    problems = []
    for fault in error.errors(include_url=False):
        name, kind, got = ".".join(map(str, fault["loc"])), fault["type"], fault.get("input")
        if name == "hour_idx" and kind in BOUND_ERRORS:
            problems.append(_hour_problem(values.get("horizon", FORECAST_DEFAULTS.horizon), got))
        elif name in RANGES and kind in BOUND_ERRORS:
            problems.append(f"{name} must be between {RANGES[name][0]} and {RANGES[name][1]}, got {got}")
        elif kind == "int_from_float":
            problems.append(f"{name} must be a whole number, got {got}")
        elif kind in NUMBER_ERRORS:
            problems.append(f"{name} must be a number, got {excerpt(got)}")
        else:
            problems.append(f"{name}: {fault['msg']}" if name else fault["msg"])
    return InvalidInputError(problems)


FORECAST_DEFAULTS = ForecastSettings()


@dataclass(frozen=True)
class OriginLimits:
    """The most origins one backtest may have, by who asks, each with why (its help text). Every caller's bound is
    read from here (ORIGIN_LIMITS); the engine's is also checked by kronos.evaluation.backtest.BacktestSettings."""

    engine: int = _setting(2000, "memory: every origin's paths are held at once, about 77 MB per (origins, paths, "
                                 "hours) array at 100 paths x 48 hours, and the forecasters hold about ten of them")
    api: int = _setting(500, "the time of one HTTP request, with MAX_REQUEST_WORK (usually binding first: 416 "
                             "origins at 30 paths x 24 hours)")
    page: int = _setting(500, "the time of one Track record page run: 500 origins at 30 paths x 24 hours are about "
                              "100 s on 2 CPU cores")
    training: int = _setting(300, "the time an --evaluate adds to a training run, per series and contender: about "
                                  "60 s at 30 paths x 24 hours on 2 CPU cores")


ORIGIN_LIMITS = OriginLimits()


@dataclass(frozen=True)
class MarketChoice:
    """Which candles to forecast: an exchange (asked first), a BASE/QUOTE symbol, a timeframe and a mode."""

    exchange: str = _setting("binance", f"ccxt exchange id asked first, then the others of {', '.join(EXCHANGES)}")
    symbol: str = _setting("BTC/USDT", "market symbol, BASE/QUOTE, e.g. BTC/USDT or ETH/USDT")
    timeframe: str = _setting("1h", "candle length, e.g. 5m, 1h, 1d")
    mode: str = _setting("aligned", "aligned: closed candles only; realtime: the still-open candle too")

    def __post_init__(self):
        problems = []
        if not re.fullmatch(SYMBOL_PATTERN, self.symbol):
            problems.append(f"symbol {excerpt(self.symbol)} should look like BASE/QUOTE, e.g. BTC/USDT")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, got {excerpt(self.mode)}")
        try:
            timeframe_delta(self.timeframe)
        except InvalidInputError as error:
            problems += error.problems
        if problems:
            raise InvalidInputError(problems)

    def exchanges(self) -> tuple[str, ...]:
        """The exchanges to ask, in order: the chosen one, then the other EXCHANGES."""
        return tuple(dict.fromkeys((self.exchange, *EXCHANGES)))


@dataclass(frozen=True)
class ModelChoice:
    """Which weights to load: a preset (mini, small, base), hub id or directory, and an optional tokenizer."""

    model: str = "mini"
    tokenizer: str | None = None


@dataclass(frozen=True)
class ServerSettings:
    """How the HTTP API serves (`python -m kronos serve`, kronos.api.create_app, kronos.serving.service): address, pool,
    deadlines.

    Concurrent requests' forecasts run in shared batches (kronos.serving.batching), so a worker mostly waits for its
    batch: 16
    at once keep the batches full (the API benchmark's 16 clients, docs/benchmarks.md), 32 more may wait, and beyond
    that a request is refused at once (429 with Retry-After) rather than piling up. 120 s covers the largest request the
    work budget lets through (MAX_REQUEST_WORK, about 80 s). An exchange slower than 10 s is replaced by the store. A
    request body may take 30 s to arrive: the largest allowed (4 MiB) needs only about 1 Mbit/s. A calibrate=true
    request waits 5 s for its calibration (a background job), then answers 202: ask again.
    """

    host: str = _setting("127.0.0.1", "address to listen on")
    port: int = _setting(8000, "port to listen on")
    workers: int = _setting(16, "requests handled at once; their forecasts run in shared batches")
    queue_size: int = _setting(32, "requests waiting for a worker; beyond them the server answers 429")
    timeout: float = _setting(120.0, "seconds a request waits for its forecast before the server answers 503")
    exchange_timeout: float = _setting(10.0, "seconds to wait for the exchanges before answering from the local store")
    body_timeout: float = _setting(30.0, "seconds a client may take to send its request body before the server "
                                         "answers 408 and closes the connection")
    calibration_wait: float = _setting(5.0, "seconds a calibrate=true request waits for its calibration before "
                                            "answering 202 with Retry-After (the calibration goes on; ask again)")

    def __post_init__(self):
        problems = [f"{name} must be {rule}, got {getattr(self, name)}" for name, rule, ok in (
            ("port", "between 0 and 65535", 0 <= self.port <= 65535), ("workers", "at least 1", self.workers >= 1),
            ("queue_size", "at least 0", self.queue_size >= 0), ("timeout", "over 0", self.timeout > 0),
            ("exchange_timeout", "over 0", self.exchange_timeout > 0),
            ("body_timeout", "over 0", self.body_timeout > 0),
            ("calibration_wait", "at least 0", self.calibration_wait >= 0)) if not ok]
        if problems:
            raise InvalidInputError(problems)


SERVER_DEFAULTS = ServerSettings()


FLAG = "1 or 0 (true or false, yes or no)"


class Environment(BaseSettings):
    """The KRONOS_* environment variables, read here and nowhere else: KRONOS_ and each field's name in capitals
    (KRONOS_MODEL and KRONOS_TOKENIZER make `model`), empty ones as unset; a bad value is a ConfigurationError naming
    the variable and what it takes."""

    model_config = SettingsConfigDict(env_prefix="KRONOS_", env_ignore_empty=True, frozen=True, extra="ignore")

    model: Annotated[ModelChoice, NoDecode] = Field(ModelChoice(), description="preset, hub id or checkpoint directory")
    tokenizer: str | None = Field(None, description="tokenizer hub id or directory (default: the model's)")
    store: Path | None = Field(None, description="the candle store file")
    models: Path | None = Field(None, description="the folder of trained checkpoints")
    torch_threads: int | None = Field(None, ge=1, description="a count of torch threads, 1 or more (default: "
                                                              "torch's, every core)")
    compile: bool = Field(False, description=f"{FLAG}, whether to compile the decode step (long-lived servers)")
    # visitors (dashboard sidebar, links) may load any directory or hub id, not only the presets, the models folder's
    # training runs and KRONOS_MODEL; off by default, so a shared deploy is safe
    allow_any_model: bool = Field(False, description=f"{FLAG}, whether visitors may load any directory or hub id")
    api_token: str | None = Field(None, description="when set, the HTTP API wants `Authorization: Bearer <it>`")
    ray_address: str | None = Field(None, description="the Ray cluster of scans (kronos.serving.cluster)")
    store_paths_mb: int = Field(300, ge=0, description="the MB of backtest paths the store keeps (oldest evicted "
                                                       "first), 0 or more")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   **others: Any) -> tuple:
        return (init_settings,)  # the values `read` gives: the variables of its mapping, nothing else

    @model_validator(mode="before")
    @classmethod
    def _model_choice(cls, values: dict[str, Any]) -> dict[str, Any]:
        """KRONOS_MODEL (default mini) and KRONOS_TOKENIZER as one ModelChoice."""
        model = values.get("model", ModelChoice())
        if isinstance(model, str):
            values = {**values, "model": ModelChoice(model, values.get("tokenizer"))}
        return values

    @field_validator("store", "models")
    @classmethod
    def _home(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser()

    @classmethod
    def read(cls, environ: Mapping[str, str] = os.environ) -> Environment:
        """The KRONOS_* variables of `environ`; ConfigurationError naming each bad one and what it takes."""
        try:
            return cls(**_Variables(cls, environ)())
        except ValidationError as error:
            raise ConfigurationError("; ".join(_refused(fault) for fault in error.errors(include_url=False))) from None


def _refused(fault: Any) -> str:
    """One bad variable: its name and value, what is wrong, and what it takes (its field's description)."""
    name = str(fault["loc"][0])
    return (f"KRONOS_{name.upper()}={excerpt(fault['input'])} is not allowed ({fault['msg'][0].lower()}"
            f"{fault['msg'][1:]}): it takes {Environment.model_fields[name].description}")


class _Variables(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping rather than os.environ."""

    def __init__(self, settings: type[BaseSettings], environ: Mapping[str, str]):
        self.environ = environ
        super().__init__(settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self.environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)
