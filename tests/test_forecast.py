"""Forecast summaries and the seed API's JSON shapes, on hand-made paths with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kronos import Forecast, InvalidInputError
from kronos.model.checkpoints import model_label
from kronos.schemas.forecast import DataBlock, ForecastAnswer, ForecastWithPaths

DATA = DataBlock(source="csv", exchange=None, symbol="test.csv", timeframe="1h", rows=40, as_of="2025-01-02T15:00:00",
                 is_stale=False, amount_is_estimated=False, notes=[])


def _forecast(closes: np.ndarray, history_closes: np.ndarray) -> Forecast:
    """Paths whose every column equals the given closes (samples, horizon)."""
    samples, horizon = closes.shape
    rows = len(history_closes)
    history = pd.DataFrame({"timestamps": pd.date_range("2025-01-01", periods=rows, freq="h")})
    for c in ("open", "high", "low", "close", "volume", "amount"):
        history[c] = history_closes
    paths = np.repeat(closes[:, :, None], 6, axis=2)
    future = pd.date_range(history["timestamps"].iloc[-1] + pd.Timedelta(hours=1), periods=horizon, freq="h")
    settings = dict(horizon=horizon, samples=samples, temperature=1.0, top_p=1.0, top_k=0, lookback=rows,
                    max_context=512)
    return Forecast(paths, future, history, seed=3, model="test", settings=settings)


def test_upside_probability_counts_paths_strictly_above_the_last_close():
    closes = np.array([[101.0, 99.0, 100.0], [99.0, 101.0, 102.0], [100.0, 100.5, 98.0], [102.0, 103.0, 104.0]])
    f = _forecast(closes, np.full(40, 100.0))
    np.testing.assert_allclose(f.upside_probability(), [0.5, 0.75, 0.5])  # 100.0 itself is not "up"


def test_volatility_amplification_follows_the_demo_definition():
    rng = np.random.default_rng(0)
    history = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 50)))
    calm = history[-1] * np.exp(np.cumsum(rng.normal(0, 0.001, (5, 24)), axis=1))
    wild = history[-1] * np.exp(np.cumsum(rng.normal(0, 0.05, (15, 24)), axis=1))
    f = _forecast(np.vstack([calm, wild]), history)
    assert f.volatility_amplification_probability() == pytest.approx(0.75)
    past = np.std(np.diff(np.log(history[-24:])), ddof=1)  # 23 returns, as the demo
    path = np.concatenate([[history[-1]], wild[0]])
    assert np.std(np.diff(np.log(path)), ddof=1) > past
    assert _forecast(calm[:, :2], history).volatility_amplification_probability() is None


def test_summaries_per_hour():
    closes = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]])
    f = _forecast(closes, np.full(40, 2.0))
    np.testing.assert_allclose(f.mean()["close"], [3.0, 6.0])
    np.testing.assert_allclose(f.minimum()["high"], [1.0, 2.0])
    np.testing.assert_allclose(f.maximum()["amount"], [5.0, 10.0])
    np.testing.assert_allclose(f.quantile(0.5)["low"], [3.0, 6.0])
    np.testing.assert_allclose(f.close_quantiles((0.0, 1.0)).to_numpy(), [[1.0, 5.0], [2.0, 10.0]])
    assert list(f.mean().index) == list(f.timestamps)


def test_the_answer_has_the_seed_api_keys_and_is_json():
    closes = np.array([[101.0, 99.0, 100.0], [99.0, 101.0, 102.0]])
    f = _forecast(closes, np.full(40, 100.0))
    answer = f.answer(DATA, hour_idx=2, all_samples=True)
    assert isinstance(answer, ForecastWithPaths)
    d = json.loads(answer.model_dump_json())
    assert d["data"] == DATA.model_dump() and d["model"] == "test" and d["settings"]["samples"] == 2
    assert d["upside_probability"] == 0.5
    assert [h["probability"] for h in d["upside_probability_all_hours"]] == [0.5, 0.5, 0.5]
    assert d["predictions"][0]["mean"]["close"] == 100.0 and d["predictions"][0]["max"]["close"] == 101.0
    assert d["predictions"][2]["timestamp"] == "2025-01-02T18:00:00"
    assert set(d["all_samples"]) == {"open", "high", "low", "close", "volume", "amount"}
    assert d["all_samples"]["close"]["pred-2"] == [99.0, 101.0, 102.0]
    assert type(f.answer(DATA)) is ForecastAnswer
    assert f.answer(DATA).hour_idx == 3


def test_answers_name_a_local_checkpoint_by_its_run_never_by_its_path(tmp_path):
    (tmp_path / "btcrun" / "model").mkdir(parents=True)
    (tmp_path / "plain").mkdir()
    assert model_label(str(tmp_path / "btcrun" / "model")) == "btcrun"
    assert model_label(str(tmp_path / "plain")) == "plain"
    assert model_label("NeoQuasar/Kronos-mini") == "NeoQuasar/Kronos-mini"


@pytest.mark.parametrize("hour", [0, 4, -1])
def test_hour_index_outside_the_horizon_is_refused(hour):
    f = _forecast(np.ones((2, 3)), np.full(40, 1.0))
    with pytest.raises(InvalidInputError, match="hour_idx must be between 1 and the horizon"):
        f.answer(DATA, hour_idx=hour)


def test_long_frame_lists_every_path_and_hour():
    closes = np.array([[1.0, 2.0], [3.0, 4.0]])
    frame = _forecast(closes, np.full(40, 2.0)).to_long_frame()
    assert list(frame.columns) == ["path", "hour", "timestamp", "open", "high", "low", "close", "volume", "amount"]
    assert frame["close"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert frame["path"].tolist() == [1, 1, 2, 2] and frame["hour"].tolist() == [1, 2, 1, 2]
