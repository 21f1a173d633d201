"""Forecasts as a bounded service: a worker pool, shared work for identical requests, deadlines.

No web framework here: the HTTP API (kronos.api) maps these errors to status codes, and any other
front end can use the same pool. Identical requests that arrive while one is being computed wait for
that one computation ("single flight"); requests beyond the pool and its queue are refused at once
with an estimate of when to retry, rather than piling up. A job whose every caller stopped waiting (its
deadline passed, or `cancel` was set because the client went away) is cancelled (kronos.cancellation): it
stops at its next generation step, writes nothing more and frees its worker. Memory freed by big jobs goes
back to the system (kronos.process): a server's resident memory returns to about where it was after them.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TypeVar

from kronos.cancellation import Token, interactive, running
from kronos.data.candles import Candles
from kronos.data.market import fetch_candles, load_stored
from kronos.data.store import CandleStore
from kronos.errors import DataUnavailableError, ServiceBusyError, ServiceTimeoutError, WorkCancelledError
from kronos.process import release_memory
from kronos.settings import SERVER_DEFAULTS, MarketChoice, ServerSettings

T = TypeVar("T")
POLL_S = 0.05  # how often a caller given `cancel` looks at it
RELEASE_AFTER_S = 1.0  # a job that ran this long gives the freed memory back to the system when it ends


@dataclass
class _Job:
    """An unfinished job's cancellation token, and how many callers wait for it."""

    token: Token
    waiters: int = 0


class ForecastService:
    """Run jobs on `workers` threads with at most `queue_size` waiting; identical keys share one job.

    A job fetches candles and waits for its forecast, which kronos.serving.batching runs with the other jobs' in
    shared batches: so many jobs run at once while one thread computes.
    """

    def __init__(self, workers: int = SERVER_DEFAULTS.workers, queue_size: int = SERVER_DEFAULTS.queue_size,
                 timeout: float = SERVER_DEFAULTS.timeout):
        ServerSettings(workers=workers, queue_size=queue_size, timeout=timeout)  # InvalidInputError when out of range
        self.workers, self.capacity, self.timeout = workers, workers + queue_size, timeout
        self._pool = _Threads(workers, "forecast")
        self._lock = threading.Lock()
        self._running: dict[Hashable, Future] = {}
        self._jobs: dict[Future, _Job] = {}  # unfinished jobs' tokens and waiters
        self._seconds_per_job = 1.0  # running average of how long a job takes, for Retry-After

    @property
    def pending(self) -> int:
        """Jobs running or queued now (each shared job counted once)."""
        with self._lock:
            return len(self._running)

    @property
    def unfinished(self) -> int:
        """Jobs not ended yet, those cancelled but still stopping included."""
        with self._lock:
            return len(self._jobs)

    def submit(self, key: Hashable, job: Callable[[], T], waiting: bool = False) -> Future:
        """The future of the job under `key`: the one already running, else a new one; ServiceBusyError when full.

        `waiting`: the caller waits for it (`run`), and the job is cancelled once no caller waits any more."""
        with self._lock:
            future = self._running.get(key)
            if future is None:
                if len(self._running) >= self.capacity:
                    wait_s = math.ceil(self._seconds_per_job * len(self._running) / self.workers)
                    raise ServiceBusyError(f"the server is busy ({len(self._running)} forecasts running or queued); "
                                           f"retry in about {wait_s} s", max(1, wait_s))
                token = Token()
                future = self._running[key] = self._pool.submit(self._timed, job, token)
                self._jobs[future] = _Job(token)
            if waiting and future in self._jobs:
                self._jobs[future].waiters += 1
        future.add_done_callback(lambda _: self._forget(key, future))
        return future

    def run(self, key: Hashable, job: Callable[[], T], cancel: threading.Event | None = None) -> T:
        """Submit (or join) the job under `key` and wait for its result, at most `timeout` seconds.

        ServiceTimeoutError after the timeout, WorkCancelledError once `cancel` is set (the caller went away);
        either way the job is cancelled when no other caller waits for it."""
        future = self.submit(key, job, True)
        try:
            return self._wait(future, cancel)
        finally:
            self._leave(key, future)

    def _wait(self, future: Future, cancel: threading.Event | None) -> T:
        """The future's result within the timeout, watching `cancel` meanwhile."""
        deadline = time.monotonic() + self.timeout
        while cancel is not None and not future.done() and time.monotonic() < deadline:
            if cancel.is_set():
                raise WorkCancelledError("the request was cancelled: its client went away", 1)
            wait([future], timeout=min(POLL_S, max(0.0, deadline - time.monotonic())))
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            raise ServiceTimeoutError(f"the forecast did not finish within {self.timeout:g} s; the server is "
                                      "overloaded, try again later or ask for fewer samples",
                                      math.ceil(self.timeout)) from None

    def _leave(self, key: Hashable, future: Future) -> None:
        """This caller stopped waiting: the last one to leave an unfinished job cancels it."""
        with self._lock:
            entry = self._jobs.get(future)
            if entry is None:  # done
                return
            entry.waiters -= 1
            if entry.waiters > 0:
                return
            entry.token.cancel()
            if self._running.get(key) is future:
                del self._running[key]  # a new caller with this key starts afresh
        future.cancel()  # a job still queued never starts

    def close(self) -> None:
        """Stop taking jobs; drop the queued ones and cancel the running ones (they stop at their next step)."""
        with self._lock:
            for entry in self._jobs.values():
                entry.token.cancel()
        self._pool.close()

    def _timed(self, job: Callable[[], T], token: Token) -> T:
        start = time.perf_counter()
        try:
            with running(token), interactive():  # someone waits for it: background jobs pause meanwhile
                token.check()
                return job()
        except BaseException as error:
            traceback.clear_frames(error.__traceback__)  # the failed job's arrays are freed now, before the release
            raise
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._seconds_per_job = 0.8 * self._seconds_per_job + 0.2 * elapsed
            if elapsed >= RELEASE_AFTER_S:
                release_memory()

    def _forget(self, key: Hashable, future: Future) -> None:
        with self._lock:
            self._jobs.pop(future, None)
            if self._running.get(key) is future:
                del self._running[key]


class _Threads:
    """A thread pool started on first use, and again after `close` (an app's lifespan may run more than once)."""

    def __init__(self, workers: int, name: str):
        self.workers, self.name = workers, name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> Future:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.name)
            return self._executor.submit(fn, *args, **kwargs)

    def close(self) -> None:
        """Drop the queued calls; running ones finish in the background."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class MarketData:
    """Live candles with a hard deadline: an exchange slower than `deadline` seconds is replaced by the store."""

    def __init__(self, store: CandleStore, deadline: float = SERVER_DEFAULTS.exchange_timeout, threads: int = 4):
        self.store, self.deadline = store, deadline
        self._pool = _Threads(threads, "market")

    def candles(self, market: MarketChoice, limit: int) -> Candles:
        """fetch_candles within the deadline, else the stored candles; DataUnavailableError when neither."""
        future = self._pool.submit(fetch_candles, market, limit, store=self.store, timeout=min(self.deadline, 10.0))
        try:
            return future.result(timeout=self.deadline)
        except FutureTimeout:
            late = f"no exchange answered within {self.deadline:g} s"
        try:
            candles = load_stored(market.exchanges(), market.symbol, market.timeframe, limit, self.store)
        except DataUnavailableError as error:
            raise ServiceTimeoutError(f"{late}, and {error}", 30) from None
        candles.notes[:0] = [late, "answered from the local store"]
        return candles

    def close(self) -> None:
        """Stop the fetch threads once their calls return."""
        self._pool.close()
