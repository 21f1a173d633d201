"""Batching across requests: concurrent forecasts share batches and each gets what it would get alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from kronos.batching import Batcher
from kronos.errors import InvalidInputError


def in_threads(calls: list) -> list:
    """Run the calls at once, each in its own thread; their results (or exceptions) in order."""
    results: list = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def work(i):
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as error:  # noqa: BLE001 - the test looks at it
            results[i] = error

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_requests_run_together_and_each_gets_its_solo_paths(forecaster, parity_input):
    batcher = Batcher(forecaster, window_s=0.2)
    requests = [dict(history=parity_input, samples=4 + i, seed=i) for i in range(4)]  # one history, the live case
    requests += [dict(history=parity_input.iloc[:120], samples=6, seed=9), dict(history=parity_input.iloc[40:160],
                                                                               samples=6, seed=9)]
    progress = [[] for _ in requests]
    results = in_threads([lambda r=r, p=p: batcher.forecast(r["history"], horizon=4, samples=r["samples"],
                                                            seed=r["seed"], progress=lambda s, t, p=p: p.append(t))
                          for r, p in zip(requests, progress)])
    assert batcher.batches == 1  # all six in one forecast_many call
    for request, result, steps in zip(requests, results, progress):
        alone = forecaster.forecast(request["history"], horizon=4, samples=request["samples"], seed=request["seed"])
        np.testing.assert_array_equal(result.tokens, alone.tokens)
        np.testing.assert_allclose(result.paths, alone.paths, rtol=1e-5)
        assert steps and steps[-1] == steps[0]  # progress reached the caller's own thread


def test_a_bad_request_fails_alone(forecaster, parity_input):
    batcher = Batcher(forecaster, window_s=0.2)
    results = in_threads([lambda: batcher.forecast(parity_input, horizon=3, samples=4, seed=1),
                          lambda: batcher.forecast(parity_input.iloc[:10], horizon=3, samples=4, seed=2)])
    assert results[0].paths.shape == (4, 3, 6)
    assert isinstance(results[1], InvalidInputError) and "at least 32" in str(results[1])


def test_other_settings_and_backtests_run_in_their_own_batches(forecaster, parity_input):
    batcher = Batcher(forecaster, window_s=0.2)
    results = in_threads([lambda: batcher.forecast(parity_input, horizon=3, samples=4, seed=1),
                          lambda: batcher.forecast(parity_input, horizon=3, samples=4, seed=1, temperature=0.5),
                          lambda: batcher.forecast_many([parity_input] * 2, horizon=3, samples=4, seeds=[1, 2])])
    assert batcher.batches == 3 and len(results[2]) == 2
    assert batcher.name == forecaster.name and batcher.fingerprint == forecaster.fingerprint
    with pytest.raises(InvalidInputError, match="horizon must be between"):
        batcher.forecast(parity_input, horizon=0)
