"""Reference forecasters the model must beat, scored by `scores.score` on the same origins with the same S.

All work on log returns of the close (see `scores`). Each origin's input is a trailing window: W one-step log
returns, or W + 1 closes, from the rows before the origin. W is the caller's choice and must be stated in the
backtest's output; the caller cuts the window from the same rows the model sees (never the origin's row or later),
with `trailing_closes`. Draws come from the caller's seeded numpy Generator, so runs are reproducible.
"""

from __future__ import annotations

import numpy as np

from kronos.errors import InvalidInputError


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
