"""Watchlists, the markets of one scan, and their candles fetched together.

A watchlist is the symbols a user gives, or an exchange's top N spot markets of a quote currency by 24 h quote volume
(its tickers), leaving out stablecoin-to-stablecoin pairs and leveraged tokens; one exchange and one timeframe.
Its candles come through one shared exchange (markets loaded once) on a bounded pool of threads, its requests spaced
by the exchange's rate limit with a limiter shared by the threads (ccxt's own throttle is not thread-safe). A market
the exchange does not answer is read from the store; one that neither has is listed with the reason.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kronos.data import market
from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.errors import DataUnavailableError, EmptyStoreError, InvalidInputError, UnknownMarketError, excerpt
from kronos.schemas.markets import Watchlist
from kronos.settings import EXCHANGES, SCAN_QUOTE, SCAN_TOP, MarketChoice

if TYPE_CHECKING:  # ccxt takes about 0.4 s to import: a scan of stored candles never needs it
    import ccxt

# Fiat currencies and the coins pegged to them: a pair of two of these barely moves.
STABLE = frozenset({"USDT", "USDC", "FDUSD", "TUSD", "BUSD", "DAI", "USDP", "PAX", "PYUSD", "USDD", "USDE", "USDS",
                    "USD1", "RLUSD", "BFUSD", "XUSD", "GUSD", "LUSD", "FRAX", "SUSD", "UST", "USTC", "EURC", "EURI",
                    "AEUR", "EUR", "USD", "GBP", "TRY", "BRL", "JPY", "AUD", "IDRT", "BIDR", "UAH", "RUB", "NGN", "ZAR",
                    "PLN", "RON", "ARS", "MXN", "COP", "CZK"})
# A leveraged token: a listed base followed by UP, DOWN, BULL, BEAR or a leverage such as 3L, 5S (BTCUP, ETH3S).
LEVERAGED = re.compile(r"^(?P<base>[A-Z0-9]{2,}?)(UP|DOWN|BULL|BEAR|[1-9]\d?[LS])$")
FETCH_WORKERS = 4  # concurrent candle fetches per scan; the limiter keeps them within the rate limit


def given(symbols: list[str] | tuple[str, ...], exchange: str, timeframe: str) -> Watchlist:
    """The watchlist of the symbols given (upper-cased, repeats dropped); InvalidInputError naming bad ones."""
    symbols = list(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))
    if not symbols:
        raise InvalidInputError("give at least one symbol, e.g. BTC/USDT, or ask for the top markets")
    check_exchange(exchange)
    problems = []
    for symbol in symbols:
        try:
            MarketChoice(exchange, symbol, timeframe)
        except InvalidInputError as error:
            problems += [p for p in error.problems if p not in problems]
    if problems:
        raise InvalidInputError(problems)
    return Watchlist(exchange=exchange, timeframe=timeframe, symbols=tuple(symbols), chosen_by="symbols")


def check_exchange(name: str) -> None:
    """UnknownMarketError unless `name` is a ccxt exchange id (EXCHANGES are, without importing ccxt)."""
    if name in EXCHANGES:
        return
    import ccxt

    if name not in ccxt.exchanges:
        raise UnknownMarketError(f"unknown exchange {excerpt(name)}; use a ccxt id such as {', '.join(EXCHANGES)}")


def ranked(markets: dict[str, dict], tickers: dict[str, dict], quote: str = SCAN_QUOTE,
           count: int = SCAN_TOP) -> list[str]:
    """The `count` active spot markets quoted in `quote` with the most 24 h quote volume, stablecoin pairs and
    leveraged tokens left out (ccxt's markets and tickers, by symbol)."""
    bases = {m.get("base") for m in markets.values()}
    volumes = {}
    for symbol, found in markets.items():
        if not found.get("spot") or found.get("quote") != quote or found.get("active") is False:
            continue
        if excluded(found.get("base") or "", quote, bases) or symbol not in tickers:
            continue
        ticker = tickers[symbol]
        volume = ticker.get("quoteVolume")
        if volume is None and ticker.get("baseVolume") is not None and ticker.get("last") is not None:
            volume = ticker["baseVolume"] * ticker["last"]
        if volume:
            volumes[symbol] = float(volume)
    return sorted(volumes, key=lambda s: (-volumes[s], s))[:count]


def excluded(base: str, quote: str, bases: set[str]) -> bool:
    """Whether a market is left out of a top list: a stablecoin (or fiat) pair, or a leveraged token of a listed
    base."""
    if base in STABLE and quote in STABLE:
        return True
    found = LEVERAGED.match(base)
    return found is not None and found["base"] in bases


def top_markets(exchange: str, timeframe: str, quote: str = SCAN_QUOTE, count: int = SCAN_TOP, *,
                store: CandleStore | None = None, live: bool = True, timeout: float = market.MAX_TIMEOUT) -> Watchlist:
    """The exchange's top `count` markets of `quote` by 24 h quote volume (its tickers); not `live`, or where the
    exchange cannot be asked, the stored markets of that quote for the exchange and timeframe (the most candles
    first), saying so; DataUnavailableError when there are none."""
    check_exchange(exchange)
    MarketChoice(exchange, f"BTC/{quote}", timeframe)  # checks the timeframe and the quote's spelling
    quote, store = quote.upper(), store if store is not None else CandleStore()
    note = f"the stored {quote} markets of {exchange} {timeframe}, the most candles first"
    if live:
        import ccxt

        try:
            venue = market.make_exchange(exchange, timeout)
            venue.load_markets()
            symbols = ranked(venue.markets, venue.fetch_tickers(), quote, count)
        except (ccxt.BaseError, DataUnavailableError) as error:
            problem = market._typed(exchange, error)
            note = f"{problem.public()}: scanning {note}"
        else:
            if not symbols:
                raise DataUnavailableError(f"{exchange} lists no traded spot markets quoted in {quote}")
            return Watchlist(exchange=exchange, timeframe=timeframe, symbols=tuple(symbols), chosen_by="volume",
                             quote=quote)
    stored = _stored_markets(store, exchange, timeframe, quote)[:count]
    if not stored:
        raise EmptyStoreError(f"{note[0].upper() + note[1:]}: the local store holds none")
    return Watchlist(exchange=exchange, timeframe=timeframe, symbols=tuple(stored), chosen_by="store", quote=quote,
                     notes=(note,))


def _stored_markets(store: CandleStore, exchange: str, timeframe: str, quote: str) -> list[str]:
    """The stored markets of an exchange and timeframe quoted in `quote`, the most candles first."""
    contents = store.contents()
    rows = contents[(contents["exchange"] == exchange) & (contents["timeframe"] == timeframe)
                    & contents["symbol"].str.endswith("/" + quote)]
    return rows.sort_values(["rows", "symbol"], ascending=[False, True])["symbol"].tolist()


class RateLimiter:
    """Spaces calls `interval_s` apart across threads: each call waits for the next free slot (ccxt's throttle
    signature: a call of cost c takes c slots)."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._next = 0.0
        self._lock = threading.Lock()

    def __call__(self, cost: float | None = None) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval_s * (1 if cost is None else cost)
        if start > now:
            time.sleep(start - now)


def shared_exchange(name: str, timeout: float = market.MAX_TIMEOUT) -> ccxt.Exchange:
    """make_exchange's exchange with its markets loaded and a thread-safe limiter at its rate limit as its throttle,
    for concurrent fetches; ccxt or data errors when it cannot load its markets."""
    exchange = market.make_exchange(name, timeout)
    exchange.throttle = RateLimiter(exchange.rateLimit / 1000)
    exchange.load_markets()
    return exchange


@dataclass
class Fetched:
    """One market's candles, or why there are none."""

    symbol: str
    candles: Candles | None
    problem: str | None = None


def fetch_watchlist(watchlist: Watchlist, limit: int, store: CandleStore, *, live: bool = True,
                    timeout: float = market.MAX_TIMEOUT, workers: int = FETCH_WORKERS) -> list[Fetched]:
    """The latest `limit` candles of every market, in the watchlist's order: from the exchange (`live`), merged into
    the store, else from the store; never raises for one market."""
    problem = None
    if live:
        import ccxt

        try:
            exchange = shared_exchange(watchlist.exchange, timeout)
        except (ccxt.BaseError, DataUnavailableError) as error:
            problem = market._typed(watchlist.exchange, error)
    if not live or problem is not None:
        return [_stored(watchlist, symbol, limit, store, problem) for symbol in watchlist.symbols]

    def fetch(symbol: str) -> Fetched:
        choice = MarketChoice(watchlist.exchange, symbol, watchlist.timeframe)
        try:
            return Fetched(symbol, market.fetch_candles(choice, limit, store=store, fallbacks=(), timeout=timeout,
                                                        exchange=exchange))
        except DataUnavailableError as error:
            return Fetched(symbol, None, error.public())

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(watchlist.symbols))),
                            thread_name_prefix="watchlist") as pool:
        return list(pool.map(fetch, watchlist.symbols))


def _stored(watchlist: Watchlist, symbol: str, limit: int, store: CandleStore,
            problem: DataUnavailableError | None) -> Fetched:
    """A market's stored candles, with why the exchange was not asked (`problem`), or the reason there are none."""
    try:
        candles = market.load_stored([watchlist.exchange], symbol, watchlist.timeframe, limit, store)
    except DataUnavailableError as error:
        return Fetched(symbol, None, error.public() if problem is None else f"{problem.public()}, and {error.public()}")
    if problem is not None:
        candles.notes[:0] = [problem.public(), "answered from the local store"]
    return Fetched(symbol, candles)
