"""Every dashboard page through Streamlit's AppTest, on the parity checkpoint and a temporary candle store."""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from app_server import RecordedBinance
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

from kronos import cancellation
from kronos.api import create_app
from kronos.cli import main
from kronos.data import market
from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.engine.synthetic import random_walk
from kronos.errors import StoreUnavailableError
from kronos.evaluation.calibration import MIN_COUNT
from kronos.evaluation.combined import EVERY, minimum_origins
from kronos.evaluation.record import log_forecast
from kronos.model import checkpoints
from kronos.schemas.calibrated import Calibrated
from kronos.settings import FORECAST_DEFAULTS
from ui import loaders, widgets

ROOT = Path(__file__).resolve().parents[1]
PARITY = Path(__file__).parent / "fixtures" / "kronos_parity"
LINK = {"seed": "11", "horizon": "8", "samples": "12", "temperature": "0.7", "top_p": "0.8", "hour_idx": "5"}
SMALL = {"lookback": "64", "horizon": "6", "samples": "8", "hour_idx": "4"}  # a calibration of a few seconds


@pytest.fixture(autouse=True)
def calibrations_end():
    """Every test's background calibrations end within it, so none runs on into the next test."""
    yield
    assert loaders.calibrations().wait(120)


def run(page: str | None = None, query: dict[str, str] | None = None, app: AppTest | None = None) -> AppTest:
    """Run the app (first run, or again after widget changes), optionally on another page; fail on any exception."""
    if app is None:
        app = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
        app.query_params.update(query or {})
        if page:
            app.run()  # st.navigation registers the pages on the first run
    if page:
        app.switch_page(page)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def charts(app: AppTest) -> list[list[dict]]:
    """The traces of every Plotly chart on the page, from the figure JSON in each element's proto."""
    return [json.loads(element.proto.spec)["data"] for element in app.get("plotly_chart")]


def values(trace: dict, axis: str = "y") -> np.ndarray:
    """A trace's values, decoding Plotly's typed-array encoding."""
    data = trace[axis]
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
    return np.asarray(data)


def trace(app: AppTest, name: str, chart: int = 0) -> dict:
    """The trace called `name` in the page's chart number `chart`."""
    return next(t for t in charts(app)[chart] if t.get("name") == name)


def metrics(app: AppTest) -> dict[str, str]:
    """Every metric on the page: label -> shown value."""
    return {m.label: m.value for m in app.metric}


def calibrated(app: AppTest) -> AppTest:
    """The page again once the background calibrations have ended."""
    assert loaders.calibrations().wait(120)
    return run(app=app)


def kept_forecasts(app: AppTest) -> list:
    """The forecasts this session made, oldest first."""
    return list(app.session_state["loading.forecasts"].values())


def test_live_page_answers_from_the_store_with_a_banner_metrics_and_the_fan_chart(filled, parity_input):
    app = calibrated(run())
    assert "No exchange answered: using the local store's 200 BTC/USDT 1h candles" in app.warning[0].value
    assert "Only 200 candles are available" in app.info[0].value
    assert app.info[1].value == ("Not calibrated: calibration needs about 428 rows of history (34 backtest origins "
                                 "every 6 rows with a lookback of 200); there are 200. The values below are Kronos "
                                 "alone.")
    shown = metrics(app)
    assert shown["Last price"] == f"{parity_input['close'].iloc[-1]:,.2f}"
    assert {"Upside, hour 24", "Volatility amplification", "Expected return, hour 24"} <= set(shown)
    (forecast,) = kept_forecasts(app)
    assert shown["Upside, hour 24"] == f"{forecast.upside_probability()[-1]:.0%}"
    returns = forecast.column("close")[:, -1] / forecast.last_close - 1
    assert shown["Expected return, hour 24"] == f"{returns.mean():+.2%}"
    assert next(m for m in app.metric if m.label == "Expected return, hour 24").delta == \
        f"80% interval {np.quantile(returns, 0.1):+.2%} to {np.quantile(returns, 0.9):+.2%}"
    names = [t.get("name") for t in charts(app)[0]]
    assert names == ["history", "95% band", "80% band", "50% band", "median", "mean"]
    np.testing.assert_allclose(values(trace(app, "median")), forecast.quantile(0.5)["close"])
    np.testing.assert_allclose(values(trace(app, "upside probability", 1)), forecast.upside_probability())
    assert app.query_params["seed"] == "42" and app.query_params["model"] == "kronos_parity"  # KRONOS_MODEL's label


def test_sidebar_changes_reach_the_forecast_and_the_url(filled):
    app = run()
    app.slider(key="ctl.horizon").set_value(6)
    app.slider(key="ctl.samples").set_value(5)
    app.number_input(key="ctl.seed").set_value(7)
    run(app=app)
    assert len(values(trace(app, "median"))) == 6
    assert app.slider(key="ctl.hour_idx").value == 6  # clamped to the new horizon
    forecast = kept_forecasts(app)[-1]
    assert (forecast.samples, forecast.horizon, forecast.seed) == (5, 6, 7)
    assert {k: app.query_params[k] for k in ("horizon", "samples", "seed", "hour_idx")} == \
        {"horizon": "6", "samples": "5", "seed": "7", "hour_idx": "6"}
    app.toggle(key="live.refresh").set_value(True)
    run(app=app)
    assert len(kept_forecasts(app)) == 2 and len(values(trace(app, "median"))) == 6  # refreshing reuses it


def test_a_shared_link_reproduces_the_settings_and_the_paths(filled):
    first = run(query=LINK)
    assert first.slider(key="ctl.temperature").value == 0.7
    assert first.slider(key="ctl.hour_idx").value == 5
    assert "Upside, hour 5" in metrics(first)
    assert all(first.query_params[k] == v for k, v in LINK.items())
    second = run(query=dict(first.query_params))
    np.testing.assert_array_equal(kept_forecasts(first)[0].paths, kept_forecasts(second)[0].paths)
    assert kept_forecasts(first)[0].paths.shape == (12, 8, 6)


def test_a_bad_link_value_is_ignored_with_a_warning(filled):
    app = run(query={"horizon": "999", "exchange": "nasdaq"})
    warnings = " ".join(w.value for w in app.sidebar.warning)
    assert "horizon must be between 1 and 48, got 999" in warnings and "exchange must be one of" in warnings
    assert app.slider(key="ctl.horizon").value == 24


def test_sample_paths_page_reuses_the_forecast_and_draws_every_view(filled):
    app = run()
    run("pages/sample_paths.py", app=app)
    assert len(kept_forecasts(app)) == 1  # switching pages did not resample
    (forecast,) = kept_forecasts(app)
    paths = [t for t in charts(app)[0] if str(t.get("name", "")).startswith("path ")]
    assert len(paths) == 30
    np.testing.assert_allclose(values(paths[2]), forecast.column("close")[2])
    histogram = charts(app)[1][0]
    np.testing.assert_allclose(values(histogram, "x"), forecast.column("close")[:, -1])
    app.toggle(key="paths.show").set_value(False)
    app.number_input(key="paths.path").set_value(3)
    run(app=app)
    assert not [t for t in charts(app)[0] if str(t.get("name", "")).startswith("path ")]
    candles = trace(app, "path 3", 2)
    np.testing.assert_allclose(values(candles, "close"), forecast.paths[2, :, 3])
    assert [b.label for b in app.get("download_button")] == ["Download paths (CSV, long format)",
                                                           "Download forecast (JSON, /predict_all shape)"]


def test_custom_data_page_forecasts_an_uploaded_csv(store):
    app = run("pages/custom_data.py")
    assert "Upload a CSV file or paste JSON" in app.info[0].value
    app.file_uploader(key="custom.file").set_value(("input.csv", (PARITY / "input.csv").read_bytes(), "text/csv"))
    run(app=app)
    assert "Custom CSV data 'input.csv': 200 rows every 1h" in app.info[0].value
    assert charts(app)[0][0]["type"] == "candlestick" and len(values(charts(app)[0][0], "close")) == 200
    assert metrics(app)["Last price"] == f"{pd.read_csv(PARITY / 'input.csv')['close'].iloc[-1]:,.2f}"
    assert [t.get("name") for t in charts(app)[1]][-2:] == ["median", "mean"]
    run("pages/sample_paths.py", app=app)
    assert app.radio(key="paths.source").options[1] == "Custom data 'input.csv'"


@pytest.mark.parametrize("content, message", [
    (b"time;price\n1;2\n", "missing column(s)"),
    (b"PK\x03\x04 not really a workbook", "not CSV"),
    (b"\n".join((PARITY / "input.csv").read_bytes().splitlines()[:11]), "at least 32 are needed"),
], ids=["columns", "workbook", "too-short"])
def test_custom_data_page_shows_what_is_wrong_with_a_bad_file(store, content, message):
    app = run("pages/custom_data.py")
    app.file_uploader(key="custom.file").set_value(("bad.csv", content, "text/csv"))
    run(app=app)
    assert message in app.error[0].value and "'bad.csv' cannot be used" in app.error[0].value
    assert not app.metric


def test_custom_data_page_forecasts_pasted_json(store, parity_input):
    app = run("pages/custom_data.py")
    app.radio(key="custom.kind").set_value("Paste JSON")
    run(app=app)
    rows = parity_input.assign(timestamps=parity_input["timestamps"].astype(str)).to_dict(orient="list")
    app.text_area(key="custom.json").set_value(json.dumps(rows))
    run(app=app)
    assert "Custom JSON data 'pasted JSON': 200 rows" in app.info[0].value
    assert metrics(app)["Last price"] == f"{parity_input['close'].iloc[-1]:,.2f}"


def test_an_empty_store_says_how_to_fill_it(store):
    app = run()
    assert "No market data" in app.error[0].value and "python -m kronos import FILE.csv" in app.error[0].value
    assert not app.metric


def test_a_symbol_without_a_slash_says_how_to_write_it(filled):
    app = run()
    app.text_input(key="ctl.symbol").set_value("BTCUSDT")
    run(app=app)
    assert "symbol 'BTCUSDT' should look like BASE/QUOTE, e.g. BTC/USDT" in app.error[0].value
    assert app.query_params["symbol"] == "BTCUSDT"


def test_a_missing_model_says_how_to_get_weights(filled, monkeypatch, tmp_path):
    monkeypatch.setenv("KRONOS_MODEL", str(tmp_path / "nowhere"))
    app = run()
    assert app.error[0].value.startswith("The model could not be loaded: 'nowhere' is neither a checkpoint directory")
    assert "KRONOS_MODEL and KRONOS_TOKENIZER" in app.info[0].value
    assert app.selectbox(key="ctl.model").value == "nowhere" and str(tmp_path) not in app.error[0].value


def test_live_candles_from_an_exchange_are_stored_and_shown_as_live(store, monkeypatch):
    monkeypatch.setattr(market, "make_exchange", RecordedBinance().exchange)
    app = run()
    stored = len(store.load("binance", "BTC/USDT", "1h"))
    assert app.success[0].value.startswith(f"Live data from binance: {stored} BTC/USDT 1h candles")
    assert stored > 1500  # the lookback and the history its calibration backtests (200 origins every 6 candles)
    assert len(kept_forecasts(app)[0].history) == 383


def test_cli_api_and_dashboard_give_the_same_default_forecast(filled, capsys):
    """One settings source: with no settings given, the three front ends forecast the same paths."""
    (dashboard,) = kept_forecasts(run())
    assert main(["forecast", "--source", "store", "--all-samples"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    with TestClient(create_app(store=filled)) as client:
        from_api = client.get("/predict_all").json()
    for answer in (from_cli, from_api):
        closes = np.array(list(answer["all_samples"]["close"].values()))
        np.testing.assert_array_equal(closes, dashboard.column("close"))
        assert answer["seed"] == dashboard.seed == FORECAST_DEFAULTS.seed
        assert answer["settings"] == dashboard.settings.model_dump()
    defaults = FORECAST_DEFAULTS
    assert dashboard.settings.model_dump() == dict(horizon=defaults.horizon, samples=defaults.samples,
                                                   temperature=defaults.temperature, top_p=defaults.top_p,
                                                   top_k=defaults.top_k, lookback=200, max_context=512)


def test_live_page_shows_the_track_record_and_calibrated_values_once_there_are_enough(filled, parity_input,
                                                                                      forecaster):
    app = run()
    assert metrics(app)["Forecasts logged / scored"] == "1 / 0"
    assert "Values calibrated on the live forecasts alone appear once 30 forecasts" in app.caption[-1].value
    for end in range(110, 172, 2):  # 31 earlier forecasts of this market by these weights, closed by row 200
        candles = Candles(parity_input.iloc[:end], "store", "binance", "BTC/USDT", "1h",
                          parity_input["timestamps"].iloc[end - 1], False, False)
        log_forecast(filled, candles, forecaster.forecast(parity_input.iloc[:end], samples=8, seed=end),
                     forecaster.fingerprint)
    shown = metrics(run())
    assert shown["Forecasts logged / scored"] == "32 / 31"
    assert shown["Upside calibrated on live forecasts, hour 24"].endswith("%") and \
        "80% band of the close at hour 24: calibrated" in \
        run().caption[-1].value


def test_a_real_training_run_appears_in_the_model_picker_and_forecasts(filled, monkeypatch, tmp_path):
    """The run as `python -m kronos train` leaves it; a folder whose record.json is not one is skipped with a note."""
    from test_checkpoints import trained_run

    monkeypatch.setenv("KRONOS_MODELS", str(tmp_path / "models"))
    run_dir = trained_run(tmp_path / "models", "btcrun")
    (tmp_path / "models" / "foreign" / "model").mkdir(parents=True)
    (tmp_path / "models" / "foreign" / "record.json").write_text("[]")
    app = run()
    picker = app.selectbox(key="ctl.model")
    assert "trained:btcrun" in picker.options or "Trained: btcrun" in picker.options
    assert [c.value for c in app.sidebar.caption if c.value.startswith("Skipped training run")] == [
        ("Skipped training run foreign: its record.json is not what `python -m kronos train` writes (Input should be "
         "an object)")]
    picker.set_value("trained:btcrun")
    app = run(app=app)
    best = json.loads((run_dir / "record.json").read_text())["stages"]["predictor"]["best"]["value"]
    assert any(c.value.startswith("btcrun.csv 2024-01-01 to 2024-01-17") and f"validation loss {best:.3f}" in c.value
               for c in app.sidebar.caption)
    assert app.query_params["model"] == "trained:btcrun" and "tokenizer" not in app.query_params  # no server path
    assert len(kept_forecasts(app)) == 2  # the preset's, then the trained run's
    assert kept_forecasts(app)[-1].settings.max_context == 512  # the tiny shape's context, as record.json names it
    assert "Upside, hour 24" in metrics(app)


def _loaded(monkeypatch) -> list[str]:
    """The model sources the dashboard loads from now on (every call of Forecaster.from_pretrained)."""
    from kronos import Forecaster

    loads, original = [], Forecaster.from_pretrained.__func__

    def counted(cls, model, *args, **kwargs):
        loads.append(model)
        return original(cls, model, *args, **kwargs)

    monkeypatch.setattr(Forecaster, "from_pretrained", classmethod(counted))
    return loads


def page_text(app: AppTest) -> list[str]:
    """Every message and caption on the page and in the sidebar, in order."""
    return [e.value for kind in ("error", "warning", "info", "caption") for e in getattr(app, kind)]


def test_a_link_cannot_choose_the_servers_files(filled, monkeypatch):
    """?model=/etc and ?model=/nonexistent&tokenizer=/etc: the same words, nothing loaded, nothing to tell apart."""
    loads = _loaded(monkeypatch)
    apps = [run(query={"model": "/etc"}), run(query={"model": "/nonexistent", "tokenizer": "/etc"}),
            run(query={"model": "mini", "tokenizer": "/etc"})]
    assert loads == []
    for app in apps:
        assert app.error[0].value == f"The model could not be loaded: {checkpoints.NOT_ALLOWED}"
        assert not app.metric
    assert page_text(apps[0]) == page_text(apps[1])
    assert apps[0].slider(key="ctl.lookback").max == apps[1].slider(key="ctl.lookback").max
    assert app.text_input(key="ctl.model_dir").disabled and "KRONOS_ALLOW_ANY_MODEL=1" in " ".join(
        c.value for c in app.sidebar.caption)


def test_any_checkpoint_directory_loads_once_the_operator_allows_it(filled, monkeypatch, tmp_path):
    shutil.copytree(PARITY, tmp_path / "ckpt")
    link = {"model": str(tmp_path / "ckpt" / "model"), "tokenizer": str(tmp_path / "ckpt" / "tokenizer")}
    loads = _loaded(monkeypatch)
    refused = run(query=link)
    assert refused.error[0].value == f"The model could not be loaded: {checkpoints.NOT_ALLOWED}" and loads == []
    monkeypatch.setenv("KRONOS_ALLOW_ANY_MODEL", "1")
    app = run(query=link)
    assert loads == [link["model"]] and not app.error and "Upside, hour 24" in metrics(app)
    assert not app.text_input(key="ctl.model_dir").disabled


@pytest.fixture
def long_market(store):
    """The store holding 600 hourly candles as Binance BTC/USDT: history enough to calibrate a SMALL forecast."""
    store.merge(random_walk(600, seed=3), "binance", "BTC/USDT", "1h")
    return store


def gated(monkeypatch) -> threading.Event:
    """Calibrations wait for the event returned before they start."""
    gate, original = threading.Event(), loaders.calibrated

    def waiting(*args, **kwargs):
        assert gate.wait(60)
        return original(*args, **kwargs)

    monkeypatch.setattr(loaders, "calibrated", waiting)
    return gate


def block_of(app: AppTest) -> Calibrated:
    """The calibrated block of the live page's forecast: its job, joined (asking again starts no other)."""
    forecaster = loaders.load_forecaster(str(PARITY / "model"), str(PARITY / "tokenizer"))
    candles = loaders.load_candles(app.session_state["ctl.current"].market(), 64 + 6 + 1200)
    job = loaders.calibration(forecaster, candles, kept_forecasts(app)[-1])
    assert job.done
    return job.result()


def metric(app: AppTest, label: str):
    return next(m for m in app.metric if m.label == label)


def test_the_live_page_shows_kronos_alone_until_calibrated_then_the_combined_forecast(long_market, monkeypatch):
    gate = gated(monkeypatch)
    app = run(query=SMALL)
    (forecast,) = kept_forecasts(app)
    last = forecast.last_close
    assert metrics(app)["Upside, hour 4"] == f"{forecast.upside_probability()[3]:.0%}"
    assert metric(app, "Upside, hour 4").delta == "Kronos alone · not calibrated yet"
    assert metric(app, "Expected return, hour 4").delta.endswith(" · not calibrated yet")
    (bar,) = app.get("progress")
    assert "not calibrated yet" in bar.proto.text and not app.success
    assert [t.get("name") for t in charts(app)[0]][-2:] == ["median", "mean"]
    gate.set()
    app = calibrated(app)
    block = block_of(app)
    assert not app.get("progress") and not any("not calibrated" in m.delta for m in app.metric)
    upside = metric(app, "Upside, hour 4")
    assert upside.value == f"{block.upside_probability_all_hours[3]:.0%}"
    assert upside.delta == f"Kronos alone {forecast.upside_probability()[3]:.0%}"
    expected = metric(app, "Expected return, hour 4")
    assert expected.value == f"{block.median[3] / last - 1:+.2%}"
    kronos = forecast.quantile(0.5)["close"].iloc[3] / last - 1
    assert expected.delta == (f"80% band {block.bands['80'].low[3] / last - 1:+.2%} to "
                              f"{block.bands['80'].high[3] / last - 1:+.2%} · Kronos alone {kronos:+.2%}")
    assert app.success[0].value == block.summary
    assert block.summary.startswith(f"Over the last {block.record.origins} forecasts of BTC/USDT 1h, ")
    assert "The combined forecast at hour 4 weighs Kronos (calibrated) " in " ".join(c.value for c in app.caption)
    assert [t.get("name") for t in charts(app)[0]] == ["history", "95% band", "80% band", "50% band", "median",
                                                       "Kronos alone: median", "Kronos alone: 80% band",
                                                       "Kronos alone: 80% band"]
    np.testing.assert_allclose(values(trace(app, "median")), block.median)
    np.testing.assert_allclose(values(trace(app, "95% band")), block.bands["95"].high + block.bands["95"].low[::-1])
    np.testing.assert_allclose(values(trace(app, "Kronos alone: median")), forecast.quantile(0.5)["close"])
    np.testing.assert_allclose(values(trace(app, "upside probability", 1)), block.upside_probability_all_hours)
    np.testing.assert_allclose(values(trace(app, "Kronos alone", 1)), forecast.upside_probability())
    run("pages/sample_paths.py", app=app)  # the same forecast and calibration: no other job, no waiting
    assert metric(app, "Upside, hour 4").value == upside.value and app.success[0].value == block.summary
    assert len(kept_forecasts(app)) == 1 and not app.get("progress")


def test_custom_data_with_too_few_rows_says_how_many_calibration_needs(store):
    app = run("pages/custom_data.py")
    app.file_uploader(key="custom.file").set_value(("input.csv", (PARITY / "input.csv").read_bytes(), "text/csv"))
    app = calibrated(run(app=app))
    assert "Not calibrated: calibration needs about 428 rows of history" in app.info[-1].value
    assert "there are 200" in app.info[-1].value and not app.success
    assert metric(app, "Upside, hour 24").delta == "Kronos alone"


def test_custom_data_with_enough_rows_gets_the_combined_forecast(store):
    csv = random_walk(600, seed=5).to_csv(index=False).encode()
    app = run("pages/custom_data.py", SMALL)
    app.file_uploader(key="custom.file").set_value(("long.csv", csv, "text/csv"))
    app = calibrated(run(app=app))
    assert app.success[0].value.startswith("Over the last ") and " forecasts of this data, " in app.success[0].value
    assert metric(app, "Upside, hour 4").delta.startswith("Kronos alone ")
    assert "Kronos alone: median" in [t.get("name") for t in charts(app)[1]]


def test_a_read_only_store_calibrates_without_keeping_the_origins(long_market, monkeypatch):
    import sqlite3

    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda file, **kw: connect(f"file:{file}?mode=ro", uri=True, **kw))
    app = calibrated(run(query=SMALL))
    assert app.warning[-1].value.startswith("Live forecasts are not logged: ") and "read-only" in app.warning[-1].value
    assert app.success[0].value.startswith("Over the last ")
    assert any(c.value.startswith("The calibration's backtest origins are not kept (the server's local store ")
               for c in app.caption)


def test_a_store_failing_during_the_calibration_does_not_stop_it(long_market, monkeypatch):
    def broken(self, paths):
        raise StoreUnavailableError("is read-only", str(self.path), "make it writable")

    monkeypatch.setattr(CandleStore, "put_backtest_paths", broken)
    app = calibrated(run(query=SMALL))
    assert app.success[0].value.startswith("Over the last ") and not app.error
    assert metric(app, "Upside, hour 4").delta.startswith("Kronos alone ")


def test_the_first_usable_record_shows_while_the_rest_is_refined(long_market, monkeypatch):
    first, gate, original = threading.Event(), threading.Event(), loaders.calibrated

    def refining(*args, publish, **kwargs):
        def held(block):
            publish(block)
            if block.record.provisional and not first.is_set():  # hold the work after its first usable record
                first.set()
                assert gate.wait(60)
        return original(*args, publish=held, **kwargs)

    monkeypatch.setattr(loaders, "calibrated", refining)
    app = run(query=SMALL)
    assert first.wait(60)
    app = run(app=app)
    (bar,) = app.get("progress")
    origins = minimum_origins(6, EVERY, MIN_COUNT)
    assert f"Refining the calibration: the figures below stand on the last {origins} forecasts" in bar.proto.text
    assert app.success[0].value.startswith(f"Over the last {origins} forecasts of BTC/USDT 1h (a provisional record")
    assert metric(app, "Upside, hour 4").delta.startswith("Kronos alone ")  # the combined figure, beside Kronos'
    assert not any("not calibrated" in m.delta for m in app.metric)
    assert f"learnt from {origins} backtest origins so far" in " ".join(c.value for c in app.caption)
    gate.set()
    app = calibrated(app)
    assert not app.get("progress") and "provisional" not in app.success[0].value


def test_a_calibration_that_forecasts_nothing_shows_at_the_first_paint(long_market, monkeypatch):
    """Fewer paths than a kept calibration: its record comes from the stored paths, nothing is forecast, so the page
    waits for it (QUICK_S) instead of showing "not calibrated yet" and looking again POLL_S later."""
    calibrated(run(query=SMALL))
    original = loaders.calibrated

    def evaluating(*args, **kwargs):  # an evaluation that takes longer than GRACE_S, forecasting nothing
        time.sleep(2 * widgets.GRACE_S)
        return original(*args, **kwargs)

    monkeypatch.setattr(loaders, "calibrated", evaluating)
    monkeypatch.setattr(widgets, "QUICK_S", 60.0)  # however slow the machine
    app = run(query={**SMALL, "samples": "6"})
    assert not app.get("progress") and not any("not calibrated" in m.delta for m in app.metric)
    assert app.success[0].value.startswith("Over the last ")


def test_a_session_that_changes_its_settings_cancels_the_calibration_it_waited_for(long_market, monkeypatch):
    gate, tokens, original = threading.Event(), [], loaders.calibrated

    def waiting(*args, **kwargs):
        tokens.append(cancellation.current())
        assert gate.wait(60)
        return original(*args, **kwargs)

    monkeypatch.setattr(loaders, "calibrated", waiting)
    run(query=SMALL)  # AppTest's sessions share one id: the same session, with other settings next
    deadline = time.monotonic() + 60
    while not tokens:
        assert time.monotonic() < deadline, "the calibration never started"
        time.sleep(0.01)
    app = run(query={**SMALL, "samples": "9"})
    assert tokens[0].cancelled  # nobody else waited for it
    gate.set()
    app = calibrated(app)
    assert len(tokens) == 2 and not tokens[1].cancelled
    assert app.success and "not calibrated" not in " ".join(m.delta for m in app.metric)


def test_the_server_warm_starts_the_default_market_calibration_when_the_store_holds_its_candles(long_market):
    loaders.warm_start.clear()
    loaders.calibrations.clear()  # a fresh server
    warm = loaders.warm_start()
    assert warm is not None and warm.wait(60) and warm.result() is None
    assert loaders.calibrations().wait(120)
    assert len(loaders.calibrations().keys()) == 2
    started = loaders.calibrations().keys()[-1]  # the calibration the warm start asked for
    assert started[4:7] == ("BTC/USDT", "1h", FORECAST_DEFAULTS.seed)
    assert dict(started[7])["temperature"] == FORECAST_DEFAULTS.temperature
    count = len(loaders.calibrations().keys())
    run()  # the first visitor, at the defaults: joins it
    assert loaders.calibrations().keys()[-1] == started and len(loaders.calibrations().keys()) == count


def test_no_warm_start_without_the_default_market_in_the_store(store):
    loaders.warm_start.clear()
    loaders.calibrations.clear()
    assert loaders.warm_start() is None and loaders.calibrations().keys() == []
