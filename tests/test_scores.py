"""Scores and baselines on closed forms and synthetic Gaussian random walks (log returns of the close)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import kstest, norm

from kronos.errors import InvalidInputError
from kronos.evaluation import baselines
from kronos.evaluation.scores import LEVELS, crps, murphy, score, skill, wilson

SIGMA, H, S, W = 0.01, 6, 64, 100


def walk(n_origins: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closes of a zero-drift Gaussian random walk, origins H rows apart, and each origin's observed log returns."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, SIGMA, W + 1 + n_origins * H)))
    origins = W + 1 + H * np.arange(n_origins)
    log_close = np.log(close)
    observed = log_close[origins[:, None] + np.arange(H)] - log_close[origins - 1][:, None]  # (N, H)
    return close, origins, observed


def test_crps_of_one_sample_is_the_absolute_error():
    rng = np.random.default_rng(0)
    samples, observed = rng.normal(size=(5, 1, 3)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(crps(samples, observed), np.abs(samples[:, 0] - observed), rtol=1e-12)


def test_crps_of_a_large_gaussian_sample_matches_the_closed_form():
    sigma, y = 0.02, np.array([[-0.03, 0.0, 0.01, 0.05]])  # (1, H)
    samples = np.random.default_rng(1).normal(0, sigma, (1, 40_000, 1)).repeat(4, axis=2)
    z = y / sigma
    exact = sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
    np.testing.assert_allclose(crps(samples, y), exact, rtol=0.02)


def test_a_constant_half_forecast_scores_a_quarter():
    rng = np.random.default_rng(2)
    result = score(rng.normal(size=(200, 9, 3)), rng.normal(size=(200, 3)), upside_prob=np.full((200, 3), 0.5))
    np.testing.assert_allclose(result.brier_upside, 0.25)
    np.testing.assert_allclose(result.log_loss_upside, np.log(2))
    np.testing.assert_allclose(result.hit_rate, 0.5)


def test_brier_decomposition_sums_to_the_brier_score_at_bin_centres():
    rng = np.random.default_rng(3)
    prob = rng.integers(0, 10, 5000) / 10 + 0.05  # bin centres 0.05 .. 0.95
    outcome = rng.uniform(size=5000) < np.clip(prob + rng.normal(0, 0.1, 5000), 0, 1)
    parts = murphy(prob, outcome)
    total = parts["reliability"] - parts["resolution"] + parts["uncertainty"]
    assert total == pytest.approx(np.mean((prob - outcome) ** 2), abs=1e-12)
    assert parts["resolution"] > 0.05 and parts["reliability"] > 0


def test_wilson_interval_of_eight_in_ten():
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)


@pytest.mark.parametrize("forecaster", ["truth", "random_walk"])
def test_a_calibrated_forecaster_covers_nominal_with_uniform_pit(forecaster):
    close, origins, observed = walk(1500, seed=4)
    rng = np.random.default_rng(5)
    if forecaster == "truth":
        samples = rng.normal(0, SIGMA, (len(origins), S, H)).cumsum(2)
    else:
        samples = baselines.random_walk(np.diff(np.log(baselines.trailing_closes(close, origins, W))), S, H, rng)
    result = score(samples, observed)
    for level in LEVELS:
        key = f"{level * 100:g}"
        width = result.coverage_high[key] - result.coverage_low[key]  # one Wilson interval on either side
        assert np.all(np.abs(result.coverage[key] - level) <= width), (key, result.coverage[key])
    assert all(kstest(result.pit[:, h], "uniform").pvalue > 1e-3 for h in range(H))


def test_pit_is_uniform_with_few_samples_and_many_ties():
    rng = np.random.default_rng(6)
    samples, observed = rng.integers(0, 4, (4000, 3, 2)).astype(float), rng.integers(0, 4, (4000, 2)).astype(float)
    pit = score(samples, observed).pit
    assert kstest(pit.ravel(), "uniform").pvalue > 1e-3
    assert kstest(((samples < observed[:, None]).sum(1) / 3).ravel(), "uniform").pvalue < 1e-6  # unrandomised


def test_to_dict_is_plain_json_with_none_for_empty_bins():
    rng = np.random.default_rng(7)
    result = score(rng.normal(size=(50, 8, 2)), rng.normal(size=(50, 2)), vol_prob=rng.uniform(size=50),
                   vol_outcome=rng.uniform(size=50) < 0.5).to_dict()
    text = json.dumps(result, allow_nan=False)
    assert {"crps", "brier_upside", "coverage", "pit", "brier_vol_amp"} <= set(json.loads(text))
    assert set(result["coverage"]) == {"50", "80", "95"} and len(result["crps"]) == 2
    assert None in result["reliability_by_hour"][0]["observed_frequency"]  # 8 samples cannot fill 10 bins


def test_skill_against_a_baseline():
    np.testing.assert_allclose(skill([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]), [0.5, 0.0, -0.5])


def test_score_rejects_mismatched_shapes():
    with pytest.raises(InvalidInputError):
        score(np.zeros((4, 3, 2)), np.zeros((4, 3)))
    with pytest.raises(InvalidInputError):
        score(np.zeros((4, 3, 2)), np.zeros((4, 2)), upside_prob=np.full((4, 2), 1.5))


def test_baselines_have_the_shape_and_repeat_with_the_seed():
    trailing = np.random.default_rng(8).normal(0, SIGMA, (7, 30))
    for make in (baselines.random_walk, baselines.bootstrap):
        first, again = (make(trailing, 11, 5, np.random.default_rng(9)) for _ in range(2))
        assert first.shape == (7, 11, 5)
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, make(trailing, 11, 5, np.random.default_rng(10)))


def test_bootstrap_draws_only_trailing_returns():
    trailing = np.random.default_rng(11).normal(0, SIGMA, (4, 20))
    steps = np.diff(baselines.bootstrap(trailing, 50, 6, np.random.default_rng(12)), axis=2, prepend=0)
    for i in range(4):
        assert np.isin(np.round(steps[i], 12), np.round(trailing[i], 12)).all()


def test_up_frequency_and_trailing_closes_by_hand():
    closes = np.array([[1.0, 2.0, 1.0, 3.0]])  # up, down, up; two steps: flat, up
    np.testing.assert_allclose(baselines.up_frequency(closes, 2), [[2 / 3, 1 / 2]])
    window = baselines.trailing_closes(np.arange(10.0), np.array([5, 9]), 3)  # rows origin - 4 .. origin - 1
    np.testing.assert_array_equal(window, [[1, 2, 3, 4], [5, 6, 7, 8]])
    with pytest.raises(InvalidInputError):
        baselines.trailing_closes(np.arange(10.0), np.array([3]), 3)
