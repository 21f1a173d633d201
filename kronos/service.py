"""Forecasts as a bounded service: a worker pool, shared work for identical requests, deadlines.

No web framework here: the HTTP API (kronos.api) maps these errors to status codes, and any other
front end can use the same pool. Identical requests that arrive while one is being computed wait for
that one computation ("single flight"); requests beyond the pool and its queue are refused at once
with an estimate of when to retry, rather than piling up.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from kronos.data.candles import Candles
from kronos.data.market import fetch_candles, load_stored
from kronos.data.store import CandleStore
from kronos.errors import DataUnavailableError, ServiceBusyError, ServiceTimeoutError
from kronos.settings import SERVER_DEFAULTS, MarketChoice, ServerSettings

T = TypeVar("T")


class ForecastService:
    """Run jobs on `workers` threads with at most `queue_size` waiting; identical keys share one job.

    A job fetches candles and waits for its forecast, which kronos.batching runs with the other jobs' in
    shared batches: so many jobs run at once while one thread computes.
    """

    def __init__(self, workers: int = SERVER_DEFAULTS.workers, queue_size: int = SERVER_DEFAULTS.queue_size,
                 timeout: float = SERVER_DEFAULTS.timeout):
        ServerSettings(workers=workers, queue_size=queue_size, timeout=timeout)  # InvalidInputError when out of range
        self.workers, self.capacity, self.timeout = workers, workers + queue_size, timeout
        self._pool = _Threads(workers, "forecast")
        self._lock = threading.Lock()
        self._running: dict[Hashable, Future] = {}
        self._seconds_per_job = 1.0  # running average of how long a job takes, for Retry-After

    @property
    def pending(self) -> int:
        """Jobs running or queued now (each shared job counted once)."""
        with self._lock:
            return len(self._running)

    def submit(self, key: Hashable, job: Callable[[], T]) -> Future:
        """The future of the job under `key`: the one already running, else a new one; ServiceBusyError when full."""
        with self._lock:
            if key in self._running:
                return self._running[key]
            if len(self._running) >= self.capacity:
                wait = math.ceil(self._seconds_per_job * len(self._running) / self.workers)
                raise ServiceBusyError(f"the server is busy ({len(self._running)} forecasts running or queued); "
                                       f"retry in about {wait} s", max(1, wait))
            future = self._pool.submit(self._timed, job)
            self._running[key] = future
        future.add_done_callback(lambda _: self._forget(key, future))
        return future

    def run(self, key: Hashable, job: Callable[[], T]) -> T:
        """Submit (or join) the job under `key` and wait for its result, at most `timeout` seconds."""
        future = self.submit(key, job)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            raise ServiceTimeoutError(f"the forecast did not finish within {self.timeout:g} s; the server is "
                                      "overloaded, try again later or ask for fewer samples",
                                      math.ceil(self.timeout)) from None

    def close(self) -> None:
        """Stop taking jobs; drop the queued ones (running ones finish in the background)."""
        self._pool.close()

    def _timed(self, job: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return job()
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._seconds_per_job = 0.8 * self._seconds_per_job + 0.2 * elapsed

    def _forget(self, key: Hashable, future: Future) -> None:
        with self._lock:
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
