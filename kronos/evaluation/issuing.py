"""Every forecaster of a backtest, issued at every run (the origins, and the latest forecast after the last row when
asked), from the rows before each run only, in stages that a later run can take up from stored terms.

- "model": the engine's paths; "model_calibrated": them calibrated (kronos.evaluation.calibration).
- Baselines (kronos.evaluation.registry, in its order) on the same rows. Each run draws from its own generator,
  seeded by the run's seed and the open time of its last seen candle, so a run's draws do not depend on which other
  runs are drawn with it.
- "combined": the linear pool (kronos.evaluation.pooling) of model_calibrated and the volatility baselines, its
  upside and volatility amplification probabilities recalibrated by a probability map, its bands conformal
  (calibration on the pool's quantile grid); it is scored on that conformal quantile set.
Each `Issued` holds what the forecaster issues: samples of log returns (N, S, H) and, where it issues them itself,
its upside probability (N, H), volatility amplification probability (N,) and exact bands.

Stages. What a run issues depends on its own inputs (`Runs`: paths, outcome, trailing closes, GARCH state, seed)
and on what was fitted at it (`Fits`: the model's margins and upside maps, the pool's weights, the combined
forecast's margins and maps, the volatility map), learnt from the `Terms` of the origins known there: per origin the
raw model's nonconformity errors and upside probability, the pool's CRPS terms of its components against the
outcome, the mixture's errors and probabilities before their maps. An origin's terms depend on the fits at it, which
read only terms of origins strictly before it; so `evaluate` goes stage by stage: the runs' terms, the fits at the
runs from those and the earlier origins' (`prior`), the forecasts. A backtest evaluates all its runs at once; a
record that grows by an origin evaluates that origin alone from the others' stored terms, by the same functions
(`fit_at` fits a run from terms alone; `apply` issues runs from given fits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from kronos.engine.forecast import volatility_amplified
from kronos.errors import InvalidInputError
from kronos.evaluation import baselines
from kronos.evaluation.calibration import (
    Calibrated,
    CalibrationFit,
    edges,
    fit_calibration,
    known_counts,
    nonconformity,
)
from kronos.evaluation.pooling import DEFAULT, Pool, PoolFit, crps_terms, fit_pool
from kronos.evaluation.probability import DEFAULT_MAP, Maps, fit_maps
from kronos.evaluation.registry import BASELINES, CALIBRATED, components

STAGES = ("model", "pool", "combined", "vol")  # in the order a run goes through them
MAPPED = ("model", "combined", "vol")  # the stages with a probability map
DRAW_STREAM = 1  # the baselines' generator of a run: beside (not equal to) the engine's seed drawn from the same


@dataclass(frozen=True, eq=False)
class Issued:
    """One forecaster's forecasts at every run."""

    samples: np.ndarray  # (N, S, H) log returns
    upside: np.ndarray | None = None  # (N, H); None: the share of samples above 0
    vol: np.ndarray | None = None  # (N,) volatility amplification probability
    bands: dict[str, tuple[np.ndarray, np.ndarray]] | None = None  # level key -> exact lower, upper (N, H)


@dataclass(frozen=True, eq=False)
class Issue:
    """Every forecaster at every run, with the model's calibration and the pool behind "combined"."""

    forecasters: dict[str, Issued]
    calibrated: Calibrated  # the model's
    pool: Pool
    combined: Calibrated  # the pool's: conformal quantile set and bands, mapped upside probability


@dataclass(frozen=True, eq=False)
class Runs:
    """What each run's forecasts depend on alone, runs in increasing row order: the first `outcomes` are origins
    (their outcomes are known later), the others have none yet (the latest forecast)."""

    rows: np.ndarray  # (N,) row indices
    model: np.ndarray  # (N, S, H) the model's paths as log returns from the last close before the run
    model_vol: np.ndarray  # (N,) their volatility amplification probability
    observed: np.ndarray  # (N, H) outcomes as log returns (zeros where there are none)
    past: np.ndarray  # (N, W + 1) closes before each run: the baselines' window
    garch: np.ndarray  # (N, 4) GARCH(1,1) omega, alpha, beta and first variance (baselines.garch_state)
    entropy: np.ndarray  # (N, 2) seed and last seen candle's open time (s): each run's baseline draws
    outcomes: int

    @property
    def samples(self) -> int:
        return self.model.shape[1]

    @property
    def horizon(self) -> int:
        return self.model.shape[2]

    @property
    def returns(self) -> np.ndarray:
        """(N, W) the one-step log returns of each run's trailing closes: the baselines' window."""
        return np.diff(np.log(self.past), axis=1)


def nanoseconds(stamps) -> pd.DatetimeIndex:
    """Open times in nanoseconds (pandas may read a file's times in coarser units; counts of steps read ns)."""
    return pd.DatetimeIndex(stamps).as_unit("ns")


def clock_phase(stamps: pd.DatetimeIndex) -> int:
    """Row 0's count of steps (the first interval) since the epoch: GARCH refits fall on candles fixed by the clock."""
    step = (stamps[1] - stamps[0]).value if len(stamps) > 1 else 1
    return int(stamps[0].value // step) if step > 0 else 0


def runs_at(close: np.ndarray, stamps: pd.DatetimeIndex, rows: np.ndarray, model: np.ndarray, model_vol: np.ndarray,
            outcomes: int, window: int, seed: int,
            garch_fits: Callable[[list[np.ndarray]], list[baselines.GarchFit]] | None = None) -> Runs:
    """The runs at `rows` of a frame's closes and open times (`outcomes` origins, then runs after the last row's
    outcomes), with the model's log returns (N, S, H) and volatility amplification probabilities (N,); baselines from
    the `window` returns before each run, GARCH fitted through `garch_fits` (see baselines.garch_state)."""
    close, rows, stamps = np.asarray(close, float), np.asarray(rows), nanoseconds(stamps)
    if np.any(np.diff(rows) <= 0):
        raise InvalidInputError("runs must be in increasing row order")
    observed = np.zeros((len(rows), model.shape[2]))
    ahead = rows[:outcomes, None] + np.arange(model.shape[2])  # (O, H) rows forecast
    observed[:outcomes] = np.log(close[ahead] / close[rows[:outcomes] - 1, None])
    entropy = np.column_stack([np.full(len(rows), seed), stamps.asi8[rows - 1] // 10**9])
    return Runs(rows, model, np.asarray(model_vol, float), observed, baselines.trailing_closes(close, rows, window),
                baselines.garch_state(close, rows, clock_phase(stamps), fits=garch_fits), entropy, outcomes)


class RunDraws:
    """Draws of shape (N, ...) as numpy's Generator makes them, row i from run i's own generator (its seed and time),
    so that a run's draws are the same whichever runs are drawn with it; stands in for a Generator."""

    def __init__(self, entropy: np.ndarray):
        self._generators = [np.random.default_rng([int(seed), int(time) % 2**63, DRAW_STREAM])
                            for seed, time in entropy]

    def standard_normal(self, size: tuple[int, ...]) -> np.ndarray:
        return np.stack([g.standard_normal(size[1:]) for g in self._generators])

    def integers(self, low: int, high: int, size: tuple[int, ...]) -> np.ndarray:
        return np.stack([g.integers(low, high, size[1:]) for g in self._generators])


def draw_baselines(runs: Runs) -> dict[str, np.ndarray]:
    """Every baseline's paths (N, S, H) of log returns at the runs, each run from its own draws (in the registry's
    order)."""
    rng = RunDraws(runs.entropy)
    return {name: baseline.draw(runs, rng) for name, baseline in BASELINES.items()}


@dataclass(frozen=True, eq=False)
class Terms:
    """Per-origin statistics the fits read (see the module docstring), origins in increasing row order."""

    rows: np.ndarray  # (P,)
    up: np.ndarray  # (P, H) bool: the close rose
    model_errors: np.ndarray  # (P, H, L) the raw model's nonconformity errors (calibration.nonconformity)
    model_up: np.ndarray  # (P, H) its raw upside probability
    pool_a: np.ndarray  # (P, H, K) the pool's CRPS terms (pooling.crps_terms)
    pool_b: np.ndarray  # (P, H, K, K)
    combined_errors: np.ndarray  # (P, H, L) the mixture's nonconformity errors
    combined_up: np.ndarray  # (P, H) the mixture's upside probability before its map
    combined_vol: np.ndarray  # (P,) its volatility amplification probability before its map
    vol_outcome: np.ndarray  # (P,) bool: the horizon was more volatile (False below 3 hours)

    def stage(self, name: str) -> tuple[np.ndarray, ...]:
        """The terms the stage `name` (STAGES) is fitted on."""
        return {"model": (self.model_errors, self.model_up, self.up), "pool": (self.pool_a, self.pool_b),
                "combined": (self.combined_errors, self.combined_up, self.up),
                "vol": (self.combined_vol[:, None], self.vol_outcome[:, None])}[name]

    def then(self, later: Terms) -> Terms:
        """These origins' terms followed by those of later origins."""
        return Terms(*(np.concatenate([getattr(self, f.name), getattr(later, f.name)]) for f in fields(self)))


@dataclass(frozen=True, eq=False)
class Fits:
    """What was fitted at R runs, stage by stage."""

    model: CalibrationFit
    pool: PoolFit
    combined: CalibrationFit
    vol: Maps | None  # None below 3 hours ahead


@dataclass(frozen=True, eq=False)
class Evaluated:
    """An evaluation: every forecaster at the runs, the terms of the runs' origins, the fits at the runs."""

    issue: Issue
    terms: Terms
    fits: Fits


def evaluate(runs: Runs, prior: Terms | None = None, *, min_count: int, upside_map: str = DEFAULT_MAP,
             maps: tuple[str, ...] = MAPPED) -> Evaluated:
    """Fit at every run from the terms of the origins known there (`prior`'s, all before the runs, then the runs'
    own origins') and issue every forecaster there. Only the stages named in `maps` fit their probability maps at
    the runs (no term reads a mapped probability; the others stay raw)."""
    if prior is not None and len(prior.rows) and runs.rows[0] <= prior.rows[-1]:
        raise InvalidInputError("the runs must come after the earlier origins whose terms they read")
    own = runs.rows[:runs.outcomes]
    count = known_counts(own if prior is None else np.concatenate([prior.rows, own]), runs.rows, runs.horizon)

    def fitted(stage: str, new: tuple[np.ndarray, ...]):
        known = new if prior is None else tuple(np.concatenate(pair) for pair in zip(prior.stage(stage), new))
        return _fit(stage, known, count, runs.samples, min_count, upside_map if stage in maps else None)

    return _evaluated(runs, fitted)


def fit_at(terms: Terms, rows: np.ndarray, *, samples: int, min_count: int, upside_map: str = DEFAULT_MAP) -> Fits:
    """The fits at runs `rows` (after every origin of `terms`) of forecasts with `samples` paths."""
    count = known_counts(terms.rows, np.asarray(rows), terms.up.shape[1])
    return Fits(*(_fit(stage, terms.stage(stage), count, samples, min_count, upside_map) for stage in STAGES))


def apply(runs: Runs, fits: Fits) -> Issue:
    """Every forecaster at the runs, from the fits at them (`fit_at`)."""
    return _evaluated(runs, lambda stage, new: getattr(fits, stage)).issue


def _fit(stage: str, known: tuple[np.ndarray, ...], count: np.ndarray, samples: int, min_count: int,
         upside_map: str | None):
    """One stage's fit at the runs whose known pairs are counted by `count` (R, H), from the known terms in order
    (`upside_map` None: no probability map)."""
    if stage == "pool":
        return fit_pool(*known, count, min_count, components().index(DEFAULT))
    if stage == "vol":  # its outcome is known once the whole horizon is
        return None if count.shape[1] < 3 or upside_map is None else fit_maps(
            *known, count[:, -1:], upside_map, min_count, 1 / (2 * (samples + 1)))
    return fit_calibration(*known, count, samples, min_count, upside_map)


def _evaluated(runs: Runs, fitted: Callable[[str, tuple[np.ndarray, ...]], object]) -> Evaluated:
    """The runs' terms and forecasts, stage by stage, each stage's fit at the runs from `fitted(stage, terms of the
    runs' origins)`."""
    o, horizon = runs.outcomes, runs.horizon
    up, raw, found = runs.observed > 0, (runs.model > 0).mean(1), edges(runs.model)
    errors = nonconformity(found, runs.observed)
    model = fitted("model", (errors[:o], raw[:o], up[:o]))
    calibrated = model.apply(found, raw)
    draws, names = draw_baselines(runs), components()
    parts = np.stack([calibrated.samples if name == CALIBRATED else draws[name] for name in names], 1)
    a, b = crps_terms(parts, runs.observed)  # (N, H, K), (N, H, K, K)
    pool = fitted("pool", (a[:o], b[:o]))
    mixed = pool.apply(names, parts)
    mixture = edges(mixed.samples)
    mixed_errors = nonconformity(mixture, runs.observed)
    combined = fitted("combined", (mixed_errors[:o], mixed.upside_prob[:o], up[:o]))
    pooled = combined.apply(mixture, mixed.upside_prob)
    vol = {name: _vol(paths, runs.past) for name, paths in draws.items()}
    part_vol = np.stack([runs.model_vol if name == CALIBRATED else vol[name] for name in names], 1)  # (N, K)
    raw_vol = (mixed.weights.mean(2) * part_vol).sum(1)
    outcome = volatility_amplified(runs.observed, runs.past) if horizon >= 3 else np.zeros(len(runs.rows), bool)
    mapping = fitted("vol", (raw_vol[:o, None], outcome[:o, None]))
    forecasters = {
        "model": Issued(runs.model, vol=runs.model_vol),
        CALIBRATED: Issued(calibrated.samples, calibrated.upside_prob, runs.model_vol, calibrated.bands),
        **{name: Issued(paths, vol=vol[name]) for name, paths in draws.items()},
        "combined": Issued(pooled.samples, pooled.upside_prob,
                           raw_vol if mapping is None else mapping(raw_vol[:, None])[:, 0], pooled.bands),
    }
    terms = Terms(runs.rows[:o], up[:o], errors[:o], raw[:o], a[:o], b[:o], mixed_errors[:o], mixed.upside_prob[:o],
                  raw_vol[:o], outcome[:o])
    return Evaluated(Issue(forecasters, calibrated, mixed, pooled), terms, Fits(model, pool, combined, mapping))


def _vol(paths: np.ndarray, past: np.ndarray) -> np.ndarray:
    """Each run's share (N,) of paths (N, S, H) more volatile than the last H closes of `past` (N, W + 1)."""
    if paths.shape[2] < 3:
        return np.full(len(paths), np.nan)
    return volatility_amplified(paths, past).mean(1)
