"""The registry of background jobs the dashboard's calibrations run in (kronos.jobs)."""

from __future__ import annotations

import threading

import pytest

from kronos.jobs import Jobs


def test_one_job_per_key_its_progress_and_its_result():
    jobs, gate, calls = Jobs(), threading.Event(), []

    def work(progress):
        calls.append(1)
        progress(1, 4)
        assert gate.wait(10)
        return "done"

    first = jobs.start("a", work)
    assert jobs.start("a", work) is first and not first.wait(0.05)
    assert first.fraction == 0.25 and not first.done
    with pytest.raises(RuntimeError, match="still running"):
        first.result()
    gate.set()
    assert jobs.wait(10) and first.result() == "done" and calls == [1]
    assert jobs.start("a", work) is first  # finished jobs are joined too


def test_a_failed_job_raises_its_error_to_whoever_asks():
    def work(progress):
        raise ValueError("no good")

    job = Jobs().start("b", work)
    assert job.wait(10)
    with pytest.raises(ValueError, match="no good"):
        job.result()


def test_only_the_latest_finished_jobs_are_kept():
    jobs = Jobs(kept=2)
    first = jobs.start(1, lambda progress: 1)
    for key in (2, 3):
        assert jobs.start(key, lambda progress: key).wait(10)
    assert first.wait(10)
    jobs.start(4, lambda progress: 4).wait(10)
    assert jobs.start(1, lambda progress: "again") is not first  # evicted, so started anew
