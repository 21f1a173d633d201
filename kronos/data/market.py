"""Candles of a market: live from exchanges through ccxt (with fallbacks), kept in the local store and
answered from it when no exchange can; and the one entry point every front end uses for any source.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kronos.data.candles import Candles, custom_candles
from kronos.data.reading import read_file
from kronos.data.store import CandleStore, empty_store_message
from kronos.data.validation import validate_frame
from kronos.errors import (
    DataUnavailableError,
    EmptyStoreError,
    ExchangeUnreachableError,
    InvalidInputError,
    StoreUnavailableError,
    UnknownMarketError,
    excerpt,
)
from kronos.settings import EXCHANGES, MarketChoice
from kronos.timeframes import timeframe_delta

if TYPE_CHECKING:  # ccxt takes about 0.4 s to import: only what reaches an exchange imports it
    import ccxt

SOURCES = ("exchange", "store", "csv", "json")
DEFAULT_LIMIT = 512
PAGE_LIMITS = {"binance": 1000, "okx": 300, "bybit": 1000, "kraken": 720}
DEFAULT_PAGE_LIMIT = 500
MAX_TIMEOUT = 10.0
RETRY_DELAYS = (1.0, 2.0, 4.0)  # seconds slept before each retry after a rate limit
STALE_AFTER = 2  # a result is stale when its newest candle closed more than this many timeframes ago
SPOT_ONLY = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}}
# Binance's market-data-only host: its "market data only URLs" list /api/v3/exchangeInfo and /api/v3/klines, all that
# ccxt needs here (load_markets and candles), and it answers where api.binance.com refuses some regions.
BINANCE_MARKET_DATA = "https://data-api.binance.vision/api/v3"
ALTERNATIVES = {"BTC": ("XBT",), "XBT": ("BTC",), "USDT": ("USD", "USDC"), "USD": ("USDT", "USDC"),
                "USDC": ("USDT", "USD")}
PRICE_FIELDS = ("open", "high", "low", "close", "volume")
log = logging.getLogger("kronos.data")


def utc_now() -> pd.Timestamp:
    """The current time, naive UTC (tests replace this)."""
    return pd.Timestamp(time.time(), unit="s")


def make_exchange(name: str, timeout: float) -> ccxt.Exchange:
    """A ccxt exchange that loads spot markets only, with a timeout; Binance candles from its market-data host."""
    import ccxt

    exchange = getattr(ccxt, name)({"timeout": int(timeout * 1000), "enableRateLimit": True, "options": SPOT_ONLY})
    if name == "binance":
        exchange.urls = {**exchange.urls, "api": {**exchange.urls["api"], "public": BINANCE_MARKET_DATA}}
    return exchange


def fetch_candles(market: MarketChoice = MarketChoice(), limit: int = DEFAULT_LIMIT, *,
                  store: CandleStore | None = None, fallbacks: tuple[str, ...] | None = None,
                  timeout: float = MAX_TIMEOUT, exchange: ccxt.Exchange | None = None) -> Candles:
    """The latest `limit` candles from the first exchange that answers, else from the store.

    The market's exchange is asked first, then `fallbacks` (default: the other EXCHANGES, in order).
    "aligned" mode drops the still-open candle, "realtime" keeps it. Only missing candles are fetched;
    every closed candle fetched is stored. `exchange`: a ccxt exchange (make_exchange's) for the market's own
    exchange, shared by concurrent fetches (kronos.scan.watchlist).
    """
    import ccxt

    _check_arguments(limit, timeout)
    step = timeframe_delta(market.timeframe)
    chain = market.exchanges() if fallbacks is None else tuple(dict.fromkeys((market.exchange, *fallbacks)))
    unknown = [name for name in chain if name not in ccxt.exchanges]
    if unknown:
        raise UnknownMarketError(f"unknown exchange(s) {', '.join(unknown)}; use a ccxt id such as "
                                 f"{', '.join(EXCHANGES)}")
    store = store if store is not None else CandleStore()
    notes: list[str] = []
    failures: list[DataUnavailableError] = []
    for name in chain:
        try:
            candles = _fetch_live(name, market, step, limit, store, timeout,
                                  exchange if name == market.exchange else None)
        except (ccxt.BaseError, DataUnavailableError) as error:
            failures.append(_typed(name, error))
            notes.append(str(failures[-1]))
            continue
        candles.notes[:0] = notes
        return candles
    if all(isinstance(f, UnknownMarketError) for f in failures):
        raise UnknownMarketError("; ".join(map(str, failures)))
    try:
        candles = load_stored(chain, market.symbol, market.timeframe, limit, store)
    except EmptyStoreError as error:
        raise EmptyStoreError(f"no exchange answered ({'; '.join(notes)}), and {error}", error.path) \
            from failures[-1]
    except StoreUnavailableError as error:
        raise StoreUnavailableError(f"{error.problem}, and no exchange answered either ({'; '.join(notes)})",
                                    error.path, error.advice) from error  # in the problem: visitors read it too
    candles.notes[:0] = notes + ["answered from the local store"]
    return candles


def load_stored(exchanges: list[str] | tuple[str, ...], symbol: str, timeframe: str, limit: int = DEFAULT_LIMIT,
                store: CandleStore | None = None) -> Candles:
    """The latest `limit` stored candles of the listed exchange with the newest data; EmptyStoreError if none."""
    store = store if store is not None else CandleStore()
    keys = [(name, candidate) for name in exchanges for candidate in _symbol_candidates(symbol)]
    newest = {key: store.latest_timestamp(*key, timeframe) for key in keys}
    found = [key for key in keys if newest[key] is not None]
    if not found:
        raise EmptyStoreError(empty_store_message(store, exchanges[0], symbol, timeframe), str(store.path))
    name, stored_symbol = max(found, key=newest.__getitem__)
    frame = store.load(name, stored_symbol, timeframe, limit)
    return _candles(frame, "store", name, stored_symbol, timeframe,
                    store.amount_is_estimated(name, stored_symbol, timeframe, limit), [])


def load_candles(source: str, market: MarketChoice, limit: int = DEFAULT_LIMIT, *, path: str | None = None,
                 store: CandleStore | None = None, timeout: float = MAX_TIMEOUT) -> Candles:
    """Candles from any source: "exchange" (live, with fallbacks and the store), "store" (the market's exchange
    only), or a "csv"/"json" file at `path` (its latest `limit` rows)."""
    if source == "exchange":
        return fetch_candles(market, limit, store=store, timeout=timeout)
    if source == "store":
        return load_stored([market.exchange], market.symbol, market.timeframe, limit, store)
    if source in ("csv", "json"):
        if not path:
            raise InvalidInputError(f"the {source} source needs a file: --{source} FILE")
        return custom_candles(read_file(path, source, lookback=limit), Path(path).name, source)
    raise InvalidInputError(f"the source must be one of {', '.join(SOURCES)}, got {excerpt(source)}")


def _check_arguments(limit: int, timeout: float) -> None:
    problems = []
    if not isinstance(limit, int) or limit < 1:
        problems.append(f"limit must be a positive whole number of candles, got {limit!r}")
    if not 0 < timeout <= MAX_TIMEOUT:
        problems.append(f"timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, got {timeout!r}")
    if problems:
        raise InvalidInputError(problems)


def _fetch_live(name: str, choice: MarketChoice, step: pd.Timedelta, limit: int, store: CandleStore,
                timeout: float, exchange: ccxt.Exchange | None = None) -> Candles:
    """Fetch what the store lacks of the wanted window from one exchange, store it, answer from the store."""
    symbol, timeframe, mode = choice.symbol, choice.timeframe, choice.mode
    exchange = exchange if exchange is not None else make_exchange(name, timeout)
    _call(exchange.load_markets)
    market = _market(exchange, symbol)
    if exchange.timeframes and timeframe not in exchange.timeframes:
        raise UnknownMarketError(f"{name} has no {timeframe} candles; it offers {', '.join(exchange.timeframes)}")
    now = utc_now()
    still_open = now.floor(step)
    last_closed = still_open - step
    first = (still_open if mode == "realtime" else last_closed) - step * (limit - 1)
    end = still_open if mode == "realtime" else last_closed
    key = (name, market["symbol"], timeframe)
    rows = [row for start, stop in _missing(first, end, step, _stored_span(store, key))
            for row in _paginate(exchange, market, timeframe, start, stop, step)]
    columns = ["timestamps", *PRICE_FIELDS, "amount"]
    checked = validate_frame(pd.DataFrame(rows, columns=columns[:len(rows[0])] if rows else columns), min_rows=0)
    if checked.errors:
        raise ExchangeUnreachableError(f"{name} sent unusable candles: {checked.errors[0]}")
    closed = checked.frame[checked.frame["timestamps"] <= last_closed]
    frame, estimated, notes = _kept(store, closed, key, limit, checked.amount_is_estimated)
    frame = frame[frame["timestamps"] >= first]
    if mode == "realtime":
        frame = pd.concat([frame, checked.frame[checked.frame["timestamps"] == still_open]]).iloc[-limit:]
    if frame.empty:
        raise ExchangeUnreachableError(f"{name} returned no {market['symbol']} {timeframe} candles")
    mapped = [] if market["symbol"] == symbol else [f"{name} lists {symbol} as {market['symbol']}"]
    return _candles(frame.reset_index(drop=True), "exchange", name, market["symbol"], timeframe, estimated,
                    mapped + [f"{name} answered"] + notes)


def _stored_span(store: CandleStore, key: tuple[str, str, str]) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The stored span of a market; None (fetch it all) when the store cannot be read."""
    try:
        return store.span(*key)
    except StoreUnavailableError:
        return None


def _kept(store: CandleStore, closed: pd.DataFrame, key: tuple[str, str, str], limit: int,
          estimated: bool) -> tuple[pd.DataFrame, bool, list[str]]:
    """Store the fetched closed candles and read back the latest `limit`, whether any amount is estimated, and notes;
    when the store cannot be written, the candles it can still read and the fetched ones, with a note saying so."""
    try:
        store.merge(closed, *key, amount_estimated=estimated)
        return store.load(*key, limit), estimated or store.amount_is_estimated(*key, limit), []
    except StoreUnavailableError as error:
        log.warning("candles not kept: %s", error)
        try:
            stored = store.load(*key, limit)
        except StoreUnavailableError:
            stored = closed.iloc[:0]
        frame = pd.concat([stored, closed]).drop_duplicates("timestamps", keep="last").sort_values("timestamps")
        return frame.iloc[-limit:], estimated, [f"the candles were not kept: the local store {error.problem}"]


def _candles(frame: pd.DataFrame, source: str, name: str, symbol: str, timeframe: str, estimated: bool,
             notes: list[str]) -> Candles:
    """Wrap a frame, judging staleness by when its newest candle closed."""
    step = timeframe_delta(timeframe)
    as_of = frame["timestamps"].iloc[-1]
    return Candles(frame, source, name, symbol, timeframe, as_of, utc_now() - (as_of + step) > STALE_AFTER * step,
                   estimated, notes)


def _missing(first: pd.Timestamp, last: pd.Timestamp, step: pd.Timedelta,
             span: tuple[pd.Timestamp, pd.Timestamp] | None) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The parts of [first, last] before and after the stored span (all of it when nothing is stored)."""
    if span is None:
        return [(first, last)]
    ranges = []
    if first < span[0]:
        ranges.append((first, min(last, span[0] - step)))
    if last > span[1]:
        ranges.append((max(first, span[1] + step), last))
    return ranges


def _paginate(exchange: ccxt.Exchange, market: dict, timeframe: str, start: pd.Timestamp, end: pd.Timestamp,
              step: pd.Timedelta) -> list[list]:
    """Every candle opening in [start, end], page after page, each page asked with `since` and `until`."""
    step_ms, cursor, end_ms = _ms(step), _ms(start), _ms(end)
    page_limit = PAGE_LIMITS.get(exchange.id, DEFAULT_PAGE_LIMIT)
    rows: list[list] = []
    while cursor <= end_ms:
        page = _page(exchange, market, timeframe, cursor, end_ms, min(page_limit, (end_ms - cursor) // step_ms + 1))
        page = [row for row in page if cursor <= int(row[0]) <= end_ms]
        if not page:
            break
        rows += page
        cursor = int(page[-1][0]) + step_ms
    return rows


def _page(exchange: ccxt.Exchange, market: dict, timeframe: str, since: int, until: int, limit: int) -> list[list]:
    """One page: Binance's raw klines (field 7 is the quote volume: the amount), else ccxt's OHLCV rows."""
    if exchange.id == "binance":
        raw = _call(exchange.publicGetKlines, {"symbol": market["id"], "interval": exchange.timeframes[timeframe],
                                               "startTime": since, "endTime": until, "limit": limit})
        return [[int(k[0]), *k[1:6], k[7]] for k in raw]
    return [row[:6] for row in _call(exchange.fetch_ohlcv, market["symbol"], timeframe, since, limit,
                                     {"until": until})]


def _ms(moment: pd.Timestamp | pd.Timedelta) -> int:
    return int(moment.value // 1_000_000)


def _call(method: Callable[..., Any], *args: Any) -> Any:
    """Call an exchange method, sleeping RETRY_DELAYS between tries while it answers 'too many requests'."""
    import ccxt

    for delay in RETRY_DELAYS:
        try:
            return method(*args)
        except (ccxt.DDoSProtection, ccxt.RateLimitExceeded):
            time.sleep(delay)
    return method(*args)


def _market(exchange: ccxt.Exchange, symbol: str) -> dict:
    """The exchange's market for `symbol`, or for the closest listed name (BTC as XBT, USDT as USD or USDC)."""
    for candidate in _symbol_candidates(symbol):
        if candidate in exchange.markets:
            return exchange.markets[candidate]
    base = symbol.split("/")[0]
    similar = [s for s in exchange.symbols if s.startswith(base + "/")][:5]
    raise UnknownMarketError(f"{exchange.id} does not list {symbol}"
                             + (f"; it lists {', '.join(similar)}" if similar else "; check the symbol, e.g. BTC/USDT"))


def _symbol_candidates(symbol: str) -> list[str]:
    """`symbol` (BASE/QUOTE, checked by MarketChoice) first, then the same pair spelled as other exchanges do."""
    base, quote = symbol.upper().split("/")
    bases, quotes = (base, *ALTERNATIVES.get(base, ())), (quote, *ALTERNATIVES.get(quote, ()))
    return list(dict.fromkeys([symbol] + [f"{b}/{q}" for q in quotes for b in bases]))


def _typed(name: str, error: Exception) -> DataUnavailableError:
    """Turn whatever an exchange raised into one of kronos.errors' data errors, worded for people."""
    import ccxt

    if isinstance(error, DataUnavailableError):
        return error
    text = str(error)
    detail = " ".join(text.split())[:160]
    if isinstance(error, (ccxt.RestrictedLocation, ccxt.PermissionDenied)) or re.search(r"\b451\b", text) \
            or "restricted location" in text.lower():
        return ExchangeUnreachableError(f"{name} refused requests from this location ({detail})")
    if isinstance(error, ccxt.BadSymbol):
        return UnknownMarketError(f"{name} does not know the symbol ({detail})")
    if isinstance(error, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
        return ExchangeUnreachableError(f"{name} kept answering 'too many requests' after {len(RETRY_DELAYS)} retries")
    if isinstance(error, ccxt.RequestTimeout):
        return ExchangeUnreachableError(f"{name} did not answer in time ({detail})")
    return ExchangeUnreachableError(f"{name} could not be reached or failed ({type(error).__name__}: {detail})")
