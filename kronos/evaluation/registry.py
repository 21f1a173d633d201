"""The baselines, each defined once: a class per baseline (in the style of arch's volatility processes) holds its
name, its label and colour in every chart and sentence, whether the combined forecast pools it, and how it draws;
`register` adds one to BASELINES. Every list of forecasters (drawn, scored, pooled, kept, labelled, coloured, named in
the API's OpenAPI document) is read from here when it is used, so adding a baseline is one class and one `register`
call. The names of the forecasters that are not baselines live in kronos.schemas.backtest, below this layer.

The registry's order is the order in which each run's generator draws them (kronos.evaluation.issuing): random
walk, bootstrap, EWMA, GARCH(1,1). A baseline registered later draws after these, so their paths, and every score and
stored record made from them, stay the same to the bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Protocol

import numpy as np

from kronos.evaluation import baselines
from kronos.schemas.backtest import CALIBRATED, COMBINED, MODEL, REFERENCE, TRAILING

BEFORE = (MODEL, CALIBRATED)  # the forecasters issued before the baselines
AFTER = (COMBINED,)  # and after them


class Runs(Protocol):
    """What a baseline draws from at N runs (kronos.evaluation.issuing.Runs)."""

    rows: np.ndarray  # (N,) row indices
    past: np.ndarray  # (N, W + 1) closes before each run
    returns: np.ndarray  # (N, W) their one-step log returns
    garch: np.ndarray  # (N, 4) GARCH(1,1) state (baselines.garch_state)
    samples: int
    horizon: int


class Baseline(ABC):
    """A reference forecaster the model must beat: `draw` issues its paths at the runs of a backtest."""

    name: str  # its key in every answer
    label: str  # its name in charts and sentences
    colour: str  # its colour in every chart
    pooled: bool  # a component of the combined forecast

    @abstractmethod
    def draw(self, runs: Runs, rng: np.random.Generator) -> np.ndarray:
        """Paths (N, S, H) of log returns at the runs, each run drawing from its own generator in `rng`
        (issuing.RunDraws, which stands in for a Generator)."""


class RandomWalk(Baseline):
    """Gaussian steps at the trailing window's standard deviation of one-step log returns (baselines.random_walk)."""

    name, label, colour, pooled = REFERENCE, "random walk", "#7f7f7f", True

    def draw(self, runs: Runs, rng: np.random.Generator) -> np.ndarray:
        return baselines.random_walk(runs.returns, runs.samples, runs.horizon, rng)


class Bootstrap(Baseline):
    """The trailing window's one-step log returns resampled i.i.d. (baselines.bootstrap)."""

    name, label, colour, pooled = "bootstrap", "bootstrap", "#2ca02c", False

    def draw(self, runs: Runs, rng: np.random.Generator) -> np.ndarray:
        return baselines.bootstrap(runs.returns, runs.samples, runs.horizon, rng)


class EWMA(Baseline):
    """Gaussian steps at the trailing window's exponentially weighted standard deviation, half-life
    baselines.HALF_LIFE rows, the weights normalised over the window (baselines.ewma); the pool's default.

    Not arch's EWMAVariance: its recursion starts from a backcast (the 0.94-weighted mean of the first 75 squared
    returns), which keeps the weight lam^W that ours renormalises away. Measured on BTC/USDT 1h (Binance), lam =
    2^(-1/24), 200 window ends per window W: its sigma differs from ours by up to 26% at W = 39 (a lookback of 40),
    1.2% at W = 199, 1e-4 at W = 382 (the default lookback of 383), 5e-16 at W = 2047, and matches ours to the bit in
    none of the 200 windows but at W = 2047 (74). Even given our window's value as its backcast it matches to the bit
    in only 54-75 of 200 windows; so ours is kept, and the paths stay the same to the bit.
    """

    name, label, colour, pooled = "ewma", "EWMA", "#9467bd", True

    def draw(self, runs: Runs, rng: np.random.Generator) -> np.ndarray:
        return baselines.ewma(runs.returns, runs.samples, runs.horizon, rng)


class GARCH(Baseline):
    """GARCH(1,1) from each run's fitted state (baselines.garch_state, made with the runs), its variance filtered
    along each path (baselines.garch_paths)."""

    name, label, colour, pooled = "garch", "GARCH(1,1)", "#8c564b", True

    def draw(self, runs: Runs, rng: np.random.Generator) -> np.ndarray:
        return baselines.garch_paths(runs.garch, rng.standard_normal((len(runs.rows), runs.samples, runs.horizon)))


BASELINES: dict[str, Baseline] = {}  # name -> baseline, in the order each run draws them


def register(baseline: Baseline) -> Baseline:
    """Add `baseline` after those registered (it draws after them); ValueError when its name is taken."""
    if baseline.name in BASELINES or baseline.name in (*BEFORE, *AFTER, TRAILING):
        raise ValueError(f"a forecaster named {baseline.name!r} exists already")
    BASELINES[baseline.name] = baseline
    return baseline


def forecasters() -> tuple[str, ...]:
    """Every forecaster a backtest issues and scores, in the order it issues them."""
    return (*BEFORE, *BASELINES, *AFTER)


def pooled() -> tuple[str, ...]:
    """The baselines the combined forecast pools, in the registry's order."""
    return tuple(name for name, baseline in BASELINES.items() if baseline.pooled)


def components() -> tuple[str, ...]:
    """The combined forecast's components, in the order of its weights: the calibrated model, the pooled baselines."""
    return (CALIBRATED, *pooled())


def labels(names: Iterable[str]) -> str:
    """The baselines `names` labelled, as a sentence lists them ("random walk, EWMA and GARCH(1,1)")."""
    found = [BASELINES[name].label for name in names]
    return " and ".join([", ".join(found[:-1]), found[-1]] if len(found) > 1 else found)


register(RandomWalk())
register(Bootstrap())
register(EWMA())
register(GARCH())
