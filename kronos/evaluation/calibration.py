"""Calibration strictly from the past: a recalibrated upside probability, conformal bands and a conformal quantile set.

Origin i learns only from outcomes known when it opens: origin j's outcome h hours ahead is known iff
origins[j] + h <= origins[i] (`known`; its candle closed before origin i's row). Each hour ahead is calibrated on its
own. Where fewer than `min_count` pairs are known, the raw values stay and the mask `calibrated` says so.

Upside probability: a map of the raw probability fitted on the known pairs (kronos.evaluation.probability; by
default its DEFAULT_MAP; "isotonic" is the increasing isotonic regression this project used first).

Bands and quantiles: conformalized quantiles (CQR, Romano et al. 2019) on log returns. For a central level beta the
raw band [lo, hi] comes from the samples (`scores.band`); each known pair scores E = max(lo - y, y - hi), positive
outside the band and negative inside; Q is the ceil((n + 1) beta)-th smallest of the n known E; the calibrated band
is [lo - Q, hi + Q]. If past pairs and the new one are exchangeable it covers at least beta, marginally over origins.
Why CQR: an over-confident ensemble's samples all sit too close to the centre; recalibrating its PIT only relabels
which sample stands for which quantile and never reaches beyond the sample range, while an additive margin widens
(or, with Q < 0, narrows) the band as far as the past says. Caveat: markets drift between volatility regimes, so
exchangeability holds only roughly; all known pairs weigh the same, and the guarantee is as good as the past is like
the present.

This is done for the bands 0.5, 0.8 and 0.95 and for the central levels 1 - 2k/(S + 1), k = 1 .. S // 2, whose edges
are the k-th smallest and largest samples (the S-point quantile grid at k/(S + 1) of `scores.band`). Moving each
lower order statistic down and each upper one up by its level's Q (the median of an odd S stays) gives S calibrated
values per origin and hour, sorted to stay monotone, which `scores.score` scores as an ensemble. They are marginal
quantiles per hour: the link between the hours of a path is gone, so path quantities (volatility amplification)
must come from the raw paths. Where ceil((n + 1) beta) > n (extreme grid levels, little past) the largest known E
stands in for the infinite margin so the set stays finite; the named bands never need it once n >= 19.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kronos.errors import InvalidInputError
from kronos.evaluation.probability import DEFAULT_MAP, recalibrate
from kronos.evaluation.scores import LEVELS, band, check_forecasts, level_key

MIN_COUNT = 30


@dataclass(frozen=True, eq=False)
class Calibrated:
    """Calibrated forecasts; raw values where `calibrated` is False."""

    samples: np.ndarray  # (N, S, H) conformal quantile sets
    upside_prob: np.ndarray  # (N, H) isotonic
    bands: dict[str, tuple[np.ndarray, np.ndarray]]  # level key -> conformal lower, upper edges (N, H)
    calibrated: np.ndarray  # (N, H) bool
    n_calibrated: np.ndarray  # (H,) origins calibrated per hour


def known(origins: np.ndarray, hour: int) -> np.ndarray:
    """(N, N) bool, [i, j]: origin j's outcome `hour` hours ahead was known at origin i (origins[j] + hour <=
    origins[i])."""
    origins = np.asarray(origins)
    return origins[None, :] + hour <= origins[:, None]


def conformal_rank(n: int, levels) -> np.ndarray:
    """The 1-based rank, among n known nonconformity errors sorted ascending, of the margin that makes central bands
    of `levels` cover them: ceil((n + 1) level), capped at n (the largest error then stands in for infinity)."""
    return np.clip(np.ceil((n + 1) * np.asarray(levels) - 1e-9).astype(int), 1, n)


def prefix_order_statistics(values: np.ndarray, sizes: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """(M, L): for each prefix size m = sizes[i] and column l, the ranks[i, l]-th smallest (1-based) of
    values[:m, l] (values (N, L)), all at once: each column sorted once, prefix members counted along it."""
    by_value = np.argsort(values, axis=0, kind="stable")  # (N, L) rows in increasing value per column
    member = by_value.T[None] < sizes[:, None, None]  # (M, L, N): the t-th smallest lies in the prefix
    reached = member.cumsum(2) >= ranks[..., None]  # (M, L, N)
    first = reached.argmax(2)  # (M, L) where the prefix's rank-th smallest sits
    return np.take_along_axis(values, by_value, 0).T[np.arange(values.shape[1]), first]


def conformal_band(lo: np.ndarray, hi: np.ndarray, past_lo: np.ndarray, past_hi: np.ndarray, past_y: np.ndarray,
                   level: float) -> tuple[np.ndarray, np.ndarray]:
    """A band [lo, hi] widened (or narrowed) by the conformal margin of the known past bands and outcomes (n,)."""
    errors = np.sort(np.maximum(past_lo - past_y, past_y - past_hi))
    margin = errors[conformal_rank(len(errors), level) - 1]
    return lo - margin, hi + margin


def calibrate(samples, observed, origins, upside_prob=None, min_count: int = MIN_COUNT,
              upside_map: str = DEFAULT_MAP) -> Calibrated:
    """Calibrate each origin and hour on the outcomes known at that origin (see the module docstring).
    `upside_prob` (N, H) defaults to the share of samples above 0; `upside_map` names its probability map."""
    samples, observed = check_forecasts(samples, observed)
    n, s, horizon = samples.shape
    origins = np.asarray(origins)
    raw_prob = (samples > 0).mean(1) if upside_prob is None else np.asarray(upside_prob, float)  # (N, H)
    if origins.shape != (n,) or not np.issubdtype(origins.dtype, np.integer):
        raise InvalidInputError(f"origins must be (N,) = ({n},) integer row indices")
    if raw_prob.shape != (n, horizon) or not ((raw_prob >= 0) & (raw_prob <= 1)).all():
        raise InvalidInputError(f"upside_prob must be (N, H) = {(n, horizon)} probabilities in [0, 1]")
    if min_count < 1:
        raise InvalidInputError("min_count must be at least 1")
    half = s // 2
    levels = np.concatenate([LEVELS, 1 - 2 * np.arange(1, half + 1) / (s + 1)])  # (L,) = 3 bands + grid
    ordered = np.sort(samples, axis=1)  # (N, S, H)
    named = [band(samples, level) for level in LEVELS]  # lower, upper (N, H) each
    out, prob, mask = samples.copy(), raw_prob.copy(), np.zeros((n, horizon), bool)
    bands = {level_key(level): (lo.copy(), hi.copy()) for level, (lo, hi) in zip(LEVELS, named)}
    order = np.argsort(origins, kind="stable")  # the rule is monotone in origins[j]: known sets are prefixes of this
    for h in range(horizon):
        y = observed[:, h]
        lo = np.column_stack([edge[0][:, h] for edge in named] + [ordered[:, :half, h]])  # (N, L)
        hi = np.column_stack([edge[1][:, h] for edge in named] + [ordered[:, ::-1][:, :half, h]])  # (N, L)
        errors = np.maximum(lo - y[:, None], y[:, None] - hi)  # (N, L) nonconformity
        count = known(origins, h + 1).sum(1)  # (N,) known pairs per origin
        rows = count >= min_count
        sizes = np.unique(count[rows])  # (M,) distinct numbers of known pairs
        if len(sizes):
            margins = prefix_order_statistics(errors[order], sizes, conformal_rank(sizes[:, None], levels))  # (M, L)
            margin = margins[np.searchsorted(sizes, count[rows])]  # (r, L)
            new_lo, new_hi = lo[rows] - margin, hi[rows] + margin  # (r, L)
            for c, key in enumerate(bands):
                bands[key][0][rows, h], bands[key][1][rows, h] = new_lo[:, c], new_hi[:, c]
            grid = [new_lo[:, len(LEVELS):], ordered[rows, half:s - half, h], new_hi[:, len(LEVELS):][:, ::-1]]
            out[rows, :, h] = np.sort(np.concatenate(grid, axis=1), axis=1)  # (r, S)
            mask[rows, h] = True
        prob[:, h] = recalibrate(raw_prob[:, h], y > 0, count, order, upside_map, min_count, 1 / (2 * (s + 1)))[0]
    return Calibrated(out, prob, bands, mask, mask.sum(0))
