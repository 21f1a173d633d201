"""Synthetic candles for templates, benchmarks and tests: no market data needed."""

from __future__ import annotations

import numpy as np
import pandas as pd


def random_walk(rows: int, seed: int = 0) -> pd.DataFrame:
    """Synthetic hourly BTC-like candles (geometric random walk)."""
    rng = np.random.default_rng(seed)
    close = 60000 * np.exp(np.cumsum(rng.normal(0, 0.006, rows)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.003, rows)) * close
    volume = rng.lognormal(7, 0.5, rows)
    return pd.DataFrame({
        "timestamps": pd.date_range("2025-01-01", periods=rows, freq="h"),
        "open": open_, "high": np.maximum(open_, close) + spread, "low": np.minimum(open_, close) - spread,
        "close": close, "volume": volume, "amount": volume * close})
