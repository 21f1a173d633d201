"""The shapes of a market scan (kronos.scan.ranking): its watchlist, a market's combined figures, one ranking row per
market, the scan itself, and the query GET /scan takes. The command prints them, the API returns them, the Markets
page shows and downloads them: one definition each."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError, WithJsonSchema, field_validator

from kronos.errors import InvalidInputError, excerpt, listed
from kronos.settings import (
    FORECAST_DEFAULTS,
    MAX_REQUEST_WORK,
    RANGES,
    SCAN_MAX_MARKETS,
    SCAN_MAX_PATHS,
    SCAN_QUOTE,
    SCAN_TOP,
    SYMBOL_PATTERN,
    ForecastSettings,
    MarketChoice,
)

CALIBRATE = (f"run the first-sight backtests of markets not calibrated yet (tens of seconds each the first time; "
             f"a request's within {MAX_REQUEST_WORK:,} generated candle steps, each market counted as the origins "
             "it lacks (at most 200) x samples x horizon, the others left raw and noted); calibrated markets are "
             "always combined from the store")

# The ranking's columns, each sortable; the first is the default.
SORT_COLUMNS = ("upside_probability", "expected_return", "band_width", "volatility_amplification_probability",
                "change_1d", "crps_skill", "model_weight", "last_price", "age_s", "symbol")
SortColumn = Literal[SORT_COLUMNS]  # type: ignore[valid-type]


# Times are naive UTC inside the project (as pandas holds candle times); in JSON they are ISO 8601 strings without an
# offset, like every other answer's times, so their schema says string, not RFC 3339 "date-time".
UtcTime = Annotated[datetime, PlainSerializer(lambda t: t.isoformat(), return_type=str),
                    WithJsonSchema({"type": "string", "description": "ISO 8601 time, UTC, without an offset"})]


class Watchlist(BaseModel):
    """The markets of one scan: one exchange and timeframe, the symbols as given or ranked by 24 h quote volume."""

    model_config = ConfigDict(frozen=True)

    exchange: str
    timeframe: str
    symbols: tuple[str, ...]
    chosen_by: Literal["symbols", "volume", "store"]  # given; the exchange's tickers; the stored markets (no tickers)
    quote: str | None = None  # with "volume" and "store": the quote currency of the ranked markets
    notes: tuple[str, ...] = ()


class Combined(BaseModel):
    """What a ranking row takes from a market's combined forecast (Kronos pooled) at the scan's hour."""

    upside_probability: float
    expected_return: float
    return_low: float  # the 80% band of the return: its 10% and 90% quantiles
    return_high: float
    volatility_amplification_probability: float | None
    crps_skill: float | None  # the model's CRPS skill against the best baseline on this market, at this hour
    model_weight: float | None  # the weight the pool gives the model at this hour
    record_origins: int | None = None  # the origins of the record behind these figures (None: raw, no record)
    provisional: bool | None = None  # the record is still growing toward its full size (its figures will be refined)


class MarketRow(BaseModel):
    """One market of a scan: where its candles came from and how old they are, then its figures at the scan's hour
    (returns as fractions: 0.01 is 1%), or why it has none (`problem`)."""

    symbol: str
    exchange: str
    available: bool
    problem: str | None = None
    source: Literal["exchange", "store"] | None = None
    newest_candle: UtcTime | None = None  # open time of the newest candle, UTC
    age_s: float | None = None  # seconds since the newest candle opened
    is_stale: bool | None = None
    rows: int | None = None  # candles the model saw
    last_price: float | None = None
    change_1d: float | None = None  # the close's change over the last day of the lookback
    upside_probability: float | None = None
    expected_return: float | None = None
    return_low: float | None = None
    return_high: float | None = None
    band_width: float | None = None  # return_high - return_low: the risk
    volatility_amplification_probability: float | None = None
    crps_skill: float | None = None
    model_weight: float | None = None
    record_origins: int | None = None  # combined figures: the origins of the record behind them
    provisional: bool | None = None  # combined figures: their record is still growing toward its full size
    basis: Literal["raw", "combined"] | None = None  # raw: the model's own paths, until the combined forecast is in
    notes: list[str] = []


class Scan(BaseModel):
    """A scan's answer: the watchlist, the settings and model every market was forecast with, the rows in order."""

    watchlist: Watchlist
    settings: ForecastSettings
    model: str
    fingerprint: str  # the weights' identity (Forecaster.fingerprint)
    hour_idx: int
    made: UtcTime
    sort: SortColumn = SORT_COLUMNS[0]
    descending: bool = True
    rows: list[MarketRow]

    def sorted_by(self, column: str = SORT_COLUMNS[0], descending: bool = True) -> Scan:
        """The scan with its rows sorted by `column`: the markets lacking a value after the others, the unavailable
        ones last."""
        if column not in SORT_COLUMNS:
            raise ValueError(f"sort by one of {', '.join(SORT_COLUMNS)}, got {column!r}")
        valued = [r for r in self.rows if r.available and getattr(r, column) is not None]
        rest = [r for r in self.rows if r.available and getattr(r, column) is None]
        gone = [r for r in self.rows if not r.available]  # kept in the order they were made: the watchlist's
        valued.sort(key=lambda r: getattr(r, column), reverse=descending)
        return self.model_copy(update={"rows": valued + rest + gone, "sort": column, "descending": descending})

    @property
    def available(self) -> list[MarketRow]:
        """The rows with figures."""
        return [r for r in self.rows if r.available]

    def table(self) -> pd.DataFrame:
        """The rows as a table, one column per field (notes joined by "; ")."""
        frame = pd.DataFrame([r.model_dump() for r in self.rows], columns=list(MarketRow.model_fields))
        frame["notes"] = frame["notes"].map("; ".join)
        return frame

    def to_csv(self) -> str:
        """The ranking as CSV, in the scan's order."""
        return self.table().to_csv(index=False)


class ScanQuery(BaseModel):
    """What a scan is asked for (GET /scan's query, the command's options, the page's inputs): `symbols`, or else
    the `top` markets of `quote` by 24 h quote volume; where the candles come from; the forecast settings; the order.

    Within the budget of one request: at most SCAN_MAX_MARKETS markets and SCAN_MAX_PATHS markets x samples."""

    model_config = ConfigDict(extra="forbid")

    symbols: list[str] | None = Field(None, description="BASE/QUOTE symbols, repeated or comma-separated; none: "
                                                        "the top markets")
    top: int = Field(SCAN_TOP, ge=1, description=f"how many of the quote currency's markets, by 24 h quote volume (a "
                                                 f"request: at most {SCAN_MAX_MARKETS} markets and {SCAN_MAX_PATHS} "
                                                 "markets x samples)")
    quote: str = Field(SCAN_QUOTE, pattern=r"^[A-Za-z0-9]{2,10}$")
    exchange: str = MarketChoice().exchange
    timeframe: str = MarketChoice().timeframe
    source: Literal["exchange", "store"] = Field("exchange", description="exchange: live candles (the store when the "
                                                                         "exchange fails); store: stored ones only")
    horizon: int = Field(FORECAST_DEFAULTS.horizon, ge=RANGES["horizon"][0], le=RANGES["horizon"][1])
    samples: int = Field(FORECAST_DEFAULTS.samples, ge=RANGES["samples"][0], le=RANGES["samples"][1])
    temperature: float = Field(FORECAST_DEFAULTS.temperature, ge=RANGES["temperature"][0], le=RANGES["temperature"][1])
    top_p: float = Field(FORECAST_DEFAULTS.top_p, ge=RANGES["top_p"][0], le=RANGES["top_p"][1])
    top_k: int = Field(FORECAST_DEFAULTS.top_k, ge=RANGES["top_k"][0], le=RANGES["top_k"][1])
    lookback: int = Field(FORECAST_DEFAULTS.lookback, ge=RANGES["lookback"][0], le=RANGES["lookback"][1])
    seed: int = Field(FORECAST_DEFAULTS.seed, ge=RANGES["seed"][0], le=RANGES["seed"][1])
    hour_idx: int | None = Field(None, ge=1, description="the hour ahead the figures describe (default: the horizon)")
    sort: SortColumn = SORT_COLUMNS[0]
    descending: bool = True
    calibrate: bool = Field(False, description=CALIBRATE)

    @field_validator("symbols", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        """Accept "BTC/USDT,ETH/USDT" as well as a list; upper-case, drop repeats and blanks."""
        if value is None:
            return None
        parts = [value] if isinstance(value, str) else list(value)
        symbols = [s.strip().upper() for part in parts for s in str(part).split(",") if s.strip()]
        bad = [excerpt(s) for s in symbols if not re.fullmatch(SYMBOL_PATTERN, s)]
        if bad:
            raise ValueError("symbols should look like BASE/QUOTE, e.g. BTC/USDT; got "
                             + ", ".join(listed(bad, 3, "symbol(s)")))
        if not symbols:
            raise ValueError("symbols is empty: name at least one BASE/QUOTE market, or leave symbols out to scan the "
                             "top markets")
        return list(dict.fromkeys(symbols))

    @classmethod
    def checked(cls, **values: object) -> ScanQuery:
        """The query of these values; InvalidInputError naming each bad one (for the command line and the page)."""
        try:
            return cls(**values)
        except ValidationError as error:
            raise InvalidInputError([f"{'.'.join(map(str, e['loc'])) or 'query'}: {e['msg']}"
                                     for e in error.errors()]) from None

    def settings(self) -> ForecastSettings:
        """The forecast settings; InvalidInputError when the hour is past the horizon."""
        return ForecastSettings(self.horizon, self.samples, self.temperature, self.top_p, self.top_k, self.lookback,
                                self.seed, self.hour_idx)

    def markets(self) -> int:
        """How many markets the query asks for."""
        return len(self.symbols) if self.symbols else self.top

    def over_budget(self, max_markets: int = SCAN_MAX_MARKETS, max_paths: int = SCAN_MAX_PATHS) -> list[str]:
        """What exceeds the budget of one request (empty when within it)."""
        problems = []
        if self.markets() > max_markets:
            problems.append(f"a scan may ask for at most {max_markets} markets, got {self.markets()}")
        if self.markets() * self.samples > max_paths:
            problems.append(f"a scan may ask for at most {max_paths} paths (markets x samples), got "
                            f"{self.markets()} x {self.samples} = {self.markets() * self.samples}")
        return problems
