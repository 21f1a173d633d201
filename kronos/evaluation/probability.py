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
shared BTC/USDT hours (see the README's Track record section for the comparison).
"""

from __future__ import annotations

import numpy as np

from kronos.errors import InvalidInputError

MAPS = ("isotonic", "shrunk_isotonic", "platt", "beta")
DEFAULT_MAP = "platt"
SHRINK = 50  # pseudo-pairs at the base rate for "shrunk_isotonic"
RIDGE = 1.0  # pseudo-pairs' worth of pull toward the identity map for "platt" and "beta"
NEWTON_STEPS = 12  # from a coin, converged to 1e-15 by 8 steps on the tests' data; steps are capped at norm 1


def isotonic(prob: np.ndarray, outcome: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Increasing isotonic fit of outcomes on probabilities (ties pooled), read at the `new` probabilities by linear
    interpolation between the fitted knots (flat beyond the ends), clipped to [0, 1]."""
    knots, inverse, counts = np.unique(prob, return_inverse=True, return_counts=True)
    from scipy.optimize import isotonic_regression  # SciPy loads on first use (see kronos.evaluation.scores)

    fit = isotonic_regression(np.bincount(inverse, outcome, len(knots)) / counts, weights=counts).x
    return np.clip(np.interp(new, knots, fit), 0, 1)


def _features(prob: np.ndarray, method: str, eps: float) -> np.ndarray:
    p = np.clip(prob, eps, 1 - eps)
    if method == "platt":
        return np.stack([np.log(p / (1 - p)), np.ones_like(p)], -1)
    return np.stack([np.log(p), -np.log(1 - p), np.ones_like(p)], -1)


def _logistic(features: np.ndarray, outcome: np.ndarray, mask: np.ndarray, identity: np.ndarray) -> np.ndarray:
    """Ridge logistic fits (M, d) at once: features (N, d), outcome (N,), mask (M, N) of the pairs each fit uses."""
    d = len(identity)  # a fixed number of steps: each fit is the same whichever others run beside it
    theta = np.zeros((len(mask), d))  # Newton from 0 (a coin), its steps capped: no divergence
    outer = (features[:, :, None] * features[:, None, :]).reshape(len(features), d * d)  # (N, d d)
    ridge = RIDGE * np.eye(d)
    for _ in range(NEWTON_STEPS):
        mu = 1 / (1 + np.exp(-(theta @ features.T)))  # (M, N)
        gradient = (mask * (mu - outcome)) @ features + RIDGE * (theta - identity)  # (M, d)
        hessian = ((mask * mu * (1 - mu)) @ outer).reshape(-1, d, d) + ridge
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        theta = theta - step / np.maximum(1, np.linalg.norm(step, axis=-1, keepdims=True))
    return theta


def recalibrate(prob: np.ndarray, outcome: np.ndarray, count: np.ndarray, order: np.ndarray, method: str,
                min_count: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N,) mapped, for each origin, by the map fitted on its known pairs, the first count[i] of `order`
    (prob[order], outcome[order]); unchanged where fewer than `min_count` are known. Also the mask of those mapped."""
    if method not in MAPS:
        raise InvalidInputError(f"unknown probability map {method!r}: one of {', '.join(MAPS)}")
    prob, outcome = np.asarray(prob, float), np.asarray(outcome, float)
    out, mapped = prob.copy(), count >= min_count
    sizes = np.unique(count[mapped])
    if not len(sizes):
        return out, mapped
    if method in ("platt", "beta"):
        features = _features(prob, method, eps)
        identity = np.array([1.0, 0.0]) if method == "platt" else np.array([1.0, 1.0, 0.0])
        mask = (np.arange(len(prob))[None] < sizes[:, None]).astype(float)  # (M, N) over the ordered pairs
        theta = _logistic(features[order], outcome[order], mask, identity)  # (M, d)
        fit = theta[np.searchsorted(sizes, count[mapped])]  # (r, d)
        out[mapped] = 1 / (1 + np.exp(-(fit * features[mapped]).sum(-1)))
        return out, mapped
    for size in sizes:
        rows, past = count == size, order[:size]
        fitted = isotonic(prob[past], outcome[past], prob[rows])
        if method == "shrunk_isotonic":
            share = size / (size + SHRINK)
            fitted = share * fitted + (1 - share) * outcome[past].mean()
        out[rows] = fitted
    return out, mapped
