"""The calibration record behind a live combined forecast: which origins it holds (anchored by the clock), how it is
fitted (newest first, usable early), what of it is kept (kronos.evaluation.kept), and a live forecast issued from
it in milliseconds (`issue_latest`).

Origins are a backtest's (kronos.evaluation.backtest) with the forecast's own sampling settings and lookback and the
default seed, so forecasts drawn with any seed share them, every EVERY candles, aligned to the clock: origin q's
first forecast candle opens EVERY * q steps after the epoch. The newest, q_last, is the latest whose outcome is in
the frame; the first is anchored, q_first = ceil((q_last - ORIGINS + 1) / BLOCK) * BLOCK, so the record holds
ORIGINS - BLOCK + 1 to ORIGINS origins (fewer when the data is shorter: from the first origin it allows, down to
`minimum_origins`; the block is smaller when ORIGINS leaves less room above that minimum). Never more than ORIGINS:
what a calibration may cost (a request's work budget, the candles it loads, its time) stays what it was. Each
origin learns only from the record's origins known at it (kronos.evaluation.issuing), so the record grows at its
end: within a block a new candle adds at most one origin, evaluated alone from the kept terms of the others; every
BLOCK origins (6 days at EVERY = 6) the first origin moves and the record is evaluated afresh from the stored paths.
Front ends say "over the last N forecasts".

Newest first: a record's missing origins are forecast newest first, in pieces. Once the newest `minimum_origins`
have paths a provisional record of those alone (each still learning only from the known ones among them) is
evaluated and published, then again after each further STEP origins, up to the full record, which is kept as final.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kronos.cancellation import check_current
from kronos.data.store import CandleStore
from kronos.data.validation import FEATURE_COLUMNS
from kronos.engine import HISTORIES_PER_BATCH, ForecastSource
from kronos.engine.forecast import Forecast
from kronos.errors import InvalidInputError
from kronos.evaluation.backtest import BacktestSettings, Latest, _forecast_origins, latest_of, stored_origins
from kronos.evaluation.baselines import FIRST_ROWS, FIT_WINDOW, garch_state, trailing_closes
from kronos.evaluation.calibration import MIN_COUNT
from kronos.evaluation.issuing import (
    Fits,
    Runs,
    Terms,
    apply,
    clock_phase,
    evaluate,
    fit_at,
    nanoseconds,
    runs_at,
)
from kronos.evaluation.kept import KeptGarch, KeptRecord, Scored, keep_record, kept_record, record_key, scored
from kronos.evaluation.probability import DEFAULT_MAP
from kronos.evaluation.registry import BASELINES, forecasters
from kronos.evaluation.scores import skill
from kronos.schemas.calibrated import Unavailable
from kronos.settings import FORECAST_DEFAULTS, ForecastSettings

ORIGINS, EVERY = 200, 6
BLOCK = 24  # origins between two moves of a record's first origin
STEP = 2 * HISTORIES_PER_BATCH  # origins forecast between two provisional records


def minimum_origins(horizon: int, every: int, min_count: int) -> int:
    """Origins a backtest needs for the forecast after them to have `min_count` known outcomes at every hour."""
    return min_count + math.ceil(horizon / every)


def calibration_rows(lookback: int, horizon: int, origins: int = ORIGINS, every: int = EVERY) -> int:
    """The most candles a forecast's calibration reads (its record's origins, one step of clock alignment, the GARCH
    fit window before them): what a front end loads to calibrate; fewer rows give fewer origins."""
    return lookback + horizon + origins * every + FIT_WINDOW + FIRST_ROWS


def record_sampling(forecast: Forecast) -> ForecastSettings:
    """The sampling settings of a forecast's record: the forecast's own, with the default seed."""
    used = forecast.settings
    return ForecastSettings(horizon=forecast.horizon, samples=forecast.samples, lookback=used.lookback,
                            temperature=used.temperature, top_p=used.top_p, top_k=used.top_k,
                            seed=FORECAST_DEFAULTS.seed)


@dataclass(frozen=True, eq=False)
class After:
    """The run after the frame's last row, all but its model's paths: where a live forecast is issued."""

    time: pd.Timestamp  # the last candle's open time
    step: pd.Timedelta
    close: float  # the last close
    row: int
    past: np.ndarray  # (1, W + 1) the baselines' closes
    garch: np.ndarray  # (1, 4)
    entropy: np.ndarray  # (1, 2)

    def runs(self, model: np.ndarray, vol: float | None) -> Runs:
        """The run with the model's log returns (1, S, H) and volatility amplification probability."""
        return Runs(np.array([self.row]), model, np.array([np.nan if vol is None else vol]),
                    np.zeros(model.shape[::2]), self.past, self.garch, self.entropy, 0)


@dataclass(frozen=True, eq=False)
class RecordFit:
    """A calibration record and what was fitted after it: its origins (`provisional` while fewer than the full
    record's `target`), their terms and scores, and the state fitted at the run after the frame's last row, which
    `issue_latest` applies to a live forecast."""

    settings: BacktestSettings  # the record's sampling settings (default seed), origins = target, every, min_count
    upside_map: str
    model: str  # the forecaster's name
    origin_times: pd.DatetimeIndex  # (n,) each origin's first forecast candle, oldest first
    target: int
    reused: int  # origins whose paths (or kept terms) came from the store
    terms: Terms
    scored: Scored
    after: After
    fits: Fits  # at the run after the last row

    @property
    def origins(self) -> int:
        return len(self.origin_times)

    @property
    def provisional(self) -> bool:
        return self.origins < self.target

    def crps(self, name: str) -> np.ndarray:
        """(H,) a forecaster's (registry.forecasters) mean CRPS over the origins."""
        return self.scored.crps[:, forecasters().index(name)].mean(0)

    @property
    def brier_upside(self) -> np.ndarray:
        """(H,) the combined upside probability's mean Brier score over the origins."""
        return self.scored.brier.mean(0)

    @property
    def best_baseline(self) -> str:
        """The baseline of lowest mean CRPS over the hours."""
        return min(BASELINES, key=lambda name: float(np.mean(self.crps(name))))

    def skill(self, name: str, reference: str) -> np.ndarray:
        """(H,) a forecaster's CRPS skill against `reference` (positive: better)."""
        return skill(self.crps(name), self.crps(reference))


def issue_latest(record: RecordFit, forecast: Forecast) -> Latest:
    """The live `forecast` (made after the record's frame's last row with its sampling settings) raw, calibrated and
    combined by the state fitted there."""
    if forecast.last_timestamp != record.after.time:
        raise InvalidInputError(f"the forecast follows the candle of {forecast.last_timestamp}; its record was "
                                f"fitted for the run after {record.after.time}")
    closes, chosen = forecast.column("close"), record.settings.forecast  # (S, H)
    if closes.shape != (chosen.samples, chosen.horizon):
        raise InvalidInputError(f"the forecast has {closes.shape[0]} paths x {closes.shape[1]} hours; its "
                                f"calibration needs {chosen.samples} x {chosen.horizon}")
    runs = record.after.runs(np.log(closes / record.after.close)[None], forecast.volatility_amplification_probability())
    return latest_of(apply(runs, record.fits), 0, record.after.time, record.after.close, record.after.step)


def fit_record(forecaster: ForecastSource, frame: pd.DataFrame, sampling: ForecastSettings,
               store: CandleStore | None, *, progress: Callable[[int, int], None] | None = None,
               publish: Callable[[RecordFit], None] | None = None, quick: bool = False, origins: int = ORIGINS,
               every: int = EVERY, min_count: int = MIN_COUNT,
               upside_map: str = DEFAULT_MAP) -> RecordFit | Unavailable:
    """The record behind a forecast after `frame`'s last row with `sampling` (see the module docstring), from what
    `store` keeps, forecasting its missing origins newest first with `forecaster`; `publish(fit)` gets each
    provisional record and the final one; `quick` returns the first usable one. Progress counts the origins
    forecast (in hundredths); kronos.cancellation stops the work between forecast steps and before each write."""
    plan = plan_record(frame, sampling, origins=origins, every=every, min_count=min_count, upside_map=upside_map)
    if isinstance(plan, Unavailable):
        return plan
    fitting = _Fitting(plan, forecaster, store, progress)
    keys = fitting.keys()  # by origins held, the full record's first
    found = None if store is None else kept_record(store, list(keys.values()))
    if found is None:
        return fitting.newest_first(keys[len(plan.rows)], publish, quick)
    record = fitting.grown(found, keys[len(plan.rows)])
    if publish is not None:
        publish(record)
    return record


def lacking(forecaster: ForecastSource, frame: pd.DataFrame, sampling: ForecastSettings, store: CandleStore | None,
            *, origins: int = ORIGINS, every: int = EVERY, min_count: int = MIN_COUNT,
            upside_map: str = DEFAULT_MAP) -> int:
    """How many origins `fit_record` would forecast now (0: the store keeps the record or every origin's paths, or
    there can be no record)."""
    plan = plan_record(frame, sampling, origins=origins, every=every, min_count=min_count, upside_map=upside_map)
    if isinstance(plan, Unavailable):
        return 0
    fitting = _Fitting(plan, forecaster, store, None)
    found = None if store is None else kept_record(store, list(fitting.keys().values()))
    rows = plan.rows[0 if found is None else len(found.terms.rows):]
    return len(rows) - len(fitting.stored(rows))


@dataclass(frozen=True, eq=False)
class Plan:
    """A record's origins in its frame, the frame cut to what they read (from the first origin's GARCH window on)."""

    frame: pd.DataFrame
    settings: BacktestSettings
    rows: np.ndarray  # (n,) the full record's origin rows, oldest first
    fewest: int
    upside_map: str


def plan_record(frame: pd.DataFrame, sampling: ForecastSettings, *, origins: int = ORIGINS, every: int = EVERY,
                min_count: int = MIN_COUNT, upside_map: str = DEFAULT_MAP) -> Plan | Unavailable:
    """Where the anchored record of a forecast after `frame`'s last row falls, or why there can be none."""
    stamps, lookback, horizon = nanoseconds(frame["timestamps"]), sampling.lookback, sampling.horizon
    end = aligned_end(stamps, horizon, every)
    fewest = minimum_origins(horizon, every, min_count)
    available = 0 if end is None else max(0, (end - horizon - lookback) // every + 1)
    if available < fewest:
        needed = lookback + horizon + (fewest - 1) * every + every
        return Unavailable(unavailable=f"calibration needs about {needed} rows of history ({fewest} backtest origins "
                                       f"every {every} rows with a lookback of {lookback}); there are {len(frame)}")
    last = int(stamps.asi8[end - horizon] // (stamps[-1] - stamps[-2]).value) // every  # q of the newest origin
    block = max(1, min(BLOCK, origins - fewest + 1))  # the record never falls below `fewest` origins
    held = min(available, last + (origins - 1 - last) // block * block + 1)  # q_last - q_first + 1
    rows = end - horizon - every * np.arange(held)[::-1]
    cut = max(0, rows[0] - lookback - FIT_WINDOW - FIRST_ROWS)
    settings = BacktestSettings(sampling, origins=held, every=every, min_count=min_count)
    return Plan(frame.iloc[cut:].reset_index(drop=True), settings, rows - cut, fewest, upside_map)


def aligned_end(stamps: pd.DatetimeIndex, horizon: int, every: int) -> int | None:
    """The largest frame length whose last origin (row end - horizon) opens at a multiple of `every` steps."""
    if len(stamps) < horizon + 2:
        return None
    stamps = nanoseconds(stamps)
    step = (stamps[-1] - stamps[-2]).value
    counts = stamps.asi8 // step  # steps since the epoch
    for end in range(len(stamps), max(horizon, len(stamps) - every * 4), -1):
        if counts[end - horizon] % every == 0:
            return end
    return len(stamps)  # irregular stamps: the frame's own end


class _Fitting:
    """One record's fitting: its plan, the forecaster and store, the origins forecast so far."""

    def __init__(self, plan: Plan, forecaster: ForecastSource, store: CandleStore | None,
                 progress: Callable[[int, int], None] | None):
        self.plan, self.forecaster, self.store, self.progress = plan, forecaster, store, progress
        self.garch = None if store is None else KeptGarch(store)
        self.reused, self.forecast, self.lacking = 0, 0, 0
        self.stamps = nanoseconds(plan.frame["timestamps"])

    def keys(self) -> dict[int, str]:
        """The kept keys of this record's first origins, by how many (the whole record's first, then ever fewer:
        the records it may have grown from, at most a block back)."""
        plan, chosen = self.plan, self.plan.settings.forecast
        described = {"weights": self.forecaster.fingerprint, "context": self.forecaster.max_context,
                     **chosen.engine_arguments(), "every": plan.settings.every,
                     "min_count": plan.settings.min_count, "map": plan.upside_map,
                     "first": self.stamps[plan.rows[0]].isoformat()}
        hashes = pd.util.hash_pandas_object(plan.frame[["timestamps", *FEATURE_COLUMNS]], index=False).to_numpy()
        held = range(len(plan.rows), max(0, len(plan.rows) - BLOCK), -1)
        return {n: record_key(described, hashes[:plan.rows[n - 1] + chosen.horizon]) for n in held}

    def grown(self, found: KeptRecord, key: str) -> RecordFit:
        """The record from a kept one of its first origins: the origins since then evaluated alone, then kept."""
        self.reused = len(found.terms.rows)
        if self.reused == len(self.plan.rows):
            return self.fitted(found.terms, found.scored)
        new = self.plan.rows[self.reused:]
        stored = self.stored(new)
        self.lacking = len(new) - len(stored)
        terms, score = self.evaluated(new, self.paths(new[::-1], stored), found.terms)
        return self.kept(KeptRecord(key, found.terms.then(terms), found.scored.then(score)), found.key)

    def newest_first(self, key: str, publish: Callable[[RecordFit], None] | None, quick: bool) -> RecordFit:
        """Forecast the record's missing origins newest first, publishing a provisional record after each piece;
        the full one is kept."""
        newest, n = self.plan.rows[::-1], len(self.plan.rows)
        stored = self.stored(newest)
        missing = set(newest.tolist()) - set(stored)
        self.lacking = len(missing)
        gathered: dict[int, tuple[np.ndarray, float]] = {}
        listened = publish is not None or quick  # else no provisional record would be read: one piece
        for bound in [*range(self.plan.fewest, n, STEP), n] if listened else [n]:
            end = bound if missing & set(newest[bound:].tolist()) else n  # nothing missing after: the full record
            gathered |= self.paths(newest[len(gathered):end], stored)
            terms, score = self.evaluated(np.sort(newest[:end]), gathered)
            record = self.fitted(terms, score) if end < n else self.kept(KeptRecord(key, terms, score))
            if publish is not None:
                publish(record)
            if end == n or quick:
                return record
        raise AssertionError("the last piece ends the record")

    def evaluated(self, rows: np.ndarray, paths: dict[int, tuple[np.ndarray, float]],
                  prior: Terms | None = None) -> tuple[Terms, Scored]:
        """The terms and scores of origins `rows` (after `prior`'s) from their paths."""
        check_current()
        close = self.plan.frame["close"].to_numpy()
        model = np.log(np.stack([paths[r][0] for r in rows]) / close[rows - 1][:, None, None])  # (n, S, H)
        chosen = self.plan.settings
        runs = runs_at(close, self.stamps, rows, model, np.array([paths[r][1] for r in rows]), len(rows),
                       chosen.forecast.lookback - 1, chosen.forecast.seed, self.garch)
        done = evaluate(runs, prior, min_count=chosen.min_count, upside_map=self.plan.upside_map, maps=("combined",))
        return done.terms, scored(done.issue, runs.observed)

    def kept(self, record: KeptRecord, replaces: str | None = None) -> RecordFit:
        """The final record, kept."""
        if self.store is not None:
            keep_record(self.store, record, replaces)
        return self.fitted(record.terms, record.scored)

    def fitted(self, terms: Terms, score: Scored) -> RecordFit:
        """The record of these terms, with the state fitted at the run after the frame's last row."""
        plan, frame = self.plan, self.plan.frame
        close, row = frame["close"].to_numpy(), len(frame)
        window, sampling = plan.settings.forecast.lookback - 1, plan.settings.forecast
        after = After(self.stamps[-1], self.stamps[-1] - self.stamps[-2], float(close[-1]), row,
                      trailing_closes(close, np.array([row]), window),
                      garch_state(close, np.array([row]), clock_phase(self.stamps), fits=self.garch),
                      np.array([[sampling.seed, self.stamps.asi8[-1] // 10**9]]))
        fits = fit_at(terms, [row], samples=sampling.samples, min_count=plan.settings.min_count,
                      upside_map=plan.upside_map)
        return RecordFit(plan.settings, plan.upside_map, self.forecaster.name, self.stamps[terms.rows],
                         len(plan.rows), self.reused, terms, score, after, fits)

    def stored(self, rows: np.ndarray) -> dict[int, tuple[np.ndarray, float]]:
        """The stored paths among origins `rows`: closes (S, H) and volatility amplification probability."""
        if self.store is None:
            return {}
        found = stored_origins(self.forecaster, self.plan.frame, rows.tolist(), self.plan.settings, self.store)
        return {int(r): (closes, np.nan if vol is None else vol) for r, (closes, vol) in found.items()}

    def paths(self, rows: np.ndarray, stored: dict[int, tuple[np.ndarray, float]]
              ) -> dict[int, tuple[np.ndarray, float]]:
        """The paths of origins `rows`: the stored ones, the others forecast now in this order (and stored)."""
        missing = [int(r) for r in rows if int(r) not in stored]
        found = {int(r): stored[int(r)] for r in rows if int(r) in stored}
        if missing:
            done, total = self.forecast, max(self.lacking, 1)
            told = None if self.progress is None else (lambda made, _: self.progress(100 * done + made, 100 * total))
            if told is not None:
                told(0, 1)  # said before the first forecast step: what follows takes a while
            paths, vol, _ = _forecast_origins(self.forecaster, self.plan.frame, missing, self.plan.settings,
                                              self.store, told)
            found |= {r: (p, v) for r, p, v in zip(missing, paths, vol)}
        self.reused, self.forecast = self.reused + len(found) - len(missing), self.forecast + len(missing)
        return found
