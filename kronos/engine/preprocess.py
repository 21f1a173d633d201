"""A history and its sampling arguments checked and made ready for the model, as the reference prepares them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kronos.data.validation import FEATURE_COLUMNS, check_forecast_span, check_history
from kronos.errors import InvalidInputError
from kronos.settings import MAX_ENGINE_SAMPLES, SEED_RANGE
from kronos.timeframes import median_step

CLIP = 5.0


def time_features(stamps: pd.DatetimeIndex) -> np.ndarray:
    """Minute, hour, weekday (Monday=0), day of month and month of each timestamp: (T, 5) int64."""
    return np.stack([stamps.minute, stamps.hour, stamps.day_of_week, stamps.day, stamps.month], axis=1).astype(np.int64)


def normalise(values: np.ndarray, fit_rows: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column (x - mean) / (std + 1e-5) clipped to +-5, in float32 as the reference: (normalised, mean, std).

    The mean and population std come from the first `fit_rows` rows (all by default): a training window
    is normalised from its lookback only, as a forecast is."""
    x = values.astype(np.float32)
    mean, std = x[:fit_rows].mean(axis=0), x[:fit_rows].std(axis=0)
    return np.clip((x - mean) / (std + 1e-5), -CLIP, CLIP), mean, std


@dataclass(frozen=True)
class Prepared:
    """A history made ready for the model: its last `lookback` rows, normalised, with time features."""

    frame: pd.DataFrame  # the lookback rows
    x: np.ndarray  # (L, 6) normalised float32
    mean: np.ndarray  # (6,)
    std: np.ndarray  # (6,)
    features: np.ndarray  # (L, 5)
    future: pd.DatetimeIndex  # the horizon's candle times
    future_features: np.ndarray  # (horizon, 5)

    @property
    def identity(self) -> bytes:
        """What the model sees of this history (its normalised rows and time features): equal for equal ids."""
        return self.x.tobytes() + self.features.tobytes()

    def denormalise(self, rows: np.ndarray) -> np.ndarray:
        """Normalised rows (..., 6) back to prices and volumes (float64)."""
        return rows.astype(np.float64) * (self.std.astype(np.float64) + 1e-5) + self.mean


def prepare(history: pd.DataFrame, horizon: int, lookback: int | None, max_context: int) -> Prepared:
    """Check a history, keep its last `lookback` rows (default: up to the context), normalise them, and stamp
    the horizon's candles one median step apart."""
    frame = check_history(history)
    if lookback is not None and not 1 <= lookback <= len(frame):
        raise InvalidInputError(f"lookback must be between 1 and the number of history rows ({len(frame)}), "
                                f"got {lookback}")
    frame = frame.iloc[-(lookback or min(len(frame), max_context)):].reset_index(drop=True)
    check_forecast_span(frame["timestamps"], horizon)
    stamps = pd.DatetimeIndex(frame["timestamps"])
    step = median_step(stamps)
    future = pd.DatetimeIndex([stamps[-1] + step * (i + 1) for i in range(max(horizon, 0))])
    x, mean, std = normalise(frame[list(FEATURE_COLUMNS)].to_numpy())
    return Prepared(frame, x, mean, std, time_features(stamps), future, time_features(future))


def per_history(histories: int, samples: int | Sequence[int],
                seeds: Sequence[int | None] | None) -> tuple[list[int], list[int | None]]:
    """One sample count and one seed (None: to be drawn) per history, from one count or one each."""
    counts = [samples] * histories if isinstance(samples, int) else list(samples)
    chosen = list(seeds) if seeds is not None else [None] * histories
    if not len(chosen) == len(counts) == histories:
        raise InvalidInputError(f"give one seed and one sample count per history: {histories} histories, "
                                f"{len(chosen)} seeds, {len(counts)} sample counts")
    return counts, chosen


def check_arguments(max_context: int, horizon: int, samples: int, temperature: float, top_p: float, top_k: int,
                    seeds: Sequence[int | None] = ()) -> None:
    """Raise InvalidInputError naming each bad sampling argument and its allowed range."""
    problems = []
    if not 1 <= horizon < max_context:
        problems.append(f"horizon must be between 1 and {max_context - 1} (the context less one), got {horizon}")
    if not 1 <= samples <= MAX_ENGINE_SAMPLES:
        problems.append(f"samples must be between 1 and {MAX_ENGINE_SAMPLES}, got {samples}")
    if not temperature > 0:
        problems.append(f"temperature must be greater than 0, got {temperature}")
    if not 0 < top_p <= 1:
        problems.append(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        problems.append(f"top_k must be 0 (off) or a positive count, got {top_k}")
    low, high = SEED_RANGE
    problems += [f"seed must be between {low} and {high}, got {s}" for s in seeds if s is not None
                 and not low <= s <= high]
    if problems:
        raise InvalidInputError(problems)
