"""Live candles through ccxt exchanges whose network calls are replaced by recorded-shape answers."""

from __future__ import annotations

import ccxt
import pandas as pd
import pytest
from data_frames import candle_frame

from kronos.cli import main
from kronos.data import market
from kronos.data.candles import Candles
from kronos.data.market import fetch_candles, load_candles, load_stored
from kronos.data.store import CandleStore
from kronos.errors import EmptyStoreError, ExchangeUnreachableError, InvalidInputError, UnknownMarketError
from kronos.settings import MarketChoice

NOW = pd.Timestamp("2026-02-02 10:30")
HOUR_MS = 3_600_000
REAL_MAKE_EXCHANGE = market.make_exchange


def price(ts: int) -> tuple[float, float, float, float, float, float]:
    """open, high, low, close, volume, quote volume of the recorded candle opening at `ts` (ms)."""
    o = 100.0 + ts // HOUR_MS % 50
    return o, o + 2, o - 1, o + 1, 10.0, 10.0 * o * 1.01


class Venue:
    """What one exchange does in a test: its listed symbols, an error to raise, and the requests it saw."""

    def __init__(self, symbols=("BTC/USDT",), error: Exception | None = None, rate_limited: int = 0):
        self.symbols, self.error, self.rate_limited, self.requests = symbols, error, rate_limited, []

    def candles(self, since: int, until: int, limit: int) -> list[int]:
        if self.error is not None:
            raise self.error
        if self.rate_limited:
            self.rate_limited -= 1
            raise ccxt.DDoSProtection("429 Too Many Requests")
        self.requests.append((since, until, limit))
        last = min(until, int(market.utc_now().floor("h").value // 10**6))
        return list(range(since, last + 1, HOUR_MS))[:limit]


def fake_exchange(name: str, venue: Venue, timeout: float) -> ccxt.Exchange:
    """The real ccxt exchange as make_exchange builds it, with markets set and its network calls replaced."""
    exchange = REAL_MAKE_EXCHANGE(name, timeout)
    exchange.set_markets([{"id": s.replace("/", ""), "symbol": s, "base": s.split("/")[0], "quote": s.split("/")[1],
                           "baseId": s.split("/")[0], "quoteId": s.split("/")[1], "type": "spot", "spot": True,
                           "active": True} for s in venue.symbols])

    def load_markets(*args, **kwargs):
        if venue.error is not None:
            raise venue.error
        return exchange.markets

    exchange.load_markets = load_markets

    def public_get_klines(params):  # Binance's raw klines: strings, close time, quote volume in field 7
        assert params["interval"] == "1h" and params["symbol"] == "BTCUSDT"
        return [[ts, *map(str, price(ts)[:5]), ts + HOUR_MS - 1, str(price(ts)[5]), 42, "1", "2", "0"]
                for ts in venue.candles(params["startTime"], params["endTime"], params["limit"])]

    def fetch_ohlcv(symbol, timeframe="1m", since=None, limit=None, params=None):  # ccxt's unified OHLCV rows
        return [[ts, *price(ts)[:5]] for ts in venue.candles(since, params["until"], limit)]

    exchange.publicGetKlines = public_get_klines
    exchange.fetch_ohlcv = fetch_ohlcv
    return exchange


@pytest.fixture
def venues(monkeypatch) -> dict[str, Venue]:
    """Every exchange answers normally unless a test changes its Venue."""
    found = {name: Venue() for name in market.EXCHANGES}
    monkeypatch.setattr(market, "make_exchange", lambda name, timeout: fake_exchange(name, found[name], timeout))
    monkeypatch.setattr(market, "utc_now", lambda: NOW)
    monkeypatch.setattr(market, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    return found


@pytest.fixture
def store(tmp_path) -> CandleStore:
    return CandleStore(tmp_path / "candles.sqlite")


def hours(*stamps: pd.Timestamp) -> list[int]:
    return [int(s.value // 10**6) for s in stamps]


def test_pagination_covers_three_pages_without_gap_or_duplicate(venues, store):
    candles = fetch_candles(limit=2500, store=store)
    last_closed = NOW.floor("h") - pd.Timedelta(hours=1)
    first = last_closed - pd.Timedelta(hours=2499)
    assert [(s, u, n) for s, u, n in venues["binance"].requests] == [
        (*hours(first, last_closed), 1000), (*hours(first + pd.Timedelta(hours=1000), last_closed), 1000),
        (*hours(first + pd.Timedelta(hours=2000), last_closed), 500)]
    stamps = candles.frame["timestamps"]
    assert len(stamps) == 2500 and (stamps.diff().iloc[1:] == pd.Timedelta(hours=1)).all()
    assert (candles.source, candles.exchange, candles.as_of, candles.is_stale) == ("exchange", "binance", last_closed,
                                                                                    False)
    assert candles.notes == ["binance answered"]


def test_aligned_drops_the_open_candle_and_realtime_keeps_it_unstored(venues, store):
    aligned = fetch_candles(limit=48, store=store)
    realtime = fetch_candles(MarketChoice(mode="realtime"), 48, store=store)
    assert aligned.frame["timestamps"].iloc[-1] == NOW.floor("h") - pd.Timedelta(hours=1)
    assert realtime.frame["timestamps"].iloc[-1] == NOW.floor("h") and len(realtime.frame) == 48
    pd.testing.assert_frame_equal(realtime.frame.iloc[:-1], aligned.frame.iloc[1:].reset_index(drop=True))
    assert store.latest_timestamp("binance", "BTC/USDT", "1h") == aligned.as_of  # the open candle is not stored


def test_binance_amount_is_the_quote_volume_others_are_estimated(venues, store):
    binance = fetch_candles(limit=40, store=store)
    first_ms = hours(binance.frame["timestamps"].iloc[0])[0]
    assert binance.frame["amount"].iloc[0] == pytest.approx(price(first_ms)[5]) and not binance.amount_is_estimated
    okx = fetch_candles(MarketChoice("okx"), 40, store=store)
    o, h, low, c, v, _ = price(first_ms)
    assert okx.frame["amount"].iloc[0] == pytest.approx(v * (o + h + low + c) / 4) and okx.amount_is_estimated


@pytest.mark.parametrize("refusal", [
    ccxt.ExchangeNotAvailable("binance GET https://data-api.binance.vision/api/v3/exchangeInfo 451 "
                              '{"code": 0, "msg": "Service unavailable from a restricted location"}'),
    ccxt.RestrictedLocation("binance restricted location"),
    ccxt.PermissionDenied("binance 403 Forbidden"),
], ids=["http 451", "restricted location", "forbidden"])
def test_region_refusal_moves_to_the_next_exchange(venues, store, refusal):
    venues["binance"].error = refusal
    candles = fetch_candles(limit=40, store=store)
    assert candles.exchange == "okx" and candles.source == "exchange"
    assert candles.notes[0].startswith("binance refused requests from this location")
    assert candles.notes[-1] == "okx answered"
    assert market._typed("binance", refusal).__class__ is ExchangeUnreachableError


def test_network_failure_answers_from_the_store_with_the_flag(venues, store):
    store.merge(candle_frame(100, start="2026-01-28"), "binance", "BTC/USDT", "1h")
    for venue in venues.values():
        venue.error = ccxt.NetworkError("Connection refused")
    candles = fetch_candles(limit=64, store=store)
    assert (candles.source, candles.exchange, len(candles.frame)) == ("store", "binance", 64)
    assert candles.as_of == pd.Timestamp("2026-02-01 03:00") and candles.is_stale
    assert "okx could not be reached or failed (NetworkError: Connection refused)" in candles.notes
    assert candles.notes[-1] == "answered from the local store"


def test_store_answer_that_is_recent_is_not_stale(venues, store):
    fetch_candles(limit=40, store=store)
    venues["binance"].error = ccxt.RequestTimeout("timed out after 10000 ms")
    candles = fetch_candles(limit=40, store=store, fallbacks=())
    assert candles.source == "store" and not candles.is_stale
    assert candles.notes[0].startswith("binance did not answer in time")


def test_empty_store_says_how_to_fill_it(venues, store):
    for venue in venues.values():
        venue.error = ccxt.NetworkError("no route to host")
    with pytest.raises(EmptyStoreError, match=r"no exchange answered .*python -m kronos import FILE\.csv"):
        fetch_candles(limit=40, store=store)


def test_incremental_fetch_asks_only_for_missing_candles(venues, store, monkeypatch):
    fetch_candles(limit=100, store=store)
    later = NOW + pd.Timedelta(hours=3)
    monkeypatch.setattr(market, "utc_now", lambda: later)
    venues["binance"].requests.clear()
    candles = fetch_candles(limit=100, store=store)
    stored_last = NOW.floor("h") - pd.Timedelta(hours=1)
    assert venues["binance"].requests == [(*hours(stored_last + pd.Timedelta(hours=1),
                                                  later.floor("h") - pd.Timedelta(hours=1)), 3)]
    assert len(store.load("binance", "BTC/USDT", "1h")) == 103 and len(candles.frame) == 100


def test_a_longer_lookback_fetches_only_the_older_part(venues, store):
    fetch_candles(limit=50, store=store)
    venues["binance"].requests.clear()
    fetch_candles(limit=80, store=store)
    first = NOW.floor("h") - pd.Timedelta(hours=80)
    assert venues["binance"].requests == [(*hours(first, first + pd.Timedelta(hours=29)), 30)]


def test_unknown_symbol_exchange_and_bad_arguments(venues, store):
    with pytest.raises(UnknownMarketError, match="binance does not list FOO/BAR; check the symbol.*okx does not"):
        fetch_candles(MarketChoice(symbol="FOO/BAR"), store=store)
    venues["binance"].symbols = ("BTC/USDT", "BTC/EUR")
    with pytest.raises(UnknownMarketError, match="binance does not list BTC/JPY; it lists BTC/EUR, BTC/USDT"):
        fetch_candles(MarketChoice(symbol="BTC/JPY"), store=store, fallbacks=())
    with pytest.raises(UnknownMarketError, match="unknown exchange.*nosuchx"):
        fetch_candles(MarketChoice("nosuchx"), store=store)
    with pytest.raises(UnknownMarketError, match="binance has no 7m candles"):
        fetch_candles(MarketChoice(timeframe="7m"), store=store, fallbacks=())
    with pytest.raises(InvalidInputError, match="timeout must be more than 0 and at most 10"):
        fetch_candles(timeout=30, store=store)
    with pytest.raises(InvalidInputError, match="mode must be one of aligned, realtime"):
        MarketChoice(mode="live")
    with pytest.raises(InvalidInputError, match="symbol 'BTCUSDT' should look like BASE/QUOTE"):
        MarketChoice(symbol="BTCUSDT")
    with pytest.raises(InvalidInputError, match="timeframe '1x' is not understood"):
        MarketChoice(timeframe="1x")


def test_symbols_are_mapped_to_what_the_exchange_lists(venues, store):
    venues["binance"].error = ccxt.ExchangeNotAvailable("451")
    venues["okx"].error = venues["bybit"].error = ccxt.NetworkError("down")
    venues["kraken"].symbols = ("BTC/USD",)
    candles = fetch_candles(limit=40, store=store)
    assert (candles.exchange, candles.symbol) == ("kraken", "BTC/USD")
    assert "kraken lists BTC/USDT as BTC/USD" in candles.notes


def test_rate_limits_are_retried_then_reported(venues, store):
    venues["binance"].rate_limited = 10
    candles = fetch_candles(limit=40, store=store, fallbacks=("okx",))
    assert candles.exchange == "okx"
    assert candles.notes[0] == "binance kept answering 'too many requests' after 3 retries"
    venues["binance"].rate_limited = 2
    assert fetch_candles(limit=40, store=store).exchange == "binance"


def test_exchanges_load_spot_markets_only_with_a_bounded_timeout():
    binance = REAL_MAKE_EXCHANGE("binance", 7.5)
    assert binance.urls["api"]["public"] == "https://data-api.binance.vision/api/v3"
    assert binance.options["fetchMarkets"]["types"] == ["spot"] and binance.timeout == 7500
    assert ccxt.binance().urls["api"]["public"] == "https://api.binance.com/api/v3"  # the class is untouched
    assert REAL_MAKE_EXCHANGE("bybit", 10).options["fetchMarkets"]["types"] == ["spot"]


def test_fetch_command_fills_the_store_and_writes_csv(venues, tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert main(["fetch", "--limit", "50", "--out", str(out), "--store", str(tmp_path / "s.sqlite")]) == 0
    assert "50 BTC/USDT 1h candles from binance (exchange)" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 50
    assert len(CandleStore(tmp_path / "s.sqlite").load("binance", "BTC/USDT", "1h")) == 50


def test_load_candles_reads_every_source(venues, tmp_path):
    store, choice = CandleStore(tmp_path / "s.sqlite"), MarketChoice()
    live = load_candles("exchange", choice, 40, store=store)
    stored = load_candles("store", choice, 40, store=store)
    pd.testing.assert_frame_equal(live.frame, stored.frame)
    path = tmp_path / "mine.csv"
    live.frame.to_csv(path, index=False)
    custom = load_candles("csv", choice, 35, path=str(path))
    assert isinstance(custom, Candles) and (custom.source, custom.symbol, custom.timeframe) == ("csv", "mine.csv", "1h")
    pd.testing.assert_frame_equal(custom.frame, live.frame.tail(35).reset_index(drop=True))
    path.write_text("timestamps,open\n")
    with pytest.raises(InvalidInputError, match="mine.csv: missing column"):
        load_candles("csv", choice, 40, path=str(path))
    with pytest.raises(InvalidInputError, match="the json source needs a file: --json FILE"):
        load_candles("json", choice, 40)


def test_store_source_with_nothing_stored(tmp_path):
    with pytest.raises(EmptyStoreError, match="has no BTC/USDT 1h candles from okx; fill it with `python -m kronos "
                                              "import FILE.csv --exchange okx"):
        load_stored(["okx"], "BTC/USDT", "1h", store=CandleStore(tmp_path / "s.sqlite"))
