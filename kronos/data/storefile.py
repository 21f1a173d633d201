"""The local store's file and its connections: set up and checked (PRAGMA quick_check) once per process on first
use, and every SQLite or OS failure turned into a StoreUnavailableError naming the file and what to do, so no
sqlite3 exception leaves the store."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from kronos.errors import StoreUnavailableError

ELSEWHERE = "or point --store / KRONOS_STORE at another file"
MOVE_ASIDE = "move it aside (an empty store is made in its place) " + ELSEWHERE
PROBLEMS = {  # SQLite's primary result code -> (what is wrong, what to do)
    sqlite3.SQLITE_READONLY: ("is read-only", "make the file and its folder writable (chmod, chattr -i) " + ELSEWHERE),
    sqlite3.SQLITE_NOTADB: ("is not an SQLite database", MOVE_ASIDE),
    sqlite3.SQLITE_CORRUPT: ("is damaged", "recover it with `sqlite3 FILE .recover`, or " + MOVE_ASIDE),
    sqlite3.SQLITE_FULL: ("cannot grow: the disk is full", "free some space " + ELSEWHERE),
    sqlite3.SQLITE_BUSY: ("is locked by another process", "wait for it to finish, or stop it, and retry"),
    sqlite3.SQLITE_LOCKED: ("is locked by another process", "wait for it to finish, or stop it, and retry"),
    sqlite3.SQLITE_CANTOPEN: ("cannot be opened", "check that it is a file you may read and write " + ELSEWHERE),
    sqlite3.SQLITE_PERM: ("may not be opened", "check its permissions " + ELSEWHERE),
    sqlite3.SQLITE_IOERR: ("cannot be read or written (a disk error)", "check the disk " + ELSEWHERE),
}
HEALTH_CHECK_S = 60.0  # health() runs the integrity check again when its last one is older than this
HEADER = b"SQLite format 3\x00"
_SETUP = threading.Lock()
_CHECKED: dict[tuple[int, int] | None, float] = {}  # (device, inode) of a file set up and checked -> when (time.time)
_RAN: dict[Path, float] = {}  # path -> when its integrity check last ran, whatever it found


class StoreFile:
    """One SQLite file with the store's schema: cheap to make, set up and checked when first used."""

    def __init__(self, path: Path, schema: str, migrate: Callable[[sqlite3.Connection], None] | None = None):
        self.path, self.schema, self.migrate = path, schema, migrate  # migrate: brings older files' tables up to date

    @contextmanager
    def connect(self, timeout: float = 30) -> Iterator[sqlite3.Connection]:
        """A checked file's fresh connection, committed (or rolled back) and closed on exit; SQLite's errors in the
        block come out as StoreUnavailableError."""
        self.check()
        with self._translated(), closing(sqlite3.connect(self.path, timeout=timeout)) as db, db:
            yield db

    def check(self, max_age: float | None = None) -> None:
        """Make the file (and its folder), switch it to WAL, add the tables and run PRAGMA quick_check, once per
        process and file (again when the last check is older than `max_age` s); StoreUnavailableError when the file
        cannot be used."""
        self._check_path()
        checked = _CHECKED.get(self._identity())  # None for a file not made yet
        if checked is not None and (max_age is None or time.time() - checked < max_age):
            return
        _RAN[self.path] = time.time()
        with _SETUP, self._translated(), closing(sqlite3.connect(self.path, timeout=30)) as db, db:
            self._set_up(db)  # switching to WAL needs the file to itself: one thread at a time
        identity = self._identity()
        if identity is not None:
            _CHECKED[identity] = time.time()

    def checked_at(self) -> float | None:
        """When (epoch seconds) the file's integrity check last ran in this process, sound or not; None when never."""
        return _RAN.get(self.path)

    def health(self) -> StoreUnavailableError | None:
        """None when the store can be used now, else why not: its header and size read and a write made and rolled
        back at every call, its integrity checked within HEALTH_CHECK_S (`checked_at` says when), at once when its
        header looks wrong."""
        try:
            self.check(0.0 if self._suspect() else HEALTH_CHECK_S)
            with self.connect(timeout=1) as db:
                db.execute("BEGIN IMMEDIATE")
                db.execute(f"PRAGMA user_version = {int(db.execute('PRAGMA user_version').fetchone()[0])}")
                db.execute("ROLLBACK")
        except StoreUnavailableError as error:
            busy = _code(error.__cause__) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            return None if busy else error  # busy: someone else is writing
        return None

    def fault(self, problem: str, advice: str) -> StoreUnavailableError:
        """The error for this file."""
        return StoreUnavailableError(problem, str(self.path), advice)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """SQLite's errors -> StoreUnavailableError; a damaged file is checked again on its next use."""
        try:
            yield
        except sqlite3.Error as error:
            code = _code(error)
            if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                _CHECKED.pop(self._identity(), None)
            problem, advice = PROBLEMS.get(code, (f"failed ({error})", "check the file " + ELSEWHERE))
            raise self.fault(problem, advice) from error

    def _set_up(self, db: sqlite3.Connection) -> None:
        """Check first (nothing is written into a damaged file), then WAL and the tables unless read-only."""
        try:
            found = [line for row in db.execute("PRAGMA quick_check(2)") for line in row[0].splitlines()
                     if not line.startswith("***")]  # "*** in database main ***" heads the problems
        except sqlite3.DatabaseError as error:  # damage the check itself cannot read past
            if _code(error) != sqlite3.SQLITE_CORRUPT:
                raise
            found = [str(error)]
        if found != ["ok"]:
            raise self.fault(f"is damaged (its integrity check says: {found[0]})", PROBLEMS[sqlite3.SQLITE_CORRUPT][1])
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.executescript(self.schema)
            if self.migrate is not None:
                self.migrate(db)
        except sqlite3.OperationalError as error:
            if _code(error) != sqlite3.SQLITE_READONLY:
                raise  # read-only: reading may still work, writing says why not

    def _check_path(self) -> None:
        """The folder exists (made if need be) and the path is a regular file or nothing yet."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            blocked = isinstance(error, (FileExistsError, NotADirectoryError))
            raise self.fault("cannot be created: its folder cannot be made ("
                             + ("a file stands where a folder should be" if blocked else error.strerror or str(error))
                             + ")", "create the folder " + ELSEWHERE) from error
        if self.path.is_dir():
            raise self.fault("is a folder, not a file", "name a file in it " + ELSEWHERE)
        if self.path.exists() and not self.path.is_file():
            raise self.fault("is not a regular file (a device or a pipe)", "name a regular file " + ELSEWHERE)

    def _suspect(self) -> bool:
        """The cheap part of the integrity check: True when the file does not start as SQLite's do or is shorter
        than its header says (overwritten, truncated), so that the full check runs now."""
        try:
            with self.path.open("rb") as file:
                head, size = file.read(100), os.fstat(file.fileno()).st_size
        except OSError:
            return False  # missing or unreadable: the full check says what is wrong when it runs
        if not head:
            return False  # made, not set up yet
        page = int.from_bytes(head[16:18], "big")
        pages, valid = int.from_bytes(head[28:32], "big"), head[24:28] == head[92:96]
        return not head.startswith(HEADER) or valid and size < pages * (65536 if page == 1 else page)

    def _identity(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_dev, found.st_ino


def _code(error: BaseException | None) -> int:
    """SQLite's primary result code of an sqlite3 error (0 for anything else)."""
    return (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
