"""The registry of background jobs the dashboard's calibrations run in, and the source that yields to others
(kronos.jobs)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from kronos.jobs import Jobs, Yielding


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
    for key in (2, 3, 4):
        assert jobs.start(key, lambda progress, publish, key=key: key).wait(10)
    assert first.done
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
