"""Reference forecasters the model must beat, scored by `scores.score` on the same origins with the same S.

All work on log returns of the close (see `scores`). Each origin's input is a trailing window: W one-step log
returns, or W + 1 closes, from the rows before the origin. W is the caller's choice and must be stated in the
backtest's output; the caller cuts the window from the same rows the model sees (never the origin's row or later),
with `trailing_closes`. Draws come from the caller's seeded numpy Generator, so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kronos.errors import InvalidInputError

HALF_LIFE = 24  # rows; the EWMA's decay is 2 ** (-1 / HALF_LIFE)
FIT_WINDOW = 2000  # one-step returns a GARCH fit sees at most, the latest before its origin
REFIT_ROWS = 24  # rows between GARCH refits
SCALE = 100.0  # returns in percent for the GARCH optimiser (its recommended range)


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
    (omega 0, the EWMA's decay) when the fit fails or leaves a non-stationary or non-finite model."""
    from arch import arch_model  # loads on first use, like SciPy

    decay = 2.0 ** (-1.0 / HALF_LIFE)
    fallback = GarchFit(0.0, 1 - decay, decay)
    try:
        fitted = arch_model(returns * SCALE, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(disp="off")
    except (ValueError, np.linalg.LinAlgError):
        return fallback
    omega, alpha, beta = (float(fitted.params[k]) for k in ("omega", "alpha[1]", "beta[1]"))
    if fitted.convergence_flag != 0 or not np.isfinite([omega, alpha, beta]).all() or alpha + beta >= 1:
        return fallback
    return GarchFit(omega / SCALE ** 2, alpha, beta)


def garch(close: np.ndarray, origins: np.ndarray, samples: int, horizon: int, rng: np.random.Generator,
          refit_rows: int = REFIT_ROWS, window: int = FIT_WINDOW) -> np.ndarray:
    """Paths (N, S, H) of GARCH(1,1) log returns, cumulated, at each origin (row index into `close`) from the
    returns of rows before it only: fitted on up to `window` of them at the first origin and every `refit_rows`
    rows after, filtered forward with the fixed parameters in between (see the module docstring)."""
    close, origins = np.asarray(close, float), np.asarray(origins)
    if origins.min() < 4 or origins.max() > len(close) or (np.diff(origins) < 0).any():
        raise InvalidInputError(f"GARCH origins must be non-decreasing rows in [4, {len(close)}]")
    returns = np.diff(np.log(close))  # returns[t - 1] is row t's return: origin o knows returns[:o - 1]
    shocks = rng.standard_normal((len(origins), samples, horizon))  # drawn first: the same draws whatever the data
    fits, variance = [], np.empty(len(origins))
    fit, fitted_at, done, state = None, 0, 0, 0.0
    for i, origin in enumerate(origins):
        if fit is None or origin - fitted_at >= refit_rows:
            fitted_at, done = origin, max(0, origin - 1 - window)
            fit = fit_garch(returns[done:origin - 1])
            state = float(np.var(returns[done:origin - 1]))  # the recursion starts at the window's variance
        for r in returns[done:origin - 1]:  # filtered forward through the returns before this origin
            state = fit.step(state, r)
        done = origin - 1
        fits.append(fit)
        variance[i] = state
    omega, alpha, beta = (np.array([getattr(f, k) for f in fits])[:, None] for k in ("omega", "alpha", "beta"))
    paths, level, total = np.empty_like(shocks), np.repeat(variance[:, None], samples, 1), 0.0  # level: (N, S)
    for h in range(horizon):
        step = np.sqrt(level) * shocks[:, :, h]
        total = total + step
        paths[:, :, h] = total
        level = omega + alpha * step * step + beta * level
    return paths
