"""Checks that turn a table of candles (a frame, or cells read from a file) into what the engine takes.

One set of checks serves every caller: `check_history` (the engine: strict, raises), `validate_frame`
(a frame from anywhere: lenient, returns every problem) and the readers of kronos.data.reading. The
result is one report object, `Validation`. Rows are counted from 1 for the first data row; messages
say how that maps to the file or frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kronos.errors import InvalidInputError, excerpt
from kronos.timeframes import format_duration, median_step

PRICE_COLUMNS = ("open", "high", "low", "close")
FEATURE_COLUMNS = PRICE_COLUMNS + ("volume", "amount")
MIN_ROWS = 32
EXAMPLES = 3  # cells quoted per problem before the rest are counted
# The engine normalises in float32 (as the reference): a column's variance sums rows x value^2, which overflows
# float32 (3.4e38) for values near 1e17 over a 2048-row context; 1e15 keeps a wide margin and every real market.
VALUE_LIMIT = 1e15
EARLIEST, LATEST = pd.Timestamp.min.ceil("s"), pd.Timestamp.max.floor("s")  # the times pandas can hold (ns)
TIME_RANGE = f"{EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d %H:%M}"

ALIASES = {
    "timestamps": ("timestamps", "timestamp", "time", "date", "datetime", "open_time", "open time", "ts"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v", "base_volume"),
    "amount": ("amount", "quote_volume", "quote volume", "quote_asset_volume", "turnover", "value"),
}
COLUMN_OF = {alias: column for column, names in ALIASES.items() for alias in names}
HEADER_HINT = "timestamps,open,high,low,close[,volume,amount]"

Where = Callable[[int], str]


@dataclass
class Validation:
    """What the validator made of an input: the engine's frame (None when there are errors) and every message."""

    frame: pd.DataFrame | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    amount_is_estimated: bool = False
    spacing: pd.Timedelta | None = None  # the median time between rows: the forecast's step

    @property
    def ok(self) -> bool:
        """True when the frame is usable (warnings allowed)."""
        return not self.errors


def check_history(history: pd.DataFrame, *, min_rows: int = MIN_ROWS) -> pd.DataFrame:
    """Return `timestamps` + the six feature columns as float64, or raise InvalidInputError listing every problem.

    Volume and amount are optional, filled as the reference does: no volume -> both 0;
    volume without amount -> amount = volume * mean(open, high, low, close). Unsorted rows are an error here.
    """
    result = check_table(history, lookback=None, min_rows=min_rows, sort=False, where=_frame_rows(history))
    if result.errors:
        raise InvalidInputError(result.errors)
    return result.frame


def validate_frame(df: pd.DataFrame, lookback: int | None = None, *, min_rows: int = MIN_ROWS) -> Validation:
    """Check a frame of candles (any column aliases), sort it, keep the latest `lookback` rows."""
    return check_table(df, lookback=lookback, min_rows=min_rows, sort=True, where=_frame_rows(df))


def _frame_rows(df: object) -> Where:
    index = df.index if isinstance(df, pd.DataFrame) else pd.RangeIndex(0)
    return lambda i: f"row {i + 1} (index {index[i]})"


def check_table(table: object, *, lookback: int | None, min_rows: int, sort: bool, where: Where) -> Validation:
    """The one set of checks: columns, row count, timestamps, numbers, prices, order, spacing, lookback.

    `where(i)` names row i in messages; `sort` sorts unsorted rows (with a warning) rather than refusing them.
    """
    if lookback is not None and lookback < 1:
        raise InvalidInputError(f"lookback must be a positive number of rows, got {lookback}")
    if not isinstance(table, pd.DataFrame):
        return Validation(None, [f"history must be a pandas DataFrame, got {type(table).__name__}"])
    result = Validation(None)
    names = _map_columns(table, result)
    if result.errors:
        return result
    if len(table) < min_rows:
        result.errors.append(f"the input has {len(table)} data row(s); at least {min_rows} are needed")
    stamps = _timestamps(table[names["timestamps"]], names["timestamps"], where, result.errors)
    frame = pd.DataFrame({"timestamps": stamps.to_numpy()})
    for column in FEATURE_COLUMNS:
        if column in names:
            frame[column] = _numbers(table[names[column]], names[column], where, result.errors)
    _fill_volume(frame, names, result)
    _check_prices(frame, names, where, result)
    order = _check_order(frame["timestamps"], names["timestamps"], sort, where, result)
    if result.errors:
        return result
    frame = frame.iloc[order].reset_index(drop=True)[["timestamps", *FEATURE_COLUMNS]]
    result.spacing = _check_spacing(frame["timestamps"], result.warnings)
    if lookback is not None and len(frame) > lookback:
        result.warnings.append(f"kept the latest {lookback} of {len(frame)} rows (the lookback)")
        frame = frame.iloc[-lookback:].reset_index(drop=True)
    result.frame = frame
    return result


def _map_columns(table: pd.DataFrame, result: Validation) -> dict[str, str]:
    """Map each engine column to the input's column name (aliases, any case); report missing, doubled, ignored."""
    names: dict[str, str] = {}
    ignored = []
    for name in table.columns:
        column = COLUMN_OF.get(str(name).strip().lower())
        if column is None:
            ignored.append(str(name))
        elif column in names:
            result.errors.append(f"columns {excerpt(str(names[column]))} and {excerpt(str(name))} both name {column}; "
                                 "keep one of them")
        else:
            names[column] = name
    missing = [c for c in ("timestamps",) + PRICE_COLUMNS if c not in names]
    if missing:
        found = _names(table.columns) or "none"
        hint = " (the first line looks like data: add a header line)" if _looks_like_data(table.columns) else ""
        result.errors.append(f"missing column(s) {', '.join(missing)}; found {found}{hint}; "
                             f"name the columns {HEADER_HINT} (volume, amount optional)")
    elif ignored:
        result.warnings.append(f"ignored column(s) {_names(ignored)}")
    return names


def _names(columns: object) -> str:
    """Column names for a message: the first EXAMPLES, each an excerpt, the rest counted."""
    names = [excerpt(str(name)) for name in columns]
    more = f" and {len(names) - EXAMPLES:,} more" if len(names) > EXAMPLES else ""
    return ", ".join(names[:EXAMPLES]) + more


def _looks_like_data(columns: pd.Index) -> bool:
    return any(pd.notna(pd.to_numeric(str(name), errors="coerce")) for name in columns)


def _report(mask: np.ndarray, column: str, problem: str, fix: str, where: Where, errors: list[str],
            values: pd.Series | None = None) -> None:
    """Add one message for all the rows in `mask`: the first few named, the rest counted."""
    rows = np.flatnonzero(mask)
    if not len(rows):
        return
    quoted = [where(i) if values is None else f"{where(i)} {_show(values.iloc[i])}" for i in rows[:EXAMPLES]]
    more = f" and {len(rows) - EXAMPLES:,} more row(s)" if len(rows) > EXAMPLES else ""
    errors.append(f"{column}: {', '.join(quoted)}{more}: {problem}; {fix}")


def _show(value: object) -> str:
    return excerpt(value) if isinstance(value, str) else f"({value})"


def _timestamps(raw: pd.Series, column: str, where: Where, errors: list[str]) -> pd.Series:
    """Parse ISO strings, dates, datetimes or epoch s/ms/us/ns numbers into naive UTC; report what does not parse."""
    raw = raw.reset_index(drop=True)
    too_far = np.zeros(len(raw), dtype=bool)  # epoch numbers past what pandas can hold
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        stamps = pd.to_datetime(raw, utc=True)
    else:
        empty = raw.isna() | (raw.astype(str).str.strip() == "")
        numbers = pd.to_numeric(raw.where(~empty), errors="coerce")
        if numbers[~empty].notna().all() and (~empty).any():
            stamps = pd.to_datetime(numbers, unit=_epoch_unit(numbers.abs().max()), utc=True, errors="coerce")
            too_far = (numbers.notna() & stamps.isna()).to_numpy()
        else:
            text = raw.where(~empty).astype("string")
            stamps = pd.to_datetime(text, utc=True, errors="coerce")
            retry = stamps.isna() & ~empty
            if retry.any():
                stamps[retry] = pd.to_datetime(text[retry], utc=True, errors="coerce", format="mixed")
    stamps = stamps.dt.tz_localize(None)
    outside = too_far | (stamps.notna() & ((stamps < EARLIEST) | (stamps > LATEST))).to_numpy()
    _report(outside, column, f"outside the times that can be handled ({TIME_RANGE})", "check the year", where,
            errors, raw)
    _report(stamps.isna().to_numpy() & ~outside, column, "not a date or time",
            "use ISO 8601 like 2024-01-31 13:00 (a time zone is converted to UTC) or epoch seconds/milliseconds",
            where, errors, raw)
    return stamps.mask(outside).astype("datetime64[ns]")


def _epoch_unit(largest: float) -> str:
    """Seconds, milliseconds, microseconds or nanoseconds since 1970, judged by size."""
    return "s" if largest < 1e11 else "ms" if largest < 1e14 else "us" if largest < 1e17 else "ns"


def _numbers(raw: pd.Series, column: str, where: Where, errors: list[str]) -> np.ndarray:
    """Parse a column as float64; report empty cells, text that is not a number, NaN and infinities."""
    raw = raw.reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        values = raw.to_numpy(dtype="float64", na_value=np.nan)  # already numbers: no text to parse
        _report(np.isnan(values), column, "empty or NaN", "fill the cell or drop the row", where, errors)
        _report(np.isinf(values), column, "infinite", "give a finite number", where, errors)
        return values
    text = raw.astype("string").str.strip()
    empty = (raw.isna() | (text == "")).to_numpy()
    values = pd.to_numeric(raw.where(~empty), errors="coerce").astype("float64").to_numpy()
    spelled_nan = text.str.lower().isin(["nan", "-nan", "inf", "-inf", "+inf", "infinity", "-infinity"]).to_numpy()
    garbled = np.isnan(values) & ~empty & ~spelled_nan
    decimal_comma = garbled & text.str.fullmatch(r"-?\d+,\d+").fillna(False).to_numpy()
    _report(decimal_comma, column, "decimal comma", "write numbers with a dot, like 1234.5", where, errors, raw)
    _report(garbled & ~decimal_comma, column, "not a number", "write plain numbers like 1234.5", where, errors, raw)
    _report(empty, column, "empty", "fill the cell or drop the row", where, errors)
    _report(~np.isfinite(values) & ~garbled & ~empty, column, "NaN or infinite", "give a finite number",
            where, errors)
    return values


def _fill_volume(frame: pd.DataFrame, names: dict[str, str], result: Validation) -> None:
    """Fill volume/amount as the reference does when the input lacks them, and say so."""
    if "volume" not in frame:
        frame["volume"] = 0.0
        frame["amount"] = 0.0
        result.warnings.append("no volume column: volume and amount are set to 0, as the model expects then")
    elif "amount" not in frame:
        frame["amount"] = frame["volume"] * frame[list(PRICE_COLUMNS)].mean(axis=1)
        result.amount_is_estimated = True
        result.warnings.append("no amount column: amount is estimated as volume x mean(open, high, low, close)")


def _check_prices(frame: pd.DataFrame, names: dict[str, str], where: Where, result: Validation) -> None:
    """Prices not above 0, volumes below 0, values from VALUE_LIMIT up and high below low are errors; high/low
    not bounding open/close is a warning."""
    limit = f"{VALUE_LIMIT:.0e}".replace("e+", "e")
    allowed = f"prices must be above 0 and below {limit}, volumes and amounts 0 or more and below {limit}"
    for column in FEATURE_COLUMNS:
        label = names.get(column, "amount (estimated from volume)" if column == "amount" else None)
        if label is not None:
            values = frame[column]
            _report((values < 0).to_numpy(), label, "negative", allowed, where, result.errors, values)
            if column in PRICE_COLUMNS:
                _report((values == 0).to_numpy(), label, "zero", allowed, where, result.errors, values)
            _report((values >= VALUE_LIMIT).to_numpy(), label, "too large", allowed + " (rescale the column, e.g. to "
                    "thousands)", where, result.errors, values)
    high, low = frame["high"].to_numpy(), frame["low"].to_numpy()
    _report(high < low, names["high"], f"below {names['low']}", "swap the two or fix the row", where,
            result.errors, frame["high"])
    body_top = np.maximum(frame["open"], frame["close"]).to_numpy()
    body_bottom = np.minimum(frame["open"], frame["close"]).to_numpy()
    _report((high < body_top) | (low > body_bottom), f"{names['high']}/{names['low']}",
            "high/low do not bound open/close", "check the row (used as given)", where, result.warnings)


def _check_order(stamps: pd.Series, column: str, sort: bool, where: Where, result: Validation) -> np.ndarray:
    """Return the row order by time; duplicates are errors, unsorted rows an error or a warning (sorted)."""
    valid = stamps.notna().to_numpy()
    _report(stamps.duplicated(keep=False).to_numpy() & valid, column, "the same time as another row",
            "keep one row per time", where, result.errors, stamps.dt.strftime("%Y-%m-%d %H:%M:%S"))
    earlier = np.zeros(len(stamps), dtype=bool)
    earlier[1:] = (stamps.diff() < pd.Timedelta(0)).to_numpy()[1:]
    fix, messages = ("the rows were sorted by time", result.warnings) if sort else ("sort the rows by time",
                                                                                  result.errors)
    _report(earlier, column, "earlier than the row before it", fix, where, messages)
    return np.argsort(stamps.to_numpy(), kind="stable")


def _check_spacing(stamps: pd.Series, warnings: list[str]) -> pd.Timedelta | None:
    """The median spacing; a warning naming the first gap that differs from it."""
    median = median_step(stamps)
    if median is None:
        return None
    deltas = stamps.diff().iloc[1:]
    odd = np.flatnonzero((deltas != median).to_numpy())
    if len(odd):
        i = odd[0] + 1
        warnings.append(f"timestamps: the spacing is irregular ({len(odd)} gap(s) differ from the median "
                        f"{format_duration(median)}; the first, after {stamps.iloc[i - 1]}, is "
                        f"{format_duration(deltas.iloc[i - 1])}); "
                        "the forecast steps use the median spacing")
    return median


def check_forecast_span(stamps: pd.Series, horizon: int, lookback: int | None = None) -> None:
    """Raise InvalidInputError when the horizon's candles, stamped one median step (of the last `lookback` rows)
    apart after the last row as the engine does, would pass the latest time pandas can hold."""
    used = pd.DatetimeIndex(stamps)[-lookback:] if lookback else pd.DatetimeIndex(stamps)
    step = median_step(used)
    if step is None or step <= pd.Timedelta(0) or horizon < 1:
        return
    room = (LATEST.value - used[-1].value) // step.value  # whole steps left: Python ints, no overflow
    if horizon > room:
        raise InvalidInputError(f"timestamps: {horizon} forecast steps of {format_duration(step)} after the last row "
                                f"({used[-1]:%Y-%m-%d %H:%M}, row {len(stamps)}) would pass {LATEST:%Y-%m-%d}, the "
                                "latest time that can be handled; " + (f"forecast at most {room} steps" if room > 0
                                                                       else "none fit: give earlier times"))
