"""Walk-forward backtest: the engine over many origins of one frame, scored against baselines, raw and calibrated.

Origins are rows of the frame, every `every` rows: the last `origins` of them that leave `horizon` realised rows
after them and `lookback` rows before them. At origin o the engine sees rows o - lookback .. o - 1 only, and
forecasts rows o .. o + horizon - 1 (hour h is row o + h - 1). Scores are on the close as log returns from the
close of row o - 1 (kronos.evaluation.scores). The baselines see the same rows as the model: the random walk's
and the EWMA's volatility and the bootstrap's returns come from the lookback's one-step log returns
(W = lookback - 1), the "trailing frequency" of up moves from its closes; GARCH(1,1) is fitted on up to
baselines.FIT_WINDOW returns before the origin (kronos.evaluation.baselines). Calibration and the combined forecast
learn at each origin only from outcomes known there (kronos.evaluation.issuing). Skill is reported against the
random walk and against the best baseline (the lowest mean CRPS over the hours on these origins).

Origins run through `Forecaster.forecast_many` (several histories per generation loop); each origin has its own
seed, drawn from the run's seed and the origin's time, so a forecast does not depend on which other origins ran
with it. Each origin's paths are kept in the store under (weights, settings but samples and horizon, the rows the
model saw), with their sample count and horizon: a run asking no more paths and no longer horizon slices them, one
asking more paths forecasts only the missing ones (see `origin_keys`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kronos.data.store import CandleStore
from kronos.data.validation import FEATURE_COLUMNS, check_history
from kronos.engine import DRAW_SCHEME, HISTORIES_PER_BATCH, ForecastSource, column_scales
from kronos.engine.forecast import volatility_amplified
from kronos.errors import InvalidInputError
from kronos.evaluation import baselines
from kronos.evaluation.calibration import MIN_COUNT
from kronos.evaluation.issuing import Issue, evaluate, runs_at
from kronos.evaluation.pooling import DEFAULT
from kronos.evaluation.probability import DEFAULT_MAP
from kronos.evaluation.registry import BASELINES, REFERENCE, TRAILING
from kronos.evaluation.scores import QUANTILE_METHOD, Scores, UpsideScores, plain, score, skill, upside_scores
from kronos.schemas import backtest as schema
from kronos.settings import FORECAST_DEFAULTS, ORIGIN_LIMITS, SEED_RANGE, ForecastSettings

KEPT_EVERY = 4 * HISTORIES_PER_BATCH  # origins forecast between two writes to the store


@dataclass(frozen=True)
class BacktestSettings:
    """How each origin is forecast (`forecast`: its sampling settings, checked there; hour_idx unset, a backtest
    scores every hour) and where the origins fall; the help texts are read by the CLI and the API."""

    forecast: ForecastSettings = FORECAST_DEFAULTS
    origins: int = dataclasses.field(default=200, metadata={
        "help": "forecast origins, the latest ones that leave the lookback before and the horizon after them"})
    every: int = dataclasses.field(default=24, metadata={"help": "rows between origins"})
    min_count: int = dataclasses.field(default=MIN_COUNT, metadata={
        "help": "known outcomes before an origin is calibrated"})

    def __post_init__(self):
        problems = []
        if self.forecast.hour_idx is not None:
            problems.append(f"a backtest scores every hour: its settings take no hour_idx, got "
                            f"{self.forecast.hour_idx}")
        if not 1 <= self.origins <= ORIGIN_LIMITS.engine:
            problems.append(f"origins must be between 1 and {ORIGIN_LIMITS.engine}, got {self.origins}")
        if self.every < 1:
            problems.append(f"every must be at least 1 row, got {self.every}")
        if self.min_count < 1:
            problems.append(f"min_count must be at least 1, got {self.min_count}")
        if self.forecast.horizon >= self.forecast.lookback:  # the trailing-frequency baseline's h-hour moves
            problems.append(f"a backtest's horizon ({self.forecast.horizon}) must be shorter than its lookback "
                            f"({self.forecast.lookback}): the trailing-frequency baseline counts moves of up to "
                            "horizon hours within the lookback's closes")
        if problems:
            raise InvalidInputError(problems)

    def sampling(self) -> dict:
        """The engine's keyword arguments shared by every origin (each origin has its own seed, `origin_seed`)."""
        return {k: v for k, v in self.forecast.engine_arguments().items() if k != "seed"}

    def describe(self) -> dict[str, int | float]:
        """Every setting in one flat mapping, as the backtest's JSON has them."""
        return {"origins": self.origins, "every": self.every, **self.forecast.engine_arguments(),
                "min_count": self.min_count}


BACKTEST_DEFAULTS = BacktestSettings()


@dataclass(frozen=True, eq=False)
class Latest:
    """The forecast after the frame's last row, per hour: raw, calibrated and combined (log returns from
    `last_close`), with the pool's weights (component -> (H,))."""

    after: pd.Timestamp
    last_close: float
    timestamps: pd.DatetimeIndex
    calibrated: np.ndarray  # (H,) bool
    pooled: np.ndarray  # (H,) bool
    upside_raw: np.ndarray
    upside_calibrated: np.ndarray
    bands_calibrated: dict[str, tuple[np.ndarray, np.ndarray]]
    upside_combined: np.ndarray
    bands_combined: dict[str, tuple[np.ndarray, np.ndarray]]
    median_combined: np.ndarray
    volatility_amplification_combined: float | None
    weights: dict[str, np.ndarray]

    def to_schema(self) -> schema.Latest:
        """The typed JSON shape."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values |= {"after": self.after.isoformat(), "timestamps": [t.isoformat() for t in self.timestamps]}
        return schema.Latest.model_validate(plain(values))


@dataclass(frozen=True, eq=False)
class Backtest:
    """A backtest's result: settings, origins, every forecaster's scores, skills against the random walk and the
    best baseline, the pool's mean weights, and the latest forecast when asked."""

    settings: BacktestSettings
    model: str
    origin_times: pd.DatetimeIndex
    reused: int  # origins whose paths came from the store
    scores: dict[str, Scores | UpsideScores]  # forecaster -> its scores ("trailing_frequency": upside only)
    skill: dict[str, dict[str, np.ndarray]]  # forecaster -> "crps" / "brier_upside" -> (H,), against the random walk
    skill_best: dict[str, dict[str, np.ndarray]]  # the same against `best_baseline`
    best_baseline: str
    calibrated_origins: np.ndarray  # (H,) origins calibrated per hour (the others used raw values)
    pooled_origins: np.ndarray  # (H,) origins whose pool weights were learnt
    weights: dict[str, np.ndarray]  # component -> (H,) mean pool weight over the pooled origins
    latest: Latest | None = None

    def to_schema(self) -> schema.BacktestResult:
        """The typed JSON shape (kronos.schemas.backtest)."""
        return schema.BacktestResult(
            settings=self.settings.describe(), model=self.model, origins=len(self.origin_times),
            origin_times=[t.isoformat() for t in self.origin_times], reused=self.reused,
            baseline_window=self.settings.forecast.lookback - 1, calibrated_origins=self.calibrated_origins.tolist(),
            pooled_origins=self.pooled_origins.tolist(), best_baseline=self.best_baseline,
            scores={name: scores.to_dict() for name, scores in self.scores.items()}, skill=plain(self.skill),
            skill_best=plain(self.skill_best), weights=plain(self.weights),
            latest=None if self.latest is None else self.latest.to_schema())

    def to_dict(self) -> dict:
        """JSON-ready Python of `to_schema()`."""
        return self.to_schema().model_dump(mode="json")


def rows_needed(settings: BacktestSettings) -> int:
    """How many of the latest candles a backtest with these settings can use."""
    return settings.forecast.lookback + settings.forecast.horizon + (settings.origins - 1) * settings.every


def origin_rows(rows: int, settings: BacktestSettings) -> np.ndarray:
    """The origins' row indices, oldest first: every `every` rows back from the last one with `horizon` rows after
    it, the last `origins` of those with `lookback` rows before them."""
    lookback, horizon = settings.forecast.lookback, settings.forecast.horizon
    found = np.arange(rows - horizon, lookback - 1, -settings.every)[:settings.origins][::-1]
    if len(found) == 0:
        raise InvalidInputError(f"{rows} rows leave no origin: a backtest needs at least lookback + horizon = "
                                f"{lookback + horizon} rows")
    return found


def check_backtest(settings: BacktestSettings, rows: int) -> None:
    """InvalidInputError, before any forecast, when `rows` candles cannot hold a backtest with these settings: an
    origin needs lookback rows before it and horizon rows after it."""
    origin_rows(rows, settings)


def run_backtest(forecaster: ForecastSource, frame: pd.DataFrame, settings: BacktestSettings, *,
                 store: CandleStore | None = None, latest: bool = False,
                 progress: Callable[[int, int], None] | None = None, upside_map: str = DEFAULT_MAP) -> Backtest:
    """Forecast every origin of `frame` (reusing stored paths), score the model raw and calibrated, the baselines
    and the combined forecast. With `latest`, also forecast after the frame's last row and issue that forecast raw,
    calibrated and combined from every known outcome. `upside_map`: the probability map of the calibrated and
    combined upside and volatility amplification probabilities (kronos.evaluation.probability)."""
    frame = check_history(frame)
    check_backtest(settings, len(frame))
    chosen = settings.forecast
    forecaster.check_arguments(chosen.horizon, chosen.samples, chosen.temperature, chosen.top_p, chosen.top_k)
    origins = origin_rows(len(frame), settings)
    close = frame["close"].to_numpy()
    stamps = pd.DatetimeIndex(frame["timestamps"])
    runs = np.array(list(origins) + ([len(frame)] if latest else []))
    paths, vol_prob, reused = _forecast_origins(forecaster, frame, list(runs), settings, store, progress)
    samples = np.log(paths / close[runs - 1][:, None, None])  # (N', S, H) log returns
    n = len(origins)
    inputs = runs_at(close, stamps, runs, samples, vol_prob, n, chosen.lookback - 1, chosen.seed)
    issued = evaluate(inputs, min_count=settings.min_count, upside_map=upside_map).issue
    observed = inputs.observed[:n]
    past = inputs.past[:n]
    vol_outcome = volatility_amplified(observed, past) if chosen.horizon >= 3 else None
    scores = {name: score(f.samples[:n], observed, None if f.upside is None else f.upside[:n],
                          None if vol_outcome is None else f.vol[:n], vol_outcome, seed=chosen.seed,
                          bands=None if f.bands is None else {k: (lo[:n], hi[:n]) for k, (lo, hi) in f.bands.items()})
              for name, f in issued.forecasters.items()}
    scores[TRAILING] = upside_scores(baselines.up_frequency(past, chosen.horizon), observed, chosen.samples)
    best = min(BASELINES, key=lambda name: float(np.mean(scores[name].crps)))
    pooled = issued.pool.pooled[:n]
    weights = {name: np.where(pooled.any(0), (issued.pool.weights[:n, k] * pooled).sum(0) / np.maximum(
        pooled.sum(0), 1), float(name == DEFAULT)) for k, name in enumerate(issued.pool.names)}
    latest_view = latest_of(issued, -1, stamps[-1], float(close[-1]), stamps[-1] - stamps[-2]) if latest else None
    return Backtest(settings, forecaster.name, stamps[origins], reused, scores,
                    _skills(scores, REFERENCE), _skills(scores, best), best,
                    issued.calibrated.calibrated[:n].sum(0), pooled.sum(0), weights, latest_view)


def _skills(scores: dict[str, Scores | UpsideScores], reference: str) -> dict[str, dict[str, np.ndarray]]:
    """CRPS and Brier skill per hour of every distribution forecaster but `reference`, against it."""
    return {name: {key: skill(getattr(s, key), getattr(scores[reference], key)) for key in ("crps", "brier_upside")}
            for name, s in scores.items() if isinstance(s, Scores) and name != reference}


def _forecast_origins(forecaster: ForecastSource, frame: pd.DataFrame, runs: list[int], settings: BacktestSettings,
                      store: CandleStore | None, progress: Callable[[int, int], None] | None
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """Closes (N, S, H) of every origin's paths and their volatility amplification probabilities (N,), served from
    the store's where it holds at least S paths of at least H steps; and how many were served so.

    An origin stored with fewer paths gets only the missing ones (at its stored horizon, kept with the others); one
    stored with a shorter horizon, or not at all, is forecast whole."""
    chosen = settings.forecast
    keys = origin_keys(forecaster, frame, runs, settings)
    found = store.backtest_paths(keys) if store is not None else {}
    parts: dict[tuple[int, int], list[int]] = {}  # (first path, horizon) -> the origins forecast so
    for i, key in enumerate(keys):
        held = found[key][0].shape if key in found else (0, 0)
        if held[1] < chosen.horizon:
            parts.setdefault((0, chosen.horizon), []).append(i)
        elif held[0] < chosen.samples:
            parts.setdefault((held[0], held[1]), []).append(i)
    total, done = sum(map(len, parts.values())), 0
    for (first, horizon), part in parts.items():
        for start in range(0, len(part), KEPT_EVERY):  # kept as they come: an interrupted run loses little
            piece = part[start:start + KEPT_EVERY]
            made = _forecast_piece(forecaster, frame, [runs[i] for i in piece], settings, first, horizon,
                                   _offset(progress, done, len(piece), total))
            new = {keys[i]: _union(found.get(keys[i]), closes, frame, runs[i]) for i, closes in zip(piece, made)}
            if store is not None:
                store.put_backtest_paths(new)
            found, done = {**found, **new}, done + len(piece)
    served = [serve(found[key], frame, o, chosen.samples, chosen.horizon) for key, o in zip(keys, runs)]
    vol = np.array([np.nan if v is None else v for _, v in served])
    return np.stack([closes for closes, _ in served]), vol, len(keys) - total


def stored_origins(forecaster: ForecastSource, frame: pd.DataFrame, runs: list[int], settings: BacktestSettings,
                   store: CandleStore) -> dict[int, tuple[np.ndarray, float | None]]:
    """The origins (by row) whose paths the store can serve whole: closes (S, H) and volatility probability."""
    chosen, keys = settings.forecast, origin_keys(forecaster, frame, runs, settings)
    found = store.backtest_paths(keys)
    held = {o: found[key] for o, key in zip(runs, keys) if key in found}
    return {o: serve(h, frame, o, chosen.samples, chosen.horizon) for o, h in held.items()
            if np.all(np.greater_equal(h[0].shape, (chosen.samples, chosen.horizon)))}


def _forecast_piece(forecaster: ForecastSource, frame: pd.DataFrame, runs: list[int], settings: BacktestSettings,
                    first: int, horizon: int, progress: Callable[[int, int], None] | None) -> list[np.ndarray]:
    """Closes (S - first, horizon) of paths first .. S - 1 of the origins at rows `runs`, each with its own seed."""
    chosen, stamps = settings.forecast, frame["timestamps"]
    arguments = settings.sampling() | {"horizon": horizon, "samples": chosen.samples - first}
    if first:
        arguments["first_path"] = first
    made = forecaster.forecast_many([frame.iloc[o - chosen.lookback:o] for o in runs], progress=progress,
                                    seeds=[origin_seed(chosen.seed, stamps.iloc[o - 1]) for o in runs], **arguments)
    return [f.column("close") for f in made]


def _union(held: tuple[np.ndarray, float | None] | None, closes: np.ndarray, frame: pd.DataFrame,
           run: int) -> tuple[np.ndarray, float | None]:
    """What to keep of an origin: its held paths (if any) then the new ones, with their volatility probability."""
    union = closes if held is None or held[0].shape[1] != closes.shape[1] else np.concatenate((held[0], closes))
    return union, _vol_probability(union, frame, run)


def serve(held: tuple[np.ndarray, float | None], frame: pd.DataFrame, run: int, samples: int,
          horizon: int) -> tuple[np.ndarray, float | None]:
    """An origin's first `samples` paths' first `horizon` steps, of those held (at least as many and as long), with
    their volatility amplification probability (the held one where nothing is cut)."""
    cut = held[0][:samples, :horizon]
    return held if cut.shape == held[0].shape else (cut, _vol_probability(cut, frame, run))


def _vol_probability(closes: np.ndarray, frame: pd.DataFrame, run: int) -> float | None:
    """Forecast.volatility_amplification_probability of the origin at row `run` with these closes (S, H)."""
    close = frame["close"].to_numpy()[:run]
    return None if closes.shape[1] < 3 else float(volatility_amplified(np.log(closes / close[-1]), close).mean())


def _offset(progress: Callable[[int, int], None] | None, done: int, part: int,
            total: int) -> Callable[[int, int], None] | None:
    """One part's progress (`part` origins after `done` of `total`) as the run's, counted in hundredths of origins."""
    if progress is None:
        return None
    return lambda step, steps: progress(round(100 * (done + part * step / steps)), 100 * total)


def origin_seed(seed: int, last_time: pd.Timestamp) -> int:
    """The seed of the origin whose last seen candle opened at `last_time`: the same whichever origins run with it."""
    return int(np.random.SeedSequence([seed, int(last_time.value // 10**9)]).generate_state(1)[0] % (SEED_RANGE[1] + 1))


def origin_keys(forecaster: ForecastSource, frame: pd.DataFrame, runs: list[int], settings: BacktestSettings
                ) -> list[str]:
    """The store's key of each origin's paths (rows `runs` of `frame`): what they depend on, the weights, the draw
    scheme, the sampling settings but the sample count and horizon (a path's first steps, and a forecast's first
    paths, do not depend on them: kronos.engine.planning), the seed rule and the rows seen (pandas' per-row hash of
    the window's timestamps and features), and the engine's column scales where it rescales the window. The horizon
    is in the key only where lookback + horizon exceed the context: the decoder's window then depends on it. Keys
    must not change for the same inputs, or stored origins are forecast again (tests/test_backtest.py holds some)."""
    stamps, lookback, horizon = frame["timestamps"], settings.forecast.lookback, settings.forecast.horizon
    rows = pd.util.hash_pandas_object(frame[["timestamps", *FEATURE_COLUMNS]], index=False).to_numpy()
    values = frame[list(FEATURE_COLUMNS)].to_numpy()
    keys = []
    for o in runs:
        seed = origin_seed(settings.forecast.seed, stamps.iloc[o - 1])
        described = {"weights": forecaster.fingerprint, "context": forecaster.max_context, "seed": seed,
                     "draws": DRAW_SCHEME, **settings.sampling()}
        del described["samples"], described["horizon"]
        if lookback + horizon > forecaster.max_context:
            described["horizon"] = horizon
        scale = column_scales(values[o - lookback:o])
        if (scale != 1).any():  # paths stored before the engine rescaled such windows are wrong: not to be reused
            described["scale"] = scale.tolist()
        text = json.dumps(described, sort_keys=True)
        keys.append(hashlib.sha256(text.encode() + rows[o - lookback:o].tobytes()).hexdigest())
    return keys


def latest_of(issued: Issue, run: int, after: pd.Timestamp, last_close: float, step: pd.Timedelta) -> Latest:
    """The forecast at run index `run` of `issued` (after the candle opened at `after`, closing at `last_close`),
    raw, calibrated and combined."""
    model, combined = issued.forecasters["model_calibrated"], issued.forecasters["combined"]
    horizon = model.samples.shape[2]
    vol = combined.vol[run] if horizon >= 3 and np.isfinite(combined.vol[run]) else None
    return Latest(
        after=after, last_close=last_close,
        timestamps=pd.DatetimeIndex([after + step * (h + 1) for h in range(horizon)]),
        calibrated=issued.calibrated.calibrated[run], pooled=issued.pool.pooled[run],
        upside_raw=(issued.forecasters["model"].samples[run] > 0).mean(0), upside_calibrated=model.upside[run],
        bands_calibrated={k: (lo[run], hi[run]) for k, (lo, hi) in model.bands.items()},
        upside_combined=combined.upside[run],
        bands_combined={k: (lo[run], hi[run]) for k, (lo, hi) in combined.bands.items()},
        median_combined=np.quantile(combined.samples[run], 0.5, axis=0, method=QUANTILE_METHOD),
        volatility_amplification_combined=None if vol is None else float(vol),
        weights={name: issued.pool.weights[run, k] for k, name in enumerate(issued.pool.names)})
