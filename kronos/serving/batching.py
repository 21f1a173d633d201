"""Batching across requests: one thread runs every forecast of a shared Forecaster, concurrent ones together.

A server's request threads (HTTP API, dashboard sessions) call `Batcher.forecast` as they would the
Forecaster's. Requests that arrive within a short window (a few ms) and share their settings but the
seed and the sample count run as one `Forecaster.forecast_many` call: requests on the same history as
one generation whose paths are the union of theirs, different histories side by side; each gets exactly
the paths it would get alone. Only this thread computes, so torch may use every core for each batch
instead of concurrent forecasts fighting over them. Progress is reported in the caller's own thread.
Interactive requests run before background ones (a background job's, kronos.serving.jobs), each batch as it comes.
A background batch running when an interactive request arrives is set aside at its next step and run again from its
start afterwards, once (and once again after each pause, below): set aside every time it would never end under a
steady stream of requests, so it then runs to its end (background work comes in small pieces,
kronos.serving.pieces.Yielding: an interactive forecast waits for one piece at most). A background batch whose jobs
are all paused (their registry gave the turn to another job) is set aside until one of them goes on. Each history
has its own seed, so a batch run again forecasts what it would have; only its progress starts again.
A caller whose job is cancelled (kronos.cancellation) stops waiting at once; its batch stops at the next
step once every request in it is cancelled, and goes on for the others otherwise.
`close` (a model leaving a server's cache, the interpreter's exit: every batcher still open is closed then) ends the
thread: the batch running stops at its next step and every request waiting or made later fails with a clear error.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import traceback
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from kronos import cancellation
from kronos.engine import ForecastSource, Progress
from kronos.engine.forecast import Forecast
from kronos.errors import KronosError, WorkCancelledError
from kronos.process import release_memory
from kronos.settings import FORECAST_DEFAULTS

WINDOW_S = 0.005  # how long a request waits for others to join it
LOOK_S = 0.05  # how often the thread looks whether a paused job's requests may run again
CLOSE_WAIT_S = 10.0  # how long `close` waits for the batch running to stop
_OPEN: weakref.WeakSet[Batcher] = weakref.WeakSet()  # closed at the interpreter's exit


@dataclass
class _Request:
    """One caller's forecasts: histories, seeds, settings, and what the batcher sends back."""

    histories: list[pd.DataFrame]
    seeds: list[int | None]
    settings: dict[str, Any]  # forecast_many's keyword arguments but histories, seeds and progress
    joinable: bool  # a single forecast, which may share a batch with others
    result: Future = field(default_factory=Future)
    progress: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    token: cancellation.Token | None = field(default_factory=cancellation.current)  # the caller's job's
    set_aside: bool = False  # set aside for an interactive request: it then runs to its end (until a pause)

    def cancelled(self) -> bool:
        return self.token is not None and self.token.cancelled

    def paused(self) -> bool:
        """Its job waits for its turn (and is not cancelled): its forecasts wait too."""
        return self.token is not None and self.token.paused and not self.token.cancelled

    @property
    def background(self) -> bool:
        """Asked for by a background job: served after the interactive requests waiting."""
        return self.token is not None and self.token.background

    def key(self) -> tuple:
        """What requests must share to run together: every setting but the sample count."""
        return tuple(sorted((k, v) for k, v in self.settings.items() if k != "samples"))


class Batcher:
    """A ForecastSource whose forecasts run on one thread, concurrent requests in shared batches; the model's
    identity (name, max_context, fingerprint) and argument check are the wrapped source's."""

    def __init__(self, forecaster: ForecastSource, window_s: float = WINDOW_S):
        self.forecaster, self.window_s = forecaster, window_s
        self.batches = 0  # generation batches run so far
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()  # None: `close` wakes the thread
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._interactive = 0  # interactive requests queued and not yet running
        self._closed = False
        _OPEN.add(self)

    @property
    def name(self) -> str:
        """The wrapped model's name."""
        return self.forecaster.name

    @property
    def max_context(self) -> int:
        """The wrapped predictor's window, in candles."""
        return self.forecaster.max_context

    @property
    def fingerprint(self) -> str:
        """The wrapped model's weights' hash."""
        return self.forecaster.fingerprint

    def check_arguments(self, horizon: int, samples: int, temperature: float, top_p: float, top_k: int,
                        seeds: Sequence[int | None] = ()) -> None:
        """As the wrapped source's: raise InvalidInputError naming each bad sampling argument."""
        self.forecaster.check_arguments(horizon, samples, temperature, top_p, top_k, seeds)

    def forecast(self, history: pd.DataFrame, *, horizon: int = FORECAST_DEFAULTS.horizon,
                 samples: int = FORECAST_DEFAULTS.samples, temperature: float = FORECAST_DEFAULTS.temperature,
                 top_p: float = FORECAST_DEFAULTS.top_p, top_k: int = FORECAST_DEFAULTS.top_k,
                 lookback: int | None = None, seed: int | None = None, progress: Progress | None = None) -> Forecast:
        """As Forecaster.forecast; it may run in one batch with other callers' forecasts."""
        settings = dict(horizon=horizon, samples=samples, temperature=temperature, top_p=top_p, top_k=top_k,
                        lookback=lookback)
        return self._wait(_Request([history], [seed], settings, joinable=True), progress)[0]

    def forecast_many(self, histories: Sequence[pd.DataFrame], *, horizon: int = FORECAST_DEFAULTS.horizon,
                      samples: int | Sequence[int] = FORECAST_DEFAULTS.samples,
                      temperature: float = FORECAST_DEFAULTS.temperature, top_p: float = FORECAST_DEFAULTS.top_p,
                      top_k: int = FORECAST_DEFAULTS.top_k, lookback: int | None = None,
                      seeds: Sequence[int | None] | None = None, progress: Progress | None = None,
                      first_path: int = 0) -> list[Forecast]:
        """As Forecaster.forecast_many (already a batch: it runs on its own)."""
        seeds = list(seeds) if seeds is not None else [None] * len(histories)
        settings = dict(horizon=horizon, samples=samples, temperature=temperature, top_p=top_p, top_k=top_k,
                        lookback=lookback, first_path=first_path)
        return self._wait(_Request(list(histories), seeds, settings, joinable=False), progress)

    def _wait(self, request: _Request, progress: Progress | None) -> list[Forecast]:
        """Queue the request and wait for it (an interactive one marked in flight meanwhile: kronos.cancellation
        pauses background jobs), passing its progress to `progress` in this thread."""
        if request.background:
            return self._waited(request, progress)
        with cancellation.interactive():
            return self._waited(request, progress)

    def _waited(self, request: _Request, progress: Progress | None) -> list[Forecast]:
        with self._lock:  # queued under the lock: a request `close` did not refuse is one the thread sees
            if self._closed:
                raise _closed_error()
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name="kronos-batcher", daemon=True)
                self._worker.start()
            self._queue.put(request)
            self._interactive += not request.background
        return _relayed(request, progress)

    def close(self, timeout: float = CLOSE_WAIT_S) -> None:
        """End the thread (waiting up to `timeout` seconds for the batch running to stop at its next step); the
        requests waiting and any made later fail with WorkCancelledError. Closing again does nothing."""
        with self._lock:
            self._closed, worker = True, self._worker
            self._queue.put(None)
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
        _OPEN.discard(self)

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def _serve(self) -> None:
        """Until closed: collect the requests queued (and those arriving within the window after a first one), then
        run one compatible group, interactive requests before background ones (kronos.cancellation.Token.background),
        the oldest first, paused jobs' requests left waiting, and collect again (what was set aside first)."""
        waiting: list[_Request] = []
        while True:
            waiting = _collect(self._queue, waiting, self.window_s)
            if self._closed:
                _refuse(self._queue, waiting)
                return
            group, waiting = _next_group(waiting)
            if group:
                with self._lock:
                    self._interactive -= sum(not request.background for request in group)
                waiting = self._run(group) + waiting

    def _run(self, group: list[_Request]) -> list[_Request]:
        """One forecast_many call for the group; when it fails on someone's input, each request alone. The requests
        set aside (to run again) are returned."""
        histories = [h for r in group for h in r.histories]
        settings = dict(group[0].settings)
        if len(group) > 1:  # joined forecasts: one history each, each its own sample count
            settings["samples"] = [r.settings["samples"] for r in group]

        def progress(step: int, total: int) -> None:
            for request in group:
                request.progress.put((step, total))
            if self._closed:
                raise _closed_error()
            if all(request.cancelled() for request in group):
                raise WorkCancelledError("every request of the batch was cancelled", 1)
            if _yields(group, self._interactive > 0):
                raise _SetAside

        try:
            self.batches += 1
            made = self.forecaster.forecast_many(histories, seeds=[s for r in group for s in r.seeds],
                                                 progress=progress, **settings)
        except _SetAside as error:
            traceback.clear_frames(error.__traceback__)  # the batch's tensors go now, not when it runs again
            return group
        except KronosError as error:
            traceback.clear_frames(error.__traceback__)  # the callers keep the error, not the batch's tensors
            if len(group) > 1 and not isinstance(error, WorkCancelledError):
                return [aside for request in group for aside in self._run([request])]
            _answer(group, error)  # one request, or a batch nobody waits for any more
            if isinstance(error, WorkCancelledError):
                release_memory()  # the callers left before the batch's tensors were freed (kronos.serving.service)
            return []
        except Exception as error:  # a fault, not an input: every caller hears of it
            traceback.clear_frames(error.__traceback__)
            _answer(group, error)
            return []
        for request in group:
            request.result.set_result(made[:len(request.histories)])
            made = made[len(request.histories):]
        return []


class _SetAside(Exception):  # noqa: N818 (not an error: the batch yields its turn)
    """Raised at a step of a batch set aside, to run again later."""


def _yields(group: list[_Request], interactive_waits: bool) -> bool:
    """Whether the running batch is to be set aside now: a background batch whose jobs are all paused, or one not set
    aside before while an interactive request waits (it is then marked, to run to its end next time; a pause clears
    the mark: pauses come only as often as other jobs, so the batch still ends)."""
    if not all(request.background for request in group):
        return False
    if all(request.paused() for request in group):
        for request in group:
            request.set_aside = False
        return True
    if interactive_waits and not any(request.set_aside for request in group):
        for request in group:
            request.set_aside = True
        return True
    return False


def _answer(group: list[_Request], error: Exception) -> None:
    for request in group:
        request.result.set_exception(error)


def _relayed(request: _Request, progress: Progress | None) -> list[Forecast]:
    """In the caller's thread: the request's progress passed to `progress` as it comes, then its result."""
    while True:
        finished = request.result.done()  # read first: every step reported before the result is then queued
        if not finished:
            cancellation.check_current()
        try:
            step, total = request.progress.get(block=not finished, timeout=0.05)
        except queue.Empty:
            if finished:
                return request.result.result()
            continue
        if progress is not None:
            progress(step, total)


def _collect(inbox: queue.SimpleQueue[_Request | None], waiting: list[_Request],
             window_s: float) -> list[_Request]:
    """The requests waiting and those queued, however late; with none waiting, the first to come and those that
    arrive within `window_s` after it; with only paused jobs' requests waiting, at most LOOK_S for another to come.
    None (close's wake-up) is dropped."""
    taken: list[_Request | None] = list(waiting)
    window = 0.0
    if all(request.paused() for request in waiting):  # none waiting, or none that may run now
        try:
            taken.append(inbox.get(timeout=LOOK_S if waiting else None))
            window = window_s
        except queue.Empty:
            return waiting
    deadline = time.monotonic() + window
    while True:
        left = deadline - time.monotonic()
        try:
            taken.append(inbox.get(block=left > 0, timeout=max(left, 0)))
        except queue.Empty:
            return [r for r in taken if r is not None]


def _next_group(taken: list[_Request]) -> tuple[list[_Request], list[_Request]]:
    """The group to run next (the oldest interactive request, else the oldest background one whose job is not
    paused, with those that may join it; none when every request waiting is paused) and the requests left waiting."""
    ready = [request for request in taken if not request.paused()]
    if not ready:
        return [], taken
    first = min(ready, key=lambda request: request.background)  # min keeps the oldest of equals
    group = [r for r in ready if r is first or (first.joinable and r.joinable and r.key() == first.key())]
    return group, [r for r in taken if not any(r is g for g in group)]


def _refuse(inbox: queue.SimpleQueue[_Request | None], waiting: list[_Request]) -> None:
    """Closed: fail the requests taken and those still queued."""
    while True:
        try:
            request = inbox.get_nowait()
        except queue.Empty:
            break
        if request is not None:
            waiting.append(request)
    for request in waiting:
        request.result.set_exception(_closed_error())


def _closed_error() -> WorkCancelledError:
    return WorkCancelledError("the model was unloaded (the server is stopping or made room for another model); "
                              "ask again", 1)


@atexit.register
def _close_open() -> None:
    """At exit, end every batcher's thread before the interpreter stops: one stopped inside torch aborts it."""
    for batcher in list(_OPEN):
        batcher.close()
