"""The walk-forward backtest on the parity checkpoint: origins, no look-ahead, reuse from the store, the JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from data_frames import candle_frame

from kronos.data.store import CandleStore
from kronos.errors import InvalidInputError
from kronos.evaluation.backtest import BacktestSettings, origin_rows, rows_needed, run_backtest

SMALL = BacktestSettings(origins=12, every=5, horizon=4, samples=6, lookback=40, min_count=3)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return candle_frame(120, seed=3)


def test_origins_leave_the_lookback_before_and_the_horizon_after():
    rows = origin_rows(120, SMALL)
    assert list(rows) == list(range(61, 117, 5))  # the last has 4 rows after it (116..119)
    assert rows_needed(SMALL) == 120 - 61 + SMALL.lookback
    assert rows[0] >= SMALL.lookback and rows[-1] + SMALL.horizon == 120
    assert len(origin_rows(120, BacktestSettings(origins=500, every=5, horizon=4, lookback=40))) == 16
    with pytest.raises(InvalidInputError, match="at least lookback \\+ horizon = 44 rows"):
        origin_rows(43, SMALL)


def test_scores_name_every_forecaster_per_hour_and_the_json_round_trips(forecaster, frame):
    result = run_backtest(forecaster, frame, SMALL).to_dict()
    assert set(result["scores"]) == {"model", "model_calibrated", "random_walk", "bootstrap", "trailing_frequency"}
    for name in ("model", "model_calibrated", "random_walk"):
        scores = result["scores"][name]
        assert len(scores["crps"]) == len(scores["brier_upside"]) == SMALL.horizon
        assert set(scores["coverage"]) == {"50", "80", "95"} and len(scores["coverage"]["80"]) == SMALL.horizon
    assert result["origins"] == 12 and result["baseline_window"] == SMALL.lookback - 1
    assert result["origin_times"][0] == frame["timestamps"].iloc[61].isoformat()
    assert result["calibrated_origins"] == [9] * 4  # 5 rows apart, every earlier outcome is known: from the 4th on
    overlapping = run_backtest(forecaster, frame, BacktestSettings(**{**SMALL.__dict__, "every": 2}))
    assert overlapping.calibrated_origins == [9, 9, 8, 8]  # hour h waits for ceil(h / 2) origins more
    assert json.loads(json.dumps(result)) == result


def test_changing_data_after_an_origin_changes_nothing_for_it(forecaster, frame):
    """No look-ahead: an origin's forecast, calibration included, uses only rows before it."""
    base = run_backtest(forecaster, frame, SMALL)
    altered = frame.copy()
    altered.loc[100:, ["open", "high", "low", "close"]] *= 1.5  # rows 100.. change; origins up to 96 see none
    moved = run_backtest(forecaster, altered, SMALL)
    assert base.scores["model"]["pit"][:7] == moved.scores["model"]["pit"][:7]  # origins 61..91: outcomes < row 95
    assert base.scores["model"]["pit"] != moved.scores["model"]["pit"]


def test_a_longer_run_reuses_stored_origins_and_gives_the_same_paths(forecaster, frame, tmp_path):
    store = CandleStore(tmp_path / "s.sqlite")
    first = run_backtest(forecaster, frame, SMALL, store=store)
    assert first.reused == 0
    again = run_backtest(forecaster, frame, SMALL, store=store)
    assert again.reused == 12 and again.scores == first.scores
    longer = run_backtest(forecaster, frame, BacktestSettings(**{**SMALL.__dict__, "origins": 14}), store=store)
    assert longer.reused == 12
    fresh = run_backtest(forecaster, frame, BacktestSettings(**{**SMALL.__dict__, "origins": 14}))
    assert fresh.scores == longer.scores


def test_latest_forecasts_after_the_last_row_with_calibrated_values(forecaster, frame):
    latest = run_backtest(forecaster, frame, SMALL, latest=True).latest
    assert latest["after"] == frame["timestamps"].iloc[-1].isoformat()
    assert len(latest["upside_raw"]) == len(latest["upside_calibrated"]) == SMALL.horizon
    assert all(latest["calibrated"]) and set(latest["bands_calibrated"]) == {"50", "80", "95"}
    lo, hi = (np.array(edge) for edge in latest["bands_calibrated"]["80"])
    assert (lo < hi).all()


def test_bad_settings_name_the_problem():
    with pytest.raises(InvalidInputError, match="origins must be between 1 and 2000"):
        BacktestSettings(origins=0)
    with pytest.raises(InvalidInputError, match="every must be at least 1"):
        BacktestSettings(every=0)


def test_progress_runs_to_the_end_across_the_stored_parts(forecaster, frame, tmp_path, monkeypatch):
    import kronos.evaluation.backtest as backtest

    monkeypatch.setattr(backtest, "KEPT_EVERY", 5)  # 12 origins in parts of 5, 5 and 2, each stored when done
    store, calls = CandleStore(tmp_path / "s.sqlite"), []
    run_backtest(forecaster, frame, SMALL, store=store, progress=lambda step, total: calls.append((step, total)))
    assert calls[-1] == (1200, 1200) and [s for s, _ in calls] == sorted(s for s, _ in calls)
    assert len(store.backtest_paths([])) == 0 and run_backtest(forecaster, frame, SMALL, store=store).reused == 12
