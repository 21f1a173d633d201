"""Background jobs shared by every session of a server: one job per key, run one at a time on the registry's worker
thread, the newest first (a job asked for a moment ago is the one someone is looking at), with its progress. Their
forecasts go through `Yielding`, so the forecasts sessions ask for meanwhile wait for one small piece at most. The
dashboard keeps one registry for the process (st.cache_resource) and polls its jobs; no Streamlit here. `close` (and
the interpreter's exit) ends the worker thread: the job running is cancelled at its next step (kronos.cancellation),
the waiting ones end with WorkCancelledError. A job that ended cancelled is started afresh when asked for again."""

from __future__ import annotations

import atexit
import threading
import traceback
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

import pandas as pd

from kronos.cancellation import Token, running
from kronos.engine import HISTORIES_PER_BATCH, ForecastSource, Progress
from kronos.errors import WorkCancelledError
from kronos.forecast import Forecast

T = TypeVar("T")
KEPT = 64  # finished jobs a registry keeps (the oldest go first); running and waiting ones are always kept
CLOSE_WAIT_S = 10.0  # how long `close` waits for the job running to stop


class Job(Generic[T]):
    """One computation `work(progress)`: how far it got, then its result or its error."""

    def __init__(self, work: Callable[[Progress], T]):
        self.fraction = 0.0  # of the work done, from the progress callback
        self._work: Callable[[Progress], T] | None = work
        self._result: T | None = None
        self._error: Exception | None = None
        self._done = threading.Event()
        self._token = Token()  # the work's forecasts stop at their next step once it is cancelled

    def run(self) -> None:
        """Do the work (once), keeping its result or its error."""
        work, self._work = self._work, None
        try:
            if work is not None:
                with running(self._token):
                    self._token.check()
                    self._result = work(self._progress)
        except Exception as error:  # noqa: BLE001 (kept for the caller of result(), who raises it again)
            traceback.clear_frames(error.__traceback__)  # the error is kept, the frames' tensors need not be
            self._error = error
        finally:
            self._done.set()

    def cancel(self) -> None:
        """Stop the work at its next forecast step, or before it starts; it then ends with WorkCancelledError."""
        self._token.cancel()

    @property
    def cancelled(self) -> bool:
        """Whether the work ended cancelled (its result is WorkCancelledError)."""
        return self.done and isinstance(self._error, WorkCancelledError)

    def _progress(self, step: int, total: int) -> None:
        self.fraction = min(1.0, step / total) if total else 0.0

    @property
    def done(self) -> bool:
        """Whether the work has ended (with a result or an error)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the work ends, at most `timeout` seconds; whether it has."""
        return self._done.wait(timeout)

    def result(self) -> T:
        """The work's result; its error raised again if it failed. Only once done."""
        if not self.done:
            raise RuntimeError("the job is still running")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


class Jobs:
    """A registry of jobs by key: asking for a key that is waiting, running or finished joins that job, else queues
    one; one worker thread runs them, the newest waiting first."""

    def __init__(self, kept: int = KEPT):
        self.kept = kept
        self._jobs: OrderedDict[Hashable, Job] = OrderedDict()
        self._waiting: list[Job] = []
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False
        _OPEN.add(self)

    def start(self, key: Hashable, work: Callable[[Progress], T]) -> Job[T]:
        """The job under `key`: the one there is, else `work` queued now."""
        with self._ready:
            if self._closed:
                raise WorkCancelledError("the server is stopping: background work is no longer started", 1)
            if key in self._jobs and not self._jobs[key].cancelled:
                self._jobs.move_to_end(key)
                return self._jobs[key]
            job = self._jobs[key] = Job(work)
            self._waiting.append(job)
            finished = [k for k, j in self._jobs.items() if j.done]
            for old in finished[:max(0, len(finished) - self.kept)]:
                del self._jobs[old]
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name="kronos-jobs", daemon=True)
                self._worker.start()
            self._ready.notify()
            return job

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                job = self._waiting.pop()  # the newest
            job.run()

    def close(self, timeout: float = CLOSE_WAIT_S) -> None:
        """End the worker thread, waiting up to `timeout` seconds for the job running to stop at its next step; the
        waiting jobs end cancelled, and `start` raises WorkCancelledError from now on. Closing again does nothing."""
        with self._ready:
            self._closed, worker, waiting, self._waiting = True, self._worker, self._waiting, []
            for job in self._jobs.values():
                job.cancel()
            self._ready.notify_all()
        for job in waiting:
            job.run()  # cancelled: it ends at once
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
        _OPEN.discard(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every job queued so far has ended (at most `timeout` seconds each); whether they have."""
        with self._ready:
            jobs = list(self._jobs.values())
        return all(job.wait(timeout) for job in jobs)


_OPEN: weakref.WeakSet[Jobs] = weakref.WeakSet()  # closed at the interpreter's exit


@atexit.register
def _close_open() -> None:
    """At exit, end every registry's worker before the interpreter stops: one stopped inside torch aborts it."""
    for jobs in list(_OPEN):
        jobs.close()


class Yielding:
    """A ForecastSource for background work: `forecast_many` runs in pieces of `piece` histories, each asked for on
    its own, so the forecasts others ask the same source for meanwhile (a Batcher serves its callers in turn) wait
    for one piece, not the whole batch. Each history has its own seed, so the pieces forecast what the batch would."""

    def __init__(self, source: ForecastSource, piece: int = HISTORIES_PER_BATCH // 4):
        self.source, self.piece = source, piece

    def __getattr__(self, name: str) -> Any:  # name, max_context, fingerprint, check_arguments, forecast
        return getattr(self.source, name)

    def forecast_many(self, histories: Sequence[pd.DataFrame], *, samples: int | Sequence[int] | None = None,
                      seeds: Sequence[int | None] | None = None, progress: Progress | None = None,
                      **settings: Any) -> list[Forecast]:
        """As the source's forecast_many, a piece at a time; `progress` over the whole batch."""
        starts = range(0, len(histories), self.piece)
        made: list[Forecast] = []
        for number, start in enumerate(starts):
            part = slice(start, start + self.piece)
            arguments = dict(settings, seeds=None if seeds is None else list(seeds)[part],
                             progress=None if progress is None else _within(progress, number, len(starts)))
            if samples is not None:
                arguments["samples"] = samples if isinstance(samples, int) else list(samples)[part]
            made += self.source.forecast_many(list(histories)[part], **arguments)
        return made


def _within(progress: Progress, number: int, pieces: int) -> Progress:
    """Piece `number`'s progress as the batch's, in thousandths of a piece (pieces may count their steps apart)."""
    return lambda step, total: progress(number * 1000 + round(1000 * step / total), pieces * 1000)
