"""Calibrated at first sight on the parity checkpoint: the combined forecast's block, its shape, why it can be
unavailable, the reuse of the kept record by a later forecast, provisional blocks, and the record's sentence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from data_frames import candle_frame

from kronos.data.store import CandleStore
from kronos.evaluation.anchored import issue_latest
from kronos.evaluation.combined import combined_forecast, first_sight, record_sentence
from kronos.schemas.calibrated import Calibrated, Unavailable

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
    record = block.record  # anchored: at most 12 origins, its first moving by blocks
    assert all(block.pooled) and 6 <= record.origins == record.target <= 12 and record.live == 0
    assert not record.provisional and len(record.crps_skill) == len(record.brier_upside) == 4
    assert block.summary.startswith(f"Over the last {record.origins} forecasts of BTC/USDT 1h, ")


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
    blocks = [combined_forecast(forecaster, frames.iloc[:rows], forecast, store, **OPTIONS)  # any seed: the record
              for rows, forecast in made.items()]  # keeps its own
    origins = [block.record.origins for block in blocks]
    assert origins == [origins[0], origins[0], origins[0] + 1]  # one candle more: no new origin; six more: one
    assert histories == [origins[0], 1]  # first sight, newest first in one piece (nobody waits for a provisional)


def test_provisional_blocks_come_newest_first_and_say_so(forecaster, frames, tmp_path):
    frame = frames.iloc[:150]
    forecast = forecaster.forecast(frame, seed=3, **SAMPLING)
    published = []
    final = combined_forecast(forecaster, frame, forecast, CandleStore(tmp_path / "s.sqlite"),
                              publish=published.append, **{**OPTIONS, "min_count": 3})
    assert [block.record.provisional for block in published] == [True, False] and published[-1] == final
    first = published[0].record
    assert (first.origins, first.target) == (4, final.record.origins) and first.last == final.record.last
    assert published[0].summary.startswith(f"Over the last 4 forecasts of this data (a provisional record, growing "
                                           f"to {final.record.origins}), ")
    quick = combined_forecast(forecaster, frame, forecast, None, quick=True, **{**OPTIONS, "min_count": 3})
    assert quick == published[0]  # the same first record, its origins' paths the same wherever they were made


def test_the_sentence_names_the_best_baseline_and_the_model_weight(forecaster, frames):
    forecast = forecaster.forecast(frames.iloc[:150], seed=3, **SAMPLING)
    record = first_sight(forecaster, frames.iloc[:150], forecast, **OPTIONS)
    latest = issue_latest(record, forecast)
    said = record_sentence(record, latest, "BTC/USDT 1h")
    best = min(record.crps(name)[-1] for name in ("random_walk", "bootstrap", "ewma", "garch"))
    gap = 1 - record.crps("model_calibrated")[-1] / best
    assert f"{abs(gap):.0%} {'better' if gap >= 0 else 'worse'} than the " in said
    assert said.endswith(f"gives it {latest.weights['model_calibrated'][-1]:.0%} weight.")
    assert latest.pooled.all()  # a record holds min_count origins known at its forecast, or there is none:
    assert isinstance(first_sight(forecaster, frames.iloc[:150], forecast, **{**OPTIONS, "min_count": 30}),
                      Unavailable)  # 30 known outcomes need more candles
