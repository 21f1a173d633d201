"""Batching across requests: concurrent forecasts share batches and each gets what it would get alone.

No timing window: the batcher's thread is held in a first forecast while the requests under test queue up,
so that they are all waiting when it comes back for more, however slow the machine.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kronos import cancellation
from kronos.engine import Forecaster, ForecastSource
from kronos.errors import InvalidInputError
from kronos.serving.batching import Batcher


class Held(Forecaster):
    """The forecaster, recording the histories of each forecast_many call; the first call waits for `release`."""

    def __init__(self, forecaster: Forecaster):
        super().__init__(forecaster.tokenizer, forecaster.model, max_context=forecaster.max_context,
                         name=forecaster.name)
        self.calls: list[int] = []  # histories per call
        self.entered, self.release = threading.Event(), threading.Event()

    def forecast_many(self, histories, **settings):
        self.calls.append(len(histories))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(60)
        return super().forecast_many(histories, **settings)


def queued_together(forecaster: Forecaster, history, calls: list) -> tuple[list, list[int], Batcher]:
    """Run the calls (each given a Batcher) in their own threads, all queued while the batcher is busy with a
    first forecast (of `history`): their results (or exceptions) in order, the histories of each batch after
    that first one, and the batcher."""
    held = Held(forecaster)
    batcher = Batcher(held, window_s=0)
    first = threading.Thread(target=lambda: batcher.forecast(history, horizon=1, samples=1))
    first.start()
    assert held.entered.wait(60)
    results: list = [None] * len(calls)

    def work(i):
        try:
            results[i] = calls[i](batcher)
        except Exception as error:  # noqa: BLE001 - the test looks at it
            results[i] = error

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while batcher._queue.qsize() < len(calls):  # every request is waiting (the queue is the batcher's own)
        assert time.monotonic() < deadline, "the requests did not reach the batcher's queue"
        time.sleep(0.001)
    held.release.set()
    for thread in [first, *threads]:
        thread.join(60)
    return results, held.calls[1:], batcher


def test_concurrent_requests_run_together_and_each_gets_its_solo_paths(forecaster, parity_input):
    requests = [dict(history=parity_input, samples=4 + i, seed=i) for i in range(4)]  # one history, the live case
    requests += [dict(history=parity_input.iloc[:120], samples=6, seed=9), dict(history=parity_input.iloc[40:160],
                                                                               samples=6, seed=9)]
    progress = [[] for _ in requests]

    def call(r, p):
        def run(batcher):
            caller = threading.get_ident()
            return batcher.forecast(r["history"], horizon=4, samples=r["samples"], seed=r["seed"],
                                    progress=lambda s, t: p.append((threading.get_ident() == caller, s, t)))
        return run

    results, batches, _ = queued_together(forecaster, parity_input, [call(r, p) for r, p in zip(requests, progress)])
    assert batches == [6]  # all six in one forecast_many call
    for request, result, steps in zip(requests, results, progress):
        alone = forecaster.forecast(request["history"], horizon=4, samples=request["samples"], seed=request["seed"])
        np.testing.assert_array_equal(result.tokens, alone.tokens)
        np.testing.assert_allclose(result.paths, alone.paths, rtol=1e-5)
        # every step of the shared call (two loops of 4 steps) reached the caller, in its own thread
        assert steps == [(True, step, 8) for step in range(1, 9)]


def test_a_bad_request_fails_alone(forecaster, parity_input):
    results, batches, _ = queued_together(forecaster, parity_input, [
        lambda b: b.forecast(parity_input, horizon=3, samples=4, seed=1),
        lambda b: b.forecast(parity_input.iloc[:10], horizon=3, samples=4, seed=2)])
    assert batches == [2, 1, 1]  # together, then each alone once the pair failed
    np.testing.assert_array_equal(results[0].tokens, forecaster.forecast(parity_input, horizon=3, samples=4,
                                                                         seed=1).tokens)
    assert isinstance(results[1], InvalidInputError) and "at least 32" in str(results[1])


def test_other_settings_and_backtests_run_in_their_own_batches(forecaster, parity_input):
    results, batches, batcher = queued_together(forecaster, parity_input, [
        lambda b: b.forecast(parity_input, horizon=3, samples=4, seed=1),
        lambda b: b.forecast(parity_input, horizon=3, samples=4, seed=1, temperature=0.5),
        lambda b: b.forecast_many([parity_input] * 2, horizon=3, samples=4, seeds=[1, 2])])
    assert sorted(batches) == [1, 1, 2] and len(results[2]) == 2
    assert batcher.batches == 4  # the first forecast's and these three
    assert batcher.name == forecaster.name and batcher.fingerprint == forecaster.fingerprint
    assert batcher.max_context == forecaster.max_context
    with pytest.raises(InvalidInputError, match="horizon must be between"):
        batcher.forecast(parity_input, horizon=0)
    with pytest.raises(InvalidInputError, match="top_p must be in"):
        batcher.check_arguments(3, 4, 1.0, 2.0, 0)


def test_a_batcher_forecasts_more_paths_of_a_kept_forecast_as_the_forecaster_does(forecaster, parity_input):
    """`first_path` (a kept backtest origin asked for more paths) passes through the batcher, as the dashboard's
    calibrations ask for it: the same paths as the forecaster's own."""
    batcher = Batcher(forecaster)
    try:
        made = batcher.forecast_many([parity_input], horizon=3, samples=2, seeds=[5], first_path=4)[0]
    finally:
        batcher.close()
    alone = forecaster.forecast_many([parity_input], horizon=3, samples=2, seeds=[5], first_path=4)[0]
    assert np.array_equal(made.paths, alone.paths) and made.settings.first_path == 4


def test_a_batcher_and_a_forecaster_are_forecast_sources(forecaster):
    assert isinstance(forecaster, ForecastSource) and isinstance(Batcher(forecaster), ForecastSource)


class Instant:
    """A ForecastSource double: its forecasts report 50 steps at once and are made at once (as None)."""

    name, max_context, fingerprint = "instant", 128, "0"

    def check_arguments(self, *arguments) -> None:
        pass

    def forecast(self, history, **settings):
        return self.forecast_many([history], **settings)[0]

    def forecast_many(self, histories, *, progress=None, **settings):
        for step in range(1, 51):
            progress(step, 50)
        return [None] * len(histories)


def test_every_step_reaches_the_caller_even_when_the_forecast_ends_at_once(parity_input):
    batcher = Batcher(Instant())
    for _ in range(20):
        steps = []
        batcher.forecast(parity_input, progress=lambda s, t, steps=steps: steps.append(s))
        assert steps == list(range(1, 51))


def test_an_interactive_forecast_runs_before_background_work_queued_earlier(forecaster, parity_input):
    held = Held(forecaster)
    batcher = Batcher(held, window_s=0)
    first = threading.Thread(target=lambda: batcher.forecast(parity_input, horizon=1, samples=1))
    first.start()
    assert held.entered.wait(60)

    def background():
        with cancellation.running(cancellation.Token(background=True)):
            batcher.forecast_many([parity_input.iloc[:100], parity_input.iloc[:120], parity_input.iloc[:140]],
                                  horizon=2, samples=2)

    threads = [threading.Thread(target=background),
               threading.Thread(target=lambda: batcher.forecast(parity_input, horizon=2, samples=2))]
    for queued, thread in enumerate(threads, 1):  # the background request first, then the interactive one
        thread.start()
        deadline = time.monotonic() + 60
        while batcher._queue.qsize() < queued:
            assert time.monotonic() < deadline, "the request did not reach the batcher's queue"
            time.sleep(0.001)
    held.release.set()
    for thread in [first, *threads]:
        thread.join(60)
    assert held.calls[1:] == [1, 3]  # the interactive forecast, then the background batch


class Stepping(Forecaster):
    """The forecaster, recording each forecast_many call's histories; the calls numbered in `hold` stop at their
    first step until `release` is set (each is then cleared for the next)."""

    def __init__(self, forecaster: Forecaster, hold: set[int]):
        super().__init__(forecaster.tokenizer, forecaster.model, max_context=forecaster.max_context,
                         name=forecaster.name)
        self.calls: list[int] = []
        self.hold, self.entered, self.release = hold, threading.Event(), threading.Event()

    def forecast_many(self, histories, *, progress=None, **settings):
        self.calls.append(len(histories))
        held = [len(self.calls) in self.hold]

        def told(step, total):
            if held[0]:
                held[0] = False
                self.entered.set()
                assert self.release.wait(60)
                self.release.clear()
            progress(step, total)

        return super().forecast_many(histories, progress=told, **settings)


def _queued(batcher: Batcher, requests: int) -> None:
    deadline = time.monotonic() + 60
    while batcher._queue.qsize() < requests:
        assert time.monotonic() < deadline, "the request did not reach the batcher's queue"
        time.sleep(0.001)


def _entered(stepping: Stepping) -> None:
    assert stepping.entered.wait(60)
    stepping.entered.clear()


def test_a_running_background_batch_is_set_aside_once_for_interactive_forecasts(forecaster, parity_input):
    histories, seeds = [parity_input.iloc[:100], parity_input.iloc[:140]], [3, 4]
    stepping = Stepping(forecaster, hold={1, 3})  # the background batch, then the same batch run again
    batcher = Batcher(stepping, window_s=0)
    found: dict[str, object] = {}

    def background():
        with cancellation.running(cancellation.Token(background=True)):
            found["background"] = batcher.forecast_many(histories, horizon=3, samples=2, seeds=seeds)

    def interactive(name):
        return threading.Thread(target=lambda: found.update({name: batcher.forecast(parity_input, horizon=3,
                                                                                    samples=2, seed=7)}))
    threads = [threading.Thread(target=background), interactive("first"), interactive("second")]
    threads[0].start()
    _entered(stepping)
    threads[1].start()
    _queued(batcher, 1)
    stepping.release.set()  # its next step sets the batch aside: the interactive forecast runs
    _entered(stepping)  # the batch again, from its start
    threads[2].start()
    _queued(batcher, 1)
    stepping.release.set()  # set aside once already: it runs to its end before the second interactive forecast
    for thread in threads:
        thread.join(60)
    batcher.close()
    assert stepping.calls == [2, 1, 2, 1]
    for made, alone in zip(found["background"], forecaster.forecast_many(histories, horizon=3, samples=2,
                                                                         seeds=seeds)):
        np.testing.assert_array_equal(made.tokens, alone.tokens)
    np.testing.assert_array_equal(found["first"].tokens, forecaster.forecast(parity_input, horizon=3, samples=2,
                                                                             seed=7).tokens)


def test_a_paused_jobs_batch_is_set_aside_until_the_job_goes_on(forecaster, parity_input):
    histories, seeds = [parity_input.iloc[:120]], [5]
    stepping = Stepping(forecaster, hold={1})
    batcher = Batcher(stepping, window_s=0)
    token, found = cancellation.Token(background=True), {}

    def background():
        with cancellation.running(token):
            found["made"] = batcher.forecast_many(histories, horizon=3, samples=2, seeds=seeds)

    thread = threading.Thread(target=background)
    thread.start()
    _entered(stepping)
    token.paused = True  # its registry gave the turn to another job
    stepping.release.set()
    time.sleep(0.5)
    assert stepping.calls == [1] and "made" not in found  # set aside, and not run again while paused
    token.paused = False
    thread.join(60)
    batcher.close()
    assert stepping.calls == [1, 1]
    np.testing.assert_array_equal(found["made"][0].tokens,
                                  forecaster.forecast_many(histories, horizon=3, samples=2, seeds=seeds)[0].tokens)


def test_a_pause_lets_a_batch_set_aside_once_be_set_aside_again_for_an_interactive_forecast(forecaster, parity_input):
    histories, seeds = [parity_input.iloc[:110], parity_input.iloc[:130]], [6, 7]
    stepping = Stepping(forecaster, hold={1, 3, 4})
    batcher = Batcher(stepping, window_s=0)
    token, found = cancellation.Token(background=True), {}

    def background():
        with cancellation.running(token):
            found["made"] = batcher.forecast_many(histories, horizon=3, samples=2, seeds=seeds)

    def interactive():
        return threading.Thread(target=lambda: batcher.forecast(parity_input, horizon=3, samples=2, seed=8))

    threads = [threading.Thread(target=background), interactive(), interactive()]
    threads[0].start()
    _entered(stepping)
    threads[1].start()
    _queued(batcher, 1)
    stepping.release.set()  # set aside for the first interactive forecast (and marked)
    _entered(stepping)  # run again
    token.paused = True
    stepping.release.set()  # set aside for the pause
    time.sleep(0.3)
    token.paused = False
    _entered(stepping)  # run again after the pause
    threads[2].start()
    _queued(batcher, 1)
    stepping.release.set()  # the pause cleared the mark: set aside again
    for thread in threads:
        thread.join(60)
    batcher.close()
    assert stepping.calls == [2, 1, 2, 2, 1, 2]  # background, interactive, background x2, interactive, background
    for made, alone in zip(found["made"], forecaster.forecast_many(histories, horizon=3, samples=2, seeds=seeds)):
        np.testing.assert_array_equal(made.tokens, alone.tokens)
