"""Every default and range of a forecast, once: sampling settings, the market, the model, the environment.

The engine, the command line, the HTTP API and the dashboard (sidebar and links) take their defaults
and limits from here, so they cannot drift apart. The defaults are the live BTC/USDT demo's.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from kronos.errors import InvalidInputError
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


def draw_seed() -> int:
    """A fresh random seed inside SEED_RANGE, so that every front end accepts it back."""
    return secrets.randbelow(SEED_RANGE[1] + 1)


@dataclass(frozen=True)
class ForecastSettings:
    """Sampling settings of one forecast; `lookback` is how many of the latest candles the model sees."""

    horizon: int = 24
    samples: int = 30
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 0
    lookback: int = 383
    seed: int = 42
    hour_idx: int | None = None  # the hour the headline figures describe; None: the horizon

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
    def from_query(cls, params: Mapping[str, str]) -> "ForecastSettings":
        """Settings from URL query parameters; unknown keys are ignored, bad values raise InvalidInputError."""
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in params:
                kind = float if field.name in ("temperature", "top_p") else int
                try:
                    values[field.name] = kind(params[field.name])
                except ValueError:
                    raise InvalidInputError(f"{field.name} must be a number, got {params[field.name]!r}") from None
        return cls(**values)


DEFAULTS = ForecastSettings()


@dataclass(frozen=True)
class MarketChoice:
    """Which candles to forecast: an exchange (asked first), a BASE/QUOTE symbol, a timeframe and a mode."""

    exchange: str = "binance"
    symbol: str = "BTC/USDT"
    timeframe: str = "1h"
    mode: str = "aligned"

    def __post_init__(self):
        problems = []
        if not re.fullmatch(SYMBOL_PATTERN, self.symbol):
            problems.append(f"symbol {self.symbol!r} should look like BASE/QUOTE, e.g. BTC/USDT")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
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
class Environment:
    """The KRONOS_* environment variables, read here and nowhere else."""

    model: ModelChoice = ModelChoice()
    store: Path | None = None  # KRONOS_STORE: the candle store file
    models: Path | None = None  # KRONOS_MODELS: the folder of trained checkpoints
    torch_threads: int | None = None  # KRONOS_TORCH_THREADS: torch threads (default: torch's, every core)
    compile: bool = False  # KRONOS_COMPILE=1: compile the decode step (long-lived servers)
    store_paths_mb: int = 300  # KRONOS_STORE_PATHS_MB: MB of backtest paths the store keeps (oldest evicted first)

    @classmethod
    def read(cls, environ: Mapping[str, str] = os.environ) -> "Environment":
        """Read KRONOS_MODEL, KRONOS_TOKENIZER, KRONOS_STORE, KRONOS_MODELS, KRONOS_TORCH_THREADS, KRONOS_COMPILE,
        KRONOS_STORE_PATHS_MB."""
        threads = environ.get("KRONOS_TORCH_THREADS", "")
        paths_mb = environ.get("KRONOS_STORE_PATHS_MB", "")
        return cls(ModelChoice(environ.get("KRONOS_MODEL") or "mini", environ.get("KRONOS_TOKENIZER") or None),
                   _path(environ.get("KRONOS_STORE")), _path(environ.get("KRONOS_MODELS")),
                   int(threads) if threads.isdigit() and int(threads) > 0 else None,
                   environ.get("KRONOS_COMPILE", "").lower() in ("1", "true", "yes"),
                   int(paths_mb) if paths_mb.isdigit() else cls.store_paths_mb)


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None
