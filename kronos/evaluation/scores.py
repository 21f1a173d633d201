"""Scores of probabilistic close forecasts: one `score` for the model, each baseline and the calibrated model.

Conventions: N origins, S sample paths, H hours ahead. Everything is on the close, as log returns relative to the
origin's last known close: `samples` (N, S, H) = log(path_close / last_close), `observed` (N, H) =
log(realised_close / last_close). Log returns make origins comparable (a 1% move scores alike at any price level)
and keep scores in one unit. "Up" means a strictly positive log return.

Band edges are sample quantiles interpolated linearly between order statistics placed at k/(S+1) (Hyndman-Fan type 6,
numpy's "weibull"): the k-th of S exchangeable draws sits at F = k/(S+1) on average, so a calibrated ensemble's
central band covers its level in expectation (numpy's default type 7 covers only (S-1)/(S+1) of it: 77.5% for an
80% band at S = 64). Levels beyond [1/(S+1), S/(S+1)] are clipped to the extreme samples.

scoringrules and SciPy load on first use, so that recording a live forecast (kronos.evaluation.record) stays light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from kronos.errors import InvalidInputError

LEVELS = (0.5, 0.8, 0.95)  # central band levels scored
N_BINS = 10  # equal-width probability bins for reliability and the Brier decomposition
QUANTILE_METHOD = "weibull"


def check_forecasts(samples, observed) -> tuple[np.ndarray, np.ndarray]:
    """`samples` (N, S, H) and `observed` (N, H) as float arrays, or InvalidInputError naming what is wrong."""
    samples, observed = np.asarray(samples, float), np.asarray(observed, float)
    if samples.ndim != 3 or observed.shape != (samples.shape[0], samples.shape[2]):
        raise InvalidInputError(f"samples must be (N, S, H) and observed (N, H); got {samples.shape} and "
                                f"{observed.shape}")
    if not (np.isfinite(samples).all() and np.isfinite(observed).all()):
        raise InvalidInputError("samples and observed must be finite log returns")
    return samples, observed


def level_key(level: float) -> str:
    """The key of a central level in results: 0.8 -> "80"."""
    return f"{level * 100:g}"


def crps(samples: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """CRPS (N, H) in log-return units, of the ensemble's empirical distribution (scoringrules' default "qd").

    The standard estimator, not the "fair" one: it scores the forecast actually issued (S paths, or the calibrated
    S-point quantile set, which is no random sample, while the fair correction assumes independent draws), equals the
    absolute error at S = 1, and compares model and baselines evenly since all use the same S.
    """
    import scoringrules as sr

    return sr.crps_ensemble(observed, samples, m_axis=1, estimator="qd")  # (N, S, H) -> (N, H)


def band(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edges (N, H) of the central band holding `level` of the samples."""
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=1, method=QUANTILE_METHOD)
    return lo, hi


def wilson(k, n: int, confidence: float = 0.95):
    """Wilson score interval (low, high) of proportions k / n (k a count or an array of counts), in closed form:
    (p + z^2 / 2n -+ z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n), z the normal quantile of the confidence."""
    from scipy.special import ndtri

    z, p = float(ndtri(0.5 + confidence / 2)), np.asarray(k, float) / n
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = np.clip((centre - half) / (1 + z * z / n), 0, 1), np.clip((centre + half) / (1 + z * z / n), 0, 1)
    return (float(low), float(high)) if np.ndim(k) == 0 else (low, high)


def coverage(lo: np.ndarray, hi: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per hour (H,): share of outcomes inside [lo, hi], its 95% Wilson interval (low, high), mean band width."""
    inside = (lo <= observed) & (observed <= hi)  # (N, H)
    low, high = wilson(inside.sum(0), len(inside))
    return inside.mean(0), low, high, (hi - lo).mean(0)


def pit(samples: np.ndarray, observed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Randomised PIT values (N, H): the outcome's rank among the S samples, ties broken at random, spread on [0, 1].

    (below + U * (ties + 1)) / (S + 1) with U uniform: when the outcome is exchangeable with the samples its rank is
    uniform on S + 1 places, so the PIT is exactly uniform for a calibrated ensemble, however few samples it has.
    """
    below = (samples < observed[:, None]).sum(1)  # (N, S, H) -> (N, H)
    ties = (samples == observed[:, None]).sum(1)
    return (below + rng.uniform(size=below.shape) * (ties + 1)) / (samples.shape[1] + 1)


def brier(prob: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Brier score of each probability against its bool outcome (same shape)."""
    import scoringrules as sr

    return sr.brier_score(np.asarray(outcome, float), np.asarray(prob, float))


def log_loss(prob: np.ndarray, outcome: np.ndarray, n_samples: int) -> np.ndarray:
    """Log score (natural log) of each probability against its bool outcome, probabilities kept off 0 and 1.

    Probabilities are clipped to [eps, 1 - eps], eps = 1 / (2 (S + 1)): an ensemble of S members that puts none (or
    all) of its samples up is read as (0 + 1/2) / (S + 1), the half-count rule, so one miss costs log(2 (S + 1)), not
    infinity. Every forecaster scored with the same S gets the same eps.
    """
    eps = 1 / (2 * (n_samples + 1))
    import scoringrules as sr

    return sr.log_score(np.asarray(outcome, float), np.clip(prob, eps, 1 - eps))


def hit_rate(prob: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Per hour (H,): share of origins where (prob > 0.5) == outcome, prob == 0.5 counting one half."""
    return np.where(prob == 0.5, 0.5, (prob > 0.5) == outcome).mean(0)


def reliability_table(prob: np.ndarray, outcome: np.ndarray, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Per equal-width probability bin (n_bins,): mean forecast, observed frequency (NaN when empty) and count."""
    prob, outcome = np.ravel(prob), np.ravel(outcome).astype(float)
    idx = np.minimum((prob * n_bins).astype(int), n_bins - 1)  # 1.0 falls in the last bin
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"mean_forecast": np.bincount(idx, prob, n_bins) / count,
                "observed_frequency": np.bincount(idx, outcome, n_bins) / count, "count": count}


def murphy(prob: np.ndarray, outcome: np.ndarray, n_bins: int = N_BINS) -> dict[str, float]:
    """Brier decomposition (Murphy 1973) over equal-width bins: Brier ~ reliability - resolution + uncertainty.

    With binned probabilities the identity holds up to the within-bin variance and covariance terms (Stephenson et
    al. 2008); it is exact when each bin holds a single forecast value.
    """
    table = reliability_table(prob, outcome, n_bins)
    n, used, base = table["count"], table["count"] > 0, float(np.mean(outcome))
    freq = table["observed_frequency"][used]
    return {"reliability": float(np.sum(n[used] * (table["mean_forecast"][used] - freq) ** 2) / n.sum()),
            "resolution": float(np.sum(n[used] * (freq - base) ** 2) / n.sum()),
            "uncertainty": base * (1 - base)}


@dataclass(frozen=True, eq=False)
class Scores:
    """Every score of one forecaster over the same N origins. Per-hour arrays are (H,); the band fields map a level
    key ("50", "80", "95") to (H,); `brier_decomposition` maps reliability/resolution/uncertainty to (H,)."""

    n_origins: int
    n_samples: int
    crps: np.ndarray
    brier_upside: np.ndarray
    log_loss_upside: np.ndarray
    hit_rate: np.ndarray
    coverage: dict[str, np.ndarray]
    coverage_low: dict[str, np.ndarray]  # 95% Wilson interval of the coverage
    coverage_high: dict[str, np.ndarray]
    band_width: dict[str, np.ndarray]  # mean width in log-return units
    brier_decomposition: dict[str, np.ndarray]
    reliability: dict[str, np.ndarray]  # pooled over hours, per bin
    reliability_by_hour: list[dict[str, np.ndarray]]
    pit: np.ndarray  # (N, H)
    brier_vol_amp: float | None

    def to_dict(self) -> dict:
        """Plain JSON-ready Python: floats, ints, lists and dicts, NaN and infinities as None."""
        return plain({f.name: getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True, eq=False)
class UpsideScores:
    """The scores (H,) of an upside probability alone, for a forecaster that issues no distribution."""

    brier_upside: np.ndarray
    log_loss_upside: np.ndarray
    hit_rate: np.ndarray

    def to_dict(self) -> dict:
        """Plain JSON-ready Python, as Scores.to_dict."""
        return plain({f.name: getattr(self, f.name) for f in fields(self)})


def upside_scores(prob: np.ndarray, observed: np.ndarray, n_samples: int) -> UpsideScores:
    """Brier score, log loss (eps of S = `n_samples`) and hit rate per hour of an upside probability (N, H)."""
    up = np.asarray(observed) > 0
    return UpsideScores(brier(prob, up).mean(0), log_loss(prob, up, n_samples).mean(0), hit_rate(prob, up))


def plain(value):
    """Arrays, numpy numbers and nested containers as plain JSON-ready Python; NaN and infinities as None."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value.item() if isinstance(value, np.generic) else value


def score(samples, observed, upside_prob=None, vol_prob=None, vol_outcome=None, *, bands=None,
          levels: tuple[float, ...] = LEVELS, n_bins: int = N_BINS, seed: int = 0) -> Scores:
    """All scores of one forecaster. `upside_prob` (N, H) defaults to the share of samples above 0; `vol_prob` and
    `vol_outcome` (N,) score volatility amplification; `bands` (level key -> lower, upper (N, H)) replaces the bands
    read off the samples (the exact conformal bands); `seed` drives the PIT's tie-breaking."""
    samples, observed = check_forecasts(samples, observed)
    n, s, horizon = samples.shape
    up = observed > 0  # (N, H)
    prob = (samples > 0).mean(1) if upside_prob is None else np.asarray(upside_prob, float)  # (N, H)
    if prob.shape != up.shape or not ((prob >= 0) & (prob <= 1)).all():
        raise InvalidInputError(f"upside_prob must be (N, H) = {up.shape} probabilities in [0, 1]")
    if (vol_prob is None) != (vol_outcome is None):
        raise InvalidInputError("vol_prob and vol_outcome go together")
    edges = {level_key(level): (bands or {}).get(level_key(level)) or band(samples, level) for level in levels}
    cover = {key: coverage(lo, hi, observed) for key, (lo, hi) in edges.items()}
    parts = [murphy(prob[:, h], up[:, h], n_bins) for h in range(horizon)]
    return Scores(
        n_origins=n, n_samples=s, crps=crps(samples, observed).mean(0),
        brier_upside=brier(prob, up).mean(0), log_loss_upside=log_loss(prob, up, s).mean(0),
        hit_rate=hit_rate(prob, up),
        coverage={key: c[0] for key, c in cover.items()}, coverage_low={key: c[1] for key, c in cover.items()},
        coverage_high={key: c[2] for key, c in cover.items()}, band_width={key: c[3] for key, c in cover.items()},
        brier_decomposition={name: np.array([part[name] for part in parts]) for name in parts[0]},
        reliability=reliability_table(prob, up, n_bins),
        reliability_by_hour=[reliability_table(prob[:, h], up[:, h], n_bins) for h in range(horizon)],
        pit=pit(samples, observed, np.random.default_rng(seed)),
        brier_vol_amp=None if vol_prob is None else float(brier(vol_prob, vol_outcome).mean()))


def skill(score: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Skill per hour, 1 - score / baseline, for scores where lower is better (positive: beats the baseline)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1 - np.asarray(score, float) / np.asarray(baseline, float)
