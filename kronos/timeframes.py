"""Candle timeframes and durations: their lengths, the step of a series of timestamps, and how to write them."""

from __future__ import annotations

import pandas as pd

from kronos.errors import InvalidInputError, excerpt

# Timeframes offered by the front ends (ccxt's notation; most exchanges list these).
TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    """The length of a timeframe such as 5m, 1h, 1d (a number and one of m, h, d, w); InvalidInputError otherwise."""
    count, unit = timeframe[:-1], timeframe[-1:]
    if not (count.isascii() and count.isdigit() and int(count) > 0 and unit in _UNITS):
        raise InvalidInputError(f"timeframe {excerpt(timeframe)} is not understood; use e.g. "
                                f"{', '.join(TIMEFRAMES[:8])}")
    return pd.Timedelta(seconds=int(count) * _UNITS[unit])


def median_step(stamps: pd.Series | pd.DatetimeIndex) -> pd.Timedelta | None:
    """The median time between consecutive timestamps (None for fewer than two)."""
    deltas = pd.Series(stamps).diff().iloc[1:]
    return None if deltas.empty else deltas.median()


def format_duration(delta: pd.Timedelta) -> str:
    """A spacing in the largest whole unit: 5min, 1h, 2d; seconds otherwise."""
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def describe_age(delta: pd.Timedelta) -> str:
    """A time span in words people read at a glance: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours == 0:
        return f"{minutes} min"
    if days == 0:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{days} d {hours % 24} h" if hours % 24 else f"{days} d"
