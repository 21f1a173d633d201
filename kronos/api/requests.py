"""What the HTTP API's routes take: sampling settings, a market, custom candles, a backtest's origins.

Defaults and ranges come from kronos.settings; each model turns itself into the project's own settings, so the
checks that need several fields (or the candles) run once there, before any work is submitted.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

import ccxt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from kronos.api.errors import ROWS, grouped
from kronos.data.candles import Candles, custom_candles
from kronos.data.reading import read_json_text
from kronos.data.validation import FEATURE_COLUMNS, MIN_ROWS
from kronos.errors import InvalidInputError
from kronos.evaluation.backtest import BACKTEST_DEFAULTS, BacktestSettings
from kronos.evaluation.combined import EVERY, ORIGINS
from kronos.settings import (
    MAX_REQUEST_WORK,
    ORIGIN_LIMITS,
    RANGES,
    SETTING_NAMES,
    SYMBOL_PATTERN,
    ForecastSettings,
    MarketChoice,
    help_texts,
)
from kronos.timeframes import TIMEFRAMES

MAX_CUSTOM_ROWS = 20_000  # candles one request may send (all of them are validated)
LATEST_EPOCH_MS = 4_102_444_800_000  # 2100-01-01 in milliseconds: epoch numbers above it are no candle times
MARKET_HELP, HOUR = help_texts(MarketChoice), ForecastSettings.model_fields["hour_idx"]
BACKTEST_HELP = help_texts(BacktestSettings)
BUDGET = (f"at most {MAX_REQUEST_WORK:,} generated candle steps per request (origins x samples x horizon), so that "
          "it finishes within the request timeout; more is answered 422 before any work")
CALIBRATE = (f"true: add `calibrated`, the combined forecast (Kronos calibrated and pooled with volatility baselines, "
             f"its weights, bands and record), from a backtest of the data's recent history ({ORIGINS} origins "
             f"every {EVERY} candles, this request's settings), a background job: a first call may answer 202 with "
             "Retry-After (ask again, the same request, until it is 200); its origins are kept in the server's "
             "store, so later calls on the same data reuse them and "
             f"forecast only the new origins. The work counts {ORIGINS} origins + the forecast against the budget, "
             f"{BUDGET}. With too little history `calibrated` is `{{unavailable: why}}`, naming the rows it would need")


def check_work(origins: int, samples: int, horizon: int) -> None:
    """InvalidInputError when a request asks for more than MAX_REQUEST_WORK generated candle steps."""
    work = origins * samples * horizon
    if work > MAX_REQUEST_WORK:
        raise InvalidInputError(f"{origins} origins x {samples} samples x {horizon} hours = {work:,} generated candle "
                                f"steps is over this server's budget of {MAX_REQUEST_WORK:,} per request; ask for "
                                "fewer origins, samples or hours")


class SamplingQuery(ForecastSettings):
    """Sampling settings shared by every forecast route: ForecastSettings' fields, their defaults, ranges and help
    texts; an hour_idx beyond the horizon means its last hour. Its faults are pydantic's, which the API words."""

    __init__ = BaseModel.__init__  # pydantic's ValidationError, not the settings' InvalidInputError
    model_config = ConfigDict(extra="ignore")

    hour_idx: int | None = Field(None, ge=1, le=RANGES["horizon"][1], title=HOUR.title,
                                 description=f"{HOUR.description}; beyond the horizon: its last hour")

    def _hour_within_horizon(self) -> SamplingQuery:  # no check: `forecast_settings` caps it
        return self

    def forecast_settings(self) -> ForecastSettings:
        """The checked settings, hour_idx capped at the horizon, within the work budget."""
        check_work(1, self.samples, self.horizon)
        values = self.model_dump(include=set(SETTING_NAMES))
        values["hour_idx"] = None if self.hour_idx is None else min(self.hour_idx, self.horizon)
        return ForecastSettings(**values)


class Calibrating(SamplingQuery):
    """Sampling settings and `calibrate`: the forecast routes' query or body."""

    calibrate: bool = Field(False, description=CALIBRATE)
    calibration: Literal["quick", "full"] = Field(
        "quick", description="with calibrate=true: `quick` (the default) answers with the newest usable record, "
                             "provisional at first (its `calibrated.record` says `provisional` and on how many "
                             "`origins`) while the full record is fitted behind, so asking again gives a fuller "
                             "one; `full` waits for the full record. Either way a calibration with no record "
                             "reached within the server's wait is 202 with Retry-After: ask again")

    def forecast_settings(self) -> ForecastSettings:
        """The checked settings, within the work budget counting the calibration's origins when asked."""
        if self.calibrate:
            check_work(ORIGINS + 1, self.samples, self.horizon)
        return super().forecast_settings()


class MarketOnly(BaseModel):
    """A market: exchange, symbol and timeframe."""

    model_config = ConfigDict(extra="ignore")

    exchange: Literal[tuple(ccxt.exchanges)] = Field(  # type: ignore[valid-type]
        MarketChoice.exchange, description=MARKET_HELP["exchange"])
    symbol: str = Field(MarketChoice.symbol, pattern=SYMBOL_PATTERN, description=MARKET_HELP["symbol"])
    timeframe: Literal[TIMEFRAMES] = Field(  # type: ignore[valid-type]
        MarketChoice.timeframe, description=MARKET_HELP["timeframe"])

    def market(self) -> MarketChoice:
        """The market chosen."""
        return MarketChoice(self.exchange, self.symbol, self.timeframe)


class MarketQuery(Calibrating, MarketOnly):
    """A forecast of a live market's latest candles."""

    align_to_hour: bool = Field(True, description="true: only closed candles; false: include the still-open one")

    def market(self) -> MarketChoice:
        """The market chosen, aligned to closed candles or real time."""
        return MarketChoice(self.exchange, self.symbol, self.timeframe, "aligned" if self.align_to_hour else "realtime")


def _summarized(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """A list's items validated; their faults as one error per kind, its first rows named and the rest counted, so
    that 20,000 bad items make a few short problems rather than 20,000 errors held in memory at once."""
    try:
        return handler(value)
    except ValidationError as error:
        items = ({"loc": ("body", info.field_name, *e["loc"]), "msg": e["msg"],
                  "input": value[e["loc"][0]] if e["loc"] and isinstance(e["loc"][0], int) else value}
                 for e in error.errors(include_url=False, include_context=False, include_input=False))
        problems = grouped(items)
        raise PydanticCustomError(ROWS, "{text}", {"text": "; ".join(problems), "problems": problems}) from None


Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Stamp = datetime | Annotated[float, Field(ge=0, le=LATEST_EPOCH_MS, allow_inf_nan=False)]
Rows = WrapValidator(_summarized)  # on each list of candles' values


class CustomCandles(SamplingQuery):
    """Your own candles in the original custom format (at most 20,000) and the sampling settings (see CustomBody)."""

    timestamps: Annotated[list[Stamp], Rows] = Field(min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS,
                                    description="ISO 8601 times (UTC unless zoned) or epoch seconds/milliseconds")
    open: Annotated[list[Price], Rows] = Field(min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)
    high: Annotated[list[Price], Rows] = Field(min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)
    low: Annotated[list[Price], Rows] = Field(min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)
    close: Annotated[list[Price], Rows] = Field(min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)
    volume: Annotated[list[Price], Rows] | None = Field(None, min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)
    amount: Annotated[list[Price], Rows] | None = Field(None, min_length=MIN_ROWS, max_length=MAX_CUSTOM_ROWS)

    def candles(self) -> Candles:
        """The body's candles checked by the project's validator; InvalidInputError listing every problem."""
        columns = self.model_dump(mode="json", include={"timestamps", *FEATURE_COLUMNS}, exclude_none=True)
        return custom_candles(read_json_text(json.dumps(columns)), "request body", "json")


class CustomBody(CustomCandles, Calibrating):
    """Your own candles in the original custom format (at most 20,000), the settings and `calibrate`.

    The lists must have equal lengths, one value per candle; timestamps must differ and high must not be
    below low: rules across lists that the schema cannot state, answered with 422 and what to fix.
    """


class BacktestBody(CustomCandles):
    """Your own candles (as for /predict_custom), the sampling settings, and where the backtest's origins fall."""

    origins: int = Field(BACKTEST_DEFAULTS.origins, ge=1, le=ORIGIN_LIMITS.api,
                         description=f"{BACKTEST_HELP['origins']}; {BUDGET}")
    every: int = Field(BACKTEST_DEFAULTS.every, ge=1, le=1000, description=BACKTEST_HELP["every"])
    min_count: int = Field(BACKTEST_DEFAULTS.min_count, ge=1, le=1000, description=BACKTEST_HELP["min_count"])
    calibrate: bool = Field(False, description="also forecast after the last candle, calibrated on the record")

    def backtest_settings(self) -> BacktestSettings:
        """The backtest's settings, within the work budget."""
        check_work(self.origins, self.samples, self.horizon)
        sampling = self.forecast_settings().model_copy(update={"hour_idx": None})  # a backtest scores every hour
        return BacktestSettings(sampling, origins=self.origins, every=self.every, min_count=self.min_count)
