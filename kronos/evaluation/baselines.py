"""Reference forecasters the model must beat, scored by `scores.score` on the same origins with the same S.

All work on log returns of the close (see `scores`). Each origin's input is a trailing window: W one-step log
returns, or W + 1 closes, from the rows before the origin. W is the caller's choice and must be stated in the
backtest's output; the caller cuts the window from the same rows the model sees (never the origin's row or later),
with `trailing_closes`. Draws come from the caller's seeded numpy Generator, so runs are reproducible. The backtest's
baselines are named, labelled and drawn by the classes of kronos.evaluation.registry.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from kronos.errors import InvalidInputError

HALF_LIFE = 24  # rows; the EWMA's decay is 2 ** (-1 / HALF_LIFE)
FIT_WINDOW = 1000  # one-step returns a GARCH fit sees at most, the latest before its origin
REFIT_ROWS = 24  # rows between GARCH refits
FIRST_ROWS = 168  # a fit window cut by the frame's start begins on a row fixed by the clock, every so many rows
SCALE = 100.0  # returns in percent for the GARCH optimiser (its recommended range)
MIN_FIT = 32  # returns a GARCH fit needs at least
FITS_KEPT = 1024  # GARCH fits kept in memory


def trailing_closes(close: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """Closes (N, W + 1) of rows origin - W - 1 .. origin - 1 for each origin; their np.diff(np.log) are the W
    one-step log returns the baselines take."""
    close, origins = np.asarray(close, float), np.asarray(origins)
    if window < 2 or origins.min() < window + 1 or origins.max() > len(close):
        raise InvalidInputError(f"a window of {window} returns needs origins in [{window + 1}, {len(close)}]")
    return close[origins[:, None] + np.arange(-window - 1, 0)]  # (N,) -> (N, W + 1)


def _window(trailing) -> np.ndarray:
    trailing = np.asarray(trailing, float)
    if trailing.ndim != 2 or trailing.shape[1] < 2 or not np.isfinite(trailing).all():
        raise InvalidInputError(f"the trailing window must be (N, W >= 2) finite values, got {trailing.shape}")
    return trailing


def random_walk(trailing: np.ndarray, samples: int, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """Paths (N, S, H) of zero-drift Gaussian one-step log returns at the standard deviation of each origin's trailing
    one-step log returns `trailing` (N, W), cumulated."""
    trailing = _window(trailing)
    sigma = trailing.std(axis=1, ddof=1)  # (N,)
    return (rng.standard_normal((len(trailing), samples, horizon)) * sigma[:, None, None]).cumsum(2)


def bootstrap(trailing: np.ndarray, samples: int, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """Paths (N, S, H) of one-step log returns drawn i.i.d. with replacement from each origin's trailing window
    `trailing` (N, W), cumulated."""
    trailing = _window(trailing)
    picks = rng.integers(0, trailing.shape[1], (len(trailing), samples, horizon))  # (N, S, H) indices into W
    return trailing[np.arange(len(trailing))[:, None, None], picks].cumsum(2)


def up_frequency(closes: np.ndarray, horizon: int) -> np.ndarray:
    """Upside probability (N, H): for hour h, the share of positive h-step log returns (overlapping) among each
    origin's trailing closes `closes` (N, W + 1)."""
    log_close = np.log(_window(closes))  # (N, W + 1)
    if horizon >= log_close.shape[1]:
        raise InvalidInputError(f"{horizon} hours ahead need more than {log_close.shape[1]} trailing closes")
    return np.stack([(log_close[:, h:] > log_close[:, :-h]).mean(1) for h in range(1, horizon + 1)], axis=1)


def ewma(trailing: np.ndarray, samples: int, horizon: int, rng: np.random.Generator,
         half_life: float = HALF_LIFE) -> np.ndarray:
    """Paths (N, S, H) of zero-drift Gaussian one-step log returns at each origin's exponentially weighted standard
    deviation of its trailing one-step log returns `trailing` (N, W) (weights normalised over the window), cumulated."""
    trailing = _window(trailing)
    decay = 2.0 ** (-1.0 / half_life)
    weights = decay ** np.arange(trailing.shape[1])[::-1]  # the latest return weighs 1
    sigma = np.sqrt((trailing ** 2 * weights).sum(1) / weights.sum())  # (N,)
    return (rng.standard_normal((len(trailing), samples, horizon)) * sigma[:, None, None]).cumsum(2)


@dataclass(frozen=True)
class GarchFit:
    """GARCH(1,1) parameters of one-step log returns (variance units: log return squared)."""

    omega: float
    alpha: float
    beta: float

    def step(self, variance, shock):
        """The next conditional variance after a return `shock` at conditional variance `variance`."""
        return self.omega + self.alpha * shock * shock + self.beta * variance


def fit_garch(returns: np.ndarray) -> GarchFit:
    """GARCH(1,1) fitted on one-step log returns `returns` (T,) by the `arch` package; RiskMetrics' recursion
    (omega 0, the EWMA's decay) when the fit fails or leaves a non-stationary or non-finite model. Fits are kept
    (FITS_KEPT, by the returns' bytes), so a later backtest over the same candles refits nothing."""
    return _fit(np.ascontiguousarray(returns, float).tobytes())


@lru_cache(maxsize=FITS_KEPT)
def _fit(data: bytes) -> GarchFit:
    from arch import arch_model  # loads on first use, like SciPy
    from arch.utility.exceptions import ConvergenceWarning

    decay = 2.0 ** (-1.0 / HALF_LIFE)
    fallback = GarchFit(0.0, 1 - decay, decay)
    try:
        with warnings.catch_warnings():  # a fit that did not converge is told by its flag, below: no warning
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted = arch_model(np.frombuffer(data) * SCALE, mean="Zero", vol="GARCH", p=1, q=1,
                                rescale=False).fit(disp="off")
    except (ValueError, np.linalg.LinAlgError):
        return fallback
    omega, alpha, beta = (float(fitted.params[k]) for k in ("omega", "alpha[1]", "beta[1]"))
    if fitted.convergence_flag != 0 or not np.isfinite([omega, alpha, beta]).all() or alpha + beta >= 1:
        return fallback
    return GarchFit(omega / SCALE ** 2, alpha, beta)


def garch_state(close: np.ndarray, origins: np.ndarray, phase: int = 0, refit_rows: int = REFIT_ROWS,
                window: int = FIT_WINDOW, fits: Callable[[list[np.ndarray]], list[GarchFit]] | None = None
                ) -> np.ndarray:
    """(N, 4): each origin's GARCH(1,1) omega, alpha, beta and the conditional variance of its first return, from the
    returns of rows before it only (see `garch`). `fits` fits a list of return windows (default: `fit_garch` each),
    so a caller can keep the fits elsewhere."""
    close, origins = np.asarray(close, float), np.asarray(origins)
    if origins.min() < MIN_FIT + 1 or origins.max() > len(close):
        raise InvalidInputError(f"GARCH origins must be rows in [{MIN_FIT + 1}, {len(close)}]")
    returns = np.diff(np.log(close))  # returns[t - 1] is row t's return: origin o knows returns[:o - 1]
    first = (-1 - phase) % FIRST_ROWS  # returns[first:] start on a row fixed by the clock: a sliding frame keeps it
    fitted_at = origins - (origins + phase) % refit_rows  # the latest refit row at or before each origin
    fitted_at = np.where(fitted_at - 1 - first >= MIN_FIT, fitted_at, origins)
    rows = np.unique(fitted_at)
    starts = [max(first if row - 1 - first >= MIN_FIT else 0, row - 1 - window) for row in rows]
    windows = [returns[start:row - 1] for row, start in zip(rows, starts)]
    state = np.empty((len(origins), 4))
    for row, start, fit in zip(rows, starts, [fit_garch(w) for w in windows] if fits is None else fits(windows)):
        mine = np.flatnonzero(fitted_at == row)
        seen = returns[start:origins[mine].max() - 1]  # every return before the group's origins, from the window on
        level = float(np.var(returns[start:row - 1]))  # the recursion starts at the fit window's variance
        after = _recursion(fit.omega + fit.alpha * seen ** 2, fit.beta, level)
        index = origins[mine] - 2 - start  # after[k]: the variance once returns[start .. start + k] are seen
        state[mine, :3] = fit.omega, fit.alpha, fit.beta
        state[mine, 3] = np.where(index >= 0, after[np.maximum(index, 0)], level)
    return state


def _recursion(drive: np.ndarray, beta: float, level: float) -> np.ndarray:
    """The variances v[k] = drive[k] + beta v[k - 1] from v[-1] = level: the same operations, in the same order, as
    scipy.signal.lfilter([1], [1, -beta], drive, zi=[beta level]) (tests/test_baselines.py checks the bits), without
    the 0.75 s that importing scipy.signal adds to every command that scores."""
    out, carry = [], beta * level
    for value in drive.tolist():
        total = carry + value
        out.append(total)
        carry = beta * total
    return np.array(out)


def garch_paths(state: np.ndarray, shocks: np.ndarray) -> np.ndarray:
    """Paths (N, S, H) of GARCH(1,1) log returns, cumulated, from each origin's `garch_state` row (N, 4) and
    standard normal shocks (N, S, H)."""
    omega, alpha, beta = (state[:, k, None] for k in range(3))
    paths, level, total = np.empty_like(shocks), np.repeat(state[:, 3, None], shocks.shape[1], 1), 0.0  # (N, S)
    for h in range(shocks.shape[2]):
        step = np.sqrt(level) * shocks[:, :, h]
        total = total + step
        paths[:, :, h] = total
        level = omega + alpha * step * step + beta * level
    return paths


def garch(close: np.ndarray, origins: np.ndarray, samples: int, horizon: int, rng: np.random.Generator,
          phase: int = 0, refit_rows: int = REFIT_ROWS, window: int = FIT_WINDOW) -> np.ndarray:
    """Paths (N, S, H) of GARCH(1,1) log returns, cumulated, at each origin (row index into `close`) from the
    returns of rows before it only. Fits happen at rows r with (r + phase) % refit_rows == 0 (`phase`: row 0's
    count of steps since the epoch, so refits fall on the same candles whatever the frame), each on up to `window`
    returns before r (where the frame cuts them, from a row fixed by the clock every FIRST_ROWS, so that a frame
    sliding over new candles keeps its fits); an origin takes the latest fit at or before it (its own row when none
    has MIN_FIT returns) and filters the conditional variance forward with those parameters through the returns
    before it."""
    shocks = rng.standard_normal((len(origins), samples, horizon))  # drawn first: the same draws whatever the data
    return garch_paths(garch_state(close, origins, phase, refit_rows, window), shocks)
