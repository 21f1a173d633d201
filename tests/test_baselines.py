"""The volatility baselines: EWMA's decay, GARCH(1,1) fitted on the past only (refits on clock-fixed candles)."""

from __future__ import annotations

import numpy as np
import pytest

from kronos.evaluation import baselines


def garch_closes(rows: int = 4000, omega: float = 2e-6, alpha: float = 0.1, beta: float = 0.85, seed: int = 0):
    """Closes whose log returns follow a GARCH(1,1) with these parameters."""
    rng = np.random.default_rng(seed)
    variance, returns = omega / (1 - alpha - beta), np.empty(rows)
    for t in range(rows):
        returns[t] = np.sqrt(variance) * rng.standard_normal()
        variance = omega + alpha * returns[t] ** 2 + beta * variance
    return 100 * np.exp(np.concatenate([[0], returns.cumsum()]))


def test_ewma_weighs_the_latest_returns_by_the_half_life():
    trailing = np.zeros((1, 100))
    trailing[0, -1] = trailing[0, -25] = 1.0  # the latest return and one a half-life before it
    paths = baselines.ewma(trailing, 20000, 1, np.random.default_rng(0))
    weights = 2.0 ** (-np.arange(100)[::-1] / 24)
    assert paths[0, :, 0].std() == pytest.approx(np.sqrt(1.5 / weights.sum()), rel=0.02)


def test_garch_recovers_its_parameters_and_its_paths_follow_the_recursion():
    fit = baselines.fit_garch(np.diff(np.log(garch_closes())))
    assert fit.alpha == pytest.approx(0.1, abs=0.04) and fit.beta == pytest.approx(0.85, abs=0.06)
    close = garch_closes()
    paths = baselines.garch(close, np.array([3000]), 4000, 12, np.random.default_rng(1))
    spread = np.diff(paths[0], axis=1, prepend=0).std(0)  # (H,) per step
    assert spread[-1] > 0 and np.isfinite(paths).all()


def test_garch_at_an_origin_sees_only_the_rows_before_it():
    close = garch_closes(3000)
    origins = np.arange(2000, 2900, 37)
    base = baselines.garch(close, origins, 50, 6, np.random.default_rng(2), phase=5)
    for cut in (origins[3], origins[10]):
        changed = close.copy()
        changed[cut:] *= np.exp(np.random.default_rng(3).normal(0, 0.05, len(close) - cut)).cumprod()
        moved = baselines.garch(changed, origins, 50, 6, np.random.default_rng(2), phase=5)
        before = origins <= cut  # origin o sees rows < o; rows from `cut` on changed
        np.testing.assert_array_equal(base[before], moved[before])
        assert not np.array_equal(base[~before], moved[~before])


@pytest.mark.parametrize("origins", [[2500, 2506, 2512], [600, 606, 640]])  # full fit windows; windows cut by the start
def test_garch_refits_on_candles_fixed_by_the_clock_whatever_the_frame_holds(origins):
    close, origins = garch_closes(3000), np.array(origins)
    whole = baselines.garch(close, origins, 20, 4, np.random.default_rng(4), phase=7)
    for cut in (1, 100):  # the frame slides: fits on the same candles, windows cut on a row fixed by the clock
        shifted = baselines.garch(close[cut:], origins - cut, 20, 4, np.random.default_rng(4), phase=7 + cut)
        np.testing.assert_allclose(whole, shifted)


def test_the_variance_recursion_is_scipys_lfilter_to_the_bit():
    """GARCH's variance filter is written out (importing scipy.signal costs every scoring command 0.75 s): the same
    bits as lfilter's, over windows of every length and scale the baselines meet."""
    from scipy.signal import lfilter

    from kronos.evaluation.baselines import _recursion

    rng = np.random.default_rng(0)
    for _ in range(300):
        n, beta, level = int(rng.integers(1, 2500)), float(rng.uniform(0, 0.999)), float(rng.uniform(1e-9, 1e-3))
        drive = rng.uniform(1e-10, 1e-3, n) * rng.choice([1e-3, 1.0, 10.0], n)
        expected = lfilter([1.0], [1.0, -beta], drive, zi=[beta * level])[0]
        assert np.array_equal(_recursion(drive, beta, level).view(np.uint64), expected.view(np.uint64))
