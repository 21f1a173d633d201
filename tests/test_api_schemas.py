"""Each answer has one typed definition (kronos.schemas): every answer the HTTP API and the CLI produce, and every
error body, parses through its model and serialises back to exactly the same JSON (no undeclared or lost key)."""

from __future__ import annotations

import json

import pytest
from conftest import PARITY
from pydantic import BaseModel
from test_api import SMALL, api_client, api_store, cli_arguments, cli_json, custom_body  # noqa: F401 (fixtures)

from kronos import cli
from kronos.api.errors import MAX_BODY_BYTES
from kronos.schemas.backtest import BacktestAnswer
from kronos.schemas.forecast import ForecastAnswer, ForecastWithFigure, ForecastWithPaths
from kronos.schemas.service import ErrorBody, Health, TrackRecordAnswer

BACKTEST = {**SMALL, "horizon": 3, "lookback": 40, "origins": 4}
ROUTES = [("get", "/health", None, Health), ("get", "/predict_api", None, ForecastAnswer),
          ("get", "/predict_all", None, ForecastWithPaths), ("get", "/predict", None, ForecastWithFigure),
          ("post", "/predict_custom", SMALL, ForecastAnswer),
          ("post", "/backtest", {**BACKTEST, "calibrate": True}, BacktestAnswer),
          ("get", "/track_record", None, TrackRecordAnswer)]


def same_through(model: type[BaseModel], text: str) -> None:
    """`text` parses as `model` and serialises back to the same JSON."""
    assert model.model_validate_json(text).model_dump(mode="json") == json.loads(text)


@pytest.mark.parametrize("method, path, body, model", ROUTES)
def test_every_api_answer_is_its_one_model(client, parity_input, method, path, body, model):
    if method == "get":
        response = client.get(path, params=SMALL if path != "/health" else None)
    else:
        response = client.post(path, json=custom_body(parity_input, **body))
    assert response.status_code == 200
    same_through(model, response.text)
    declared = client.get("/openapi.json").json()["paths"][path][method]["responses"]["200"]
    assert declared["content"]["application/json"]["schema"]["$ref"].endswith(f"/{model.__name__}")


def test_every_error_is_the_error_body(client):
    errors = [client.get("/predict_api", params={"horizon": 99}),
              client.get("/predict_api", params={"symbol": "ETH/EUR"}), client.get("/nowhere"),
              client.put("/predict_api"),
              client.post("/predict_custom", content=b"{", headers={"content-type": "application/json"}),
              client.post("/predict_custom", content=b" " * (MAX_BODY_BYTES + 1))]
    assert [e.status_code for e in errors] == [422, 404, 404, 405, 400, 413]
    for error in errors:
        same_through(ErrorBody, error.text)


@pytest.mark.parametrize("extra, model", [([], ForecastAnswer), (["--all-samples"], ForecastWithPaths)])
def test_the_cli_prints_the_same_models(capsys, extra, model):
    printed = cli_json(capsys, *cli_arguments(SMALL), *extra)
    same_through(model, json.dumps(printed))
    assert ("all_samples" in printed) == (model is ForecastWithPaths)


def test_the_cli_backtest_prints_the_api_answer(capsys, client, parity_input, tmp_path):
    assert cli.main(["backtest", "--csv", str(PARITY / "input.csv"), "--model", str(PARITY / "model"),
                     "--tokenizer", str(PARITY / "tokenizer"), "--store", str(tmp_path / "cli.sqlite"),
                     *cli_arguments(BACKTEST)]) == 0
    printed = capsys.readouterr().out
    same_through(BacktestAnswer, printed)
    served = client.post("/backtest", json=custom_body(parity_input, **BACKTEST)).json()
    assert list(json.loads(printed)) == list(served)
    assert json.loads(printed)["scores"]["model"] == served["scores"]["model"]  # the same candles, the same paths
