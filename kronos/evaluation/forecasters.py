"""Every forecaster of a backtest, issued at every run (the origins, and the latest forecast after the last row when
asked), from the rows before each run only.

- "model": the engine's paths; "model_calibrated": them calibrated (kronos.evaluation.calibration).
- Baselines (kronos.evaluation.baselines) on the same rows: "random_walk", "bootstrap", "ewma", "garch". Their draws
  come from the run's seed; a latest forecast draws from its own stream, so the origins' draws do not depend on it.
- "combined": the linear pool (kronos.evaluation.pooling) of model_calibrated and the volatility baselines, its
  upside and volatility amplification probabilities recalibrated by a probability map, its bands conformal
  (calibration.calibrate on the pool's quantile grid); it is scored on that conformal quantile set.
Each `Issued` holds what the forecaster issues: samples of log returns (N, S, H) and, where it issues them itself,
its upside probability (N, H), volatility amplification probability (N,) and exact bands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kronos.evaluation import baselines
from kronos.evaluation.calibration import Calibrated, calibrate, known
from kronos.evaluation.pooling import POOLED, Pool, pool
from kronos.evaluation.probability import DEFAULT_MAP, recalibrate
from kronos.forecast import volatility_amplified

BASELINES = ("random_walk", "bootstrap", "ewma", "garch")


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


def draw_baselines(close: np.ndarray, rows: np.ndarray, window: int, samples: int, horizon: int,
                   rng: np.random.Generator, phase: int = 0) -> dict[str, np.ndarray]:
    """Every baseline's paths (N, S, H) of log returns at the runs `rows`, from the `window` returns before each
    (GARCH: its own fit window; `phase` places its refits, see baselines.garch)."""
    trailing = np.diff(np.log(baselines.trailing_closes(close, rows, window)), axis=1)  # (N, W)
    return {"random_walk": baselines.random_walk(trailing, samples, horizon, rng),
            "bootstrap": baselines.bootstrap(trailing, samples, horizon, rng),
            "ewma": baselines.ewma(trailing, samples, horizon, rng),
            "garch": baselines.garch(close, rows, samples, horizon, rng, phase)}


def issue(model: np.ndarray, model_vol: np.ndarray, close: np.ndarray, runs: np.ndarray, observed: np.ndarray,
          window: int, min_count: int, seed: int, upside_map: str = DEFAULT_MAP, phase: int = 0) -> Issue:
    """Issue every forecaster at the runs (row indices into `close`, the origins then at most one latest run whose
    `observed` (N, H) row is never read) from model paths `model` (N, S, H) of log returns and their volatility
    amplification probabilities `model_vol` (N,); baselines from the `window` returns before each run."""
    n, s, horizon = model.shape
    origins = int((runs + horizon <= len(close)).sum())  # a latest run has no outcome rows yet
    draws = draw_baselines(close, runs[:origins], window, s, horizon, np.random.default_rng(seed), phase)
    if origins < n:  # the latest forecast's own stream
        late = draw_baselines(close, runs[origins:], window, s, horizon, np.random.default_rng([seed, 1]), phase)
        draws = {name: np.concatenate([draws[name], late[name]]) for name in draws}
    past = baselines.trailing_closes(close, runs, window)  # (N, W + 1)
    vol = {name: _vol(paths, past) for name, paths in draws.items()}
    calibrated = calibrate(model, observed, runs, min_count=min_count, upside_map=upside_map)
    mixed = pool({name: calibrated.samples if name == "model_calibrated" else draws[name] for name in POOLED},
                 observed, runs, min_count)
    combined = calibrate(mixed.samples, observed, runs, mixed.upside_prob, min_count=min_count, upside_map=upside_map)
    parts = np.stack([model_vol if name == "model_calibrated" else vol[name] for name in POOLED], 1)  # (N, K)
    combined_vol = (mixed.weights.mean(2) * parts).sum(1)
    if horizon >= 3:
        outcome = np.array([volatility_amplified(observed[i], past[i]) for i in range(n)])
        count, order = known(runs, horizon).sum(1), np.argsort(runs, kind="stable")
        combined_vol = recalibrate(combined_vol, outcome, count, order, upside_map, min_count, 1 / (2 * (s + 1)))[0]
    forecasters = {
        "model": Issued(model, vol=model_vol),
        "model_calibrated": Issued(calibrated.samples, calibrated.upside_prob, model_vol, calibrated.bands),
        **{name: Issued(paths, vol=vol[name]) for name, paths in draws.items()},
        "combined": Issued(combined.samples, combined.upside_prob, combined_vol, combined.bands),
    }
    return Issue(forecasters, calibrated, mixed, combined)


def _vol(paths: np.ndarray, past: np.ndarray) -> np.ndarray:
    """Each run's share (N,) of paths (N, S, H) more volatile than the last H closes of `past` (N, W + 1)."""
    if paths.shape[2] < 3:
        return np.full(len(paths), np.nan)
    return np.array([volatility_amplified(paths[i], past[i]).mean() for i in range(len(paths))])
