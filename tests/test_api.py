"""The HTTP API through FastAPI's TestClient: shapes, determinism, validation, limits, load shedding, failures."""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import ccxt
import pandas as pd
import plotly.io
import pytest
from fastapi.testclient import TestClient

from kronos import cli
from kronos.api import create_app
from kronos.api.errors import MAX_BODY_BYTES
from kronos.api.middleware import BodyTimeout
from kronos.cli import serve
from kronos.data import market
from kronos.data.store import CandleStore
from kronos.serving.service import ForecastService
from kronos.settings import ModelChoice, ServerSettings

PARITY = Path(__file__).parent / "fixtures" / "kronos_parity"
SMALL = {"horizon": 4, "samples": 3, "lookback": 64, "seed": 7, "top_p": 0.9}
COLUMNS = ("open", "high", "low", "close", "volume", "amount")


def offline_exchange(name: str, timeout: float) -> SimpleNamespace:
    """An exchange that lists BTC/USDT 1h only and whose candle requests fail at once, as when offline."""

    def unreachable(*args, **kwargs):
        raise ccxt.NetworkError(f"{name} unreachable (test)")

    markets = {"BTC/USDT": {"id": "BTCUSDT", "symbol": "BTC/USDT"}}
    return SimpleNamespace(id=name, markets=markets, symbols=list(markets), timeframes={"1h": "1h"},
                           load_markets=lambda *a, **k: markets, publicGetKlines=unreachable, fetch_ohlcv=unreachable,
                           fetch_tickers=unreachable, rateLimit=50)


def filled_store(path: Path, candles: pd.DataFrame) -> CandleStore:
    """A store at `path` holding `candles` as Binance BTC/USDT 1h."""
    store = CandleStore(path)
    store.merge(candles, "binance", "BTC/USDT", "1h")
    return store


def custom_body(candles: pd.DataFrame, **settings) -> dict:
    """`candles` in the original custom JSON format, plus settings."""
    return {"timestamps": candles["timestamps"].astype(str).tolist(),
            **{c: candles[c].tolist() for c in COLUMNS}, **settings}


@pytest.fixture(name="store")
def api_store(tmp_path, monkeypatch, parity_input) -> CandleStore:
    """The parity candles in a temporary store, and exchanges that fail at once (offline)."""
    monkeypatch.setenv("KRONOS_STORE", str(tmp_path / "candles.sqlite"))
    monkeypatch.setattr(market, "make_exchange", offline_exchange)
    return filled_store(tmp_path / "candles.sqlite", parity_input)


@pytest.fixture(name="client")
def api_client(forecaster, store):
    """The API on the parity checkpoint and the temporary store."""
    with TestClient(create_app(forecaster=forecaster, store=store)) as client:
        yield client


def cli_json(capsys, *arguments: str) -> dict:
    """What `python -m kronos forecast --csv input.csv ...` prints, on the parity checkpoint."""
    assert cli.main(["forecast", "--csv", str(PARITY / "input.csv"), "--model", str(PARITY / "model"),
                     "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "128", *arguments]) == 0
    return json.loads(capsys.readouterr().out)


def cli_arguments(settings: dict) -> list[str]:
    return [part for name, value in settings.items() for part in (f"--{name.replace('_', '-')}", str(value))]


def without_data(answer: dict) -> dict:
    return {key: value for key, value in answer.items() if key != "data"}


def test_health_names_the_loaded_model(client, forecaster):
    answer = client.get("/health").json()
    assert answer["status"] == "ok" and answer["model"] == "kronos_parity" and answer["pending"] == 0
    assert answer["store"] == "ok"
    assert forecaster.name == "kronos_parity"  # a local checkpoint goes by its run's name, not its path


def test_predict_api_is_the_cli_json_plus_the_data_used(client, capsys):
    answer = client.get("/predict_api", params={**SMALL, "hour_idx": 2}).json()
    assert without_data(answer) == without_data(cli_json(capsys, *cli_arguments({**SMALL, "hour_idx": 2})))
    assert answer["hour_idx"] == 2 and "all_samples" not in answer
    assert answer["data"] == {"source": "store", "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
                              "as_of": "2025-04-05T12:00:00", "is_stale": True, "rows": 64,
                              "amount_is_estimated": False, "notes": answer["data"]["notes"]}
    assert answer["data"]["notes"][-1] == "answered from the local store"


def test_predict_custom_is_the_cli_json_for_the_same_candles(client, capsys, parity_input):
    response = client.post("/predict_custom", json=custom_body(parity_input, **SMALL))
    assert response.status_code == 200
    assert without_data(response.json()) == without_data(cli_json(capsys, *cli_arguments(SMALL)))
    assert response.json()["data"]["source"] == "json"


def test_predict_all_holds_every_path_and_the_same_seed_gives_the_same_answer(client):
    first = client.get("/predict_all", params=SMALL).json()
    assert first == client.get("/predict_all", params=SMALL).json()
    assert set(first["all_samples"]) == set(COLUMNS)
    paths = first["all_samples"]["close"]
    assert list(paths) == ["pred-1", "pred-2", "pred-3"] and all(len(p) == 4 for p in paths.values())
    other = client.get("/predict_all", params={**SMALL, "seed": 8}).json()
    assert other["all_samples"] != first["all_samples"] and other["seed"] == 8


def test_predict_adds_a_plotly_figure_a_client_can_render(client):
    answer = client.get("/predict", params=SMALL).json()
    figure = plotly.io.from_json(json.dumps(answer.pop("figure")))
    assert [trace.type for trace in figure.data][:2] == ["candlestick", "scatter"]
    assert without_data(answer) == without_data(client.get("/predict_api", params=SMALL).json())


@pytest.mark.parametrize("params, named", [
    ({"horizon": 49}, "horizon"), ({"samples": 0}, "samples"), ({"temperature": 2.5}, "temperature"),
    ({"top_p": 0.05}, "top_p"), ({"hour_idx": 49}, "hour_idx"), ({"seed": "x"}, "seed"),
    ({"seed": 2**31}, "seed"), ({"timeframe": "¶P"}, "timeframe"), ({"symbol": "BTCUSDT"}, "symbol"),
    ({"exchange": "nosuchx"}, "exchange")])
def test_settings_out_of_range_are_422_naming_the_setting(client, params, named):
    response = client.get("/predict_api", params=params)
    assert response.status_code == 422
    assert response.json()["problems"][0].startswith(named) or named in response.json()["error"]


def test_bad_custom_bodies_get_the_validators_messages(client, parity_input):
    body = custom_body(parity_input, **SMALL)
    body["open"][3] = "abc"
    body["high"][5] = body["low"][5] - 1
    problems = client.post("/predict_custom", json=body).json()["problems"]
    assert problems == ["open: row 4 (item 3 of each JSON list) 'abc': Input should be a valid number, unable to parse "
                        "string as a number"]  # rows named as the validator names them (its third: "high: row 6")
    body["open"][3] = body["open"][2]
    problems = client.post("/predict_custom", json=body).json()["problems"]
    assert any("high: row 6" in p and "below low" in p for p in problems)
    short = client.post("/predict_custom", json=custom_body(parity_input.iloc[:10]))
    assert short.status_code == 422 and "should have at least 32 items" in short.json()["error"]
    ragged = custom_body(parity_input)
    ragged["close"] = ragged["close"][:-1]
    assert "differ in length" in client.post("/predict_custom", json=ragged).json()["error"]
    missing = {key: value for key, value in custom_body(parity_input).items() if key != "close"}
    assert client.post("/predict_custom", json=missing).json()["problems"] == ["close: Field required"]


def test_a_body_over_the_limit_is_refused_with_413(client):
    response = client.post("/predict_custom", content=b" " * (MAX_BODY_BYTES + 1),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and "MiB" in response.json()["error"]


def test_unknown_markets_and_paths_are_json_errors(client):
    assert client.get("/predict_api", params={"symbol": "ETH/EUR"}).status_code == 404
    assert client.get("/predict_api", params={"exchange": "nowhere"}).status_code == 422
    assert client.get("/predict_api", params={"timeframe": "often"}).status_code == 422
    assert client.get("/no_such_page").json() == {"error": "Not Found", "problems": ["Not Found"]}


def test_an_unsupported_method_is_405_with_allow(client):
    response = client.put("/predict_api")
    assert response.status_code == 405 and response.headers["Allow"] == "GET"
    assert response.json()["error"] == "Method Not Allowed"


def test_an_hour_beyond_the_horizon_reports_the_last_hour(client):
    answer = client.get("/predict_api", params={**SMALL, "hour_idx": 9}).json()
    assert answer["hour_idx"] == SMALL["horizon"] == len(answer["upside_probability_all_hours"])
    assert answer["upside_probability"] == answer["upside_probability_all_hours"][-1]["probability"]


def test_a_full_queue_answers_429_with_retry_after(forecaster, store, parity_input):
    service = ForecastService(workers=1, queue_size=0)
    gate = threading.Event()
    with TestClient(create_app(forecaster=forecaster, store=store, service=service, warm=False)) as client:
        service.submit("occupied", gate.wait)
        response = client.post("/predict_custom", json=custom_body(parity_input, **SMALL))
        gate.set()
        assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
        assert "busy" in response.json()["error"]
        for _ in range(500):  # the blocker's place is freed just after it returns, on the worker thread
            if service.pending == 0:
                break
            time.sleep(0.01)
        assert client.post("/predict_custom", json=custom_body(parity_input, **SMALL)).status_code == 200


def test_identical_concurrent_requests_share_one_computation(forecaster, store, parity_input, monkeypatch):
    service = ForecastService(workers=1, queue_size=1)  # room for the blocker and one more job only
    gate, calls = threading.Event(), []
    forecast = forecaster.forecast_many
    monkeypatch.setattr(forecaster, "forecast_many", lambda *a, **k: (calls.append(1), forecast(*a, **k))[1])
    submit, submitted = service.submit, threading.Semaphore(0)

    def counted(*args):
        future = submit(*args)
        submitted.release()
        return future

    monkeypatch.setattr(service, "submit", counted)
    with TestClient(create_app(forecaster=forecaster, store=store, service=service, warm=False)) as client:
        service.submit("occupied", gate.wait)
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(client.get("/predict_api", params=SMALL)))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        assert all(submitted.acquire(timeout=30) for _ in range(4))  # the blocker and the three requests
        gate.set()
        for thread in threads:
            thread.join()
    assert [a.status_code for a in answers] == [200] * 3 and len(calls) == 1
    assert answers[0].json() == answers[1].json() == answers[2].json()


def test_a_slow_exchange_is_cut_off_at_the_deadline(forecaster, store, monkeypatch, parity_input):
    release = threading.Event()
    monkeypatch.setattr(market, "make_exchange", lambda name, timeout: release.wait(30) and offline_exchange(name, 1))
    app = create_app(forecaster=forecaster, store=store, server=ServerSettings(exchange_timeout=0.2))
    with TestClient(app) as client:
        answer = client.get("/predict_api", params=SMALL)
        assert not release.is_set()  # answered while the exchange still hangs
        empty = client.get("/predict_api", params={**SMALL, "symbol": "ETH/USDT"})
        release.set()
    assert answer.status_code == 200 and answer.json()["data"]["source"] == "store"
    assert answer.json()["data"]["notes"][0] == "no exchange answered within 0.2 s"
    assert empty.status_code == 503 and "Retry-After" in empty.headers and "ETH/USDT" in empty.json()["error"]


def test_missing_weights_answer_503_with_the_reason(tmp_path, store):
    app = create_app(ModelChoice(str(tmp_path / "no_model"), str(tmp_path / "no_tokenizer")), store=store)
    with TestClient(app) as client:
        health = client.get("/health")
        forecast = client.get("/predict_api", params=SMALL)
    assert health.status_code == forecast.status_code == 503 and health.json() == forecast.json()
    assert "not loaded" in health.json()["error"] and str(tmp_path) not in health.text


def test_an_unexpected_failure_is_a_json_500_without_traceback(forecaster, store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(forecaster, "forecast_many", broken)
    with TestClient(create_app(forecaster=forecaster, store=store), raise_server_exceptions=False) as client:
        response = client.get("/predict_api", params=SMALL)
    assert response.status_code == 500 and "RuntimeError" in response.json()["error"]
    assert "secret" not in response.text and "Traceback" not in response.text


def test_serve_loads_the_chosen_model_on_the_given_address(monkeypatch):
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    monkeypatch.setenv("KRONOS_MODEL", "small")
    monkeypatch.delenv("KRONOS_TOKENIZER", raising=False)
    started = {}
    monkeypatch.setattr("uvicorn.run", lambda app, host, port: started.update(app=app, host=host, port=port))
    assert serve.run(parser.parse_args(["--port", "8123", "--workers", "2"])) == 0
    runtime = started["app"].state.runtime
    assert (started["host"], started["port"]) == ("127.0.0.1", 8123)
    assert runtime.choice == ModelChoice("small", None) and runtime.service.workers == 2
    assert serve.run(parser.parse_args(["--body-timeout", "5"])) == 0
    assert [m.kwargs for m in started["app"].user_middleware if m.cls is BodyTimeout] == [{"timeout": 5.0}]


def test_backtest_scores_the_model_and_the_baselines_per_hour(client, parity_input):
    body = custom_body(parity_input, horizon=3, samples=4, lookback=40, origins=8, every=10, min_count=2,
                       calibrate=True)
    answer = client.post("/backtest", json=body).json()
    assert answer["origins"] == 8 and answer["data"]["rows"] == 200 and answer["latest"] is not None
    for name in ("model", "model_calibrated", "random_walk"):
        scores = answer["scores"][name]
        assert len(scores["crps"]) == 3 and set(scores["coverage"]) == {"50", "80", "95"}
    assert client.post("/backtest", json={**body, "lookback": 2000}).status_code == 422  # more rows than there are


def test_track_record_counts_the_logged_market_forecasts(client):
    assert client.get("/track_record").json()["logged"] == 0
    client.get("/predict_api", params=SMALL)
    record = client.get("/track_record").json()
    assert (record["logged"], record["scored"], record["brier_always_half"]) == (1, 0, 0.25)
    assert client.get("/track_record", params={"symbol": "ETH/USDT"}).json()["logged"] == 0
