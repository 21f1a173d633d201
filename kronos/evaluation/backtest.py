"""Walk-forward backtest: the engine over many origins of one candle frame, scored against baselines, raw and calibrated.

Origins are rows of the frame, every `every` rows: the last `origins` of them that leave `horizon` realised rows
after them and `lookback` rows before them. At origin o the engine sees rows o - lookback .. o - 1 only, and
forecasts rows o .. o + horizon - 1 (hour h is row o + h - 1). Scores are on the close as log returns from the
close of row o - 1 (kronos.evaluation.scores). The baselines see the same rows as the model: the random walk's
volatility and the bootstrap's returns come from the lookback's one-step log returns (W = lookback - 1), the
"trailing frequency" of up moves from its closes. Calibration learns at each origin only from outcomes known
there (kronos.evaluation.calibration).

Origins run through `Forecaster.forecast_many` (several histories per generation loop); each origin has its own
seed, drawn from the run's seed and the origin's time, so a forecast does not depend on which other origins ran
with it. Each origin's paths are kept in the store under (weights, settings, the rows the model saw): a repeated or
longer run reuses them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from kronos.data.store import CandleStore
from kronos.data.validation import FEATURE_COLUMNS, check_history
from kronos.engine import HISTORIES_PER_BATCH, ForecastSource
from kronos.errors import InvalidInputError
from kronos.evaluation import baselines
from kronos.evaluation.calibration import MIN_COUNT, calibrate
from kronos.evaluation.scores import brier, hit_rate, log_loss, plain, score, skill
from kronos.forecast import volatility_amplified
from kronos.settings import FORECAST_DEFAULTS as DEFAULTS, SEED_RANGE

MAX_ORIGINS = 2000
KEPT_EVERY = 4 * HISTORIES_PER_BATCH  # origins forecast between two writes to the store


@dataclass(frozen=True)
class BacktestSettings:
    """Where the origins fall and how each one is forecast (sampling defaults: the live demo's)."""

    origins: int = 200
    every: int = 24
    horizon: int = DEFAULTS.horizon
    samples: int = DEFAULTS.samples
    lookback: int = DEFAULTS.lookback
    temperature: float = DEFAULTS.temperature
    top_p: float = DEFAULTS.top_p
    top_k: int = DEFAULTS.top_k
    seed: int = DEFAULTS.seed
    min_count: int = MIN_COUNT  # known outcomes needed before an origin is calibrated

    def __post_init__(self):
        problems = []
        if not 1 <= self.origins <= MAX_ORIGINS:
            problems.append(f"origins must be between 1 and {MAX_ORIGINS}, got {self.origins}")
        if self.every < 1:
            problems.append(f"every must be at least 1 row, got {self.every}")
        if self.lookback < 32:
            problems.append(f"lookback must be at least 32 rows, got {self.lookback}")
        if self.min_count < 1:
            problems.append(f"min_count must be at least 1, got {self.min_count}")
        if not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            problems.append(f"seed must be between {SEED_RANGE[0]} and {SEED_RANGE[1]}, got {self.seed}")
        if problems:
            raise InvalidInputError(problems)

    def sampling(self) -> dict:
        """The engine's keyword arguments shared by every origin."""
        return dict(horizon=self.horizon, samples=self.samples, temperature=self.temperature, top_p=self.top_p,
                    top_k=self.top_k, lookback=self.lookback)


@dataclass(frozen=True, eq=False)
class Backtest:
    """A backtest's result: its settings, origins, the scores of every forecaster, and skill against the random walk."""

    settings: BacktestSettings
    model: str
    origin_times: pd.DatetimeIndex
    reused: int  # origins whose paths came from the store
    scores: dict[str, dict]  # forecaster -> Scores.to_dict() (or the upside scores of "trailing_frequency")
    skill: dict[str, dict[str, list]]  # forecaster -> score -> per hour, against the random walk
    calibrated_origins: list[int]  # per hour: origins calibrated (the others used raw values)
    latest: dict | None = None  # with `latest`: the forecast after the last row, raw and calibrated

    def to_dict(self) -> dict:
        """JSON-ready: settings, origins (count, their times, how many were reused), scores per forecaster, skill
        against the random walk, calibrated origins per hour, and `latest` when made."""
        result = {"settings": dataclasses.asdict(self.settings), "model": self.model, "origins": len(self.origin_times),
                  "origin_times": [t.isoformat() for t in self.origin_times], "reused": self.reused,
                  "baseline_window": self.settings.lookback - 1,
                  "calibrated_origins": self.calibrated_origins, "scores": self.scores, "skill": self.skill}
        if self.latest is not None:
            result["latest"] = self.latest
        return result


def rows_needed(settings: BacktestSettings) -> int:
    """How many of the latest candles a backtest with these settings can use."""
    return settings.lookback + settings.horizon + (settings.origins - 1) * settings.every


def origin_rows(rows: int, settings: BacktestSettings) -> np.ndarray:
    """The origins' row indices, oldest first: every `every` rows back from the last one with `horizon` rows after
    it, the last `origins` of those with `lookback` rows before them."""
    last = rows - settings.horizon
    found = np.arange(last, settings.lookback - 1, -settings.every)[:settings.origins][::-1]
    if len(found) == 0:
        raise InvalidInputError(f"{rows} rows leave no origin: a backtest needs at least lookback + horizon = "
                                f"{settings.lookback + settings.horizon} rows")
    return found


def check_backtest(settings: BacktestSettings, rows: int) -> None:
    """InvalidInputError, before any forecast, when `rows` candles cannot hold a backtest with these settings: the
    trailing-frequency baseline counts h-hour moves within the lookback (horizon < lookback), and an origin needs
    lookback rows before it and horizon rows after it."""
    if settings.horizon >= settings.lookback:
        raise InvalidInputError(f"a backtest's horizon ({settings.horizon}) must be shorter than its lookback "
                                f"({settings.lookback}): the trailing-frequency baseline counts moves of up to "
                                "horizon hours within the lookback's closes")
    origin_rows(rows, settings)


def run_backtest(forecaster: ForecastSource, frame: pd.DataFrame, settings: BacktestSettings, *,
                 store: CandleStore | None = None, latest: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> Backtest:
    """Forecast every origin of `frame` (reusing stored paths), score the model raw and calibrated and the baselines.

    With `latest`, also forecast after the frame's last row and calibrate that forecast on every known outcome.
    """
    frame = check_history(frame)
    check_backtest(settings, len(frame))
    forecaster.check_arguments(settings.horizon, settings.samples, settings.temperature, settings.top_p,
                               settings.top_k)
    origins = origin_rows(len(frame), settings)
    close = frame["close"].to_numpy()
    stamps = pd.DatetimeIndex(frame["timestamps"])
    runs = list(origins) + ([len(frame)] if latest else [])
    paths, vol_prob, reused = _forecast_origins(forecaster, frame, runs, settings, store, progress)
    last_close = close[np.array(runs) - 1]  # (N',)
    samples = np.log(paths / last_close[:, None, None])  # (N', S, H) log returns
    past = baselines.trailing_closes(close, np.array(runs), settings.lookback - 1)  # (N', W + 1)
    outcome_rows = origins[:, None] + np.arange(settings.horizon)  # (N, H)
    observed = np.log(close[outcome_rows] / last_close[:len(origins), None])  # (N, H)
    n = len(origins)

    calibrated = calibrate(samples, np.vstack([observed, np.zeros((len(runs) - n, settings.horizon))]),
                           np.array(runs), min_count=settings.min_count)
    vol_outcome = np.array([volatility_amplified(observed[i], past[i]) for i in range(n)]) \
        if settings.horizon >= 3 else None
    trailing = np.diff(np.log(past[:n]), axis=1)  # (N, W) one-step log returns
    rng = np.random.default_rng(settings.seed)
    forecasters = {
        "model": (samples[:n], None, vol_prob[:n]),
        "model_calibrated": (calibrated.samples[:n], calibrated.upside_prob[:n], vol_prob[:n]),
        "random_walk": (baselines.random_walk(trailing, settings.samples, settings.horizon, rng), None, None),
        "bootstrap": (baselines.bootstrap(trailing, settings.samples, settings.horizon, rng), None, None),
    }
    scores = {}
    for name, (draws, upside, vol) in forecasters.items():
        if vol is None and vol_outcome is not None:  # baselines: the same path rule as the model's
            vol = np.array([volatility_amplified(draws[i], past[i]).mean() for i in range(n)])
        bands = {k: (lo[:n], hi[:n]) for k, (lo, hi) in calibrated.bands.items()} if name == "model_calibrated" else None
        scores[name] = score(draws, observed, upside, None if vol_outcome is None else vol, vol_outcome,
                             bands=bands, seed=settings.seed).to_dict()
    scores["trailing_frequency"] = _upside_scores(baselines.up_frequency(past[:n], settings.horizon), observed,
                                                  settings.samples)
    reference = scores["random_walk"]
    skills = {name: {key: plain(skill(scores[name][key], reference[key])) for key in ("crps", "brier_upside")}
              for name in ("model", "model_calibrated", "bootstrap")}
    latest_view = _latest(frame, settings, samples[-1], calibrated, stamps) if latest else None
    return Backtest(settings, forecaster.name, stamps[origins], reused, scores, skills,
                    calibrated.n_calibrated.tolist(), latest_view)


def _forecast_origins(forecaster: ForecastSource, frame: pd.DataFrame, runs: list[int], settings: BacktestSettings,
                      store: CandleStore | None, progress: Callable[[int, int], None] | None
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """Closes (N, S, H) of every origin's paths and their volatility amplification probabilities (N,), reusing
    the store's; and how many were reused."""
    stamps = frame["timestamps"]
    windows = [frame.iloc[o - settings.lookback:o] for o in runs]
    keys = [_key(forecaster, settings, window) for window in windows]
    found = store.backtest_paths(keys) if store is not None else {}
    missing = [i for i, key in enumerate(keys) if key not in found]
    for start in range(0, len(missing), KEPT_EVERY):  # kept as they come: an interrupted run loses little
        part = missing[start:start + KEPT_EVERY]
        seeds = [origin_seed(settings.seed, stamps.iloc[runs[i] - 1]) for i in part]
        steps = _offset(progress, start, len(part), len(missing))
        made = forecaster.forecast_many([windows[i] for i in part], seeds=seeds, progress=steps, **settings.sampling())
        new = {keys[i]: (f.column("close"), f.volatility_amplification_probability()) for i, f in zip(part, made)}
        if store is not None:
            store.put_backtest_paths(new)
        found = {**found, **new}
    paths = np.stack([found[key][0] for key in keys])
    vol = np.array([np.nan if found[key][1] is None else found[key][1] for key in keys])
    return paths, vol, len(keys) - len(missing)


def _offset(progress: Callable[[int, int], None] | None, done: int, part: int,
            total: int) -> Callable[[int, int], None] | None:
    """One part's progress (`part` origins after `done` of `total`) as the run's, counted in hundredths of origins."""
    if progress is None:
        return None
    return lambda step, steps: progress(round(100 * (done + part * step / steps)), 100 * total)


def origin_seed(seed: int, last_time: pd.Timestamp) -> int:
    """The seed of the origin whose last seen candle opened at `last_time`: the same whichever origins run with it."""
    return int(np.random.SeedSequence([seed, int(last_time.value // 10**9)]).generate_state(1)[0] % (SEED_RANGE[1] + 1))


def _key(forecaster: ForecastSource, settings: BacktestSettings, window: pd.DataFrame) -> str:
    """What one origin's paths depend on: the weights, the sampling settings, the seed rule and the rows seen."""
    described = json.dumps({"weights": forecaster.fingerprint, "context": forecaster.max_context,
                            "seed": origin_seed(settings.seed, window["timestamps"].iloc[-1]),
                            **settings.sampling()}, sort_keys=True)
    rows = pd.util.hash_pandas_object(window[["timestamps", *FEATURE_COLUMNS]], index=False).to_numpy()
    return hashlib.sha256(described.encode() + rows.tobytes()).hexdigest()


def _upside_scores(prob: np.ndarray, observed: np.ndarray, samples: int) -> dict[str, list]:
    """Brier score, log loss and hit rate per hour of an upside probability alone."""
    up = observed > 0
    return {"brier_upside": brier(prob, up).mean(0).tolist(), "log_loss_upside": log_loss(prob, up, samples).mean(0)
            .tolist(), "hit_rate": hit_rate(prob, up).tolist()}


def _latest(frame: pd.DataFrame, settings: BacktestSettings, samples: np.ndarray, calibrated,
            stamps: pd.DatetimeIndex) -> dict:
    """The forecast after the last row: per hour, raw and calibrated upside probability and band edges (log returns)."""
    step = stamps[-1] - stamps[-2]
    return {"after": stamps[-1].isoformat(), "last_close": float(frame["close"].iloc[-1]),
            "calibrated": [bool(c) for c in calibrated.calibrated[-1]],
            "timestamps": [(stamps[-1] + step * (h + 1)).isoformat() for h in range(settings.horizon)],
            "upside_raw": (samples > 0).mean(0).tolist(), "upside_calibrated": calibrated.upside_prob[-1].tolist(),
            "bands_calibrated": {k: [lo[-1].tolist(), hi[-1].tolist()] for k, (lo, hi) in calibrated.bands.items()}}
