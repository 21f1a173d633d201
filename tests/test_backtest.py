"""The walk-forward backtest on the parity checkpoint: origins, every forecaster, no look-ahead, reuse from the store,
the latest forecast, each run's own baseline draws, the typed JSON."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from data_frames import candle_frame

from kronos.data.store import CandleStore
from kronos.errors import InvalidInputError
from kronos.evaluation.backtest import BacktestSettings, origin_keys, origin_rows, rows_needed, run_backtest
from kronos.evaluation.scores import Scores
from kronos.schemas.backtest import BacktestResult
from kronos.settings import ORIGIN_LIMITS, ForecastSettings

SAMPLING = ForecastSettings(horizon=4, samples=6, lookback=40)
SMALL = BacktestSettings(SAMPLING, origins=12, every=5, min_count=3)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return candle_frame(120, seed=3)


def test_origins_leave_the_lookback_before_and_the_horizon_after():
    rows = origin_rows(120, SMALL)
    assert list(rows) == list(range(61, 117, 5))  # the last has 4 rows after it (116..119)
    assert rows_needed(SMALL) == 120 - 61 + SMALL.forecast.lookback
    assert rows[0] >= SMALL.forecast.lookback and rows[-1] + SMALL.forecast.horizon == 120
    assert len(origin_rows(120, BacktestSettings(SAMPLING, origins=500, every=5))) == 16
    with pytest.raises(InvalidInputError, match="at least lookback \\+ horizon = 44 rows"):
        origin_rows(43, SMALL)


FORECASTERS = {"model", "model_calibrated", "random_walk", "bootstrap", "ewma", "garch", "combined"}


def test_scores_name_every_forecaster_per_hour_and_the_json_round_trips(forecaster, frame):
    result = run_backtest(forecaster, frame, SMALL)
    assert set(result.scores) == FORECASTERS | {"trailing_frequency"}
    for name in FORECASTERS:
        scores = result.scores[name]
        assert isinstance(scores, Scores) and scores.n_origins == 12
        assert len(scores.crps) == len(scores.brier_upside) == SMALL.forecast.horizon
        assert set(scores.coverage) == {"50", "80", "95"} and len(scores.coverage["80"]) == SMALL.forecast.horizon
    assert set(result.skill) == FORECASTERS - {"random_walk"}
    assert result.best_baseline in ("random_walk", "bootstrap", "ewma", "garch")
    assert set(result.skill_best) == FORECASTERS - {result.best_baseline}
    np.testing.assert_allclose(result.skill["combined"]["crps"],
                               1 - result.scores["combined"].crps / result.scores["random_walk"].crps)
    assert list(result.calibrated_origins) == [9] * 4  # 5 rows apart, every earlier outcome is known: from the 4th on
    assert list(result.pooled_origins) == [9] * 4  # the pool learns from the same known outcomes
    assert set(result.weights) == {"model_calibrated", "random_walk", "ewma", "garch"}
    np.testing.assert_allclose(sum(result.weights.values()), 1)
    overlapping = run_backtest(forecaster, frame, dataclasses.replace(SMALL, every=2))
    assert list(overlapping.calibrated_origins) == [9, 9, 8, 8]  # hour h waits for ceil(h / 2) origins more
    answer = result.to_dict()
    assert answer["origins"] == 12 and answer["baseline_window"] == SMALL.forecast.lookback - 1
    assert answer["origin_times"][0] == frame["timestamps"].iloc[61].isoformat()
    assert answer["scores"]["ewma"]["crps"] == pytest.approx(list(result.scores["ewma"].crps))
    assert json.loads(json.dumps(answer)) == answer
    assert BacktestResult.model_validate(answer) == result.to_schema()


def test_changing_data_after_an_origin_changes_nothing_for_it(forecaster, frame):
    """No look-ahead: an origin's forecast, calibration, pool weights and baselines use only rows before it."""
    base = run_backtest(forecaster, frame, SMALL)
    altered = frame.copy()
    altered.loc[100:, ["open", "high", "low", "close"]] *= 1.5  # rows 100.. change; origins up to 96 see none
    moved = run_backtest(forecaster, altered, SMALL)
    for name in FORECASTERS:  # origins 61..91: their outcomes and inputs end before row 95
        np.testing.assert_array_equal(base.scores[name].pit[:7], moved.scores[name].pit[:7], err_msg=name)
        assert not np.array_equal(base.scores[name].crps, moved.scores[name].crps), name  # later origins see it


def test_a_longer_run_reuses_stored_origins_and_gives_the_same_paths(forecaster, frame, tmp_path):
    store = CandleStore(tmp_path / "s.sqlite")
    first = run_backtest(forecaster, frame, SMALL, store=store)
    assert first.reused == 0
    again = run_backtest(forecaster, frame, SMALL, store=store)
    assert again.reused == 12 and again.to_dict()["scores"] == first.to_dict()["scores"]
    longer = run_backtest(forecaster, frame, dataclasses.replace(SMALL, origins=14), store=store)
    assert longer.reused == 12
    fresh = run_backtest(forecaster, frame, dataclasses.replace(SMALL, origins=14))
    assert fresh.to_dict()["scores"] == longer.to_dict()["scores"]


def test_latest_forecasts_after_the_last_row_raw_calibrated_and_combined(forecaster, frame):
    plain = run_backtest(forecaster, frame, SMALL)
    result = run_backtest(forecaster, frame, SMALL, latest=True)
    latest = result.latest
    assert latest.after == frame["timestamps"].iloc[-1]
    assert len(latest.upside_raw) == len(latest.upside_calibrated) == len(latest.upside_combined) == SAMPLING.horizon
    assert latest.calibrated.all() and latest.pooled.all() and set(latest.bands_combined) == {"50", "80", "95"}
    for bands in (latest.bands_calibrated, latest.bands_combined):
        lo, hi = bands["80"]
        assert (lo < hi).all()
    np.testing.assert_allclose(sum(latest.weights.values()), 1)
    assert result.to_dict()["scores"] == plain.to_dict()["scores"]  # the latest run's draws change no origin's
    assert result.to_dict()["latest"]["upside_combined"] == pytest.approx(list(latest.upside_combined))


def test_each_run_draws_its_baselines_from_its_own_seed(frame):
    """A run's baseline paths are the same whichever runs are drawn with it (a record grows one origin at a time)."""
    from kronos.evaluation.issuing import draw_baselines, runs_at

    close, stamps, rows = frame["close"].to_numpy(), pd.DatetimeIndex(frame["timestamps"]), origin_rows(120, SMALL)

    def drawn(chosen: np.ndarray) -> dict[str, np.ndarray]:
        model = np.zeros((len(chosen), SAMPLING.samples, SAMPLING.horizon))
        return draw_baselines(runs_at(close, stamps, chosen, model, np.zeros(len(chosen)), len(chosen), 39, 42))

    every, some = drawn(rows), drawn(rows[[3, 7]])
    for name, paths in every.items():
        np.testing.assert_array_equal(paths[[3, 7]], some[name], err_msg=name)
    assert not np.array_equal(every["random_walk"][3], every["random_walk"][7])


def test_bad_settings_name_the_problem():
    with pytest.raises(InvalidInputError, match=f"origins must be between 1 and {ORIGIN_LIMITS.engine}"):
        BacktestSettings(origins=ORIGIN_LIMITS.engine + 1)
    with pytest.raises(InvalidInputError, match="every must be at least 1"):
        BacktestSettings(every=0)
    with pytest.raises(InvalidInputError) as refused:
        BacktestSettings(ForecastSettings(horizon=40, lookback=40, hour_idx=3), origins=0, min_count=0)
    assert [problem.split()[:3] for problem in refused.value.problems] == [
        ["a", "backtest", "scores"], ["origins", "must", "be"], ["min_count", "must", "be"],
        ["a", "backtest's", "horizon"]]
    assert "horizon (40) must be shorter than its lookback (40)" in refused.value.problems[-1]


def test_the_settings_json_is_flat_as_before():
    assert SMALL.describe() == {"origins": 12, "every": 5, "horizon": 4, "samples": 6, "lookback": 40,
                                "temperature": 1.0, "top_p": 0.95, "top_k": 0, "seed": 42, "min_count": 3}
    assert BacktestSettings().forecast == ForecastSettings()


class Weights:
    """What the store's keys read of a forecaster."""

    fingerprint, max_context = "0123456789abcdef", 512


def test_store_keys_are_those_of_the_per_path_draws(frame):
    """Stored origins are reused only while an origin's key stays the same: these were computed when the draws became
    per path (the keys name the scheme, so paths stored under the earlier draws are never reused) and stopped
    holding the sample count and horizon."""
    assert origin_keys(Weights(), frame, [61, 116], SMALL) == [
        "77d9f133fe78384a880d6a6ac80a1977eeb0313a815a3436d497ec18203a02af",
        "8eb31365c0b51848f63c8984fbda48c5d7f673d421e5b6594d5d079f0a80d906"]
    other = BacktestSettings(ForecastSettings(horizon=4, lookback=40, temperature=0.7, top_p=0.9, top_k=5, seed=7),
                             origins=100, every=7, min_count=9)
    assert origin_keys(Weights(), frame, [61], other) == [
        "3070cf9801c4f35e12c10d0c20b30c7b1d71970d178ebb3c3d71671ea11f258d"]
    assert origin_keys(Weights(), frame, [61], dataclasses.replace(other, origins=3, every=1, min_count=1)) == \
        origin_keys(Weights(), frame, [61], other)  # where the origins fall is not what their paths depend on
    fewer = dataclasses.replace(other, forecast=dataclasses.replace(other.forecast, samples=5, horizon=2))
    assert origin_keys(Weights(), frame, [61], fewer) == origin_keys(Weights(), frame, [61], other)
    assert origin_keys(Weights(), frame, [61], dataclasses.replace(
        other, forecast=dataclasses.replace(other.forecast, top_k=4))) != origin_keys(Weights(), frame, [61], other)


def test_where_the_window_slides_the_key_holds_the_horizon(frame):
    class Short(Weights):
        max_context = 43  # lookback 40 + horizon 4 slides, + horizon 3 fits

    shorter = dataclasses.replace(SMALL, forecast=dataclasses.replace(SAMPLING, horizon=3))
    assert origin_keys(Short(), frame, [61], SMALL) != origin_keys(Short(), frame, [61], shorter)
    assert origin_keys(Weights(), frame, [61], SMALL) == origin_keys(Weights(), frame, [61], shorter)


def test_progress_runs_to_the_end_across_the_stored_parts(forecaster, frame, tmp_path, monkeypatch):
    import kronos.evaluation.backtest as backtest

    monkeypatch.setattr(backtest, "KEPT_EVERY", 5)  # 12 origins in parts of 5, 5 and 2, each stored when done
    store, calls = CandleStore(tmp_path / "s.sqlite"), []
    run_backtest(forecaster, frame, SMALL, store=store, progress=lambda step, total: calls.append((step, total)))
    assert calls[-1] == (1200, 1200) and [s for s, _ in calls] == sorted(s for s, _ in calls)
    assert len(store.backtest_paths([])) == 0 and run_backtest(forecaster, frame, SMALL, store=store).reused == 12


class Counting:
    """A forecaster that records what each forecast_many call asked: (histories, samples, horizon, first path)."""

    def __init__(self, forecaster):
        self.forecaster, self.calls = forecaster, []

    def __getattr__(self, name):
        return getattr(self.forecaster, name)

    def forecast_many(self, histories, **arguments):
        self.calls.append((len(histories), arguments["samples"], arguments["horizon"], arguments.get("first_path", 0)))
        return self.forecaster.forecast_many(histories, **arguments)


def _with(samples: int, horizon: int) -> BacktestSettings:
    return dataclasses.replace(SMALL, forecast=dataclasses.replace(SAMPLING, samples=samples, horizon=horizon))


def test_fewer_paths_or_a_shorter_horizon_are_served_from_the_store_without_forecasting(forecaster, frame, tmp_path):
    store, counting = CandleStore(tmp_path / "s.sqlite"), Counting(forecaster)
    run_backtest(counting, frame, _with(8, 5), store=store)
    assert counting.calls == [(12, 8, 5, 0)]
    for samples, horizon in ((5, 5), (8, 3), (3, 2)):
        cut = frame.iloc[:len(frame) - 5 + horizon]  # the same origin rows (the last leaves `horizon` rows after it)
        served = run_backtest(counting, cut, _with(samples, horizon), store=store)
        assert served.reused == 12 and len(counting.calls) == 1, (samples, horizon)
        fresh = run_backtest(forecaster, cut, _with(samples, horizon))
        for name, scores in fresh.scores.items():  # paths decoded at another length: equal to float rounding
            if isinstance(scores, Scores):
                np.testing.assert_allclose(served.scores[name].crps, scores.crps, rtol=1e-6, err_msg=name)
    same = run_backtest(counting, frame, _with(6, 5), store=store)
    assert same.to_dict()["scores"] == run_backtest(forecaster, frame, _with(6, 5)).to_dict()["scores"]


def test_more_paths_forecast_only_the_missing_ones_and_equal_a_fresh_run(forecaster, frame, tmp_path):
    store, counting = CandleStore(tmp_path / "s.sqlite"), Counting(forecaster)
    run_backtest(counting, frame, _with(4, 4), store=store)
    more = run_backtest(counting, frame, _with(10, 4), store=store)
    assert counting.calls == [(12, 4, 4, 0), (12, 6, 4, 4)] and more.reused == 0
    assert more.to_dict()["scores"] == run_backtest(forecaster, frame, _with(10, 4)).to_dict()["scores"]
    assert {closes.shape for closes, _ in store.backtest_paths(origin_keys(forecaster, frame, [61, 116],
                                                                           SMALL)).values()} == {(10, 4)}
    longer = run_backtest(counting, frame, _with(10, 6), store=store)  # a longer horizon: forecast again
    assert counting.calls[2:] == [(12, 10, 6, 0)] and longer.reused == 0
    run_backtest(counting, frame, _with(10, 4), store=store)
    assert len(counting.calls) == 3
