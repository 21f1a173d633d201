"""The combined forecast's pool on sample arrays (no torch): a good forecaster earns weight, a useless one does not,
the weights are the exact CRPS minimum over the simplex, and nothing is learnt from outcomes not yet known."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from kronos.evaluation import baselines
from kronos.evaluation.pooling import crps_terms, mixture_quantiles, pool, simplex_minimum
from kronos.evaluation.scores import crps

H, S, EVERY = 6, 30, 6


def market(seed: int = 1, rows: int = 3000):
    """Closes whose log volatility follows a known AR(1), and the true sigma of each row's return."""
    rng = np.random.default_rng(seed)
    log_sigma = np.zeros(rows)
    for t in range(1, rows):
        log_sigma[t] = 0.98 * log_sigma[t - 1] + 0.2 * rng.standard_normal()
    sigma = 0.01 * np.exp(log_sigma)
    close = 100 * np.exp(np.concatenate([[0], (sigma * rng.standard_normal(rows)).cumsum()]))
    return close, np.concatenate([[np.nan], sigma])  # sigma[t]: the sd of row t's return


def contenders(seed: int = 1, n: int = 300):
    """Origins, outcomes and the ensembles of an oracle (the true sigmas ahead), a useless forecaster (ten times too
    confident, wrong sign of drift), a random walk and an EWMA."""
    close, sigma = market(seed)
    rng = np.random.default_rng(seed + 1)
    origins = np.arange(400, len(close) - H, EVERY)[:n]
    ahead = origins[:, None] + np.arange(H)  # (N, H) rows forecast
    observed = np.log(close[ahead] / close[origins - 1, None])
    trailing = np.diff(np.log(baselines.trailing_closes(close, origins, 200)), axis=1)
    oracle = (rng.standard_normal((n, S, H)) * sigma[ahead][:, None]).cumsum(2)
    useless = 0.02 + (rng.standard_normal((n, S, H)) * 0.001).cumsum(2)
    return origins, observed, {"oracle": oracle, "useless": useless,
                               "random_walk": baselines.random_walk(trailing, S, H, rng),
                               "ewma": baselines.ewma(trailing, S, H, rng)}


def test_the_oracle_earns_most_weight_and_the_pool_beats_the_random_walk():
    origins, observed, components = contenders()
    mixed = pool(components, observed, origins, min_count=30)
    learnt = mixed.pooled[:, 0]
    weights = mixed.weights[learnt].mean(0)  # (K, H)
    assert (weights[0] > 0.5).all()  # the oracle
    assert (weights[1] < 0.05).all()  # the useless forecaster
    later = slice(60, None)
    pooled, walk = crps(mixed.samples[later], observed[later]), crps(components["random_walk"][later],
                                                                       observed[later])
    assert (pooled.mean(0) < walk.mean(0)).all()


def test_before_min_count_known_outcomes_the_pool_is_the_default_baseline_alone():
    origins, observed, components = contenders(n=60)
    mixed = pool(components, observed, origins, min_count=30)
    count = (origins[None, :] + 1 <= origins[:, None]).sum(1)  # known at hour 1 (EVERY >= H: every hour alike)
    np.testing.assert_array_equal(mixed.pooled[:, 0], count >= 30)
    alone = ~mixed.pooled[:, 0]
    np.testing.assert_array_equal(mixed.weights[alone][:, :, 0], np.tile([0, 0, 0, 1], (alone.sum(), 1)))
    np.testing.assert_allclose(np.sort(mixed.samples[alone], 1),  # the EWMA's own quantile grid
                               mixture_quantiles(components["ewma"][alone][:, None], np.ones((alone.sum(), 1, H))))


def test_weights_never_see_outcomes_unknown_at_their_origin():
    origins, observed, components = contenders(n=120)
    base = pool(components, observed, origins, min_count=20)
    changed = observed.copy()
    changed[80:] *= 3  # outcomes of origin 80 on: unknown before origin 81
    moved = pool(components, changed, origins, min_count=20)
    np.testing.assert_array_equal(base.weights[:81], moved.weights[:81])
    assert not np.array_equal(base.weights[81:], moved.weights[81:])


def test_the_mixture_crps_is_the_quadratic_of_the_terms_and_its_minimum_is_exact():
    rng = np.random.default_rng(3)
    components = rng.normal(0, [[[[1.0]]], [[[2.0]]], [[[0.5]]]], (3, 8, 10, 1)).transpose(1, 0, 2, 3)  # (N, K, S, H)
    observed = rng.normal(0, 1, (8, 1))
    a, b = crps_terms(components, observed)
    w = np.array([0.2, 0.5, 0.3])
    ensemble = np.concatenate([np.repeat(components[:, k], [2, 5, 3][k], axis=1) for k in range(3)], axis=1)
    np.testing.assert_allclose(a[:, 0] @ w - 0.5 * np.einsum("nk,nkl,nl->n", w[None], b[:, 0], w[None]),
                               crps(ensemble, observed)[:, 0])  # equal counts: the weighted ensemble exactly
    mean_a, mean_b = a[:, 0].mean(0), b[:, 0].mean(0)
    best = simplex_minimum(mean_a, mean_b)
    grid = [np.array(p) / 20 for p in itertools.product(range(21), repeat=3) if sum(p) == 20]
    value = [g @ mean_a - 0.5 * g @ mean_b @ g for g in grid]
    assert best @ mean_a - 0.5 * best @ mean_b @ best <= min(value) + 1e-12
    assert best.sum() == pytest.approx(1) and (best >= 0).all()


def test_the_quantile_grid_of_one_component_is_its_order_statistics():
    rng = np.random.default_rng(4)
    one = rng.normal(size=(5, 1, 9, 2))
    np.testing.assert_allclose(mixture_quantiles(one, np.ones((5, 1, 2))), np.sort(one[:, 0], axis=1))


def test_through_the_backtest_flow_an_oracle_model_leads_the_combined_forecast():
    """The same market through forecasters.evaluate: the oracle as "the model", calibrated, pooled with every
    baseline."""
    from kronos.evaluation.issuing import evaluate, runs_at

    close, sigma = market(seed=2)
    rng = np.random.default_rng(5)
    origins = np.arange(400, len(close) - H, EVERY)[:300]
    ahead = origins[:, None] + np.arange(H)
    observed = np.log(close[ahead] / close[origins - 1, None])
    oracle = (rng.standard_normal((len(origins), S, H)) * sigma[ahead][:, None]).cumsum(2)
    stamps = pd.date_range("2024-01-01", periods=len(close), freq="h")
    runs = runs_at(close, stamps, origins, oracle, np.full(len(origins), 0.5), len(origins), 200, 0)
    issued = evaluate(runs, min_count=30).issue
    learnt = issued.pool.pooled[:, 0]
    assert (issued.pool.weights[learnt, 0].mean(0) > 0.5).all()  # model_calibrated
    later = slice(60, None)
    combined = crps(issued.forecasters["combined"].samples[later], observed[later]).mean(0)
    walk = crps(issued.forecasters["random_walk"].samples[later], observed[later]).mean(0)
    assert (combined < walk).all()
