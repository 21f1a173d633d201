"""Background jobs shared by every session of a server: one job per key, each on a daemon thread of its own, with
its progress. The dashboard keeps one registry for the process (st.cache_resource) and polls its jobs; no Streamlit
here."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

from kronos.engine import Progress

T = TypeVar("T")
KEPT = 64  # finished jobs a registry keeps (the oldest go first); running ones are always kept


class Job(Generic[T]):
    """One computation `work(progress)` on its own thread: how far it got, then its result or its error."""

    def __init__(self, work: Callable[[Progress], T], name: str = "kronos-job"):
        self.fraction = 0.0  # of the work done, from the progress callback
        self._result: T | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(work,), name=name, daemon=True).start()

    def _run(self, work: Callable[[Progress], T]) -> None:
        try:
            self._result = work(self._progress)
        except BaseException as error:  # kept for the caller of result(), who says what went wrong
            self._error = error
        finally:
            self._done.set()

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
    """A registry of jobs by key: asking for a key that is running or finished joins that job, else starts one."""

    def __init__(self, kept: int = KEPT):
        self.kept = kept
        self._jobs: OrderedDict[Hashable, Job] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, key: Hashable, work: Callable[[Progress], T]) -> Job[T]:
        """The job under `key`: the one there is, else `work` started now."""
        with self._lock:
            if key in self._jobs:
                self._jobs.move_to_end(key)
                return self._jobs[key]
            job = self._jobs[key] = Job(work)
            finished = [k for k, j in self._jobs.items() if j.done]
            for old in finished[:max(0, len(finished) - self.kept)]:
                del self._jobs[old]
            return job

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every job started so far has ended (at most `timeout` seconds each); whether they have."""
        with self._lock:
            jobs = list(self._jobs.values())
        return all(job.wait(timeout) for job in jobs)
