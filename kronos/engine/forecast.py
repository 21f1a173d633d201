"""The result of a forecast: every Monte Carlo path, and the summaries and the typed answer derived from them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kronos.data.validation import FEATURE_COLUMNS
from kronos.errors import InvalidInputError
from kronos.model.checkpoints import model_label
from kronos.schemas.forecast import (
    DataBlock,
    ForecastAnswer,
    ForecastWithPaths,
    HourProbability,
    HourSummary,
    Row,
    UsedSettings,
)

DEFAULT_QUANTILES = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)


@dataclass(frozen=True)
class Forecast:
    """Monte Carlo paths of future candles.

    `paths` is (samples, horizon, 6) in the column order open, high, low, close, volume, amount;
    `timestamps` are the horizon's candle times; `history` is the lookback the model saw;
    `tokens` (samples, horizon, 2) are the coarse and fine ids drawn at each step.
    """

    paths: np.ndarray
    timestamps: pd.DatetimeIndex
    history: pd.DataFrame
    seed: int
    model: str
    settings: dict = field(default_factory=dict)
    tokens: np.ndarray | None = None

    def __post_init__(self):
        if self.paths.ndim != 3 or self.paths.shape[1:] != (len(self.timestamps), len(FEATURE_COLUMNS)):
            raise InvalidInputError(f"paths must be (samples, {len(self.timestamps)} timestamps, "
                                    f"{len(FEATURE_COLUMNS)} columns), got {self.paths.shape}")

    @property
    def samples(self) -> int:
        return self.paths.shape[0]

    @property
    def horizon(self) -> int:
        return self.paths.shape[1]

    @property
    def last_close(self) -> float:
        return float(self.history["close"].iloc[-1])

    @property
    def last_timestamp(self) -> pd.Timestamp:
        return self.history["timestamps"].iloc[-1]

    def column(self, name: str) -> np.ndarray:
        """One column of every path: (samples, horizon)."""
        return self.paths[:, :, FEATURE_COLUMNS.index(name)]

    def _frame(self, values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, index=self.timestamps, columns=list(FEATURE_COLUMNS))

    def mean(self) -> pd.DataFrame:
        """Mean over paths, one row per hour ahead."""
        return self._frame(self.paths.mean(axis=0))

    def minimum(self) -> pd.DataFrame:
        """Minimum over paths, one row per hour ahead."""
        return self._frame(self.paths.min(axis=0))

    def maximum(self) -> pd.DataFrame:
        """Maximum over paths, one row per hour ahead."""
        return self._frame(self.paths.max(axis=0))

    def quantile(self, q: float) -> pd.DataFrame:
        """The q-quantile over paths (linear interpolation), one row per hour ahead."""
        return self._frame(np.quantile(self.paths, q, axis=0))

    def close_quantiles(self, qs: tuple[float, ...] = DEFAULT_QUANTILES) -> pd.DataFrame:
        """Quantiles of the close, one column per q, one row per hour ahead."""
        return pd.DataFrame(np.quantile(self.column("close"), qs, axis=0).T, index=self.timestamps, columns=list(qs))

    def upside_probability(self) -> np.ndarray:
        """For every hour ahead, the share of paths whose close is strictly above the last close."""
        return (self.column("close") > self.last_close).mean(axis=0)

    def volatility_amplification_probability(self) -> float | None:
        """Share of paths more volatile over the horizon than the last `horizon` candles (see `volatility_amplified`);
        None below 3 hours."""
        closes = self.history["close"].to_numpy()
        if self.horizon < 3 or len(closes) < self.horizon:
            return None
        return float(volatility_amplified(np.log(self.column("close") / self.last_close), closes).mean())

    def hour_index(self, hour_idx: int | None) -> int:
        """Check a 1-based hour index (None means the last hour) and return it."""
        hour_idx = self.horizon if hour_idx is None else hour_idx
        if not 1 <= hour_idx <= self.horizon:
            raise InvalidInputError(f"hour_idx must be between 1 and the horizon ({self.horizon}), got {hour_idx}")
        return hour_idx

    def to_long_frame(self) -> pd.DataFrame:
        """Every path in long format: path (1-based), hour, timestamp and the six columns."""
        s, h, _ = self.paths.shape
        frame = pd.DataFrame(self.paths.reshape(s * h, -1), columns=list(FEATURE_COLUMNS))
        frame.insert(0, "timestamp", np.tile(self.timestamps.to_numpy(), s))
        frame.insert(0, "hour", np.tile(np.arange(1, h + 1), s))
        frame.insert(0, "path", np.repeat(np.arange(1, s + 1), h))
        return frame

    def answer(self, data: DataBlock, hour_idx: int | None = None, all_samples: bool = False) -> ForecastAnswer:
        """The forecast answer (the seed API's keys) with where its candles came from; `all_samples` adds every path
        (`pred-1..pred-N`), as a ForecastWithPaths."""
        k = self.hour_index(hour_idx)
        upside = self.upside_probability()
        stamps = [t.isoformat() for t in self.timestamps]
        mean, low, high = self.paths.mean(axis=0), self.paths.min(axis=0), self.paths.max(axis=0)
        summary = ForecastAnswer(
            model=model_label(self.model), seed=self.seed, settings=UsedSettings(**self.settings),
            last_timestamp=self.last_timestamp.isoformat(), last_close=self.last_close, hour_idx=k,
            upside_probability=float(upside[k - 1]),
            upside_probability_all_hours=[HourProbability(hour=i + 1, timestamp=stamps[i], probability=float(p))
                                          for i, p in enumerate(upside)],
            volatility_amplification_probability=self.volatility_amplification_probability(),
            predictions=[HourSummary(hour=i + 1, timestamp=stamps[i], mean=_row(mean[i]), min=_row(low[i]),
                                     max=_row(high[i])) for i in range(self.horizon)],
            data=data)
        if not all_samples:
            return summary
        paths = {name: {f"pred-{j + 1}": _floats(self.paths[j, :, c]) for j in range(self.samples)}
                 for c, name in enumerate(FEATURE_COLUMNS)}
        return ForecastWithPaths(**dict(summary), all_samples=paths)


def volatility_amplified(paths: np.ndarray, past_closes: np.ndarray) -> np.ndarray:
    """Whether each path (..., H) of log returns since the last close is more volatile than the last H closes
    (`past_closes` (T,); or (N, T) for paths (N, ..., H) of N runs, each against its own).

    As the live demo defines it: the std (ddof=1) of the path's H one-step log returns (from the last close on)
    against that of the H - 1 log returns within the last H closed candles (24 h: 24 against 23). Shape (...).
    """
    horizon = paths.shape[-1]
    past = np.std(np.diff(np.log(past_closes[..., -horizon:]), axis=-1), axis=-1, ddof=1)
    past = past.reshape(past.shape + (1,) * (paths.ndim - 1 - past.ndim))  # (N, 1, ...) against (N, ...)
    steps = np.diff(paths, axis=-1, prepend=0.0)  # (..., H) one-step log returns
    return np.std(steps, axis=-1, ddof=1) > past


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def _row(values: np.ndarray) -> Row:
    return Row(**dict(zip(FEATURE_COLUMNS, _floats(values))))
