"""What a front end shows about a forecast and its data: headline figures, the data banner, fingerprints, a template,
and a backtest's scores as a table.

No Streamlit here: the dashboard pages only lay these out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kronos.data.candles import Candles
from kronos.engine.forecast import Forecast
from kronos.engine.synthetic import random_walk
from kronos.evaluation.registry import REFERENCE
from kronos.evaluation.scores import skill
from kronos.timeframes import describe_age

if TYPE_CHECKING:
    from kronos.evaluation.backtest import Backtest

TEMPLATE_ROWS = 64
TABLE_SCORES = ("crps", "brier_upside", "log_loss_upside", "hit_rate")  # per hour in a backtest's scores
TABLE_BANDS = ("coverage", "band_width")  # per level and hour


@dataclass(frozen=True)
class Headline:
    """The figures at the top of a forecast, for one hour ahead (1-based)."""

    last_close: float
    last_timestamp: pd.Timestamp
    hour_idx: int
    timestamp: pd.Timestamp
    upside_probability: float
    volatility_amplification_probability: float | None
    expected_return: float
    return_low: float  # 10% quantile of the return: the 80% interval's lower end
    return_high: float  # 90% quantile


def headline(forecast: Forecast, hour_idx: int | None = None) -> Headline:
    """Last price, upside probability, volatility amplification, expected return and its 80% interval at an hour."""
    k = forecast.hour_index(hour_idx)
    returns = forecast.column("close")[:, k - 1] / forecast.last_close - 1
    low, high = np.quantile(returns, (0.1, 0.9))
    return Headline(forecast.last_close, forecast.last_timestamp, k, forecast.timestamps[k - 1],
                    float(forecast.upside_probability()[k - 1]), forecast.volatility_amplification_probability(),
                    float(returns.mean()), float(low), float(high))


def price_text(price: float) -> str:
    """A price as people read it: two decimals from 1 up (77,500.12), else four significant digits (0.00000775;
    scientific below 1e-8, 7.75e-12, where the zeros would crowd out the digits), never a tiny price as 0.00."""
    if abs(price) >= 1 or price == 0 or not np.isfinite(price):
        return f"{price:,.2f}"
    if abs(price) >= 1e-8:
        return np.format_float_positional(price, precision=4, unique=False, fractional=False, trim="-")
    return f"{price:.4g}"


def fingerprint(frame: pd.DataFrame) -> str:
    """A short hash of a candle frame's contents: equal frames, equal fingerprints."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes() + ",".join(map(str, frame.columns)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Banner:
    """Where the data came from, in one sentence; `level` is "live", "store", "stale" or "custom"."""

    level: str
    text: str
    notes: tuple[str, ...] = ()


def data_banner(candles: Candles, now: pd.Timestamp) -> Banner:
    """Say whether the candles are live, from the local store or custom, and how old the newest one is."""
    rows = f"{len(candles.frame)} {candles.symbol} {candles.timeframe} candles"
    newest = f"the newest opened {candles.as_of:%Y-%m-%d %H:%M} UTC, {describe_age(now - candles.as_of)} ago"
    notes = tuple(candles.notes)
    if candles.source in ("csv", "json"):
        return Banner("custom", f"Custom {candles.source.upper()} data '{candles.symbol}': {len(candles.frame)} rows "
                                f"every {candles.timeframe}, the last at {candles.as_of:%Y-%m-%d %H:%M}.", notes)
    if candles.source == "exchange":
        level = "stale" if candles.is_stale else "live"
        return Banner(level, f"Live data from {candles.exchange}: {rows}; {newest}.", notes)
    return Banner("store", f"No exchange answered: using the local store's {rows} from {candles.exchange}; "
                           f"{newest}.", notes)


def template_csv(rows: int = TEMPLATE_ROWS) -> bytes:
    """A small CSV of synthetic hourly candles in the layout the custom data page reads, to start from."""
    return random_walk(rows).to_csv(index=False, float_format="%.2f").encode()


def score_table(result: Backtest, by_hour: bool = True) -> pd.DataFrame:
    """A backtest's scores: one row per forecaster and hour ahead, or (not `by_hour`) per forecaster averaged over the
    hours; with CRPS and Brier skill against the random walk on the same rows."""
    parts = []
    for name, scores in result.scores.items():
        columns = {key: getattr(scores, key) for key in TABLE_SCORES if hasattr(scores, key)}
        columns |= {f"{band}_{level}": values for band in TABLE_BANDS for level, values in
                    getattr(scores, band, {}).items()}
        part = pd.DataFrame(columns, dtype=float)
        parts.append(part.assign(forecaster=name, hour=np.arange(1, len(part) + 1)))
    table = pd.concat(parts, ignore_index=True)
    if not by_hour:
        table = table.drop(columns="hour").groupby("forecaster", sort=False).mean().reset_index()
    base = table[table["forecaster"] == REFERENCE].set_index("hour" if by_hour else "forecaster")
    for key in ("crps", "brier_upside"):
        reference = base[key].reindex(table["hour"]).to_numpy() if by_hour else base[key].iloc[0]
        table[f"{key}_skill"] = skill(table[key], reference)
    first = ["forecaster", "hour"] if by_hour else ["forecaster"]
    return table[first + [c for c in table.columns if c not in first]]
