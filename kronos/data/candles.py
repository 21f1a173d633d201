"""Candles in the engine's format together with where they came from, for banners and the `data` block of answers."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from kronos.data.validation import Validation
from kronos.errors import InvalidInputError
from kronos.schemas.forecast import DataBlock
from kronos.timeframes import format_duration


@dataclass
class Candles:
    """Candles in the engine's format and where they came from, for the banner the UI shows."""

    frame: pd.DataFrame
    source: str  # "exchange", "store", "csv" or "json"
    exchange: str | None
    symbol: str
    timeframe: str
    as_of: pd.Timestamp  # open time of the newest candle
    is_stale: bool
    amount_is_estimated: bool
    notes: list[str] = field(default_factory=list)

    def describe(self) -> DataBlock:
        """Where the candles came from (the `data` block of the CLI's and the API's answers)."""
        return DataBlock(source=self.source, exchange=self.exchange, symbol=self.symbol, timeframe=self.timeframe,
                         rows=len(self.frame), as_of=self.as_of.isoformat(), is_stale=self.is_stale,
                         amount_is_estimated=self.amount_is_estimated, notes=list(self.notes))


def custom_candles(result: Validation, name: str, source: str) -> Candles:
    """Candles from a validated custom file (`source` "csv" or "json"); InvalidInputError listing its errors."""
    if result.errors:
        raise InvalidInputError([f"{name}: {message}" for message in result.errors])
    return Candles(result.frame, source, None, name, format_duration(result.spacing),
                   result.frame["timestamps"].iloc[-1], False, result.amount_is_estimated, list(result.warnings))
