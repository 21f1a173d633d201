"""The forecast settings every front end offers (dashboard, HTTP API, links), with their allowed ranges.

One place defines the ranges, the defaults of the live demo and the model selection from the
environment, so the sidebar, the URL and the API cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from kronos.errors import InvalidInputError

# name: (minimum, maximum) for the interactive front ends; the engine itself allows more.
RANGES = {
    "horizon": (1, 48),
    "samples": (1, 100),
    "temperature": (0.1, 2.0),
    "top_p": (0.1, 1.0),
    "top_k": (0, 100),
    "lookback": (32, 2048),
    "seed": (0, 2**31 - 1),
}


@dataclass(frozen=True)
class ForecastSettings:
    """Sampling settings of one forecast; the defaults are the live BTC/USDT demo's."""

    horizon: int = 24
    samples: int = 30
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 0
    lookback: int = 383
    seed: int = 42
    hour_idx: int | None = None

    def __post_init__(self):
        problems = [f"{name} must be between {low} and {high}, got {getattr(self, name)}"
                    for name, (low, high) in RANGES.items() if not low <= getattr(self, name) <= high]
        if self.hour_idx is not None and not 1 <= self.hour_idx <= self.horizon:
            problems.append(f"hour_idx must be between 1 and the horizon ({self.horizon}), got {self.hour_idx}")
        if problems:
            raise InvalidInputError(problems)

    def engine_arguments(self) -> dict:
        """Keyword arguments for Forecaster.forecast."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "hour_idx"}

    def to_query(self) -> dict[str, str]:
        """The settings as URL query parameters (strings)."""
        return {k: str(v) for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_query(cls, params: dict[str, str]) -> "ForecastSettings":
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


@dataclass(frozen=True)
class ModelChoice:
    """Which weights to load: a preset (mini, small, base), hub id or directory, and an optional tokenizer."""

    model: str = "mini"
    tokenizer: str | None = None

    @classmethod
    def from_env(cls) -> "ModelChoice":
        """KRONOS_MODEL and KRONOS_TOKENIZER (a preset, hub id or directory each), else Kronos-mini."""
        return cls(os.environ.get("KRONOS_MODEL") or "mini", os.environ.get("KRONOS_TOKENIZER") or None)
