"""The registry of background jobs the dashboard's calibrations run in, and the source that yields to others
(kronos.serving.jobs)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kronos import cancellation
from kronos.cancellation import Token, current
from kronos.errors import WorkCancelledError
from kronos.serving.jobs import Jobs
from kronos.serving.pieces import Yielding


def published(job) -> None:
    """Wait (at most 10 s) until the job has published a first result."""
    deadline = time.monotonic() + 10
    while job.latest is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_one_job_per_key_its_progress_and_its_result():
    jobs, started, gate, calls = Jobs(), threading.Event(), threading.Event(), []

    def work(progress, publish):
        calls.append(1)
        progress(1, 4)
        started.set()
        assert gate.wait(10)
        return "done"

    first = jobs.start("a", work)
    assert jobs.start("a", work) is first and started.wait(10)
    assert first.fraction == 0.25 and not first.done
    with pytest.raises(RuntimeError, match="still running"):
        first.result()
    gate.set()
    assert jobs.wait(10) and first.result() == "done" and calls == [1]
    assert jobs.start("a", work) is first  # finished jobs are joined too


def test_jobs_run_one_at_a_time_the_newest_waiting_first():
    jobs, gate, running, order = Jobs(), threading.Event(), threading.Event(), []
    jobs.start("busy", lambda progress, publish: (running.set(), gate.wait(10)))
    assert running.wait(10)  # the worker holds "busy" before the others are asked for
    for key in ("older", "newer"):
        jobs.start(key, lambda progress, publish, key=key: order.append(key))
    assert order == []  # behind the running one
    gate.set()
    assert jobs.wait(10) and order == ["newer", "older"]


def test_a_failed_job_raises_its_error_to_whoever_asks():
    def work(progress, publish):
        raise ValueError("no good")

    job = Jobs().start("b", work)
    assert job.wait(10)
    with pytest.raises(ValueError, match="no good"):
        job.result()


def test_only_the_latest_finished_jobs_are_kept():
    jobs = Jobs(kept=2)
    first = jobs.start(1, lambda progress, publish: 1)
    assert first.wait(10)  # ended before the others are queued, which run newest first and could pass it
    for key in (2, 3, 4):
        assert jobs.start(key, lambda progress, publish, key=key: key).wait(10)
    assert 1 not in jobs.keys()
    assert jobs.start(1, lambda progress, publish: "again") is not first  # evicted, so queued anew


def test_a_yielding_source_forecasts_in_pieces_what_the_batch_would(forecaster, parity_input):
    histories = [parity_input.iloc[:end] for end in range(120, 200, 16)]  # 5 histories
    settings = {"horizon": 3, "samples": 4, "seeds": [1, 2, 3, 4, 5]}
    steps = []
    pieces = Yielding(forecaster, piece=2).forecast_many(histories, progress=lambda s, t: steps.append((s, t)),
                                                         **settings)
    whole = forecaster.forecast_many(histories, **settings)
    for piece, alone in zip(pieces, whole, strict=True):
        np.testing.assert_array_equal(piece.paths, alone.paths)
    assert steps[-1] == (3000, 3000) and steps == sorted(steps) and steps[0][0] < 1000  # 3 pieces, in turn
    assert Yielding(forecaster).fingerprint == forecaster.fingerprint


def held_jobs() -> tuple[Jobs, threading.Event, threading.Event]:
    """A registry whose worker is busy with a first job until `gate` is set (`running` once it has started)."""
    jobs, gate, running = Jobs(), threading.Event(), threading.Event()
    jobs.start("busy", lambda progress, publish: (running.set(), gate.wait(10)))
    assert running.wait(10)
    return jobs, gate, running


def stepping(steps: list[int]):
    """Work that reports progress (where a cancelled job stops: kronos.cancellation) until it is cancelled or done."""
    def work(progress, publish):
        for step in range(200):
            steps.append(step)
            progress(step, 200)
            time.sleep(0.01)
        return "done"
    return work


def test_a_job_whose_only_waiter_moves_on_is_cancelled():
    jobs, steps = Jobs(), []
    old = jobs.start("temperature 1.0", stepping(steps), waiter="session")
    deadline = time.monotonic() + 10
    while not steps:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    new = jobs.start("temperature 0.8", lambda progress, publish: "new", waiter="session")  # the settings changed
    assert old.wait(10) and old.cancelled
    with pytest.raises(WorkCancelledError):
        old.result()
    assert len(steps) < 200 and new.wait(10) and new.result() == "new"
    assert jobs.start("temperature 1.0", stepping([]), waiter="session") is not old  # asked again: afresh


def test_a_job_another_session_still_waits_for_goes_on():
    jobs, gate, _ = held_jobs()
    shared = jobs.start("a", lambda progress, publish: "shared", waiter="one")
    assert jobs.start("a", lambda progress, publish: "not run", waiter="two") is shared
    jobs.start("b", lambda progress, publish: "b", waiter="one")  # session one moves on; two still waits for "a"
    assert jobs.waiters("a") == 1 and not shared.cancelled
    jobs.release("a", "two")  # now nobody waits for it: dropped before it starts
    assert shared.cancelled and shared.done
    gate.set()
    assert jobs.wait(10)


def test_a_lease_lapses_unless_renewed_and_a_job_without_waiter_is_kept():
    jobs, gate, _ = held_jobs()
    lapsing = jobs.start("asked once", lambda progress, publish: 1, waiter="client", hold_s=0.05)
    renewed = jobs.start("asked again", lambda progress, publish: 2, waiter="client 2", hold_s=0.05)
    kept = jobs.start("warm", lambda progress, publish: 3)  # no waiter: a warm start
    time.sleep(0.03)
    jobs.start("asked again", lambda progress, publish: 2, waiter="client 3", hold_s=60)
    time.sleep(0.05)
    assert jobs.waiters("asked once") == 0 and lapsing.cancelled
    assert not renewed.cancelled and not kept.cancelled
    gate.set()
    assert renewed.wait(10) and renewed.result() == 2 and kept.wait(10) and kept.result() == 3


def test_a_job_publishes_what_it_has_on_the_way():
    jobs, seen, gate = Jobs(), [], threading.Event()

    def work(progress, publish):
        publish("34 origins")
        assert gate.wait(10)
        return "200 origins"

    job = jobs.start("k", work)
    published(job)
    seen.append(job.latest)
    gate.set()
    assert job.wait(10) and seen == ["34 origins"] and job.latest == job.result() == "200 origins"


def test_a_background_job_pauses_at_its_checks_while_interactive_work_is_in_flight():
    background, passed = Token(background=True), threading.Event()
    with cancellation.interactive():
        Token().check()  # interactive work goes on
        checking = threading.Thread(target=lambda: (background.check(), passed.set()))
        checking.start()
        assert not passed.wait(0.3)  # the background one waits ...
    assert passed.wait(cancellation.PAUSE_S)  # ... until the interactive work ends
    checking.join(10)


def test_every_job_gives_its_freed_memory_back_when_it_ends(monkeypatch):
    """A finished, failed or cancelled job's arrays are freed by then; the heap they lived in goes back to the
    system (kronos.process.release_memory), else the server keeps what each calibration used."""
    released = []
    monkeypatch.setattr("kronos.serving.jobs.release_memory", lambda: released.append(1))
    jobs = Jobs()

    def fails(progress, publish):
        raise ValueError("bad")

    jobs.start("ok", lambda progress, publish: "done")
    jobs.start("fails", fails)
    assert jobs.wait(10) and released == [1, 1]


def test_a_job_that_has_published_makes_way_for_one_that_has_nothing_yet():
    jobs, log, computing, second_asked, paused = Jobs(), [], [], threading.Event(), []

    def work(name, steps):
        def run(progress, publish):
            for step in range(steps):
                paused.append((current() if name == "first" else first.token).paused)  # first's token
                computing.append(name)
                assert len(set(computing)) == 1, "two jobs computed at once"
                log.append((name, step))
                computing.remove(name)
                if step == 1:
                    publish(f"{name} usable")
                    second_asked.wait(10)
                progress(step + 1, steps)
            return f"{name} full"
        return run

    first = jobs.start("first", work("first", 5))
    published(first)
    second = jobs.start("second", work("second", 3))
    second_asked.set()
    assert first.wait(10) and second.wait(10)
    assert first.result() == "first full" and second.result() == "second full"
    # second starts as soon as it is asked for (first has published) and first stops at its next check; second
    # runs whole; then first goes on
    assert log == [("first", 0), ("first", 1), ("second", 0), ("second", 1), ("second", 2),
                   ("first", 2), ("first", 3), ("first", 4)]
    # while first waits its turn its token says so: the batcher sets its forecasts aside meanwhile
    assert paused == [False, False, True, True, True, False, False, False]


def test_a_paused_job_nobody_waits_for_any_more_ends_cancelled():
    jobs, gate, other_asked, other_started = Jobs(), threading.Event(), threading.Event(), threading.Event()

    def publishing(progress, publish):
        publish("usable")
        other_asked.wait(10)
        for step in range(1000):
            progress(step, 1000)
        return "full"

    paused = jobs.start("paused", publishing, waiter="session")
    published(paused)
    blocker = jobs.start("other", lambda progress, publish: (other_started.set(), gate.wait(10))[1])
    other_asked.set()
    assert other_started.wait(10) and not paused.done  # paused made way for it
    jobs.release("paused", "session")
    assert paused.wait(10) and paused.cancelled
    with pytest.raises(WorkCancelledError):
        paused.result()
    gate.set()
    assert blocker.wait(10) and blocker.result() is True


def test_waiting_if_quick_waits_for_work_that_reports_no_progress_and_no_longer():
    jobs, gate, started = Jobs(), threading.Event(), threading.Event()

    def quiet(progress, publish):  # work from kept results: nothing slow, so nothing to report
        started.set()
        time.sleep(0.3)
        return "from kept paths"

    def forecasting(progress, publish):
        progress(0, 10)  # it has begun its forecasts
        assert gate.wait(10)
        return "forecast"

    job = jobs.start("quiet", quiet)
    assert started.wait(10) and job.wait_if_quick(10) and job.result() == "from kept paths"
    slow = jobs.start("slow", forecasting)
    deadline = time.monotonic() + 10
    while not slow.progressed:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    began = time.monotonic()
    assert not slow.wait_if_quick(10) and time.monotonic() - began < 1  # no waiting for what takes a while
    gate.set()
    assert slow.wait(10)


def test_waiting_if_quick_does_not_wait_for_a_job_whose_turn_has_not_come():
    jobs, gate = Jobs(), threading.Event()
    first = jobs.start("first", lambda progress, publish: gate.wait(10))  # nothing published: it keeps its turn
    queued = jobs.start("queued", lambda progress, publish: "done")
    began = time.monotonic()
    assert not queued.started and not queued.wait_if_quick(10) and time.monotonic() - began < 1
    gate.set()
    assert first.wait(10) and queued.wait(10) and queued.result() == "done"


def test_a_job_asked_for_while_the_running_one_has_published_starts_at_once():
    """Not at the running job's next progress check, which may be a while off (its piece set aside for a page's
    forecast reports nothing): the newcomer starts now, and the other, paused, stops at its check."""
    jobs, gate, order = Jobs(), threading.Event(), []

    def refining(progress, publish):
        publish("usable")
        assert gate.wait(10)  # busy, reporting nothing
        progress(1, 2)  # its check: it waits here for the newcomer to end
        order.append("refined")
        return "full"

    first = jobs.start("first", refining)
    published(first)
    second = jobs.start("second", lambda progress, publish: order.append(("second", first.token.paused)) or "done")
    assert second.wait(5) and second.result() == "done"  # while first, paused, is still busy
    gate.set()
    assert first.wait(10) and first.result() == "full" and order == [("second", True), "refined"]
    assert not first.token.paused
