"""Reading candle input into a table: bytes (plain or gzip CSV, UTF-8/UTF-16, Excel quirks) and the custom JSON.

Each reader turns its input into a table of cells and says where each row came from (a line of the
file, an item of the JSON lists); `kronos.data.validation.check_table` then checks the rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zlib
from pathlib import Path

import pandas as pd

from kronos.data.validation import HEADER_HINT, MIN_ROWS, Validation, check_table
from kronos.errors import InvalidInputError

MAX_BYTES = 64 * 1024 * 1024
MAX_ROWS = 500_000
DELIMITERS = (",", ";", "\t", "|")
BINARY_SIGNATURES = {b"PK\x03\x04": "a zip archive or an Excel workbook (.xlsx)",
                     b"\xd0\xcf\x11\xe0": "an old Excel workbook (.xls)", b"%PDF": "a PDF document"}
UTF8_BOM, UTF16_BOMS = b"\xef\xbb\xbf", (b"\xff\xfe", b"\xfe\xff")


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
    result = check_table(table, lookback=lookback, min_rows=MIN_ROWS, sort=True,
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
    return check_table(table, lookback=lookback, min_rows=MIN_ROWS, sort=True,
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


