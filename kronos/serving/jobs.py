"""Background jobs shared by every session of a server: one job per key, each in its own thread but one computing at
a time, the newest first (a job asked for a moment ago is the one someone is looking at), with its progress and the
provisional results it publishes on the way (a calibration is usable early and refined behind). Turns are fair: a
job that has published a usable result makes way for a job asked for (which starts at once; the other stops at its
next progress check) and pauses at its next check when it publishes while others wait, so that every waiter gets a
usable result before any job refines its own; the paused ones go on once nobody waits.

Who waits for a job holds a lease on it (a dashboard session, an HTTP client told to ask again): a waiter holds at
most `per_waiter` leases (asking for another drops its oldest), a lease may lapse after `hold_s` seconds unless
renewed, and a job whose last lease is dropped or lapses is cancelled (kronos.cancellation: it stops at its next
forecast step) unless it was started with no waiter (a warm start: kept whoever comes). Their forecasts run as
background work (kronos.serving.pieces.Yielding sends them in small pieces): a Batcher serves interactive requests
first, setting a background piece in flight aside once, so an interactive forecast waits for one piece at most; the
piece in flight of a paused job is set aside until it goes on, so the job whose turn it is has the cores. No
Streamlit here. `close` (and the interpreter's exit) ends the job threads: the jobs running or paused are cancelled
at their next step, the waiting ones end with WorkCancelledError. A cancelled job is started afresh when asked for
again."""

from __future__ import annotations

import atexit
import functools
import math
import threading
import time
import traceback
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from kronos.cancellation import Token, running
from kronos.engine import Progress
from kronos.errors import WorkCancelledError
from kronos.process import release_memory

T = TypeVar("T")
KEPT = 64  # finished jobs a registry keeps (the oldest go first); running and waiting ones are always kept
CLOSE_WAIT_S = 10.0  # how long `close` waits for the job running to stop
LOOK_S = 0.02  # how often `wait_if_quick` looks whether the work has begun something slow
PER_WAITER = 1  # leases a waiter holds: a session looks at one calibration, the one its settings ask for
Work = Callable[[Progress, Callable[[T], None]], T]  # work(progress, publish) -> result


class Job(Generic[T]):
    """One computation `work(progress, publish)`: how far it got, the latest result it published (`latest`), then
    its result or its error; `token` cancels it."""

    def __init__(self, work: Work, check: Callable[[Job], None] = lambda job: None,
                 renew: Callable[[Hashable, float | None], None] = lambda waiter, hold_s: None):
        self.fraction = 0.0  # of the work done, from the progress callback
        self.latest: T | None = None  # the newest result published so far (the final one once done)
        self.token = Token(background=True)
        self.pinned = False  # started with no waiter: never cancelled for want of one
        self.started = False  # its turn came: the work runs (or ran)
        self.progressed = False  # the work reported progress: it has begun something slow (e.g. forecasts)
        self._work: Work | None = work
        self._check, self._renew = check, renew
        self._result: T | None = None
        self._error: Exception | None = None
        self._done = threading.Event()

    def run(self) -> None:
        """Do the work (once, unless cancelled first), keeping its result or its error."""
        work, self._work = self._work, None
        self.started = True
        try:
            with running(self.token):
                self.token.check()
                if work is not None:
                    self._result = self.latest = work(self._progress, self._publish)
        except Exception as error:  # noqa: BLE001 (kept for the caller of result(), who raises it again)
            traceback.clear_frames(error.__traceback__)  # the error is kept, the frames' tensors need not be
            self._error = error
        finally:
            self._done.set()
            release_memory()  # what the work freed goes back to the system, not to this thread's heap

    def _progress(self, step: int, total: int) -> None:
        """Note how far the work got; here the job waits its turn when its registry gives the cores to another
        (Jobs: a job that has published makes way for one that has nothing yet), and a cancelled job stops
        (WorkCancelledError)."""
        self.fraction = min(1.0, step / total) if total else 0.0
        self.progressed = True
        self._check(self)
        self.token.check()

    def _publish(self, value: T) -> None:
        self.latest = value

    def renew(self, waiter: Hashable, hold_s: float | None) -> None:
        """The waiter's lease on this job, for `hold_s` seconds from now (as its registry's `start` gives it)."""
        self._renew(waiter, hold_s)

    def cancel(self) -> None:
        """Stop the work at its next check; a job not started yet ends at once, cancelled."""
        self.token.cancel()
        if self._work is not None and not self.done:
            self._work = None
            self._error = WorkCancelledError("the job was dropped: nobody waits for it any more", 1)
            self._done.set()

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled (it then ends with WorkCancelledError)."""
        return self.token.cancelled

    @property
    def done(self) -> bool:
        """Whether the work has ended (with a result or an error)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the work ends, at most `timeout` seconds; whether it has."""
        return self._done.wait(timeout)

    def wait_if_quick(self, timeout: float) -> bool:
        """Wait until the work ends, at most `timeout` seconds, while it runs without having reported progress (work
        with nothing slow to do, such as a calibration from kept paths, ends in moments); whether it has ended."""
        deadline = time.monotonic() + timeout
        while self.started and not self.progressed and not self.done and time.monotonic() < deadline:
            self._done.wait(min(LOOK_S, max(0.0, deadline - time.monotonic())))
        return self.done

    def result(self) -> T:
        """The work's result; its error raised again if it failed. Only once done."""
        if not self.done:
            raise RuntimeError("the job is still running")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


class Jobs:
    """A registry of jobs by key: asking for a key that is waiting, running or finished joins that job, else queues
    one; its jobs take turns as the module docstring says; leases by waiter."""

    def __init__(self, kept: int = KEPT, per_waiter: int = PER_WAITER):
        self.kept, self.per_waiter = kept, per_waiter
        self._jobs: OrderedDict[Hashable, Job] = OrderedDict()
        self._turns = _Turns()
        self._leases: dict[Hashable, OrderedDict[Hashable, float]] = {}  # waiter -> key -> lapses at (monotonic)
        self._ready = self._turns.ready
        _OPEN.add(self)

    def start(self, key: Hashable, work: Work, waiter: Hashable | None = None, hold_s: float | None = None) -> Job[T]:
        """The job under `key`: the one there is (not cancelled), else `work` queued now. With a `waiter`, its lease
        on the job for `hold_s` seconds (None: until dropped); without, the job is kept whoever waits."""
        with self._ready:
            if self._turns.closed:
                raise WorkCancelledError("the server is stopping: background work is no longer started", 1)
            self._lapse()
            job = self._jobs.get(key)
            if job is not None and not job.cancelled:
                self._jobs.move_to_end(key)
            else:
                job = self._jobs[key] = Job(work, self._checkpoint, functools.partial(self._renewed, key))
                self._evict()
                self._turns.queue(job)
            if waiter is None:
                job.pinned = True
            else:
                self._lease(key, waiter, hold_s)
            return job

    def release(self, key: Hashable, waiter: Hashable) -> None:
        """The waiter no longer waits for the job under `key` (cancelled if nobody else does)."""
        with self._ready:
            if self._leases.get(waiter, {}).pop(key, None) is not None:
                self._drop_if_unwaited(key)

    def keys(self) -> list[Hashable]:
        """The keys of the jobs kept now (waiting, running or finished), the most recently asked for last."""
        with self._ready:
            return list(self._jobs)

    def waiters(self, key: Hashable) -> int:
        """How many waiters hold a lease on the job under `key` now."""
        with self._ready:
            self._lapse()
            return sum(key in held for held in self._leases.values())

    def _checkpoint(self, job: Job) -> None:
        with self._ready:
            self._lapse()
            self._turns.pause_if_others_wait(job)

    def _renewed(self, key: Hashable, waiter: Hashable, hold_s: float | None) -> None:
        with self._ready:
            job = self._jobs.get(key)
            if job is not None and not job.cancelled:
                self._lease(key, waiter, hold_s)

    def _lease(self, key: Hashable, waiter: Hashable, hold_s: float | None) -> None:
        held = self._leases.setdefault(waiter, OrderedDict())
        held[key] = math.inf if hold_s is None else time.monotonic() + hold_s
        held.move_to_end(key)
        while len(held) > self.per_waiter:
            old, _ = held.popitem(last=False)
            self._drop_if_unwaited(old)

    def _lapse(self) -> None:
        """Drop the leases whose time is up (and the jobs nobody waits for after that)."""
        now = time.monotonic()
        for waiter, held in list(self._leases.items()):
            for key in [k for k, until in held.items() if until <= now]:
                del held[key]
                self._drop_if_unwaited(key)
            if not held:
                del self._leases[waiter]

    def _drop_if_unwaited(self, key: Hashable) -> None:
        job = self._jobs.get(key)
        if job is None or job.done or job.pinned or any(key in held for held in self._leases.values()):
            return
        job.cancel()
        del self._jobs[key]  # asking again starts afresh (what it stored is reused)
        self._turns.drop(job)

    def _evict(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.done]
        for old in finished[:max(0, len(finished) - self.kept)]:
            del self._jobs[old]

    def close(self, timeout: float = CLOSE_WAIT_S) -> None:
        """End the job threads, waiting up to `timeout` seconds for the job running (and the paused ones) to stop at
        their next step; the waiting jobs end cancelled, and `start` raises WorkCancelledError from now on. Closing
        again does nothing."""
        with self._ready:
            for job in self._jobs.values():
                job.cancel()
        self._turns.close(timeout)
        _OPEN.discard(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every job queued so far has ended (at most `timeout` seconds each); whether they have."""
        with self._ready:
            jobs = list(self._jobs.values())
        return all(job.wait(timeout) for job in jobs)

    @property
    def threads(self) -> list[threading.Thread]:
        """The threads of the jobs running or paused now."""
        with self._ready:
            return list(self._turns.threads)


class _Turns:
    """Whose turn it is: one job computes at a time, in its own thread. The newest waiting job starts when none
    runs. A running job that has published a usable result makes way for a job asked for (a calibration usable early
    for one that has nothing yet): the newcomer starts at once, and the other, paused (its token says so, so the
    batcher sets its forecasts aside), stops at its next progress check; one that publishes while others wait pauses
    at its next check. The paused ones go on, the most recently paused first, once no job waits."""

    def __init__(self) -> None:
        self.ready = threading.Condition()
        self.waiting: list[Job] = []  # not started, oldest first
        self.paused: list[Job] = []  # oldest first
        self.running: Job | None = None
        self.threads: set[threading.Thread] = set()
        self.closed = False

    def queue(self, job: Job) -> None:
        self.waiting.append(job)
        if self.running is not None and self.running.latest is not None:
            self._pause(self.running)
        self._next()

    def drop(self, job: Job) -> None:
        """A cancelled job: out of the queue; a paused one wakes to stop."""
        for jobs in (self.waiting, self.paused):
            if job in jobs:
                jobs.remove(job)
        self.ready.notify_all()

    def pause_if_others_wait(self, job: Job) -> None:
        """In `job`'s thread, under the lock: when another job waits and this one has published, or when it was
        paused, wait for its turn again (or until it is cancelled or the registry closes)."""
        if job is self.running and job.latest is not None and self.waiting:
            self._pause(job)
            self._next()
        while self.running is not job and not job.cancelled and not self.closed:
            self.ready.wait()

    def _pause(self, job: Job) -> None:
        self.paused.append(job)
        self.running, job.token.paused = None, True  # the batcher sets its forecast in flight aside

    def _next(self) -> None:
        if self.running is not None or self.closed:
            return
        if self.waiting:
            self.running = job = self.waiting.pop()  # the newest
            thread = threading.Thread(target=self._run, args=(job,), name="kronos-jobs", daemon=True)
            self.threads.add(thread)
            thread.start()
        elif self.paused:
            self.running = self.paused.pop()
            self.running.token.paused = False
            self.ready.notify_all()

    def _run(self, job: Job) -> None:
        try:
            job.run()
        finally:
            with self.ready:
                self.threads.discard(threading.current_thread())
                if job in self.paused:  # it ended before its next check
                    self.paused.remove(job)
                if self.running is job:
                    self.running = None
                self._next()

    def close(self, timeout: float) -> None:
        """No job starts from now on: the waiting ones end at once (cancelled), the threads are joined."""
        with self.ready:
            self.closed, waiting, self.waiting = True, self.waiting, []
            threads = list(self.threads)
            self.ready.notify_all()
        for job in waiting:
            job.run()  # cancelled: it ends at once
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)


_OPEN: weakref.WeakSet[Jobs] = weakref.WeakSet()  # closed at the interpreter's exit


@atexit.register
def _close_open() -> None:
    """At exit, end every registry's worker before the interpreter stops: one stopped inside torch aborts it."""
    for jobs in list(_OPEN):
        jobs.close()
