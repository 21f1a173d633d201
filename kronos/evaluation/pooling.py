"""The combined forecast: per hour ahead, a linear pool of the calibrated model and the baselines, weighted by the past
(its components, in the order of its weights: kronos.evaluation.registry.components).

Origin i's weights for hour h minimise the mean CRPS, over the pairs whose outcome h hours ahead was known at i (the
`known` rule of kronos.evaluation.calibration), of the mixture sum_k w_k F_k of the components' ensembles, w on the
simplex. For ensembles the mixture's CRPS is exact and quadratic in w: with A_k = mean_s |x_ks - y| and
B_kl = mean_{s,t} |x_ks - x_lt|, CRPS(w) = w.A - w'Bw / 2 (the energy form of the empirical CDF's CRPS, equal to the
"qd" estimator scores.crps uses). |x - y| is a negative definite kernel, so CRPS(w) is convex on the simplex: the
minimum is the best of the stationary points of its faces (each a small linear system; K components give 2^K - 1),
solved for every origin and hour at once. Until `min_count` pairs are known the components have not earned weight
and the pool is DEFAULT (the EWMA baseline, the best simple model the issue measured) alone; `pooled` says where.

The pool is issued as the S-point quantile grid of the mixture (levels k / (S + 1), as `scores.band` reads bands),
scored as an ensemble like the calibrated model's quantile set. Its upside probability is the mixture's,
sum_k w_k P_k(up), and its volatility amplification probability sum_k w_k V_k with the weights averaged over the
hours (V of the calibrated model: the raw paths', which the calibration keeps). Both are then recalibrated by the
past (kronos.evaluation.probability) and the bands get conformal margins (kronos.evaluation.calibration).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from kronos.errors import InvalidInputError
from kronos.evaluation.calibration import known_counts

DEFAULT = "ewma"  # the pool before enough outcomes are known


@dataclass(frozen=True, eq=False)
class Pool:
    """The mixture at every origin: its quantile grid, upside probability and weights (raw mixture, before the
    probability maps and conformal margins)."""

    names: tuple[str, ...]
    samples: np.ndarray  # (N, S, H) quantile grid of the mixture
    upside_prob: np.ndarray  # (N, H)
    weights: np.ndarray  # (N, K, H), summing to 1 over K
    pooled: np.ndarray  # (N, H) bool: weights learnt from min_count known pairs or more (else DEFAULT alone)


def crps_terms(components: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (N, H, K) = mean_s |x_ks - y| and B (N, H, K, K) = mean_{s,t} |x_ks - x_lt| of components (N, K, S, H).

    B from the empirical CDFs: E|X - Y| = integral of F_X (1 - F_Y) + F_Y (1 - F_X), exact between the sorted
    values of all components."""
    n, k, s, horizon = components.shape
    a = np.abs(components - observed[:, None, None]).mean(2).transpose(0, 2, 1)  # (N, H, K)
    values = components.transpose(0, 3, 1, 2).reshape(n, horizon, k * s)  # (N, H, K S)
    order = np.argsort(values, axis=2)
    gaps = np.diff(np.take_along_axis(values, order, 2), axis=2)  # (N, H, K S - 1)
    owner = np.repeat(np.arange(k), s)[order]  # (N, H, K S): the component of each sorted value
    cdf = (np.eye(k)[owner].cumsum(2) / s)[:, :, :-1]  # (N, H, K S - 1, K): F_k between sorted values
    weighted = cdf * gaps[..., None]
    b = weighted.sum(2)[..., :, None] + weighted.sum(2)[..., None, :] - 2 * np.einsum("nhtk,nhtl->nhkl", weighted, cdf)
    return a, b


def simplex_minimum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Weights (..., K) on the simplex minimising w.a - w'bw / 2 for each a (..., K), b (..., K, K) (b conditionally
    negative definite, so the problem is convex): the best feasible stationary point over the faces."""
    k = a.shape[-1]
    best, best_value = np.zeros(a.shape), np.full(a.shape[:-1], np.inf)
    for size in range(1, k + 1):
        for face in itertools.combinations(range(k), size):
            idx = list(face)
            system = np.zeros((*a.shape[:-1], size + 1, size + 1))  # KKT: -b w + lambda 1 = -a, 1'w = 1
            system[..., :size, :size] = -b[..., idx, :][..., idx]
            system[..., :size, size] = system[..., size, :size] = 1
            right = np.concatenate([-a[..., idx], np.ones((*a.shape[:-1], 1))], axis=-1)
            try:
                solved = np.linalg.solve(system, right[..., None])[..., :size, 0]
            except np.linalg.LinAlgError:  # twin components: a face without a unique stationary point
                solved = (np.linalg.pinv(system) @ right[..., None])[..., :size, 0]
            w = np.zeros(a.shape)
            w[..., idx] = solved
            value = (w * a).sum(-1) - 0.5 * np.einsum("...k,...kl,...l->...", w, b, w)
            ok = (solved >= -1e-9).all(-1) & (np.abs(solved.sum(-1) - 1) < 1e-6) & (value < best_value - 1e-15)
            best = np.where(ok[..., None], np.clip(w, 0, None), best)
            best_value = np.where(ok, value, best_value)
    total = best.sum(-1, keepdims=True)
    return np.where(total > 0, best / np.where(total > 0, total, 1), 1 / k)  # no pair known: filled by the caller


@dataclass(frozen=True, eq=False)
class PoolFit:
    """The pool's weights learnt at R runs."""

    weights: np.ndarray  # (R, K, H), summing to 1 over K
    pooled: np.ndarray  # (R, H) bool: learnt from min_count known pairs or more (else the default alone)

    def apply(self, names: tuple[str, ...], components: np.ndarray) -> Pool:
        """The runs' mixture of components (R, K, S, H): its quantile grid and upside probability."""
        upside = (self.weights * (components > 0).mean(2)).sum(1)  # (R, H)
        return Pool(names, mixture_quantiles(components, self.weights), upside, self.weights, self.pooled)


def fit_pool(a: np.ndarray, b: np.ndarray, count: np.ndarray, min_count: int, default: int) -> PoolFit:
    """The weights at R runs from the CRPS terms (`crps_terms`) A (P, H, K) and B (P, H, K, K) of the known pairs, in
    the order they became known: run r's weights for hour h minimise the mean CRPS over the first count[r, h] pairs
    (see the module docstring), when there are min_count or more; component `default` alone elsewhere."""
    k = a.shape[2]
    a_sum = np.concatenate([np.zeros((1, *a.shape[1:])), a.cumsum(0)])  # (P + 1, H, K): sums over the first p pairs
    b_sum = np.concatenate([np.zeros((1, *b.shape[1:])), b.cumsum(0)])
    pooled = count >= min_count
    weights = np.tile(np.eye(k)[default], (*count.shape, 1))  # (R, H, K)
    rows, hours = np.nonzero(pooled)
    used = count[rows, hours]
    weights[rows, hours] = simplex_minimum(a_sum[used, hours] / used[:, None], b_sum[used, hours] / used[:, None, None])
    return PoolFit(weights.transpose(0, 2, 1), pooled)


def mixture_quantiles(components: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The S-point quantile grid (N, S, H), levels j / (S + 1), of the mixture of components (N, K, S, H) with
    weights (N, K, H), each component's S samples sharing its weight."""
    n, k, s, horizon = components.shape
    values = components.transpose(0, 3, 1, 2).reshape(n, horizon, k * s)  # (N, H, K S)
    mass = np.repeat(weights.transpose(0, 2, 1) / s, s, axis=2)  # (N, H, K S)
    order = np.argsort(values, axis=2, kind="stable")
    values, cumulative = np.take_along_axis(values, order, 2), np.take_along_axis(mass, order, 2).cumsum(2)
    levels = np.arange(1, s + 1) / (s + 1)
    index = (cumulative[..., None, :] < levels[:, None] - 1e-12).sum(-1)  # (N, H, S): first reaching each level
    return np.take_along_axis(values, np.minimum(index, k * s - 1), 2).transpose(0, 2, 1)


def pool(components: dict[str, np.ndarray], observed: np.ndarray, origins: np.ndarray, min_count: int,
         default: str = DEFAULT) -> Pool:
    """The linear pool of `components` (name -> log-return ensembles (N, S, H), the same S) at every origin, with
    weights chosen from the past only; `observed` (N, H) rows not yet known (a latest origin) may hold anything."""
    names = tuple(components)
    if default not in names:
        raise InvalidInputError(f"the default component {default!r} is not among {names}")
    stacked = np.stack([np.asarray(components[name], float) for name in names], axis=1)  # (N, K, S, H)
    if stacked.ndim != 4 or observed.shape != (stacked.shape[0], stacked.shape[3]):
        raise InvalidInputError(f"components must be (N, S, H) with observed (N, H); got {stacked.shape[1:]} and "
                                f"{observed.shape}")
    order = np.argsort(origins, kind="stable")  # known sets are prefixes of this order (see calibration.calibrate)
    a, b = crps_terms(stacked, observed)  # (N, H, K), (N, H, K, K)
    count = known_counts(np.asarray(origins)[order], origins, stacked.shape[3])  # (N, H)
    return fit_pool(a[order], b[order], count, min_count, names.index(default)).apply(names, stacked)
