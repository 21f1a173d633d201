"""A history and its sampling arguments checked and made ready for the model, as the reference prepares them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kronos.data.validation import FEATURE_COLUMNS, PRICE_COLUMNS, check_forecast_span, check_history
from kronos.errors import InvalidInputError
from kronos.settings import MAX_ENGINE_SAMPLES, SEED_RANGE
from kronos.timeframes import median_step

CLIP = 5.0
STD_FLOOR = 1e-5  # the reference's (x - mean) / (std + 1e-5): it swamps the spread of columns far below 1
# A column below 1 is scaled to a level of 10^SCALED_LEVEL to 10^(SCALED_LEVEL + 1), where BTC trades: there
# STD_FLOOR is as negligible against a market's spread as the reference's own demo market has it.
SCALED_LEVEL = 4
MAX_EXPONENT = 300  # below 1e-296 a level is scaled short of the target: 10^300 is finite, 10^330 is not
# The columns given one power of ten between them: the four prices (so that their order within a candle holds), then
# volume and amount each on its own.
SCALE_GROUPS = ((0, 1, 2, 3), (4,), (5,))


def time_features(stamps: pd.DatetimeIndex) -> np.ndarray:
    """Minute, hour, weekday (Monday=0), day of month and month of each timestamp: (T, 5) int64."""
    return np.stack([stamps.minute, stamps.hour, stamps.day_of_week, stamps.day, stamps.month], axis=1).astype(np.int64)


def column_scales(values: np.ndarray, fit_rows: int | None = None) -> np.ndarray:
    """The power of ten (6,) by which each column is multiplied before normalising: 1 where the column's level (its
    largest |value| in the first `fit_rows` rows) is at or above 1, or 0; else the one that brings the level into
    [10^SCALED_LEVEL, 10^(SCALED_LEVEL + 1)). The four prices share one."""
    scale = np.ones(values.shape[1])
    for group in SCALE_GROUPS:
        level = float(np.abs(values[:fit_rows, group]).max())
        if 0 < level < 1:
            scale[list(group)] = 10.0 ** min(np.ceil(-np.log10(level)) + SCALED_LEVEL, MAX_EXPONENT)
    return scale


def normalise(values: np.ndarray, fit_rows: int | None = None,
              scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column (x - mean) / (std + 1e-5) clipped to +-5, in float32 as the reference: (normalised, mean, std).

    The mean and population std come from the first `fit_rows` rows (all by default): a training window
    is normalised from its lookback only, as a forecast is. Columns are first multiplied by `scale` (by default
    `column_scales`; 1 for every column at ordinary levels, which keeps the reference's numbers to the bit); the mean
    and std are of the scaled columns, so that a series times 10^k is normalised alike whatever k."""
    scale = column_scales(values, fit_rows) if scale is None else scale
    x = (values * scale).astype(np.float32)  # scaled in float64: float32 rounds values below 1e-38 to 0
    mean, std = x[:fit_rows].mean(axis=0), x[:fit_rows].std(axis=0)
    return np.clip((x - mean) / (std + STD_FLOOR), -CLIP, CLIP), mean, std


@dataclass(frozen=True)
class Prepared:
    """A history made ready for the model: its last `lookback` rows, normalised, with time features."""

    frame: pd.DataFrame  # the lookback rows
    x: np.ndarray  # (L, 6) normalised float32
    mean: np.ndarray  # (6,) of the scaled columns
    std: np.ndarray  # (6,) of the scaled columns
    scale: np.ndarray  # (6,) the powers of ten the columns were multiplied by (column_scales)
    features: np.ndarray  # (L, 5)
    future: pd.DatetimeIndex  # the horizon's candle times
    future_features: np.ndarray  # (horizon, 5)

    @property
    def identity(self) -> bytes:
        """What the model sees of this history (its normalised rows and time features): equal for equal ids."""
        return self.x.tobytes() + self.features.tobytes()

    def denormalise(self, rows: np.ndarray) -> np.ndarray:
        """Normalised rows (..., 6) back to prices and volumes (float64), every price above 0.

        The model's rows are unbounded: where the std rivals the mean, a price can come out at or below 0. Such a
        price is raised to the smallest one the float32 normalisation tells apart from 0 at the lookback's level,
        its mean times float32's epsilon (2^-23): positive, so log prices stay finite (about 16 below the mean's)."""
        values = (rows.astype(np.float64) * (self.std.astype(np.float64) + STD_FLOOR) + self.mean) / self.scale
        prices = len(PRICE_COLUMNS)
        floor = self.mean[:prices].astype(np.float64) * np.finfo(np.float32).eps / self.scale[:prices]
        values[..., :prices] = np.maximum(values[..., :prices], floor)
        return values


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
    values = frame[list(FEATURE_COLUMNS)].to_numpy()
    scale = column_scales(values)
    x, mean, std = normalise(values, scale=scale)
    return Prepared(frame, x, mean, std, scale, time_features(stamps), future, time_features(future))


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
