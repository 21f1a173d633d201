"""The local store, one SQLite file: every candle fetched or imported (keyed by market), the forecast log (live
forecasts and, once their candles closed, their outcomes), the paths of backtest origins, and what calibration records
fitted (kronos.evaluation.kept: records' per-origin terms, GARCH fits), each kept table capped, least recently used
out first."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kronos.cancellation import check_current
from kronos.data.fitted import FittedTables
from kronos.data.reading import read_file
from kronos.data.storefile import StoreFile
from kronos.data.validation import FEATURE_COLUMNS, Validation
from kronos.errors import InvalidInputError, StoreUnavailableError
from kronos.settings import Environment
from kronos.timeframes import format_duration, timeframe_delta

SCHEMA = """
CREATE TABLE IF NOT EXISTS candles (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL, ts INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL,
    volume REAL NOT NULL, amount REAL NOT NULL, amount_estimated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (exchange, symbol, timeframe, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS backtest_paths (
    key TEXT PRIMARY KEY, closes BLOB NOT NULL, samples INTEGER NOT NULL, vol_prob REAL, used INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fitted_records (
    key TEXT PRIMARY KEY, state BLOB NOT NULL, used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS garch_fits (
    key TEXT PRIMARY KEY, omega REAL NOT NULL, alpha REAL NOT NULL, beta REAL NOT NULL, used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS forecast_log (
    id INTEGER PRIMARY KEY, exchange TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
    model TEXT NOT NULL, origin INTEGER NOT NULL, made INTEGER NOT NULL, forecast TEXT NOT NULL, outcome TEXT,
    UNIQUE (exchange, symbol, timeframe, model, origin, forecast)
);
"""
KEY = "exchange = ? AND symbol = ? AND timeframe = ?"
COLUMNS = ("ts", *FEATURE_COLUMNS, "amount_estimated")


def default_path() -> Path:
    """`$KRONOS_STORE`, else the per-user data folder: ~/.local/share/kronos (Linux), Application Support, AppData."""
    configured = Environment.read().store
    if configured is not None:
        return configured
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "kronos" / "candles.sqlite"


@dataclass
class ImportReport:
    """What an import did: rows read from the file, rows new to the store, and the validator's warnings."""

    rows_read: int
    rows_added: int
    warnings: list[str] = field(default_factory=list)


class CandleStore(FittedTables):
    """The local store: candles, one row per (exchange, symbol, timeframe, open time), the forecast log and backtest
    paths; safe across threads and processes. Made at once; the file is set up and checked when first used, and
    every fault of it (read-only, not creatable, not SQLite, damaged) is a StoreUnavailableError."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_path()
        self._file = StoreFile(self.path, SCHEMA, migrate=_add_used_column)
        self._connect = self._file.connect

    def check(self) -> None:
        """Set the file up and check its integrity (once per process); StoreUnavailableError when it is unusable."""
        self._file.check()

    def health(self) -> StoreUnavailableError | None:
        """None when the store can be read and written now, else the fault (`public()` for remote clients)."""
        return self._file.health()

    def checked_at(self) -> float | None:
        """When (epoch seconds) the store's integrity check last ran in this process, sound or not; None when never."""
        return self._file.checked_at()

    def merge(self, frame: pd.DataFrame, exchange: str, symbol: str, timeframe: str, *,
              amount_estimated: bool = False) -> int:
        """Upsert the engine-format `frame` (newer values win); return how many candles were new."""
        ts = pd.to_datetime(frame["timestamps"]).astype("datetime64[ms]").astype("int64")
        rows = [(exchange, symbol, timeframe, t, *values, int(amount_estimated))
                for t, values in zip(ts.tolist(), frame[list(FEATURE_COLUMNS)].itertuples(index=False, name=None))]
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            before = _count(db, exchange, symbol, timeframe)
            db.executemany(f"INSERT INTO candles (exchange, symbol, timeframe, {', '.join(COLUMNS)}) "
                           f"VALUES ({', '.join('?' * (len(COLUMNS) + 3))}) "
                           f"ON CONFLICT (exchange, symbol, timeframe, ts) DO UPDATE SET {updates}", rows)
            return _count(db, exchange, symbol, timeframe) - before

    def load(self, exchange: str, symbol: str, timeframe: str, limit: int | None = None) -> pd.DataFrame:
        """The latest `limit` candles (all when None), oldest first, in the engine's format."""
        return self._load(exchange, symbol, timeframe, limit)[["timestamps", *FEATURE_COLUMNS]]

    def amount_is_estimated(self, exchange: str, symbol: str, timeframe: str, limit: int | None = None) -> bool:
        """True when any of the latest `limit` candles has an estimated (not exchange-reported) amount."""
        return bool(self._load(exchange, symbol, timeframe, limit)["amount_estimated"].any())

    def _load(self, exchange: str, symbol: str, timeframe: str, limit: int | None) -> pd.DataFrame:
        query = (f"SELECT {', '.join(COLUMNS)} FROM candles WHERE {KEY} ORDER BY ts DESC"
                 + ("" if limit is None else f" LIMIT {int(limit)}"))
        with self._connect() as db:
            rows = db.execute(query, (exchange, symbol, timeframe)).fetchall()
        frame = pd.DataFrame(rows[::-1], columns=list(COLUMNS)).astype({c: "float64" for c in FEATURE_COLUMNS})
        frame.insert(0, "timestamps", pd.to_datetime(frame.pop("ts").astype("int64"), unit="ms")
                     .astype("datetime64[ns]"))
        return frame

    def span(self, exchange: str, symbol: str, timeframe: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """Open times of the first and the latest stored candle, or None when there are none."""
        with self._connect() as db:
            first, last = db.execute(f"SELECT MIN(ts), MAX(ts) FROM candles WHERE {KEY}",
                                     (exchange, symbol, timeframe)).fetchone()
        return None if first is None else (pd.Timestamp(first, unit="ms"), pd.Timestamp(last, unit="ms"))

    def latest_timestamp(self, exchange: str, symbol: str, timeframe: str) -> pd.Timestamp | None:
        """Open time of the newest stored candle, or None."""
        found = self.span(exchange, symbol, timeframe)
        return None if found is None else found[1]

    def contents(self) -> pd.DataFrame:
        """One row per stored market: exchange, symbol, timeframe, rows, first, last."""
        with self._connect() as db:
            rows = db.execute("SELECT exchange, symbol, timeframe, COUNT(*), MIN(ts), MAX(ts) FROM candles "
                              "GROUP BY exchange, symbol, timeframe ORDER BY exchange, symbol, timeframe").fetchall()
        frame = pd.DataFrame(rows, columns=["exchange", "symbol", "timeframe", "rows", "first", "last"])
        for column in ("first", "last"):
            frame[column] = pd.to_datetime(frame[column].astype("int64"), unit="ms")
        return frame

    def backtest_paths(self, keys: list[str]) -> dict[str, tuple[np.ndarray, float | None]]:
        """The stored backtest origins among `keys`: key -> (closes (S, H), volatility amplification probability);
        the ones found count as just used (they are evicted last)."""
        found = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):  # SQLite binds at most 999 parameters
                chunk = keys[start:start + 500]
                rows = db.execute(f"SELECT key, closes, samples, vol_prob FROM backtest_paths WHERE key IN "
                                  f"({', '.join('?' * len(chunk))})", chunk)
                found.update({key: (np.frombuffer(closes, np.float64).reshape(samples, -1), vol)
                              for key, closes, samples, vol in rows})
        if found:
            self._touch_paths(list(found))
        return found

    def put_backtest_paths(self, paths: dict[str, tuple[np.ndarray, float | None]], *,
                           limit_bytes: int | None = None) -> None:
        """Keep backtest origins: key -> (closes (S, H), volatility amplification probability or None).

        The kept paths stay within `limit_bytes` (default: KRONOS_STORE_PATHS_MB, 300 MB): the least recently
        used origins are deleted first. Nothing is written once the calling job is cancelled (kronos.cancellation).
        """
        check_current()
        limit = Environment.read().store_paths_mb * 10**6 if limit_bytes is None else limit_bytes
        rows = [(key, np.ascontiguousarray(closes, np.float64).tobytes(), len(closes), vol)
                for key, (closes, vol) in paths.items()]
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            used = db.execute("SELECT COALESCE(MAX(used), 0) + 1 FROM backtest_paths").fetchone()[0]
            db.executemany("INSERT OR REPLACE INTO backtest_paths (key, closes, samples, vol_prob, used) "
                           "VALUES (?, ?, ?, ?, ?)", [(*row, used) for row in rows])
            _evict_paths(db, limit)

    def _touch_paths(self, keys: list[str]) -> None:
        """Mark stored origins as just used; best effort (a read-only store is still read)."""
        self._touch("backtest_paths", keys)

    def log_forecast(self, exchange: str, symbol: str, timeframe: str, model: str, origin: pd.Timestamp,
                     forecast: dict) -> None:
        """Record a live forecast (its summary, JSON-ready) once per market, model, origin and content."""
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO forecast_log (exchange, symbol, timeframe, model, origin, made, "
                       "forecast) VALUES (?, ?, ?, ?, ?, ?, ?)", (exchange, symbol, timeframe, model, _ms(origin),
                                                        _ms(pd.Timestamp.now("UTC").tz_localize(None)),
                                                        json.dumps(forecast, sort_keys=True)))

    def logged_forecasts(self, exchange: str, symbol: str, timeframe: str, model: str) -> list[dict]:
        """The market's logged forecasts by this model, oldest first: id, origin, forecast and outcome (None until
        scored)."""
        with self._connect() as db:
            rows = db.execute(f"SELECT id, origin, forecast, outcome FROM forecast_log WHERE {KEY} AND model = ? "
                              "ORDER BY origin, id", (exchange, symbol, timeframe, model)).fetchall()
        return [{"id": i, "origin": pd.Timestamp(origin, unit="ms"), "forecast": json.loads(forecast),
                 "outcome": None if outcome is None else json.loads(outcome)} for i, origin, forecast, outcome in rows]

    def set_outcome(self, entry_id: int, outcome: dict) -> None:
        """Store what happened after a logged forecast (JSON-ready)."""
        with self._connect() as db:
            db.execute("UPDATE forecast_log SET outcome = ? WHERE id = ?", (json.dumps(outcome), entry_id))

    def import_file(self, path: str | os.PathLike, exchange: str, symbol: str, timeframe: str) -> ImportReport:
        """Validate a CSV (.csv, .csv.gz) or custom-format JSON file and merge it; InvalidInputError on problems."""
        path = Path(path)
        result = read_file(path)
        _check_import(result, timeframe, path)
        added = self.merge(result.frame, exchange, symbol, timeframe, amount_estimated=result.amount_is_estimated)
        return ImportReport(len(result.frame), added, result.warnings)


def usable(store: CandleStore) -> CandleStore | None:
    """The store when it can be read and written now, else None: for work that only keeps a cache in it."""
    return store if store.health() is None else None


def _add_used_column(db: sqlite3.Connection) -> None:
    """Stores made before the backtest paths' cap lack their `used` column: add it (old paths count as oldest)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(backtest_paths)")}
    if "used" not in columns:
        db.execute("ALTER TABLE backtest_paths ADD COLUMN used INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX IF NOT EXISTS backtest_paths_used ON backtest_paths (used)")


def _evict_paths(db: sqlite3.Connection, limit: int) -> None:
    """Delete the least recently used backtest origins until their paths take at most `limit` bytes."""
    excess = db.execute("SELECT COALESCE(SUM(LENGTH(closes)), 0) FROM backtest_paths").fetchone()[0] - limit
    doomed = []
    for key, size in db.execute("SELECT key, LENGTH(closes) FROM backtest_paths ORDER BY used"):
        if excess <= 0:
            break
        doomed.append((key,))
        excess -= size
    db.executemany("DELETE FROM backtest_paths WHERE key = ?", doomed)


def _count(db: sqlite3.Connection, *key: str) -> int:
    return db.execute(f"SELECT COUNT(*) FROM candles WHERE {KEY}", key).fetchone()[0]


def _ms(moment: pd.Timestamp) -> int:
    return int(moment.value // 1_000_000)


def _check_import(result: Validation, timeframe: str, path: Path) -> None:
    """Raise unless the file validated and its rows are `timeframe` apart (a 1d file is no 1h history)."""
    if result.errors:
        raise InvalidInputError([f"{path.name}: {message}" for message in result.errors])
    step = timeframe_delta(timeframe)
    if result.spacing is not None and result.spacing != step:
        raise InvalidInputError(f"{path.name}: its rows are {format_duration(result.spacing)} apart but "
                                f"--timeframe is {timeframe}; pass the timeframe the file holds")


def empty_store_message(store: CandleStore, exchange: str, symbol: str, timeframe: str) -> str:
    """Say that the store has nothing for a market and how to fill it."""
    return (f"the local store {store.path} has no {symbol} {timeframe} candles from {exchange}; fill it with "
            f"`python -m kronos import FILE.csv --exchange {exchange} --symbol {symbol} --timeframe {timeframe}`, "
            "`python -m kronos fetch` while online, or the custom data page")
