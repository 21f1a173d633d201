"""Checks that turn a candle frame into what the engine takes, or say exactly what is wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kronos.errors import InvalidInputError

PRICE_COLUMNS = ("open", "high", "low", "close")
FEATURE_COLUMNS = PRICE_COLUMNS + ("volume", "amount")
MIN_ROWS = 32


def check_history(history: pd.DataFrame, *, min_rows: int = MIN_ROWS) -> pd.DataFrame:
    """Return `timestamps` + the six feature columns as float64, or raise InvalidInputError listing every problem.

    Volume and amount are optional, filled as the reference does: no volume -> both 0;
    volume without amount -> amount = volume * mean(open, high, low, close).
    """
    if not isinstance(history, pd.DataFrame):
        raise InvalidInputError(f"history must be a pandas DataFrame, got {type(history).__name__}")
    missing = [c for c in ("timestamps",) + PRICE_COLUMNS if c not in history.columns]
    if missing:
        raise InvalidInputError(f"history is missing the column(s) {', '.join(missing)}; "
                                "it needs timestamps, open, high, low, close (volume, amount optional)")
    if len(history) < min_rows:
        raise InvalidInputError(f"history has {len(history)} rows; at least {min_rows} are needed")
    problems: list[str] = []
    stamps = pd.to_datetime(history["timestamps"], errors="coerce")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    frame = pd.DataFrame({"timestamps": stamps.to_numpy()})
    for column in FEATURE_COLUMNS:
        if column in history.columns:
            frame[column] = pd.to_numeric(history[column], errors="coerce").astype("float64").to_numpy()
    if "volume" not in frame:
        frame["volume"] = 0.0
        frame["amount"] = 0.0
    elif "amount" not in frame:
        frame["amount"] = frame["volume"] * frame[list(PRICE_COLUMNS)].mean(axis=1)
    frame = frame[["timestamps", *FEATURE_COLUMNS]]
    if frame["timestamps"].isna().any():
        row = int(np.flatnonzero(frame["timestamps"].isna().to_numpy())[0])
        problems.append(f"timestamps: row {row} is not a date or time")
    values = frame[list(FEATURE_COLUMNS)].to_numpy()
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        problems.append(f"{FEATURE_COLUMNS[col]}: row {row} is empty, NaN or infinite "
                        f"({int(bad.sum())} such cell(s) in all); fill or drop those rows")
    stamps = frame["timestamps"].dropna()
    deltas = stamps.diff().dropna()
    if (deltas == pd.Timedelta(0)).any():
        row = int(np.flatnonzero((deltas == pd.Timedelta(0)).to_numpy())[0]) + 1
        problems.append(f"timestamps: row {row} repeats the time of the row before it; remove duplicates")
    if (deltas < pd.Timedelta(0)).any():
        row = int(np.flatnonzero((deltas < pd.Timedelta(0)).to_numpy())[0]) + 1
        problems.append(f"timestamps: row {row} is earlier than the row before it; sort the rows by time")
    if problems:
        raise InvalidInputError(problems)
    return frame.reset_index(drop=True)
