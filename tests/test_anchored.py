"""The calibration record (kronos.evaluation.anchored) through its real flow, with an oracle "model" whose paths come
from the true volatility: usable early (newest first, provisional from `minimum_origins` on), honest at every size,
anchored so that a new candle fits one new origin, its kept state equal to a refit, issued to a live forecast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_pooling import market

from kronos.data.store import CandleStore
from kronos.engine.forecast import Forecast
from kronos.errors import InvalidInputError
from kronos.evaluation import anchored
from kronos.evaluation.anchored import BLOCK, fit_record, issue_latest, minimum_origins, plan_record
from kronos.evaluation.calibration import MIN_COUNT
from kronos.evaluation.kept import TERMS
from kronos.schemas.forecast import UsedSettings
from kronos.settings import ForecastSettings

H, S, LOOKBACK = 24, 30, 64
SAMPLING = ForecastSettings(horizon=H, samples=S, lookback=LOOKBACK)
ROWS = 2782  # the full anchored record holds 200 origins (177 to 200); 6 candles later its first origin moves
GROWING = 2650  # the record holds 178 origins, its first origin the same 8 origins later
FEWEST = minimum_origins(H, anchored.EVERY, MIN_COUNT)  # 34


class Oracle:
    """A ForecastSource whose paths know the true volatility of every hour ahead (and nothing of its sign)."""

    name, max_context, fingerprint = "oracle", 512, "0123456789abcdef"

    def __init__(self, sigma: np.ndarray, start: pd.Timestamp):
        self.sigma, self.start, self.histories = sigma, start, []

    def check_arguments(self, *arguments, **named) -> None:
        pass

    def forecast_many(self, histories, *, horizon, samples, seeds, progress=None, **settings) -> list[Forecast]:
        self.histories.append(len(histories))
        made = []
        for history, seed in zip(histories, seeds):
            last = history["timestamps"].iloc[-1]
            row = int((last - self.start) / pd.Timedelta("1h")) + 1  # the first row forecast
            steps = np.random.default_rng(seed).standard_normal((samples, horizon)) * self.sigma[row:row + horizon]
            closes = history["close"].iloc[-1] * np.exp(steps.cumsum(1))
            stamps = pd.date_range(last + pd.Timedelta("1h"), periods=horizon, freq="h")
            made.append(Forecast(np.repeat(closes[..., None], 6, -1), stamps, history, seed, self.name,
                                 UsedSettings.reported(horizon=horizon, samples=samples, lookback=len(history),
                                                       temperature=1.0, top_p=0.95, top_k=0, seed=seed,
                                                       max_context=self.max_context)))
        return made

    def forecast(self, history, *, seed=None, **settings) -> Forecast:
        return self.forecast_many([history], seeds=[seed], **settings)[0]


def candles(close: np.ndarray) -> pd.DataFrame:
    """Hourly candles of these closes from midnight (origins every 6 candles fall on the clock's multiples)."""
    stamps = pd.date_range("2024-01-01", periods=len(close), freq="h")
    return pd.DataFrame({"timestamps": stamps, "open": close, "high": close * 1.001, "low": close * 0.999,
                         "close": close, "volume": 1.0, "amount": close})


@pytest.fixture(scope="module")
def world():
    """A market whose log volatility follows an AR(1), its candles up to ROWS, and the oracle of it."""
    close, sigma = market(seed=2)
    frame = candles(close)
    return frame, Oracle(sigma, frame["timestamps"].iloc[0])


def live(oracle: Oracle, frame: pd.DataFrame) -> Forecast:
    return oracle.forecast(frame.iloc[-LOOKBACK:], horizon=H, samples=S, seed=7)


def test_the_oracle_leads_at_the_first_usable_record_and_at_the_full_one(world):
    frame, oracle = world
    published = []
    final = fit_record(oracle, frame.iloc[:ROWS], SAMPLING, None, publish=published.append)
    assert [r.provisional for r in published] == [True] * (len(published) - 1) + [False] and published[-1] is final
    assert [r.origins for r in published] == sorted({*range(FEWEST, final.target, anchored.STEP), final.target})
    assert final.origins == final.target == 200
    first = published[0]  # 34 origins, provisional: the pool has learnt from 34 outcomes at the latest run
    weights = issue_latest(first, live(oracle, frame.iloc[:ROWS])).weights
    assert weights["model_calibrated"].mean() > 0.5
    assert max(weights, key=lambda name: weights[name].mean()) == "model_calibrated"
    assert first.skill("model_calibrated", first.best_baseline).mean() > 0
    latest = issue_latest(final, live(oracle, frame.iloc[:ROWS]))
    assert latest.pooled.all() and (latest.weights["model_calibrated"] > 0.5).all()
    assert (final.skill("model_calibrated", final.best_baseline) > 0).all()
    assert (final.skill("combined", "random_walk") > 0).all()


@pytest.mark.parametrize("quick", [True, False])
def test_nothing_an_origin_uses_lies_after_it(world, quick):
    """Candles from origin k's first forecast row on change: what origin k issued (its pool's probabilities, from the
    fits at it) and every term of the origins whose outcomes were in by then stay to the bit, provisional or final."""
    frame, oracle = world
    base = fit_record(oracle, frame.iloc[:ROWS], SAMPLING, None, quick=quick)
    assert base.provisional == quick and base.origins == (FEWEST if quick else base.target)
    k = base.origins - 2  # at 34 origins, the newest whose pool has learnt (from 30 outcomes or more)
    cut = ROWS - len(plan_record(frame.iloc[:ROWS], SAMPLING).frame)
    after = cut + base.terms.rows[k]  # origin k's first forecast row: its outcome and every later one change
    changed = frame.iloc[:ROWS].copy()
    changed.loc[after:, ["open", "high", "low", "close", "amount"]] *= np.exp(
        np.random.default_rng(3).normal(0, 0.02, (ROWS - after, 1)).cumsum(0))
    moved = fit_record(oracle, changed, SAMPLING, None, quick=quick)
    for name in ("model_up", "combined_up", "combined_vol"):  # issued at k and before, outcomes aside
        np.testing.assert_array_equal(getattr(base.terms, name)[:k + 1], getattr(moved.terms, name)[:k + 1], name)
    known = int(np.searchsorted(base.terms.rows, base.terms.rows[k] - H, side="right"))  # outcomes in before k
    for name in TERMS:
        np.testing.assert_array_equal(getattr(base.terms, name)[:known], getattr(moved.terms, name)[:known], name)
    np.testing.assert_array_equal(base.scored.crps[:known], moved.scored.crps[:known])
    assert not np.array_equal(base.terms.combined_up[k + 1:], moved.terms.combined_up[k + 1:])


def test_quick_returns_the_first_usable_record_and_forecasts_only_its_origins(world):
    frame, oracle = world
    oracle.histories.clear()
    published = []
    first = fit_record(oracle, frame.iloc[:ROWS], SAMPLING, None, publish=published.append, quick=True)
    assert published == [first] and first.provisional and first.origins == FEWEST and sum(oracle.histories) == FEWEST
    plan = plan_record(frame.iloc[:ROWS], SAMPLING)
    np.testing.assert_array_equal(first.terms.rows, plan.rows[-FEWEST:])  # the newest origins of the full record
    assert first.target == len(plan.rows)


def test_a_live_forecast_is_issued_from_the_record_fitted_after_its_last_candle(world):
    frame, oracle = world
    record = fit_record(oracle, frame.iloc[:ROWS], SAMPLING, None, quick=True)
    forecast = live(oracle, frame.iloc[:ROWS])
    latest = issue_latest(record, forecast)
    np.testing.assert_allclose(latest.upside_raw, forecast.upside_probability())
    assert latest.after == frame["timestamps"].iloc[ROWS - 1] and len(latest.timestamps) == H
    with pytest.raises(InvalidInputError, match=f"needs {S} x {H}"):
        issue_latest(record, oracle.forecast(frame.iloc[ROWS - LOOKBACK:ROWS], horizon=H, samples=3, seed=1))
    with pytest.raises(InvalidInputError, match="fitted for the run after"):
        issue_latest(record, live(oracle, frame.iloc[:ROWS + 1]))


class Counted:
    """Counts the runs each evaluation of a record is asked to evaluate."""

    def __init__(self, monkeypatch):
        self.runs, evaluate = [], anchored.evaluate

        def counted(runs, prior=None, **named):
            self.runs.append(len(runs.rows))
            return evaluate(runs, prior, **named)

        monkeypatch.setattr(anchored, "evaluate", counted)


def test_a_new_candle_fits_at_most_one_new_origin_from_the_kept_record(world, tmp_path, monkeypatch):
    frame, oracle = world
    store, evaluated = CandleStore(tmp_path / "s.sqlite"), Counted(monkeypatch)
    first = fit_record(oracle, frame.iloc[:GROWING], SAMPLING, store)
    assert evaluated.runs == [first.origins]  # nobody listens: no provisional record is evaluated
    oracle.histories.clear()
    evaluated.runs.clear()
    same = fit_record(oracle, frame.iloc[:GROWING + 1], SAMPLING, store)  # the next candle: no new origin
    grown = fit_record(oracle, frame.iloc[:GROWING + 6], SAMPLING, store)  # six more: one new origin
    assert (same.origins, grown.origins) == (first.origins, first.origins + 1)
    assert evaluated.runs == [1] and oracle.histories == [1] and same.reused == first.origins
    np.testing.assert_array_equal(same.terms.combined_errors, first.terms.combined_errors)


def test_when_the_first_origin_moves_the_record_is_evaluated_afresh_from_stored_paths(world, tmp_path, monkeypatch):
    frame, oracle = world
    store, evaluated = CandleStore(tmp_path / "s.sqlite"), Counted(monkeypatch)
    full = fit_record(oracle, frame.iloc[:ROWS], SAMPLING, store)
    oracle.histories.clear()
    evaluated.runs.clear()
    moved = fit_record(oracle, frame.iloc[:ROWS + 6], SAMPLING, store)
    assert (full.origins, moved.origins) == (200, 200 - BLOCK + 1) and not moved.provisional
    assert moved.origin_times[0] == full.origin_times[BLOCK] and moved.origin_times[-2] == full.origin_times[-1]
    assert oracle.histories == [1] and evaluated.runs == [moved.origins] and moved.reused == moved.origins - 1


def test_a_kept_record_grown_origin_by_origin_equals_a_refit(world, tmp_path):
    """Kept terms appended one origin at a time (and the fit at the latest run) against one full evaluation: equal to
    the bit, but the probability maps' outputs (Newton fits whose sums run over as many pairs as they are batched
    with: within 1e-12)."""
    frame, oracle = world
    store = CandleStore(tmp_path / "s.sqlite")
    rows = GROWING + 6 * 8
    fit_record(oracle, frame.iloc[:GROWING], SAMPLING, store)
    for end in range(GROWING + 6, rows + 1, 6):
        grown = fit_record(oracle, frame.iloc[:end], SAMPLING, store)
    refit = fit_record(oracle, frame.iloc[:rows], SAMPLING, None)
    assert grown.origins == refit.origins and grown.reused == grown.origins - 1  # the newest forecast just now
    for name in TERMS:
        np.testing.assert_array_equal(getattr(grown.terms, name), getattr(refit.terms, name), name)
    np.testing.assert_array_equal(grown.scored.crps, refit.scored.crps)
    np.testing.assert_allclose(grown.scored.brier, refit.scored.brier, rtol=1e-12, atol=0)
    forecast = live(oracle, frame.iloc[:rows])
    kept, fresh = issue_latest(grown, forecast), issue_latest(refit, forecast)
    for key in ("bands_combined", "bands_calibrated"):
        for a, b in zip(getattr(kept, key).values(), getattr(fresh, key).values()):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(kept.median_combined, fresh.median_combined)
    for name in kept.weights:
        np.testing.assert_array_equal(kept.weights[name], fresh.weights[name])
    np.testing.assert_allclose(kept.upside_combined, fresh.upside_combined, rtol=1e-12, atol=0)


def test_fewer_paths_or_a_shorter_horizon_fit_from_the_stored_paths(world, tmp_path):
    frame, oracle = world
    store = CandleStore(tmp_path / "s.sqlite")
    full = fit_record(oracle, frame.iloc[:GROWING], SAMPLING, store)
    oracle.histories.clear()
    fewer = fit_record(oracle, frame.iloc[:GROWING], ForecastSettings(horizon=H, samples=20, lookback=LOOKBACK), store)
    assert oracle.histories == [] and fewer.reused == full.origins == fewer.origins
    shorter = fit_record(oracle, frame.iloc[:GROWING], ForecastSettings(horizon=12, samples=S, lookback=LOOKBACK),
                         store)
    newer = shorter.origin_times[shorter.origin_times > full.origin_times[-1]]  # known only to the shorter horizon
    assert shorter.reused == full.origins and len(newer) > 0 and sum(oracle.histories) == len(newer)
    assert shorter.origin_times[:full.origins].equals(full.origin_times)


def test_a_record_says_before_its_first_forecast_that_it_forecasts_and_nothing_when_it_forecasts_none(world, tmp_path):
    """Progress is reported (at 0) before the first forecast step, so a page waiting for a calibration that forecasts
    nothing (every path kept) can tell it from one that has begun forecasting (kronos.serving.jobs.wait_if_quick)."""
    frame, oracle = world
    store, told, calls = CandleStore(tmp_path / "s.sqlite"), [], []

    class Counting:
        name, max_context, fingerprint = oracle.name, oracle.max_context, oracle.fingerprint

        def check_arguments(self, *arguments, **named) -> None:
            pass

        def forecast_many(self, histories, **settings):
            calls.append(len(told))  # progress reports made before this forecast
            return oracle.forecast_many(histories, **settings)

    fit_record(Counting(), frame.iloc[:ROWS], SAMPLING, store, progress=lambda *step: told.append(step), quick=True)
    assert calls[0] == 1 and told[0][0] == 0  # said first, at 0
    told.clear()
    forecasts = len(calls)
    fewer = ForecastSettings(horizon=H, samples=S - 10, lookback=LOOKBACK)
    fit_record(Counting(), frame.iloc[:ROWS], fewer, store, progress=lambda *step: told.append(step), quick=True)
    assert told == [] and len(calls) == forecasts  # fewer paths: from the stored ones, no forecast and no progress
