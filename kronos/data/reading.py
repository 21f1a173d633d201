"""Reading candle input into a table: bytes (plain or gzip CSV, UTF-8/UTF-16, Excel quirks) and the custom JSON.

Each reader turns its input into a table of cells and says where each row came from (a line of the
file, an item of the JSON lists); `kronos.data.validation.check_table` then checks the rows. A CSV file is
read as a stream, CHUNK_ROWS rows at a time, its price and volume columns kept as numbers where every cell of a
chunk is one (the others as text, for the validator's messages): a 60 MB upload costs about its size in memory,
not ten times it.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import zlib
from array import array
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from kronos.data.validation import COLUMN_OF, FEATURE_COLUMNS, HEADER_HINT, MIN_ROWS, Validation, check_table
from kronos.errors import InvalidInputError

MAX_BYTES = 64 * 1024 * 1024
MAX_ROWS = 500_000
DELIMITERS = (",", ";", "\t", "|")
BINARY_SIGNATURES = {b"PK\x03\x04": "a zip archive or an Excel workbook (.xlsx)",
                     b"\xd0\xcf\x11\xe0": "an old Excel workbook (.xls)", b"%PDF": "a PDF document"}
UTF8_BOM, UTF16_BOMS = b"\xef\xbb\xbf", (b"\xff\xfe", b"\xfe\xff")
CHUNK_ROWS = 20_000  # CSV rows parsed into columns at a time
Part = np.ndarray | pd.api.extensions.ExtensionArray  # a chunk of one column: numbers, or text


def read_csv_bytes(data: bytes | memoryview, *, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS,
                   lookback: int | None = None) -> Validation:
    """Validate an uploaded CSV file (plain or gzip, UTF-8 with or without BOM, or UTF-16); a memoryview (an
    upload's buffer) is read in place."""
    warnings: list[str] = []
    text, problem = _decode(data, max_bytes, warnings)
    if problem or text is None:
        return Validation(None, [problem or "the file could not be read"], warnings)
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


def _decode(data: bytes | memoryview, max_bytes: int, warnings: list[str]) -> tuple[TextIO | None, str | None]:
    """Bytes -> a text stream over them (no copy), or a message saying why the bytes are not a CSV file."""
    if len(data) > max_bytes:
        return None, _too_big(len(data), max_bytes)
    if bytes(data[:2]) == b"\x1f\x8b":
        inflate = zlib.decompressobj(wbits=31)
        try:
            data = inflate.decompress(data, max_bytes + 1)
        except zlib.error:
            data = b""
        if len(data) > max_bytes:
            return None, _too_big(len(data), max_bytes)
        if not inflate.eof:
            return None, "the file looks gzip-compressed but is damaged; compress it again or upload the plain CSV"
    if re.search(rb"\S", data) is None:
        return None, f"the file is empty; upload a CSV with a header line ({HEADER_HINT}) and at least {MIN_ROWS} rows"
    head = bytes(data[:8192])
    for signature, kind in BINARY_SIGNATURES.items():
        if head.startswith(signature):
            return None, f"the file is {kind}, not CSV; in Excel use File > Save As > 'CSV UTF-8 (comma delimited)'"
    if head[:2] in UTF16_BOMS:
        warnings.append("the file is UTF-16 text (Excel 'Unicode Text'); it was read as such")
        return io.StringIO(bytes(data).decode("utf-16"), newline=""), None
    skip = 0
    if head.startswith(UTF8_BOM):
        warnings.append("the file starts with a byte-order mark (Excel's 'CSV UTF-8'); it was ignored")
        skip = len(UTF8_BOM)
    head = head[skip:]
    controls = sum(b < 32 and b not in b"\t\r\n" for b in head)
    if controls > len(head) // 100:
        return None, (f"the file is not text (it holds {controls} control bytes in its first {len(head)}); "
                      "upload a CSV file, not a spreadsheet, image or archive")
    bad = _first_non_utf8(data, skip)
    if bad is not None:
        return None, (f"the file is not UTF-8 text (byte 0x{data[bad]:02x} at offset {bad - skip}); "
                      "save it as 'CSV UTF-8'")
    return io.TextIOWrapper(io.BufferedReader(_InPlace(data)), encoding="utf-8-sig", newline=""), None


class _InPlace(io.RawIOBase):
    """A readable, seekable file over bytes or a memoryview, without copying them."""

    def __init__(self, data: bytes | memoryview):
        self._view, self._at = memoryview(data).cast("B"), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = min(len(buffer), len(self._view) - self._at)
        buffer[:size] = self._view[self._at:self._at + size]
        self._at += size
        return size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._at = max(0, offset + (0, self._at, len(self._view))[whence])
        return self._at

    def tell(self) -> int:
        return self._at


def _first_non_utf8(data: bytes | memoryview, start: int, block: int = 2**20) -> int | None:
    """The offset of the first byte of `data` (from `start`) that is not UTF-8, decoded a block at a time."""
    decoder, view = codecs.getincrementaldecoder("utf-8")(), memoryview(data)
    for at in range(start, len(data), block):
        try:
            decoder.decode(view[at:at + block], final=at + block >= len(data))
        except UnicodeDecodeError as error:
            return at + error.start - len(decoder.getstate()[0])
    return None


def _parse_csv(text: TextIO, max_rows: int, warnings: list[str]) -> tuple[pd.DataFrame, array, list[str]]:
    """Text -> a table (numbers where a chunk of a price or volume column is all numbers, else text) and each
    row's line number, or the problems with the file's layout."""
    header_line = next((line for line in text if line.strip()), "").rstrip("\r\n")
    text.seek(0)
    delimiter = max(DELIMITERS, key=header_line.count)
    if header_line.count(delimiter) == 0:
        return pd.DataFrame(), array("q"), [f"line 1 '{header_line[:60]}' has no commas; separate the columns "
                                            f"with commas and start with a header line like {HEADER_HINT}"]
    if delimiter != ",":
        warnings.append(f"the columns are separated by {delimiter!r} rather than commas; they were read that way")
    reader = csv.reader(text, delimiter=delimiter)
    chunk, lines, skipped = [], array("q"), 0
    header: list[str] | None = None
    columns: list[list[Part]] = []
    for record in reader:
        if not any(cell.strip() for cell in record):
            skipped += bool(record)
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            columns = [[] for _ in header]
            continue
        if len(record) != len(header):
            return pd.DataFrame(), array("q"), [f"line {reader.line_num} has {len(record)} field(s) but the header "
                                                f"has {len(header)}; every line needs the same columns separated by "
                                                f"{delimiter!r}"]
        if len(lines) == max_rows:
            return pd.DataFrame(), array("q"), [_too_many(max_rows + 1, max_rows)
                                                + f" (counted up to line {reader.line_num})"]
        chunk.append([cell.strip() for cell in record])
        lines.append(reader.line_num)
        if len(chunk) == CHUNK_ROWS:
            _add_chunk(columns, header, chunk)
            chunk = []
    if skipped:
        warnings.append(f"{skipped} line(s) with only empty cells (often left by Excel) were skipped")
    if header is None:
        return pd.DataFrame(), lines, []
    _add_chunk(columns, header, chunk)
    table = pd.DataFrame({i: pd.concat([pd.Series(part) for part in parts], ignore_index=True) if parts
                          else pd.Series([], dtype=object) for i, parts in enumerate(columns)})
    table.columns = header
    return table, lines, []


def _add_chunk(columns: list[list[Part]], header: list[str], rows: list[list[str]]) -> None:
    """Append a chunk of rows to each column: as float64 where the column holds prices or volumes and every cell
    is a finite number, else as the cells' text."""
    numeric = {i for i, name in enumerate(header) if COLUMN_OF.get(name.lower()) in FEATURE_COLUMNS}
    for i, cells in enumerate(zip(*rows)):
        text = np.array(cells, dtype=object)
        if i in numeric:
            values = pd.to_numeric(pd.Series(text), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            if np.isfinite(values).all():
                columns[i].append(values)
                continue
        columns[i].append(pd.array(text, dtype="str"))  # compact text (Arrow) where pandas has it


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


