"""The store's tables of what calibration records fitted (kronos.evaluation.kept writes and reads them): fitted
records (a blob each, capped in bytes) and GARCH(1,1) fits (capped in rows), the least recently used out first. A
part of CandleStore; its schema is the store's (kronos.data.store.SCHEMA)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from kronos.cancellation import check_current
from kronos.errors import StoreUnavailableError


class FittedTables:
    """CandleStore's fitted records and GARCH fits, and the use counts every kept table is evicted by."""

    _connect: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def fitted_records(self, keys: list[str]) -> dict[str, bytes]:
        """The kept fitted records among `keys` (kronos.evaluation.kept reads them); those found count as just used."""
        marks = ", ".join("?" * len(keys))  # a record is looked up under a few keys (SQLite binds up to 999)
        with self._connect() as db:
            found = dict(db.execute(f"SELECT key, state FROM fitted_records WHERE key IN ({marks})", keys).fetchall())
        if found:
            self._touch("fitted_records", list(found))
        return found

    def put_fitted_record(self, key: str, state: bytes, *, limit_bytes: int, replaces: str | None = None) -> None:
        """Keep a fitted record in place of `replaces` (the shorter record it grew from), the table within
        `limit_bytes`, least recently used records out first; nothing once the calling job is cancelled."""
        check_current()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            if replaces is not None:
                db.execute("DELETE FROM fitted_records WHERE key = ?", (replaces,))
            db.execute("INSERT OR REPLACE INTO fitted_records (key, state, used) VALUES (?, ?, ?)",
                       (key, state, _next_use(db, "fitted_records")))
            db.execute("DELETE FROM fitted_records WHERE key IN (SELECT key FROM (SELECT key, SUM(LENGTH(state)) OVER "
                       "(ORDER BY used DESC, key) AS kept FROM fitted_records) WHERE kept > ?)", (limit_bytes,))

    def garch_fits(self, keys: list[str]) -> dict[str, tuple[float, float, float]]:
        """The kept GARCH(1,1) fits among `keys`: key -> (omega, alpha, beta); those found count as just used."""
        found = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):  # SQLite binds at most 999 parameters
                chunk = keys[start:start + 500]
                found.update({key: params for key, *params in db.execute(
                    f"SELECT key, omega, alpha, beta FROM garch_fits WHERE key IN ({', '.join('?' * len(chunk))})",
                    chunk)})
        if found:
            self._touch("garch_fits", list(found))
        return {key: tuple(params) for key, params in found.items()}

    def put_garch_fits(self, fits: dict[str, tuple[float, float, float]], *, limit_rows: int) -> None:
        """Keep GARCH(1,1) fits (key -> omega, alpha, beta), at most `limit_rows`, the least recently used out first;
        nothing once the calling job is cancelled."""
        check_current()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            used = _next_use(db, "garch_fits")
            db.executemany("INSERT OR REPLACE INTO garch_fits (key, omega, alpha, beta, used) VALUES (?, ?, ?, ?, ?)",
                           [(key, *params, used) for key, params in fits.items()])
            db.execute("DELETE FROM garch_fits WHERE key NOT IN (SELECT key FROM garch_fits ORDER BY used DESC, key "
                       "LIMIT ?)", (limit_rows,))

    def _touch(self, table: str, keys: list[str]) -> None:
        """Mark kept entries of `table` as just used; best effort (a read-only store is still read)."""
        try:
            with self._connect() as db:
                db.execute("PRAGMA synchronous = NORMAL")  # a use count lost to a crash costs nothing: no fsync
                db.execute("BEGIN IMMEDIATE")
                used = _next_use(db, table)
                for start in range(0, len(keys), 500):
                    chunk = keys[start:start + 500]
                    db.execute(f"UPDATE {table} SET used = ? WHERE key IN ({', '.join('?' * len(chunk))})",
                               [used, *chunk])
        except StoreUnavailableError:
            pass


def _next_use(db: sqlite3.Connection, table: str) -> int:
    """The next use count of a kept table (a larger count: used more recently)."""
    return db.execute(f"SELECT COALESCE(MAX(used), 0) + 1 FROM {table}").fetchone()[0]
