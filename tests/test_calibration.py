"""Calibration from the past only: it repairs an over-confident forecaster out of sample and never looks ahead."""

from __future__ import annotations

import numpy as np
import pytest

from kronos.evaluation.calibration import calibrate, known
from kronos.evaluation.scores import band, score

SIGMA, H, S = 0.01, 6, 64


def forecasts(n: int, spread: float, stride: int = H, seed: int = 0):
    """Origins `stride` rows apart, each with a drift the forecaster knows; samples at `spread` times the true sigma.

    Returns origins (N,), observed (N, H) and samples (N, S, H), all cumulated log returns."""
    rng = np.random.default_rng(seed)
    drift = rng.normal(0, 0.3 * SIGMA, (n, 1))  # (N, 1) per-hour drift
    observed = (drift + rng.normal(0, SIGMA, (n, H))).cumsum(1)
    samples = (drift[:, None] + rng.normal(0, spread * SIGMA, (n, S, H))).cumsum(2)
    return 100 + stride * np.arange(n), observed, samples


def test_known_means_closed_before_the_origin_opened():
    rule = known(np.array([10, 11, 13]), 2)  # [i, j]: origins[j] + 2 <= origins[i]
    np.testing.assert_array_equal(rule, [[False, False, False], [False, False, False], [True, True, False]])


def test_over_confidence_is_repaired_out_of_sample():
    origins, observed, samples = forecasts(1500, spread=1 / 3)
    raw, cal = score(samples, observed), calibrate(samples, observed, origins)
    assert np.all(raw.coverage["80"] < 0.5) and np.all(raw.coverage["95"] < 0.7)
    later = slice(500, None)
    fixed = score(cal.samples[later], observed[later], cal.upside_prob[later])
    exact = score(cal.samples[later], observed[later], cal.upside_prob[later],
                  bands={key: (lo[later], hi[later]) for key, (lo, hi) in cal.bands.items()})
    before = score(samples[later], observed[later])
    for result in (fixed, exact):
        for key, level in (("50", 0.5), ("80", 0.8), ("95", 0.95)):
            assert np.all(np.abs(result.coverage[key] - level) < 0.05), (key, result.coverage[key])
    assert np.all(fixed.crps < before.crps)
    assert np.all(fixed.brier_upside < before.brier_upside)
    assert np.all(fixed.log_loss_upside < before.log_loss_upside)
    assert cal.calibrated[later].all()


def test_too_few_known_pairs_keep_the_raw_values():
    origins, observed, samples = forecasts(60, spread=1 / 3)
    cal = calibrate(samples, observed, origins, min_count=30)
    counts = known(origins, 1).sum(1)  # stride H: every earlier origin is fully known
    np.testing.assert_array_equal(cal.calibrated, np.repeat((counts >= 30)[:, None], H, 1))
    np.testing.assert_array_equal(cal.n_calibrated, np.full(H, 30))
    raw = ~cal.calibrated[:, 0]
    np.testing.assert_array_equal(cal.samples[raw], samples[raw])
    np.testing.assert_array_equal(cal.upside_prob[raw], (samples[raw] > 0).mean(1))
    np.testing.assert_array_equal(cal.bands["80"][0][raw], band(samples, 0.8)[0][raw])
    assert np.all(np.diff(cal.samples[~raw], axis=1) >= 0)  # calibrated quantile sets are sorted


def snapshot(cal, i: int) -> list[np.ndarray]:
    """Everything calibrate says about origin i."""
    return [cal.samples[i], cal.upside_prob[i]] + [edge[i] for pair in cal.bands.values() for edge in pair]


def test_no_look_ahead():
    origins, observed, samples = forecasts(120, spread=1 / 3, stride=1, seed=1)  # overlapping: the rule matters
    i, min_count = 90, 10
    before = snapshot(calibrate(samples, observed, origins, min_count=min_count), i)
    unknown = origins[:, None] + np.arange(1, H + 1) > origins[i]  # (N, H) outcomes not known at i, by definition
    assert unknown.sum() > H * (len(origins) - i)  # more than the origins at or after i
    changed = np.where(unknown, np.random.default_rng(2).normal(0, 5 * SIGMA, observed.shape), observed)
    after = snapshot(calibrate(samples, changed, origins, min_count=min_count), i)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    lo, hi = band(samples, 0.5)
    past = np.flatnonzero(~unknown[:, 0])
    j = past[np.argmin(np.maximum(lo[past, 0] - observed[past, 0], observed[past, 0] - hi[past, 0]))]
    moved = observed.copy()
    moved[j, 0] = 1.0  # the best-covered known outcome becomes a far miss
    after = snapshot(calibrate(samples, moved, origins, min_count=min_count), i)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_calibrate_rejects_bad_origins():
    origins, observed, samples = forecasts(40, spread=1.0)
    with pytest.raises(ValueError):
        calibrate(samples, observed, origins.astype(float))
    with pytest.raises(ValueError):
        calibrate(samples, observed, origins[:-1])


def test_every_probability_map_repairs_over_confidence_and_keeps_a_useless_one_near_a_coin():
    from kronos.evaluation.probability import MAPS, recalibrate

    origins, observed, samples = forecasts(800, spread=1 / 3)
    count, order = known(origins, 1).sum(1), np.argsort(origins)
    raw, up = (samples[:, :, 0] > 0).mean(1), observed[:, 0] > 0
    noise = np.random.default_rng(9).uniform(0, 1, len(raw))  # no information at all
    later = slice(300, None)
    for method in MAPS:
        fixed, mapped = recalibrate(raw, up, count, order, method, 30, 1 / 130)
        assert mapped[later].all()
        assert np.mean((fixed[later] - up[later]) ** 2) < np.mean((raw[later] - up[later]) ** 2), method
        coin, _ = recalibrate(noise, up, count, order, method, 30, 1 / 130)
        assert np.mean((coin[later] - up[later]) ** 2) < 0.26, method


def test_a_probability_map_uses_only_pairs_known_at_its_origin():
    from kronos.evaluation.probability import MAPS, recalibrate

    origins, observed, samples = forecasts(200, spread=1 / 2)
    count, order = known(origins, 1).sum(1), np.argsort(origins)
    raw, up = (samples[:, :, 0] > 0).mean(1), observed[:, 0] > 0
    flipped = up.copy()
    flipped[150:] = ~flipped[150:]  # outcomes of origin 150 on: known from origin 151
    for method in MAPS:
        base, _ = recalibrate(raw, up, count, order, method, 30, 1 / 130)
        moved, _ = recalibrate(raw, flipped, count, order, method, 30, 1 / 130)
        np.testing.assert_array_equal(base[:151], moved[:151])
        assert not np.array_equal(base[151:], moved[151:])
