"""Calibrated at first sight on the parity checkpoint: the combined forecast's block, its shape, why it can be
unavailable, the reuse of stored origins by a later forecast, and the record's sentence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from data_frames import candle_frame

from kronos.data.store import CandleStore
from kronos.evaluation.backtest import BacktestSettings, run_backtest
from kronos.evaluation.combined import combined_forecast, record_sentence
from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.settings import ForecastSettings

SAMPLING = {"horizon": 4, "samples": 6, "lookback": 40}
OPTIONS = {"origins": 12, "every": 6, "min_count": 5}


@pytest.fixture(scope="module")
def frames() -> pd.DataFrame:
    return candle_frame(200, seed=8)


def test_the_block_has_every_field_per_hour_in_prices(forecaster, frames, tmp_path):
    frame = frames.iloc[:150]
    forecast = forecaster.forecast(frame, seed=3, **SAMPLING)
    block = combined_forecast(forecaster, frame, forecast, CandleStore(tmp_path / "s.sqlite"),
                              market=("binance", "BTC/USDT", "1h"), hour_idx=2, **OPTIONS)
    assert isinstance(block, Calibrated) and Calibrated.model_validate(block.model_dump()) == block
    assert block.upside_probability == block.upside_probability_all_hours[1]
    assert len(block.median) == len(block.upside_probability_all_hours) == 4
    assert set(block.bands) == {"50", "80", "95"}
    close = frame["close"].iloc[-1]
    for key in ("50", "80", "95"):
        assert all(lo < hi for lo, hi in zip(block.bands[key].low, block.bands[key].high))
    assert all(lo < m < hi for lo, m, hi in zip(block.bands["80"].low, block.median, block.bands["80"].high))
    assert 0.5 * close < block.median[0] < 2 * close
    assert set(block.weights) == {"model_calibrated", "random_walk", "ewma", "garch"}
    np.testing.assert_allclose(np.sum(list(block.weights.values()), axis=0), 1)
    assert all(block.pooled) and block.record.origins == 12 and block.record.live == 0
    assert len(block.record.crps_skill) == len(block.record.brier_upside) == 4
    assert block.summary.startswith("Over the last 12 forecasts of BTC/USDT 1h, ")


def test_too_little_history_says_how_many_rows_it_would_need(forecaster, frames):
    frame = frames.iloc[:60]
    block = combined_forecast(forecaster, frame, forecaster.forecast(frame, seed=3, **SAMPLING), **OPTIONS)
    assert isinstance(block, Unavailable)
    assert "calibration needs about" in block.unavailable and "there are 60" in block.unavailable


def test_a_later_forecast_only_forecasts_the_new_origins(forecaster, frames, tmp_path, monkeypatch):
    store, histories = CandleStore(tmp_path / "s.sqlite"), []
    many = type(forecaster).forecast_many

    def counted(self, windows, **kwargs):
        histories.append(len(windows))
        return many(self, windows, **kwargs)

    made = {rows: forecaster.forecast(frames.iloc[:rows], seed=rows, **SAMPLING) for rows in (150, 151, 156)}
    monkeypatch.setattr(type(forecaster), "forecast_many", counted)
    for rows, forecast in made.items():  # any seed: the backtest keeps its own
        assert isinstance(combined_forecast(forecaster, frames.iloc[:rows], forecast, store, **OPTIONS), Calibrated)
    assert histories == [12, 1]  # first sight; one candle more: no new origin; six more: one new origin


def test_the_sentence_names_the_best_baseline_and_the_model_weight(forecaster, frames):
    settings = BacktestSettings(ForecastSettings(**SAMPLING), origins=12, every=6, min_count=5)
    result = run_backtest(forecaster, frames.iloc[:150], settings, latest=True)
    said = record_sentence(result, "BTC/USDT 1h")
    best = min(result.scores[name].crps[-1] for name in ("random_walk", "bootstrap", "ewma", "garch"))
    gap = 1 - result.scores["model_calibrated"].crps[-1] / best
    assert f"{abs(gap):.0%} {'better' if gap >= 0 else 'worse'} than the " in said
    assert said.endswith(f"gives it {result.latest.weights['model_calibrated'][-1]:.0%} weight.")
    early = run_backtest(forecaster, frames.iloc[:150], dataclasses.replace(settings, min_count=30),
                         latest=True)
    assert record_sentence(early, "x").endswith("until 30 outcomes are known the forecast below is the EWMA baseline "
                                                "alone.")
