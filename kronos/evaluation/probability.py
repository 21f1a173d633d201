"""Recalibration maps of a probability, learnt strictly from the past: each origin's map is fitted on the pairs
(probability, outcome) known there and read at its own probability.

Maps (MAPS), all fitted per hour ahead on the known pairs (the `known` rule of kronos.evaluation.calibration):
- "isotonic": increasing isotonic regression (calibration.isotonic); flexible, so it can fit noise: read at new
  probabilities near 0.5 its steps can land on the wrong side of a coin.
- "shrunk_isotonic": the isotonic fit shrunk toward the known base rate, n / (n + SHRINK) of the way.
- "platt": logistic regression of the outcome on logit(p) (Platt 1999), two parameters.
- "beta": logistic regression on (ln p, -ln(1 - p), 1) (Kull et al. 2017), three parameters; includes the identity.
The logistic maps are fitted by Newton's method with a ridge of RIDGE pseudo-pairs toward the identity map, so a few
pairs cannot bend them far; probabilities are kept at least eps = 1 / (2 (S + 1)) from 0 and 1 (the half-count rule
of scores.log_loss). DEFAULT_MAP is the one the combined forecast uses: "platt", which scored best out of sample on the
shared BTC/USDT hours (see docs/track-record.md for the comparison).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kronos.errors import InvalidInputError

MAPS = ("isotonic", "shrunk_isotonic", "platt", "beta")
DEFAULT_MAP = "platt"
SHRINK = 50  # pseudo-pairs at the base rate for "shrunk_isotonic"
RIDGE = 1.0  # pseudo-pairs' worth of pull toward the identity map for "platt" and "beta"
NEWTON_STEPS = 12  # from a coin, converged to 1e-15 by 8 steps on the tests' data; steps are capped at norm 1
FITS_AT_ONCE = 32  # runs whose logistic fits run together (every column at once): each reads only the pairs it needs


def isotonic(prob: np.ndarray, outcome: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Increasing isotonic fit of outcomes on probabilities (ties pooled): its knots and fitted values, read at new
    probabilities by linear interpolation between the knots (flat beyond the ends), clipped to [0, 1]."""
    knots, inverse, counts = np.unique(prob, return_inverse=True, return_counts=True)
    from scipy.optimize import isotonic_regression  # SciPy loads on first use (see kronos.evaluation.scores)

    return knots, isotonic_regression(np.bincount(inverse, outcome, len(knots)) / counts, weights=counts).x


def _features(prob: np.ndarray, method: str, eps: float) -> np.ndarray:
    p = np.clip(prob, eps, 1 - eps)
    if method == "platt":
        return np.stack([np.log(p / (1 - p)), np.ones_like(p)], -1)
    return np.stack([np.log(p), -np.log(1 - p), np.ones_like(p)], -1)


def _logistic(features: np.ndarray, outcome: np.ndarray, mask: np.ndarray, identity: np.ndarray) -> np.ndarray:
    """Ridge logistic fits (..., M, d) at once: features (..., N, d), outcome (..., N), mask (..., M, N) of the pairs
    each fit uses (leading axes: independent sets of pairs, e.g. the hours)."""
    d = len(identity)  # a fixed number of steps: each fit is the same whichever others run beside it
    theta = np.zeros((*mask.shape[:-1], d))  # Newton from 0 (a coin), its steps capped: no divergence
    outer = (features[..., :, None] * features[..., None, :]).reshape(*features.shape[:-1], d * d)  # (..., N, d d)
    ridge, across = RIDGE * np.eye(d), np.swapaxes(features, -1, -2)  # across: (..., d, N)
    for _ in range(NEWTON_STEPS):
        mu = 1 / (1 + np.exp(-(theta @ across)))  # (..., M, N)
        gradient = (mask * (mu - outcome[..., None, :])) @ features + RIDGE * (theta - identity)  # (..., M, d)
        hessian = ((mask * mu * (1 - mu)) @ outer).reshape(*theta.shape, d) + ridge
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        theta = theta - step / np.maximum(1, np.linalg.norm(step, axis=-1, keepdims=True))
    return theta


@dataclass(frozen=True, eq=False)
class Maps:
    """Probability maps fitted at R runs, one per run and column (an hour ahead), each on the pairs known at its run;
    the identity where fewer than min_count are known (`mapped` False). Read with `maps(prob)`."""

    method: str
    eps: float
    count: np.ndarray  # (R, C) known pairs
    mapped: np.ndarray  # (R, C) bool
    theta: np.ndarray | None = None  # (R, C, d): "platt" and "beta" parameters
    steps: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, float, float]] | None = None  # isotonic, see fit_maps

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        """Probabilities (R, C), each read through its run's and column's map."""
        prob = np.asarray(prob, float)
        if self.theta is not None:
            mapped = 1 / (1 + np.exp(-(self.theta * _features(prob, self.method, self.eps)).sum(-1)))
            return np.where(self.mapped, mapped, prob)
        out = prob.copy()
        for (column, size), (knots, fit, share, base) in (self.steps or {}).items():
            rows = self.mapped[:, column] & (self.count[:, column] == size)
            out[rows, column] = share * np.clip(np.interp(prob[rows, column], knots, fit), 0, 1) + (1 - share) * base
        return out


def fit_maps(prob: np.ndarray, outcome: np.ndarray, count: np.ndarray, method: str, min_count: int,
             eps: float) -> Maps:
    """The maps at R runs, per column: run r's map of column c is fitted on the first count[r, c] pairs (prob,
    outcome) (P, C), the pairs in the order they became known; unmapped where fewer than `min_count` are known."""
    if method not in MAPS:
        raise InvalidInputError(f"unknown probability map {method!r}: one of {', '.join(MAPS)}")
    prob, outcome, count = np.asarray(prob, float), np.asarray(outcome, float), np.asarray(count)
    mapped = count >= min_count
    if method in ("platt", "beta"):
        identity = np.array([1.0, 0.0]) if method == "platt" else np.array([1.0, 1.0, 0.0])
        features = np.swapaxes(_features(prob, method, eps), 0, 1)  # (C, P, d)
        theta = np.zeros((*count.shape, len(identity)))  # (R, C, d)
        rows = np.flatnonzero(mapped.any(1))
        rows = rows[np.argsort(count[rows].max(1), kind="stable")]
        for start in range(0, len(rows), FITS_AT_ONCE):  # fits of similar counts together: the pairs they read
            part = rows[start:start + FITS_AT_ONCE]
            reach = count[part].max()
            mask = np.arange(reach) < count[part].T[..., None]  # (C, R', P') over the ordered pairs
            fitted = _logistic(features[:, :reach], outcome[:reach].T, mask.astype(float), identity)
            theta[part] = np.swapaxes(fitted, 0, 1)
        return Maps(method, eps, count, mapped, theta=theta)
    steps = {}
    for column in range(count.shape[1]):
        for size in np.unique(count[mapped[:, column], column]):
            knots, fit = isotonic(prob[:size, column], outcome[:size, column])
            share = size / (size + SHRINK) if method == "shrunk_isotonic" else 1.0
            steps[column, int(size)] = knots, fit, share, float(outcome[:size, column].mean())
    return Maps(method, eps, count, mapped, steps=steps)


def unmapped(count: np.ndarray) -> Maps:
    """Maps at R runs (count (R, C)) that keep every probability as it is: for runs whose mapped values nobody reads."""
    return Maps("identity", 0.0, count, np.zeros(count.shape, bool))


def recalibrate(prob: np.ndarray, outcome: np.ndarray, count: np.ndarray, order: np.ndarray, method: str,
                min_count: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N,) mapped, for each origin, by the map fitted on its known pairs, the first count[i] of `order`
    (prob[order], outcome[order]); unchanged where fewer than `min_count` are known. Also the mask of those mapped."""
    prob, outcome = np.asarray(prob, float), np.asarray(outcome, float)
    maps = fit_maps(prob[order][:, None], outcome[order][:, None], np.asarray(count)[:, None], method, min_count, eps)
    return maps(prob[:, None])[:, 0], maps.mapped[:, 0]
