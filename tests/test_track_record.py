"""The Track record page through Streamlit's AppTest: a small backtest on the parity checkpoint (baselines, the
combined forecast and its weights), kept and reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_app import charts, run, values

from kronos.evaluation import backtest
from ui import loaders

PAGE = "pages/track_record.py"
PARITY_CSV = Path(__file__).parent / "fixtures" / "kronos_parity" / "input.csv"
SMALL = {"lookback": "40", "horizon": "4", "samples": "6", "hour_idx": "4"}
NAMES = ["model (raw)", "model (calibrated)", "random walk", "bootstrap", "EWMA", "GARCH(1,1)", "combined"]
SHOWN = ["model (raw)", "model (calibrated)", "combined", "random walk"]  # coverage and reliability
POOLED = ["model (calibrated)", "random walk", "EWMA", "GARCH(1,1)"]


@pytest.fixture
def backtests(monkeypatch) -> list[backtest.Backtest]:
    """Every backtest the page computes in this test."""
    made = []

    def counted(*args, **kwargs):
        result = backtest.run_backtest(*args, **kwargs)
        made.append(result)
        return result

    monkeypatch.setattr(loaders, "run_backtest", counted)
    return made


def press(app: AppTest, origins: int, every: int) -> AppTest:
    """Set origins and every, then press Run backtest."""
    app.number_input(key="track.origins").set_value(origins)
    app.number_input(key="track.every").set_value(every)
    app.button(key="track.run").click()
    return run(app=app)


def test_a_backtest_of_the_stored_market_shows_charts_table_and_downloads_and_is_kept(filled, backtests):
    app = run(PAGE, SMALL)
    assert "Press **Run backtest**" in app.info[0].value and not charts(app) and not backtests
    press(app, 10, 5)
    (result,) = backtests
    assert len(result.origin_times) == 10 and result.settings.forecast.lookback == 40
    assert result.settings.forecast.horizon == 4 and result.settings.forecast.samples == 6
    crps, weights, coverage, reliability, pit = charts(app)
    assert [t["name"] for t in crps] == NAMES
    np.testing.assert_allclose(values(crps[2]), result.scores["random_walk"].crps)
    np.testing.assert_allclose(values(crps[6]), result.scores["combined"].crps)
    assert [t["name"] for t in weights] == POOLED  # 10 origins: too few known, the EWMA alone
    np.testing.assert_allclose(values(weights[2]), [1, 1, 1, 1])
    assert [t["name"] for t in reliability] == ["perfectly reliable"] + SHOWN
    assert [t["name"] for t in coverage] == SHOWN * 3 and [t["showlegend"] for t in coverage[:5]] == \
        [True, True, True, True, False]
    np.testing.assert_allclose(values(coverage[4]), result.scores["model"].coverage["80"])
    assert [t["name"] for t in pit] == ["model (raw)", "model (calibrated)", "combined"]
    np.testing.assert_allclose(values(pit[0], "x"), np.ravel(result.scores["model"].pit))
    shown = {m.label: m.value for m in app.metric}
    assert shown["Origins"] == "10"
    assert shown["CRPS skill, hour 4"] == f"{result.skill['combined']['crps'][3]:+.0%}"
    assert shown["80% band coverage, hour 4"] == f"{result.scores['combined'].coverage['80'][3]:.0%}"
    assert "need 30 of them: at the hour with the fewest, 0 of 10 origins" in app.info[0].value
    assert "it gave the model 0% weight on average" in app.markdown[1].value
    mean, per_hour = (table.value for table in app.dataframe)
    assert list(mean["forecaster"]) == ["model", "model_calibrated", "random_walk", "bootstrap", "ewma", "garch",
                                        "combined", "trailing_frequency"]
    assert mean["crps"].iloc[0] == pytest.approx(np.mean(result.scores["model"].crps))
    assert len(per_hour) == 8 * 4
    np.testing.assert_allclose(per_hour.loc[per_hour["forecaster"] == "model", "crps_skill"],
                               result.skill["model"]["crps"])
    assert [b.label for b in app.get("download_button")] == ["Download scores per hour (CSV)",
                                                           "Download backtest (JSON)"]

    run(app=app)  # a rerun (any widget) shows the kept result without recomputing
    run("pages/live.py", app=app)
    run(PAGE, app=app)
    assert len(backtests) == 1 and len(charts(app)) == 5
    kept = list(app.session_state["loading.backtests"].values())[-1]
    assert kept is result  # kept: the same typed result the charts came from
    assert json.loads(json.dumps(kept.to_dict())) == result.to_dict()

    press(app, 14, 5)  # a longer run forecasts only the 4 new origins
    longer = backtests[1]
    assert len(backtests) == 2 and (len(longer.origin_times), longer.reused) == (14, 10)


def test_custom_data_can_be_backtested(store, backtests):
    app = run("pages/custom_data.py", SMALL)
    app.file_uploader(key="custom.file").set_value(("input.csv", PARITY_CSV.read_bytes(), "text/csv"))
    run(app=app)
    run(PAGE, app=app)
    assert app.radio(key="track.source").options == ["Stored BTC/USDT 1h candles from binance",
                                                     "Custom data 'input.csv'"]
    app.radio(key="track.source").set_value("custom")
    press(app, 3, 7)
    (result,) = backtests
    last = pd.read_csv(PARITY_CSV, parse_dates=["timestamps"])["timestamps"].iloc[-1]
    assert len(result.origin_times) == 3 and result.origin_times[-1] == last - pd.Timedelta("3h")
    assert len(charts(app)) == 5 and "200 input.csv 1h candles" in app.markdown[-1].value


def test_an_empty_store_says_how_to_fill_it(store, backtests):
    app = run(PAGE, SMALL)
    assert "No market data" in app.error[0].value and "python -m kronos import FILE.csv" in app.error[0].value
    assert app.button(key="track.run") and not backtests


def test_too_few_candles_for_the_lookback_say_so(filled, backtests):
    app = run(PAGE)  # the default lookback, 383, with 200 stored candles
    press(app, 10, 5)
    assert "200 rows leave no origin: a backtest needs at least lookback + horizon = 407 rows" in app.error[0].value
    assert not charts(app) and not backtests
