"""Binance as recorded in tests/fixtures/markets, answering at ccxt's HTTP layer (`Exchange.fetch`): ccxt builds every
request, throttles it and parses every answer as it would online, and nothing reaches the network."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import ccxt
import pandas as pd

from kronos.data import market

FIXTURES = Path(__file__).parent / "fixtures" / "markets"
NOW = pd.Timestamp("2026-02-02 10:30")  # the recorded candles end with the one opened at 09:00
LAST_CLOSED = pd.Timestamp("2026-02-02 09:00")
REAL_MAKE_EXCHANGE = market.make_exchange


def _load(name: str):
    return json.loads((FIXTURES / name).read_text())


class RecordedBinance:
    """The recorded markets, 24 h tickers and 1 h klines; `failing` (market id -> error) makes a market's klines fail,
    `down` makes every request fail; `requests` keeps (time, thread, url) of each, `made` the exchanges made."""

    def __init__(self, delay_s: float = 0.0):
        self.markets, self.tickers = _load("binance_markets.json"), _load("binance_ticker_24hr.json")
        self.klines: dict[str, list[list]] = _load("binance_klines_1h.json")
        self.failing: dict[str, Exception] = {}
        self.down: Exception | None = None
        self.delay_s, self.made, self.requests = delay_s, [], []
        self._lock = threading.Lock()

    def exchange(self, name: str, timeout: float) -> ccxt.Exchange:
        """make_exchange's replacement: Binance answers from the recording; another exchange has no network."""
        exchange = REAL_MAKE_EXCHANGE(name, timeout)
        with self._lock:
            self.made.append(exchange)
        if name == "binance":
            exchange.set_markets(self.markets)  # what load_markets would have parsed from exchangeInfo
        exchange.load_markets = lambda *args, **kwargs: self._check(name) or exchange.markets
        exchange.fetch = lambda url, method="GET", headers=None, body=None: self.fetch(name, url)
        return exchange

    def _check(self, name: str) -> None:
        if name != "binance":
            raise ccxt.NetworkError(f"{name}: no network in this test")
        if self.down is not None:
            raise self.down

    def fetch(self, name: str, url: str) -> list | dict:
        """The recorded answer to a GET request."""
        self._check(name)
        with self._lock:
            self.requests.append((time.monotonic(), threading.current_thread().name, url))
        time.sleep(self.delay_s)
        parts = urlsplit(url)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        if parts.path.endswith("/ticker/24hr"):
            return self.tickers
        if parts.path.endswith("/klines"):
            if query["symbol"] in self.failing:
                raise self.failing[query["symbol"]]
            rows = self.klines.get(query["symbol"], [])
            start, end = int(query["startTime"]), int(query["endTime"])
            return [row for row in rows if start <= row[0] <= end][:int(query["limit"])]
        raise ccxt.BadRequest(f"binance GET {url} 404 not recorded")

    def frame(self, market_id: str, rows: int | None = None) -> pd.DataFrame:
        """A market's recorded candles in the engine's format (the first `rows` of them)."""
        raw = self.klines[market_id][:rows]
        frame = pd.DataFrame([[k[0], *map(float, k[1:6]), float(k[7])] for k in raw],
                             columns=["timestamps", "open", "high", "low", "close", "volume", "amount"])
        frame["timestamps"] = pd.to_datetime(frame["timestamps"], unit="ms")
        return frame


def install(monkeypatch, recorded: RecordedBinance) -> RecordedBinance:
    """Answer every exchange from `recorded`, with the tests' clock and no retry delays."""
    monkeypatch.setattr(market, "make_exchange", recorded.exchange)
    monkeypatch.setattr(market, "utc_now", lambda: NOW)
    monkeypatch.setattr(market, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    return recorded
