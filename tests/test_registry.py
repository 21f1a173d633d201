"""The baselines' registry: the built-in order each run draws them in, and a baseline added by one class and one
`register` call is drawn, scored, pooled, kept, documented, labelled and coloured everywhere, the others' draws
unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from data_frames import candle_frame

from kronos.api.app import create_app
from kronos.data.store import CandleStore
from kronos.evaluation import baselines, kept, registry
from kronos.evaluation.backtest import BacktestSettings, origin_rows, run_backtest
from kronos.evaluation.combined import combined_forecast, first_sight
from kronos.evaluation.issuing import RunDraws, draw_baselines, runs_at
from kronos.evaluation.registry import BASELINES, Baseline, components, labels, register
from kronos.schemas.backtest import BacktestResult
from kronos.schemas.training import SeriesEvaluation
from kronos.settings import ForecastSettings
from kronos.views.charts import crps_chart, forecasters, weights_chart

SMALL = BacktestSettings(ForecastSettings(horizon=4, samples=6, lookback=40), origins=12, every=5, min_count=3)
SAMPLING = {"horizon": 4, "samples": 6, "lookback": 40}
RECORD = {"origins": 12, "every": 6, "min_count": 5}
BUILT_IN = ["random_walk", "bootstrap", "ewma", "garch"]


class Flat(Baseline):
    """Zero returns: every path stays at the last close."""

    name, label, colour, pooled = "flat", "flat line", "#17becf", True

    def draw(self, runs, rng):
        return np.zeros((len(runs.rows), runs.samples, runs.horizon))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return candle_frame(120, seed=3)


@pytest.fixture(scope="module")
def before(forecaster, frame, tmp_path_factory):
    """A backtest, and a store holding a kept record, made by the built-in registry."""
    store = CandleStore(tmp_path_factory.mktemp("registry") / "s.sqlite")
    forecast = forecaster.forecast(frame, seed=3, **SAMPLING)
    combined_forecast(forecaster, frame, forecast, store, **RECORD)
    return run_backtest(forecaster, frame, SMALL), store, forecast


@pytest.fixture
def flat():
    """The flat baseline registered for one test, removed afterwards."""
    baseline = register(Flat())
    yield baseline
    del BASELINES[baseline.name]


def test_the_built_in_baselines_draw_and_pool_in_their_fixed_order():
    assert list(BASELINES) == BUILT_IN  # each run's generator draws them so: the stored paths depend on it
    assert registry.forecasters() == ("model", "model_calibrated", *BUILT_IN, "combined")
    assert components() == ("model_calibrated", "random_walk", "ewma", "garch")  # the order of stored weights
    assert labels(BASELINES) == "random walk, bootstrap, EWMA and GARCH(1,1)"
    with pytest.raises(ValueError, match="'ewma' exists already"):
        register(registry.EWMA())
    with pytest.raises(ValueError, match="'combined' exists already"):
        register(type("Combined", (Flat,), {"name": "combined"})())
    assert list(BASELINES) == BUILT_IN


def test_each_run_draws_the_built_in_baselines_one_after_another_from_its_generator(frame):
    close, rows = frame["close"].to_numpy(), np.arange(50, 100, 7)
    model = np.random.default_rng(0).normal(0, 0.01, (len(rows), 6, 4))
    runs = runs_at(close, frame["timestamps"], rows, model, np.zeros(len(rows)), len(rows) - 1, 39, 42)
    rng, trailing = RunDraws(runs.entropy), np.diff(np.log(runs.past), axis=1)
    expected = {"random_walk": baselines.random_walk(trailing, 6, 4, rng),  # the order the stored scores were made in
                "bootstrap": baselines.bootstrap(trailing, 6, 4, rng), "ewma": baselines.ewma(trailing, 6, 4, rng),
                "garch": baselines.garch_paths(runs.garch, rng.standard_normal((len(rows), 6, 4)))}
    drawn = draw_baselines(runs)
    assert list(drawn) == BUILT_IN
    for name, paths in expected.items():
        np.testing.assert_array_equal(drawn[name], paths, err_msg=name)


def test_a_registered_baseline_is_scored_pooled_and_charted_and_the_others_draw_the_same(
        forecaster, frame, before, flat, tmp_path):
    plain = before[0]
    result = run_backtest(forecaster, frame, SMALL)
    origins = origin_rows(len(frame), SMALL)
    close = frame["close"].to_numpy()
    observed = np.log(close[origins[:, None] + np.arange(4)] / close[origins - 1, None])
    np.testing.assert_allclose(result.scores["flat"].crps, np.abs(observed).mean(0))  # zero paths: CRPS = |y|
    for name in ("model", *BUILT_IN):  # drawn after the others: their paths and scores stay the same
        assert result.scores[name].to_dict() == plain.scores[name].to_dict()
    assert list(result.weights) == ["model_calibrated", *registry.pooled()] and "flat" in result.weights
    answer = result.to_dict()
    assert list(answer["scores"]) == ["model", "model_calibrated", *BUILT_IN, "flat", "combined",
                                      "trailing_frequency"]
    assert BacktestResult.model_validate(answer) == result.to_schema()
    document = create_app(forecaster=forecaster, store=CandleStore(tmp_path / "s.sqlite"), warm=False).openapi()
    assert list(document["components"]["schemas"]["BacktestScores"]["properties"]) == list(answer["scores"])
    assert forecasters()["flat"] == ("flat line", "#17becf")
    assert {(t.name, t.line.color) for t in crps_chart(result).data} >= {("flat line", "#17becf")}
    assert "flat line" in [t.name for t in weights_chart(result).data]
    assert labels(registry.pooled()) == "random walk, EWMA, GARCH(1,1) and flat line"
    series = {"name": "x", "origins": 1, "first_origin": "2024-01-01T00:00:00", "last_origin": "2024-01-01T00:00:00",
              "baseline_window": 39, "trained": {"crps": [0.1], "brier_upside": [0.2], "coverage": {}},
              "trained_calibrated": {"crps": [0.1], "brier_upside": [0.2], "coverage": {}},
              "trained_skill": {"crps": [0.0], "brier_upside": [0.0]},
              "trained_calibrated_skill": {"crps": [0.0], "brier_upside": [0.0]},
              **{name: {"crps": [0.1], "brier_upside": [0.2], "coverage": {}} for name in ("random_walk", "flat")}}
    assert SeriesEvaluation.model_validate(series).flat.crps == [0.1]  # a training record keeps its scores too


def test_a_record_kept_by_another_registry_is_made_again_with_the_new_baseline(
        forecaster, frame, before, flat, monkeypatch):
    _, store, forecast = before
    read = []
    monkeypatch.setattr(kept, "_read", lambda key, blob, found=kept._read: read.append(found(key, blob)) or read[-1])
    block = combined_forecast(forecaster, frame, forecast, store, **RECORD)
    assert read == [None]  # found under its key, but it pools one component fewer: not misread
    assert list(block.weights) == ["model_calibrated", "random_walk", "ewma", "garch", "flat"]
    record = first_sight(forecaster, frame, forecast, store, **RECORD)
    assert read[-1] is not None  # the record made with the flat baseline is kept in its place
    assert record.crps("flat").shape == (4,) and record.best_baseline in BASELINES
