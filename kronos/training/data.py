"""Training data: candle series from files or the store, a time split, and windows normalised from their own lookback.

A window is `lookback + horizon` consecutive rows of one series, normalised exactly as a forecast
normalises its history (kronos.engine.normalise over the window's lookback rows only) and stamped with
kronos.engine.time_features. Windows never cross a series (file) boundary or the split: training windows
end before `val_from`, validation windows start at or after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kronos.data.reading import read_file
from kronos.data.store import CandleStore, empty_store_message
from kronos.data.validation import FEATURE_COLUMNS
from kronos.engine import normalise, time_features
from kronos.errors import EmptyStoreError, InvalidInputError


@dataclass(frozen=True)
class Series:
    """One contiguous candle history (a file or a stored market), oldest row first."""

    name: str
    source: str  # "csv" or "store"
    stamps: pd.DatetimeIndex
    values: np.ndarray  # (N, 6) float64, FEATURE_COLUMNS, column-major as the engine's frames
    features: np.ndarray  # (N, 5) int64 time features

    @classmethod
    def from_frame(cls, name: str, source: str, frame: pd.DataFrame) -> Series:
        """A series from a frame in the engine's format (timestamps + the six feature columns)."""
        stamps = pd.DatetimeIndex(frame["timestamps"])
        # column-major like the engine's `frame.to_numpy()`: float32 sums depend on the layout, and a window must be
        # normalised to the bit as a forecast from the same rows
        values = np.asfortranarray(frame[list(FEATURE_COLUMNS)].to_numpy(np.float64))
        return cls(name, source, stamps, values, time_features(stamps))

    def describe(self) -> dict:
        """JSON-ready: name, source, rows, first and last timestamps."""
        return {"name": self.name, "source": self.source, "rows": len(self.stamps),
                "first": self.stamps[0].isoformat(), "last": self.stamps[-1].isoformat()}


def read_csv_series(paths: list[str]) -> tuple[list[Series], list[str]]:
    """Each file through the project's validator: the series and the validator's warnings (InvalidInputError if any
    file has errors)."""
    series, warnings, problems = [], [], []
    for path in paths:
        result = read_file(path)
        name = Path(path).name
        problems += [f"{name}: {message}" for message in result.errors]
        warnings += [f"{name}: {message}" for message in result.warnings]
        if result.ok:
            series.append(Series.from_frame(str(path), "csv", result.frame))
    if problems:
        raise InvalidInputError(problems)
    return series, warnings


def read_store_series(store: CandleStore, exchange: str, symbol: str, timeframe: str) -> Series:
    """Every stored candle of one market; EmptyStoreError saying how to fill the store when there are none."""
    frame = store.load(exchange, symbol, timeframe)
    if frame.empty:
        raise EmptyStoreError(empty_store_message(store, exchange, symbol, timeframe), str(store.path))
    return Series.from_frame(f"{exchange} {symbol} {timeframe}", "store", frame)


@dataclass(frozen=True)
class Split:
    """Where validation starts, and how that moment was chosen."""

    val_from: pd.Timestamp
    how: str

    def describe(self) -> dict:
        return {"val_from": self.val_from.isoformat(), "how": self.how}


def choose_split(series: list[Series], val_from: str | None, val_fraction: float) -> Split:
    """`val_from` (a date) or the last `val_fraction` of the whole time span; InvalidInputError when outside the
    data."""
    first, last = min(s.stamps[0] for s in series), max(s.stamps[-1] for s in series)
    if val_from is None:
        if not 0 < val_fraction < 1:
            raise InvalidInputError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        moment = first + (last - first) * (1 - val_fraction)
        return Split(moment, f"the last {val_fraction:g} of the time span")
    try:
        moment = pd.Timestamp(val_from)
    except (ValueError, TypeError):
        raise InvalidInputError(f"--val-from must be a date or time such as 2025-06-01, got {val_from!r}") from None
    if moment.tzinfo is not None:
        moment = moment.tz_convert("UTC").tz_localize(None)
    if not first < moment <= last:
        raise InvalidInputError(f"--val-from {val_from} is outside the data ({first} to {last}); choose a moment "
                                "inside it, so that there is data to train on before it and to validate on after it")
    return Split(moment, f"--val-from {val_from}")


@dataclass(frozen=True)
class Windows:
    """Windows of `lookback + horizon` rows as (series, first row) pairs, made into arrays on demand."""

    series: list[Series]
    starts: np.ndarray  # (N, 2) int64: series index, first row
    lookback: int
    horizon: int

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows `indices` -> normalised rows (B, W, 6) float32 and time features (B, W, 5) int64."""
        width = self.lookback + self.horizon
        rows, stamps = [], []
        for s, first in self.starts[indices]:
            series = self.series[s]
            x, _, _ = normalise(series.values[first:first + width], fit_rows=self.lookback)  # (W, 6)
            rows.append(x)
            stamps.append(series.features[first:first + width])
        return np.stack(rows), np.stack(stamps)

    def subset(self, count: int) -> Windows:
        """At most `count` windows spread evenly over these (all of them when there are fewer)."""
        if len(self) <= count:
            return self
        picked = np.unique(np.linspace(0, len(self) - 1, count).round().astype(np.int64))
        return Windows(self.series, self.starts[picked], self.lookback, self.horizon)


def make_windows(series: list[Series], split: Split, lookback: int, horizon: int) -> tuple[Windows, Windows]:
    """Every training window (ending before the split) and validation window (starting at or after it).

    InvalidInputError, saying what to change, when either side has none.
    """
    width = lookback + horizon
    train, val = [], []
    for i, s in enumerate(series):
        cut = int(np.searchsorted(s.stamps.values, split.val_from.to_datetime64()))  # first row at or after the split
        train += [(i, first) for first in range(0, cut - width + 1)]
        val += [(i, first) for first in range(cut, len(s.stamps) - width + 1)]
    problems = []
    if not train:
        problems.append(f"no training window of {width} rows (lookback {lookback} + horizon {horizon}) ends before "
                        f"the split at {split.val_from}; move the split later (--val-from, --val-fraction), use more "
                        "data, or a shorter --lookback/--horizon")
    if not val:
        problems.append(f"no validation window of {width} rows fits after the split at {split.val_from}; move the "
                        "split earlier (--val-from, --val-fraction), or use a shorter --lookback/--horizon")
    if problems:
        raise InvalidInputError(problems)
    return (Windows(series, np.array(train, dtype=np.int64), lookback, horizon),
            Windows(series, np.array(val, dtype=np.int64), lookback, horizon))
