"""Memory given back after failed and cancelled work: the heaps are trimmed only once the work's arrays are freed."""

from __future__ import annotations

import time
import weakref

import pytest

from kronos.cancellation import Token, running
from kronos.errors import WorkCancelledError
from kronos.serving.batching import Batcher
from kronos.serving.service import ForecastService


class Big:
    """What a job holds in a local variable while it works (as a backtest holds its arrays)."""


def test_a_failed_long_job_has_freed_its_arrays_when_the_heaps_are_trimmed(monkeypatch):
    held: list[weakref.ref] = []
    freed_at_release: list[bool] = []
    monkeypatch.setattr("kronos.serving.service.release_memory", lambda: freed_at_release.append(held[0]() is None))
    monkeypatch.setattr("kronos.serving.service.RELEASE_AFTER_S", 0.05)

    def failing() -> None:
        big = Big()
        held.append(weakref.ref(big))
        time.sleep(0.1)
        raise ValueError("no good")

    with pytest.raises(ValueError, match="no good"):
        ForecastService(workers=1).run("failing", failing)
    assert freed_at_release == [True]


def test_a_batch_whose_callers_all_went_away_trims_the_heaps_when_it_stops(monkeypatch, parity_input):
    released, token = [], Token()
    monkeypatch.setattr("kronos.serving.batching.release_memory", lambda: released.append(1))

    class Cancelling:
        name, max_context, fingerprint = "cancelling", 128, "0"

        def check_arguments(self, *arguments) -> None:
            pass

        def forecast_many(self, histories, *, progress=None, **settings):
            token.cancel()  # the caller goes away during the first step
            for step in range(1, 1001):
                progress(step, 1000)
                time.sleep(0.001)
            return [None] * len(histories)

    batcher = Batcher(Cancelling())
    with running(token), pytest.raises(WorkCancelledError):
        batcher.forecast(parity_input)
    deadline = time.monotonic() + 30
    while not released and time.monotonic() < deadline:
        time.sleep(0.01)
    assert released == [1]
    batcher.close()
