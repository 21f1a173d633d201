"""The HTTP API against hostile or careless clients: the optional token, no server paths in any answer, bodies
that are not JSON, and work refused before it starts (settings the candles cannot hold, the per-request budget)."""

from __future__ import annotations

import json
import logging
import shutil
import time

import pytest
from fastapi.testclient import TestClient
from path_probe import leaks
from test_api import PARITY, SMALL, api_client, api_store, custom_body, filled_store, offline_exchange  # noqa: F401 (fixtures)

from kronos.api import create_app
from kronos.data import market
from kronos.errors import StoreUnavailableError
from kronos.settings import MAX_REQUEST_WORK, ORIGIN_LIMITS, ModelChoice

GUARDED = [("get", "/predict_api"), ("get", "/predict_all"), ("get", "/predict"), ("post", "/predict_custom"),
           ("post", "/backtest"), ("get", "/track_record")]
BACKTEST = {**SMALL, "horizon": 3, "lookback": 40, "origins": 4, "every": 10}


@pytest.fixture
def guarded(forecaster, store):
    with TestClient(create_app(forecaster=forecaster, store=store, token="s3cret-token")) as client:
        yield client


@pytest.mark.parametrize("method, path", GUARDED)
def test_with_a_token_set_every_route_but_health_answers_401_without_it(guarded, method, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"},
                    {"Authorization": "Bearer s3cret-token-and-more"}):
        response = getattr(guarded, method)(path, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer" and "Bearer" in response.json()["error"]
        assert response.json()["problems"] == [response.json()["error"]]
    assert guarded.get("/health").status_code == 200


def test_with_the_token_the_routes_answer(guarded, parity_input):
    auth = {"Authorization": "Bearer s3cret-token"}
    assert guarded.get("/predict_api", params=SMALL, headers=auth).status_code == 200
    assert guarded.post("/predict_custom", json=custom_body(parity_input, **SMALL), headers=auth).status_code == 200
    assert guarded.get("/track_record", headers=auth).status_code == 200


def test_the_openapi_document_states_the_token_only_where_it_is_wanted(guarded, client):
    document = guarded.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for method, path in GUARDED:
        operation = document["paths"][path][method]
        assert operation["security"] == [{"HTTPBearer": []}] and "401" in operation["responses"]
    assert "security" not in document["paths"]["/health"]["get"]
    open_document = client.get("/openapi.json").json()  # no token set: nothing to send, nothing documented
    assert "securitySchemes" not in open_document.get("components", {})
    assert all("401" not in op["responses"] for item in open_document["paths"].values() for op in item.values())


def listing_eth_too(name: str, timeout: float):
    """The offline exchange, listing ETH/USDT as well (of which the store holds nothing)."""
    exchange = offline_exchange(name, timeout)
    exchange.markets["ETH/USDT"] = {"id": "ETHUSDT", "symbol": "ETH/USDT"}
    exchange.symbols.append("ETH/USDT")
    return exchange


def test_no_answer_or_error_names_a_server_path(tmp_path, parity_input, monkeypatch, caplog):
    monkeypatch.setattr(market, "make_exchange", listing_eth_too)
    models, private = tmp_path / "models" / "btcrun", tmp_path / "private"
    shutil.copytree(PARITY / "model", models / "model")
    shutil.copytree(PARITY / "tokenizer", models / "tokenizer")
    store = filled_store(private / "candles.sqlite", parity_input)
    app = create_app(ModelChoice(str(models / "model"), str(models / "tokenizer")), max_context=128, store=store)
    with TestClient(app) as client:
        answers = [client.get("/health"), client.get("/predict_api", params=SMALL),
                   client.get("/predict_all", params=SMALL), client.get("/predict", params=SMALL),
                   client.post("/predict_custom", json=custom_body(parity_input, **SMALL)),
                   client.post("/backtest", json=custom_body(parity_input, **BACKTEST)),
                   client.get("/track_record"), client.get("/scan", params={**SMALL, "symbols": "BTC/USDT",
                                                                            "source": "store"}),
                   client.get("/predict_api", params={**SMALL, "symbol": "ETH/USDT"})]
        monkeypatch.setattr(app.state.runtime.market, "candles", lambda market, limit: (_ for _ in ()).throw(
            StoreUnavailableError("is not an SQLite database", str(store.path), "move it away")))
        with caplog.at_level(logging.WARNING, "kronos.api"):
            answers.append(client.get("/predict_api", params=SMALL))
    assert [a.status_code for a in answers] == [200] * 8 + [503, 503]
    assert all(a.json()["model"] == "btcrun" for a in answers[:8])
    assert "the local store has no ETH/USDT 1h candles" in answers[8].json()["error"]  # named, without its path
    assert "local store" in answers[9].json()["error"]
    assert not leaks([f"{a.headers} {a.text}" for a in answers], tmp_path, "models/btcrun")
    assert str(store.path) in caplog.text  # the operator still learns where


def test_an_unloadable_model_is_a_503_without_its_path(tmp_path, store, caplog):
    choice = ModelChoice(str(tmp_path / "secret" / "model"), str(tmp_path / "secret" / "tokenizer"))
    with caplog.at_level(logging.ERROR, "kronos.api"), TestClient(create_app(choice, store=store)) as client:
        answers = [client.get("/health"), client.get("/predict_api", params=SMALL)]
    assert [a.status_code for a in answers] == [503, 503] and "server log" in answers[0].json()["error"]
    assert all(str(tmp_path) not in a.text for a in answers) and str(tmp_path / "secret") in caplog.text


@pytest.mark.parametrize("content, content_type", [
    (b"{not json", "application/json"), (b"\xff\xfe", "application/json"), (b"", "application/json"),
    (b"hello", "text/plain"), (b'{"horizon": 4}', None), (b"a=b", "application/x-www-form-urlencoded")])
@pytest.mark.parametrize("path", ["/predict_custom", "/backtest"])
def test_a_body_that_is_not_json_is_400(client, path, content, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(path, content=content, headers=headers)
    assert response.status_code == 400 and "JSON" in response.json()["error"]


@pytest.mark.parametrize("body", [[1, 2], "candles", None, 3])
def test_json_that_is_not_an_object_is_422(client, body):
    response = client.post("/predict_custom", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"].startswith("body: ")


@pytest.fixture
def no_forecasts(forecaster, monkeypatch):
    """Fail the test if any forecast starts."""
    monkeypatch.setattr(forecaster, "forecast_many", lambda *a, **k: pytest.fail("a forecast started"))


@pytest.mark.parametrize("settings, message", [
    ({"lookback": 32, "horizon": 48}, "horizon (48) must be shorter than its lookback (32)"),
    ({"lookback": 190, "horizon": 24}, "at least lookback + horizon = 214 rows"),
    ({"origins": ORIGIN_LIMITS.api, "samples": 100, "horizon": 48}, f"budget of {MAX_REQUEST_WORK:,}")])
def test_backtest_settings_the_candles_or_the_budget_cannot_hold_are_refused_at_once(client, no_forecasts,
                                                                                     parity_input, settings, message):
    started = time.perf_counter()
    response = client.post("/backtest", json=custom_body(parity_input, **{**BACKTEST, **settings}))
    assert response.status_code == 422 and message in response.json()["error"]
    assert time.perf_counter() - started < 5


def test_the_budget_is_stated_in_the_openapi_document(client):
    document = client.get("/openapi.json").json()
    assert f"{MAX_REQUEST_WORK:,}" in document["paths"]["/backtest"]["post"]["description"]
    origins = document["components"]["schemas"]["BacktestBody"]["properties"]["origins"]
    assert f"{MAX_REQUEST_WORK:,}" in origins["description"]
