"""Every default, range and help text of a forecast, once: sampling settings, backtests' origin limits, the market,
the model, the server, the environment.

The engine, the command line, the HTTP API and the dashboard (sidebar and links) take their defaults, limits and
help texts (each field's metadata, `help_texts`) from here, so they cannot drift apart. The defaults are the live
BTC/USDT demo's.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kronos.errors import InvalidInputError, excerpt
from kronos.timeframes import timeframe_delta

SEED_RANGE = (0, 2**31 - 1)
# name: (minimum, maximum) of every front end; the Python engine also takes more samples and a longer horizon.
RANGES = {
    "horizon": (1, 48),
    "samples": (1, 100),
    "temperature": (0.1, 2.0),
    "top_p": (0.1, 1.0),
    "top_k": (0, 100),
    "lookback": (32, 2048),
    "seed": SEED_RANGE,
}
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
    """The help text of each field of a settings dataclass, by field name."""
    return {field.name: field.metadata["help"] for field in dataclasses.fields(settings) if "help" in field.metadata}


def draw_seed() -> int:
    """A fresh random seed inside SEED_RANGE, so that every front end accepts it back."""
    return secrets.randbelow(SEED_RANGE[1] + 1)


@dataclass(frozen=True)
class ForecastSettings:
    """Sampling settings of one forecast; `lookback` is how many of the latest candles the model sees."""

    horizon: int = _setting(24, "candles to forecast")
    samples: int = _setting(30, "Monte Carlo paths")
    temperature: float = _setting(1.0, "sampling temperature: above 1 spreads the paths, below 1 narrows them")
    top_p: float = _setting(0.95, "nucleus sampling: keep the most likely tokens up to this probability")
    top_k: int = _setting(0, "keep the k most likely tokens (0: off)")
    lookback: int = _setting(383, "history candles the model sees (fewer when fewer are available)")
    seed: int = _setting(42, "random seed: the same seed, settings and data give the same paths")
    hour_idx: int | None = _setting(None, "hour ahead whose upside probability is reported (default: the horizon)")

    def __post_init__(self):
        problems = [f"{name} must be between {low} and {high}, got {getattr(self, name)}"
                    for name, (low, high) in RANGES.items() if not low <= getattr(self, name) <= high]
        if self.hour_idx is not None and not 1 <= self.hour_idx <= self.horizon:
            problems.append(f"hour_idx must be between 1 and the horizon ({self.horizon}), got {self.hour_idx}")
        if problems:
            raise InvalidInputError(problems)

    def engine_arguments(self, rows: int | None = None) -> dict:
        """Keyword arguments for Forecaster.forecast; with `rows`, the lookback is cut to the rows available."""
        arguments = {k: v for k, v in dataclasses.asdict(self).items() if k != "hour_idx"}
        if rows is not None:
            arguments["lookback"] = min(self.lookback, rows)
        return arguments

    def to_query(self) -> dict[str, str]:
        """The settings as URL query parameters (strings)."""
        return {k: str(v) for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> ForecastSettings:
        """Settings from URL query parameters; unknown keys are ignored, bad values raise InvalidInputError."""
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in params:
                kind = float if field.name in ("temperature", "top_p") else int
                try:
                    values[field.name] = kind(params[field.name])
                except ValueError:
                    raise InvalidInputError(f"{field.name} must be a number, got {excerpt(params[field.name])}"
                                            ) from None
        return cls(**values)


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


@dataclass(frozen=True)
class Environment:
    """The KRONOS_* environment variables, read here and nowhere else."""

    model: ModelChoice = ModelChoice()
    store: Path | None = None  # KRONOS_STORE: the candle store file
    models: Path | None = None  # KRONOS_MODELS: the folder of trained checkpoints
    torch_threads: int | None = None  # KRONOS_TORCH_THREADS: torch threads (default: torch's, every core)
    compile: bool = False  # KRONOS_COMPILE=1: compile the decode step (long-lived servers)
    # KRONOS_ALLOW_ANY_MODEL=1: visitors (dashboard sidebar, links) may load any directory or hub id, not only the
    # presets, the models folder's training runs and KRONOS_MODEL; off by default, so a shared deploy is safe
    allow_any_model: bool = False
    api_token: str | None = None  # KRONOS_API_TOKEN: when set, the HTTP API wants `Authorization: Bearer <it>`
    ray_address: str | None = None  # KRONOS_RAY_ADDRESS: the Ray cluster of scans (kronos.serving.cluster)
    store_paths_mb: int = 300  # KRONOS_STORE_PATHS_MB: MB of backtest paths the store keeps (oldest evicted first)

    @classmethod
    def read(cls, environ: Mapping[str, str] = os.environ) -> Environment:
        """Read KRONOS_MODEL, KRONOS_TOKENIZER, KRONOS_STORE, KRONOS_MODELS, KRONOS_TORCH_THREADS, KRONOS_COMPILE,
        KRONOS_ALLOW_ANY_MODEL, KRONOS_API_TOKEN, KRONOS_RAY_ADDRESS, KRONOS_STORE_PATHS_MB."""
        threads = environ.get("KRONOS_TORCH_THREADS", "")
        paths_mb = environ.get("KRONOS_STORE_PATHS_MB", "")
        return cls(ModelChoice(environ.get("KRONOS_MODEL") or "mini", environ.get("KRONOS_TOKENIZER") or None),
                   _path(environ.get("KRONOS_STORE")), _path(environ.get("KRONOS_MODELS")),
                   int(threads) if threads.isdigit() and int(threads) > 0 else None,
                   _flag(environ.get("KRONOS_COMPILE")), allow_any_model=_flag(environ.get("KRONOS_ALLOW_ANY_MODEL")),
                   api_token=environ.get("KRONOS_API_TOKEN") or None,
                   ray_address=environ.get("KRONOS_RAY_ADDRESS") or None,
                   store_paths_mb=int(paths_mb) if paths_mb.isdigit() else cls.store_paths_mb)


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None
