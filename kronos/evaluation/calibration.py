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
from kronos.evaluation.probability import DEFAULT_MAP, Maps, fit_maps, unmapped
from kronos.evaluation.scores import LEVELS, band, check_forecasts, level_key

MIN_COUNT = 30
FEW_PREFIXES = 8  # prefix_order_statistics sorts up to so many prefixes one by one


@dataclass(frozen=True, eq=False)
class Calibrated:
    """Calibrated forecasts; raw values where `calibrated` is False."""

    samples: np.ndarray  # (N, S, H) conformal quantile sets
    upside_prob: np.ndarray  # (N, H) mapped
    bands: dict[str, tuple[np.ndarray, np.ndarray]]  # level key -> conformal lower, upper edges (N, H)
    calibrated: np.ndarray  # (N, H) bool
    n_calibrated: np.ndarray  # (H,) origins calibrated per hour


def known(origins: np.ndarray, hour: int) -> np.ndarray:
    """(N, N) bool, [i, j]: origin j's outcome `hour` hours ahead was known at origin i (origins[j] + hour <=
    origins[i])."""
    origins = np.asarray(origins)
    return origins[None, :] + hour <= origins[:, None]


def known_counts(known_rows: np.ndarray, rows: np.ndarray, horizon: int) -> np.ndarray:
    """(R, H): how many of the origins `known_rows` (sorted) had their outcome h hours ahead known at each row (the
    `known` rule); those are the first ones of `known_rows`, whatever the row."""
    return np.searchsorted(known_rows, np.asarray(rows)[:, None] - np.arange(1, horizon + 1), side="right")


def conformal_rank(n: int, levels) -> np.ndarray:
    """The 1-based rank, among n known nonconformity errors sorted ascending, of the margin that makes central bands
    of `levels` cover them: ceil((n + 1) level), capped at n (the largest error then stands in for infinity)."""
    return np.clip(np.ceil((n + 1) * np.asarray(levels) - 1e-9).astype(int), 1, n)


def prefix_order_statistics(values: np.ndarray, sizes: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """(M, L): for each prefix size m = sizes[i] (increasing) and column l, the ranks[i, l]-th smallest (1-based) of
    values[:m, l] (values (N, L)). A few prefixes are sorted each; many share one pass that inserts the values in
    order into a Fenwick tree over their ranks in each column and reads every prefix's rank-th member off it, all
    columns at once: O(N log N) per column however many prefixes."""
    if len(sizes) <= FEW_PREFIXES:
        return np.stack([np.take_along_axis(np.sort(values[:m], 0), r[None] - 1, 0)[0] for m, r in zip(sizes, ranks)])
    n, width = values.shape
    by_value = np.argsort(values, axis=0, kind="stable")  # (N, L) rows in increasing value per column
    place = np.empty_like(by_value)  # place[j, l]: the rank (0-based) of row j's value in column l
    np.put_along_axis(place, by_value, np.broadcast_to(np.arange(n)[:, None], by_value.shape), 0)
    tree, columns, out = np.zeros((width, n + 1), np.int64), np.arange(width), np.empty((len(sizes), width))
    top = 1 << (n.bit_length() - 1)  # the largest power of two up to n
    for i, size in enumerate(sizes):
        for row in range(sizes[i - 1] if i else 0, size):  # insert the rows up to the prefix's end
            at = place[row] + 1  # 1-based tree index per column
            while (live := at <= n).any():
                tree[columns[live], at[live]] += 1
                at = at + (at & -at)
        found, left, step = np.zeros(width, np.int64), ranks[i].astype(np.int64), top
        while step:  # descend to the last index whose prefix count is below the rank: the rank-th member follows it
            ahead = found + step
            count = tree[columns, np.minimum(ahead, n)]
            go = (ahead <= n) & (count < left)
            found, left, step = np.where(go, ahead, found), np.where(go, left - count, left), step // 2
        out[i] = values[by_value[found, columns], columns]
    return out


def conformal_band(lo: np.ndarray, hi: np.ndarray, past_lo: np.ndarray, past_hi: np.ndarray, past_y: np.ndarray,
                   level: float) -> tuple[np.ndarray, np.ndarray]:
    """A band [lo, hi] widened (or narrowed) by the conformal margin of the known past bands and outcomes (n,)."""
    errors = np.sort(np.maximum(past_lo - past_y, past_y - past_hi))
    margin = errors[conformal_rank(len(errors), level) - 1]
    return lo - margin, hi + margin


def calibration_levels(samples: int) -> np.ndarray:
    """(L,) the central levels calibrated: the named bands, then the quantile grid's 1 - 2k / (S + 1)."""
    return np.concatenate([LEVELS, 1 - 2 * np.arange(1, samples // 2 + 1) / (samples + 1)])


@dataclass(frozen=True, eq=False)
class Edges:
    """An ensemble's raw band edges at the calibration's levels, per hour: what its margins move."""

    samples: np.ndarray  # (N, S, H) as issued
    ordered: np.ndarray  # (N, S, H) sorted along S
    lo: np.ndarray  # (N, H, L) lower edges: the named bands', then the k-th smallest samples
    hi: np.ndarray  # (N, H, L) upper edges: the named bands', then the k-th largest samples


def edges(samples: np.ndarray) -> Edges:
    """The edges of ensembles (N, S, H) at `calibration_levels(S)`."""
    half = samples.shape[1] // 2
    ordered = np.sort(samples, axis=1)
    named = [band(samples, level) for level in LEVELS]  # lower, upper (N, H) each
    lo = np.concatenate([np.stack([lo for lo, _ in named], -1), ordered[:, :half].transpose(0, 2, 1)], -1)
    hi = np.concatenate([np.stack([hi for _, hi in named], -1), ordered[:, ::-1][:, :half].transpose(0, 2, 1)], -1)
    return Edges(samples, ordered, lo, hi)


def nonconformity(found: Edges, observed: np.ndarray) -> np.ndarray:
    """(N, H, L) each edge pair's error max(lo - y, y - hi) against the outcomes (N, H): positive outside."""
    return np.maximum(found.lo - observed[..., None], observed[..., None] - found.hi)


@dataclass(frozen=True, eq=False)
class CalibrationFit:
    """What a calibration learnt at R runs: per hour and level the conformal margin, and the upside maps."""

    margins: np.ndarray  # (R, H, L), 0 where not calibrated
    calibrated: np.ndarray  # (R, H) bool: min_count known pairs or more
    maps: Maps  # (R, H) upside probability maps

    def apply(self, found: Edges, upside_prob: np.ndarray) -> Calibrated:
        """The runs' ensembles (their `edges`) and raw upside probabilities (R, H), calibrated."""
        lo, hi, ordered = found.lo - self.margins, found.hi + self.margins, found.ordered
        named, half, s = len(LEVELS), ordered.shape[1] // 2, ordered.shape[1]
        keep = ~self.calibrated
        bands = {level_key(level): (np.where(keep, found.lo[..., c], lo[..., c]),
                                    np.where(keep, found.hi[..., c], hi[..., c])) for c, level in enumerate(LEVELS)}
        grid = np.concatenate([lo[..., named:], ordered[:, half:s - half].transpose(0, 2, 1),
                               hi[..., named:][..., ::-1]], -1)  # (R, H, S)
        samples = np.where(keep[:, None], found.samples, np.sort(grid, -1).transpose(0, 2, 1))
        return Calibrated(samples, self.maps(upside_prob), bands, self.calibrated, self.calibrated.sum(0))


def fit_calibration(errors: np.ndarray, upside_prob: np.ndarray, up: np.ndarray, count: np.ndarray, samples: int,
                    min_count: int, upside_map: str | None) -> CalibrationFit:
    """The calibration at R runs from the known pairs, in the order they became known: errors (P, H, L)
    (`nonconformity`), raw upside probabilities and outcomes (P, H); run r learns per hour h from the first
    count[r, h] of them (`known_counts`), when there are min_count or more. `upside_map` None: no map is fitted,
    the upside probabilities stay raw."""
    levels, calibrated = calibration_levels(samples), count >= min_count
    (runs, horizon), width = count.shape, len(levels)
    margins = np.zeros((runs, horizon, width))
    sizes = np.unique(count[calibrated])  # (M,) distinct numbers of known pairs, over every hour
    if len(sizes):
        ranks = np.tile(conformal_rank(sizes[:, None], levels), horizon)  # (M, H L), column h L + l
        found = prefix_order_statistics(errors.reshape(len(errors), -1), sizes, ranks).reshape(-1, horizon, width)
        rows, hours = np.nonzero(calibrated)
        margins[rows, hours] = found[np.searchsorted(sizes, count[rows, hours]), hours]
    maps = unmapped(count) if upside_map is None else fit_maps(upside_prob, up, count, upside_map, min_count,
                                                              1 / (2 * (samples + 1)))
    return CalibrationFit(margins, calibrated, maps)


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
    order = np.argsort(origins, kind="stable")  # the rule is monotone in origins[j]: known sets are prefixes of this
    found = edges(samples)
    count = known_counts(origins[order], origins, horizon)  # (N, H)
    fit = fit_calibration(nonconformity(found, observed)[order], raw_prob[order], (observed > 0)[order], count, s,
                          min_count, upside_map)
    return fit.apply(found, raw_prob)
