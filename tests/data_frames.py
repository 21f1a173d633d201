"""Candle frames and files shared by the data tests, and where the real Binance history lies (read in place)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REAL_DATA = Path(__file__).resolve().parents[2] / "shared/data/btcusdt_1h_binance.csv.gz"
needs_real_data = pytest.mark.skipif(not REAL_DATA.exists(), reason=f"real Binance history not found at {REAL_DATA}")


def candle_frame(rows: int = 40, start: str = "2024-01-01", step: str = "1h", seed: int = 0) -> pd.DataFrame:
    """A valid candle frame in the engine's format: a random walk whose high/low bound open/close."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, rows))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, rows))
    volume = rng.uniform(1, 10, rows)
    stamps = pd.date_range(start, periods=rows, freq=step).astype("datetime64[ns]")
    return pd.DataFrame({"timestamps": stamps, "open": open_, "high": high,
                         "low": low, "close": close, "volume": volume, "amount": volume * close})


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as a CSV file's bytes."""
    return frame.to_csv(index=False).encode()


def json_text(frame: pd.DataFrame, **changes: list) -> str:
    """The frame in the seed's custom JSON format {"timestamps": [...], "open": [...], ...}, some columns replaced."""
    data = {"timestamps": frame["timestamps"].dt.strftime("%Y-%m-%dT%H:%M:%S").tolist(),
            **{c: frame[c].tolist() for c in frame.columns[1:]}}
    return json.dumps({**data, **changes})
