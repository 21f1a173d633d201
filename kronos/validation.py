"""Checks that turn a candle table (a frame, CSV bytes or the custom JSON) into what the engine takes.

One set of checks serves both callers: `check_history` (the engine: strict, raises) and
`validate_frame` / `read_csv_bytes` / `read_json_text` (custom input: lenient, returns every problem).
Rows are counted from 1 for the first data row; messages say how that maps to the file or frame.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from kronos.errors import InvalidInputError

PRICE_COLUMNS = ("open", "high", "low", "close")
FEATURE_COLUMNS = PRICE_COLUMNS + ("volume", "amount")
MIN_ROWS = 32
MAX_BYTES = 64 * 1024 * 1024
MAX_ROWS = 500_000
EXAMPLES = 3  # cells quoted per problem before the rest are counted

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
DELIMITERS = (",", ";", "\t", "|")
BINARY_SIGNATURES = {b"PK\x03\x04": "a zip archive or an Excel workbook (.xlsx)",
                     b"\xd0\xcf\x11\xe0": "an old Excel workbook (.xls)", b"%PDF": "a PDF document"}
UTF8_BOM, UTF16_BOMS = b"\xef\xbb\xbf", (b"\xff\xfe", b"\xfe\xff")
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
    result = _validate(history, lookback=None, min_rows=min_rows, sort=False, where=_frame_rows(history))
    if result.errors:
        raise InvalidInputError(result.errors)
    return result.frame


def validate_frame(df: pd.DataFrame, lookback: int | None = None, *, min_rows: int = MIN_ROWS) -> Validation:
    """Check a frame of candles (any column aliases), sort it, keep the latest `lookback` rows."""
    return _validate(df, lookback=lookback, min_rows=min_rows, sort=True, where=_frame_rows(df))


def read_csv_bytes(data: bytes, *, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS,
                   lookback: int | None = None) -> Validation:
    """Validate an uploaded CSV file (plain or gzip, UTF-8 with or without BOM, or UTF-16)."""
    warnings: list[str] = []
    text, problem = _decode(data, max_bytes, warnings)
    if problem:
        return Validation(None, [problem], warnings)
    table, lines, problems = _parse_csv(text, max_rows, warnings)
    if problems:
        return Validation(None, problems, warnings)
    result = _validate(table, lookback=lookback, min_rows=MIN_ROWS, sort=True,
                       where=lambda i: f"row {i + 1} (line {lines[i]} of the file)")
    result.warnings[:0] = warnings
    return result


def read_json_text(text: str, *, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS,
                   lookback: int | None = None) -> Validation:
    """Validate JSON in the custom format {"timestamps": [...], "open": [...], ...} (or a list of row objects)."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        return Validation(None, [_too_big(len(text.encode("utf-8", "surrogatepass")), max_bytes)])
    if not text.strip():
        return Validation(None, ['the JSON is empty; send {"timestamps": [...], "open": [...], "high": [...], '
                                 '"low": [...], "close": [...]} with at least 32 values each'])
    try:
        data = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as error:
        return Validation(None, [f"the JSON is not valid at line {error.lineno}, column {error.colno}: {error.msg}; "
                                 "check the brackets, commas and quotes there"])
    table, problem = _json_table(data)
    if problem:
        return Validation(None, [problem])
    if len(table) > max_rows:
        return Validation(None, [_too_many(len(table), max_rows)])
    return _validate(table, lookback=lookback, min_rows=MIN_ROWS, sort=True,
                     where=lambda i: f"row {i + 1} (item {i} of each JSON list)")


def read_file(path: str | os.PathLike, kind: str | None = None, *, lookback: int | None = None) -> Validation:
    """Validate a file on disk as `kind` "csv" or "json" (None: JSON for a .json name, CSV otherwise)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidInputError(f"cannot read {path}: {error.strerror or error}") from error
    if (kind or ("json" if path.suffix.lower() == ".json" else "csv")) == "json":
        return read_json_text(data.decode("utf-8", errors="replace"), lookback=lookback)
    return read_csv_bytes(data, lookback=lookback)


def _frame_rows(df: object) -> Where:
    index = df.index if isinstance(df, pd.DataFrame) else pd.RangeIndex(0)
    return lambda i: f"row {i + 1} (index {index[i]})"


def _too_big(size: int, limit: int) -> str:
    return f"the input is {size / 2**20:.1f} MiB; the limit is {limit / 2**20:.1f} MiB: keep only the rows you need"


def _too_many(rows: int, limit: int) -> str:
    return f"the input has {rows:,} rows; the limit is {limit:,}: keep only the latest rows you need"


def _decode(data: bytes, max_bytes: int, warnings: list[str]) -> tuple[str, str | None]:
    """Bytes -> text, or a message saying why the bytes are not a CSV file."""
    if len(data) > max_bytes:
        return "", _too_big(len(data), max_bytes)
    if data[:2] == b"\x1f\x8b":
        inflate = zlib.decompressobj(wbits=31)
        try:
            data = inflate.decompress(data, max_bytes + 1)
        except zlib.error:
            data = b""
        if len(data) > max_bytes:
            return "", _too_big(len(data), max_bytes)
        if not inflate.eof:
            return "", "the file looks gzip-compressed but is damaged; compress it again or upload the plain CSV"
    if not data.strip():
        return "", f"the file is empty; upload a CSV with a header line ({HEADER_HINT}) and at least {MIN_ROWS} rows"
    for signature, kind in BINARY_SIGNATURES.items():
        if data.startswith(signature):
            return "", f"the file is {kind}, not CSV; in Excel use File > Save As > 'CSV UTF-8 (comma delimited)'"
    if data[:2] in UTF16_BOMS:
        warnings.append("the file is UTF-16 text (Excel 'Unicode Text'); it was read as such")
        return data.decode("utf-16"), None
    if data.startswith(UTF8_BOM):
        warnings.append("the file starts with a byte-order mark (Excel's 'CSV UTF-8'); it was ignored")
        data = data[len(UTF8_BOM):]
    head = data[:8192]
    controls = sum(b < 32 and b not in b"\t\r\n" for b in head)
    if controls > len(head) // 100:
        return "", (f"the file is not text (it holds {controls} control bytes in its first {len(head)}); "
                    "upload a CSV file, not a spreadsheet, image or archive")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return "", (f"the file is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
                    "save it as 'CSV UTF-8'")


def _parse_csv(text: str, max_rows: int, warnings: list[str]) -> tuple[pd.DataFrame, list[int], list[str]]:
    """Text -> a table of strings and each row's line number, or the problems with the file's layout."""
    header_line = next(line for line in text.splitlines() if line.strip())
    delimiter = max(DELIMITERS, key=header_line.count)
    if header_line.count(delimiter) == 0:
        return pd.DataFrame(), [], [f"line 1 '{header_line[:60]}' has no commas; separate the columns with commas "
                                    f"and start with a header line like {HEADER_HINT}"]
    if delimiter != ",":
        warnings.append(f"the columns are separated by {delimiter!r} rather than commas; they were read that way")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows, lines, skipped = [], [], 0
    header: list[str] | None = None
    for record in reader:
        if not any(cell.strip() for cell in record):
            skipped += bool(record)
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            continue
        if len(record) != len(header):
            return pd.DataFrame(), [], [f"line {reader.line_num} has {len(record)} field(s) but the header has "
                                        f"{len(header)}; every line needs the same columns separated by {delimiter!r}"]
        if len(rows) == max_rows:
            return pd.DataFrame(), [], [_too_many(max_rows + 1, max_rows) + f" (counted up to line {reader.line_num})"]
        rows.append([cell.strip() for cell in record])
        lines.append(reader.line_num)
    if skipped:
        warnings.append(f"{skipped} line(s) with only empty cells (often left by Excel) were skipped")
    return pd.DataFrame(rows, columns=header, dtype=object), lines, []


def _json_table(data: object) -> tuple[pd.DataFrame, str | None]:
    """The seed's column object or a list of row objects -> a table, or what is wrong with its shape."""
    shape = ('expected {"timestamps": [...], "open": [...], "high": [...], "low": [...], "close": [...]} '
             "(volume, amount optional) or a list of row objects")
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        return pd.DataFrame.from_records(data), None
    if not isinstance(data, dict):
        return pd.DataFrame(), f"the JSON holds a {type(data).__name__}; {shape}"
    not_lists = [name for name, values in data.items() if not isinstance(values, list)]
    if not_lists:
        return pd.DataFrame(), f"{', '.join(map(repr, not_lists))} should be a list of values; {shape}"
    lengths = {name: len(values) for name, values in data.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name!r} has {n}" for name, n in lengths.items())
        return pd.DataFrame(), f"the lists differ in length ({detail}); give every column one value per row"
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in data.items()}), None


def _validate(table: object, *, lookback: int | None, min_rows: int, sort: bool, where: Where) -> Validation:
    """The one set of checks: columns, row count, timestamps, numbers, prices, order, spacing, lookback."""
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
            result.errors.append(f"columns {names[column]!r} and {name!r} both name {column}; keep one of them")
        else:
            names[column] = name
    missing = [c for c in ("timestamps",) + PRICE_COLUMNS if c not in names]
    if missing:
        found = ", ".join(map(repr, map(str, table.columns))) or "none"
        hint = " (the first line looks like data: add a header line)" if _looks_like_data(table.columns) else ""
        result.errors.append(f"missing column(s) {', '.join(missing)}; found {found}{hint}; "
                             f"name the columns {HEADER_HINT} (volume, amount optional)")
    elif ignored:
        result.warnings.append(f"ignored column(s) {', '.join(map(repr, ignored))}")
    return names


def _looks_like_data(columns: pd.Index) -> bool:
    return any(pd.notna(pd.to_numeric(str(name), errors="coerce")) for name in columns)


def _report(mask: np.ndarray, column: str, problem: str, fix: str, where: Where, errors: list[str],
            values: pd.Series | None = None) -> None:
    """Add one message for all the rows in `mask`: the first few named, the rest counted."""
    rows = np.flatnonzero(mask)
    if not len(rows):
        return
    quoted = [where(i) if values is None else f"{where(i)} {_show(values.iloc[i])}" for i in rows[:EXAMPLES]]
    more = f" and {len(rows) - EXAMPLES} more row(s)" if len(rows) > EXAMPLES else ""
    errors.append(f"{column}: {', '.join(quoted)}{more}: {problem}; {fix}")


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else f"({value})"


def _timestamps(raw: pd.Series, column: str, where: Where, errors: list[str]) -> pd.Series:
    """Parse ISO strings, dates, datetimes or epoch s/ms/us/ns numbers into naive UTC; report what does not parse."""
    raw = raw.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        stamps = pd.to_datetime(raw, utc=True)
    else:
        empty = raw.isna() | (raw.astype(str).str.strip() == "")
        numbers = pd.to_numeric(raw.where(~empty), errors="coerce")
        if numbers[~empty].notna().all() and (~empty).any():
            stamps = pd.to_datetime(numbers, unit=_epoch_unit(numbers.abs().max()), utc=True, errors="coerce")
        else:
            text = raw.where(~empty).astype("string")
            stamps = pd.to_datetime(text, utc=True, errors="coerce")
            retry = stamps.isna() & ~empty
            if retry.any():
                stamps[retry] = pd.to_datetime(text[retry], utc=True, errors="coerce", format="mixed")
    stamps = stamps.dt.tz_localize(None).astype("datetime64[ns]")
    _report(stamps.isna().to_numpy(), column, "not a date or time",
            "use ISO 8601 like 2024-01-31 13:00 (a time zone is converted to UTC) or epoch seconds/milliseconds",
            where, errors, raw)
    return stamps


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
    """Negative values and high below low are errors; high/low not bounding open/close is a warning."""
    for column in FEATURE_COLUMNS:
        if column in names:
            _report((frame[column] < 0).to_numpy(), names[column], "negative", "prices and volumes cannot be "
                    "below 0", where, result.errors, frame[column])
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
    deltas = stamps.diff().iloc[1:]
    if deltas.empty:
        return None
    median = deltas.median()
    odd = np.flatnonzero((deltas != median).to_numpy())
    if len(odd):
        i = odd[0] + 1
        warnings.append(f"timestamps: the spacing is irregular ({len(odd)} gap(s) differ from the median "
                        f"{format_duration(median)}; the first, after {stamps.iloc[i - 1]}, is "
                        f"{format_duration(deltas.iloc[i - 1])}); "
                        "the forecast steps use the median spacing")
    return median


def format_duration(delta: pd.Timedelta) -> str:
    """A spacing in the largest whole unit: 5min, 1h, 2d; seconds otherwise."""
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
