"""The forecast log: market forecasts are recorded, scored by the explicit step once their candles close (not
before), and calibrate the next forecast from the past only."""

from __future__ import annotations

import pandas as pd
import pytest
from data_frames import candle_frame

from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.evaluation.live import calibrated_view
from kronos.evaluation.record import log_forecast, score_closed, track_record

MARKET = ("binance", "BTC/USDT", "1h")


def candles_until(frame: pd.DataFrame, rows: int, source: str = "store") -> Candles:
    part = frame.iloc[:rows].reset_index(drop=True)
    return Candles(part, source, "binance", "BTC/USDT", "1h", part["timestamps"].iloc[-1], False, False)


@pytest.fixture
def frame() -> pd.DataFrame:
    return candle_frame(160, seed=5)


def test_a_forecast_is_scored_once_its_candles_close_and_not_before(forecaster, frame, tmp_path):
    store = CandleStore(tmp_path / "s.sqlite")
    store.merge(frame.iloc[:100], *MARKET)
    forecast = forecaster.forecast(frame.iloc[:100], horizon=4, samples=8, seed=1)
    assert log_forecast(store, candles_until(frame, 100), forecast, "weights-a")
    assert score_closed(store, *MARKET, "weights-a") == 0
    assert track_record(store, *MARKET, "weights-a").to_dict()["scored"] == 0
    store.merge(frame.iloc[100:103], *MARKET)  # 3 of the 4 forecast candles
    assert score_closed(store, *MARKET, "weights-a") == 0
    store.merge(frame.iloc[103:104], *MARKET)
    assert track_record(store, *MARKET, "weights-a").scored == 0  # reading writes nothing: scoring is its own step
    assert score_closed(store, *MARKET, "weights-a") == 1 and score_closed(store, *MARKET, "weights-a") == 0
    record = track_record(store, *MARKET, "weights-a")
    assert (record.logged, record.scored) == (1, 1)
    assert set(record.coverage) == {"50", "80", "95"} and 0 <= record.brier_upside <= 1
    assert track_record(store, *MARKET, "weights-b").logged == 0  # another model's record is its own
    assert log_forecast(store, candles_until(frame, 100), forecast, "weights-a")  # the same forecast: logged once
    assert track_record(store, *MARKET, "weights-a").logged == 1


def test_custom_data_is_not_logged(forecaster, frame, tmp_path):
    store = CandleStore(tmp_path / "s.sqlite")
    forecast = forecaster.forecast(frame.iloc[:100], horizon=2, samples=4, seed=1)
    assert not log_forecast(store, candles_until(frame, 100, source="csv"), forecast, "weights-a")
    assert track_record(store, *MARKET, "weights-a").logged == 0


def test_calibration_uses_only_outcomes_known_at_the_new_origin(forecaster, frame, tmp_path):
    store = CandleStore(tmp_path / "s.sqlite")
    store.merge(frame, *MARKET)
    for end in range(60, 120, 4):  # 15 forecasts, the last one's candles closed by row 124
        log_forecast(store, candles_until(frame, end), forecaster.forecast(frame.iloc[:end], horizon=4, samples=8,
                                                                            seed=end), "w")
    assert score_closed(store, *MARKET, "w") == 15
    new = forecaster.forecast(frame.iloc[:100], horizon=4, samples=8, seed=7)  # origin: row 100
    view = calibrated_view(store, *MARKET, "w", new, min_count=5)
    assert view.known == [10] * 4  # forecasts made at rows 60..96 closed by row 100; later ones are not known yet
    assert all(p is not None for p in view.upside) and all(v is not None for v in view.bands["80"][0])
    assert calibrated_view(store, *MARKET, "w", new, min_count=11).upside == [None] * 4
    late = forecaster.forecast(frame.iloc[:140], horizon=4, samples=8, seed=7)
    assert calibrated_view(store, *MARKET, "w", late, min_count=5).known == [15] * 4


def test_the_live_view_maps_the_upside_as_the_backtest_does(forecaster, frame, tmp_path):
    """One calibration: the view's upside is the backtest's probability map fitted on the same known pairs."""
    import numpy as np

    from kronos.evaluation.probability import DEFAULT_MAP, recalibrate

    store = CandleStore(tmp_path / "s.sqlite")
    store.merge(frame, *MARKET)
    for end in range(60, 120, 4):
        log_forecast(store, candles_until(frame, end), forecaster.forecast(frame.iloc[:end], horizon=4, samples=8,
                                                                            seed=end), "w")
    score_closed(store, *MARKET, "w")
    new = forecaster.forecast(frame.iloc[:140], horizon=4, samples=8, seed=7)
    view = calibrated_view(store, *MARKET, "w", new, min_count=5)
    entries = store.logged_forecasts(*MARKET, "w")
    prob = np.array([e["forecast"]["upside"][0] for e in entries] + [new.upside_probability()[0]])
    up = np.array([e["outcome"]["returns"][0] > 0 for e in entries] + [False])
    count = np.append(np.zeros(15, int), 15)
    expected = recalibrate(prob, up, count, np.arange(16), DEFAULT_MAP, 5, 1 / 18)[0][-1]
    assert view.upside[0] == pytest.approx(expected)
