"""`forecast --calibrate` and the API's `calibrate=true`: the one `calibrated` block (kronos.flows.calibrated) in both,
`unavailable` with the rows it needs for short data, stored origins reused, over-budget requests refused before work,
and the shapes in the OpenAPI document."""

from __future__ import annotations

import json
import re
import time

import pytest
from data_frames import candle_frame
from fastapi.testclient import TestClient
from test_api import PARITY, SMALL, custom_body, filled_store, offline_exchange

from kronos import cli
from kronos.api import create_app
from kronos.api.routes import forecasts
from kronos.data import market
from kronos.data.store import CandleStore
from kronos.evaluation.calibration import MIN_COUNT
from kronos.evaluation.combined import EVERY, calibration_rows, minimum_origins
from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.schemas.forecast import ForecastAnswer
from kronos.schemas.service import CalibrationPending
from kronos.settings import MAX_REQUEST_WORK, ServerSettings

ROWS = 300  # enough for SMALL's calibration (lookback 64, horizon 4): about 40 origins
FEWEST = SMALL["lookback"] + SMALL["horizon"] + minimum_origins(SMALL["horizon"], EVERY, MIN_COUNT) * EVERY


@pytest.fixture
def frame():
    return candle_frame(ROWS, start="2024-03-01", seed=5)


@pytest.fixture(name="client")
def market_client(forecaster, frame, tmp_path, monkeypatch):
    """The API on the parity checkpoint, its store holding ROWS candles of Binance BTC/USDT 1h, exchanges offline."""
    monkeypatch.setattr(market, "make_exchange", offline_exchange)
    with TestClient(create_app(forecaster=forecaster, store=filled_store(tmp_path / "api.sqlite", frame))) as client:
        yield client


@pytest.fixture
def kept(monkeypatch) -> dict[str, int]:
    """How many origins' paths the calibrations found in the store, how many they put into it."""
    counts = {"found": 0, "put": 0}
    found, put = CandleStore.backtest_paths, CandleStore.put_backtest_paths

    def counted_found(self, keys):
        result = found(self, keys)
        counts["found"] += len(result)
        return result

    def counted_put(self, paths):
        counts["put"] += len(paths)
        return put(self, paths)

    monkeypatch.setattr(CandleStore, "backtest_paths", counted_found)
    monkeypatch.setattr(CandleStore, "put_backtest_paths", counted_put)
    return counts


def cli_calibrated(capsys, csv, store, forecasts: bool = True, **settings) -> dict:
    """What `forecast --calibrate` prints; with `forecasts` (origins not in the store yet), its progress on stderr."""
    arguments = [part for name, value in {**SMALL, **settings}.items()
                 for part in (f"--{name.replace('_', '-')}", str(value))]
    assert cli.main(["forecast", "--csv", str(csv), "--store", str(store), "--model", str(PARITY / "model"),
                     "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "128", "--calibrate",
                     *arguments]) == 0
    captured = capsys.readouterr()
    assert ("calibration" in captured.err) == forecasts
    return json.loads(captured.out)


def test_the_cli_and_the_api_carry_the_same_calibrated_block(client, capsys, frame, tmp_path):
    csv = tmp_path / "candles.csv"
    frame.to_csv(csv, index=False)
    printed = cli_calibrated(capsys, csv, tmp_path / "cli.sqlite", hour_idx=2)
    response = client.post("/predict_custom", json=custom_body(frame, **SMALL, hour_idx=2, calibrate=True,
                                                          calibration="full"))
    assert response.status_code == 200, response.text
    answered = response.json()
    for answer in (printed, answered):  # each serialised through the one model
        assert ForecastAnswer.model_validate(answer).model_dump(mode="json") == answer
    assert answered["calibrated"] == printed["calibrated"]
    assert answered["predictions"] == printed["predictions"]
    block = Calibrated.model_validate(answered["calibrated"])
    assert block.upside_probability == block.upside_probability_all_hours[1]  # hour_idx 2
    assert set(block.bands) == {"50", "80", "95"} and len(block.median) == SMALL["horizon"]
    every_origin = (ROWS - SMALL["horizon"] - SMALL["lookback"]) // EVERY + 1
    assert block.record.origins in (every_origin - 1, every_origin)  # the last may fall before the clock's alignment
    assert {"model_calibrated", "random_walk", "ewma", "garch"} <= set(block.weights)
    assert "kronos_parity's" in block.summary and "fixtures" not in response.text  # the model's name, no path


def test_without_calibrate_there_is_no_block(client, frame):
    answer = client.post("/predict_custom", json=custom_body(frame, **SMALL)).json()
    assert answer["calibrated"] is None


def test_short_custom_data_is_unavailable_naming_the_rows_it_needs(client):
    short = candle_frame(FEWEST - EVERY - 1, start="2024-03-01")
    answer = client.post("/predict_custom", json=custom_body(short, **SMALL, calibrate=True)).json()
    why = Unavailable.model_validate(answer["calibrated"]).unavailable
    assert f"needs about {FEWEST} rows" in why and f"there are {len(short)}" in why
    enough = client.post("/predict_custom", json=custom_body(candle_frame(FEWEST, start="2024-03-01"), **SMALL,
                                                             calibrate=True)).json()
    assert Calibrated.model_validate(enough["calibrated"]).record.origins >= minimum_origins(
        SMALL["horizon"], EVERY, MIN_COUNT)  # as many rows as it said are enough


@pytest.mark.parametrize("path", ["/predict_api", "/predict_all", "/predict"])
def test_a_second_market_call_reuses_every_stored_origin(client, kept, path):
    params = {**SMALL, "calibrate": True, "calibration": "full"}
    first = client.get(path, params=params)
    assert first.status_code == 200, first.text
    origins = first.json()["calibrated"]["record"]["origins"]
    assert kept == {"found": 0, "put": origins}  # a new store: every origin forecast, and kept
    again = client.get(path, params=params).json()
    assert kept == {"found": 0, "put": origins}  # then the kept record answers: no path read, none forecast again
    assert again["calibrated"] == first.json()["calibrated"]
    assert first.json()["data"]["rows"] == ROWS  # the store's candles, up to calibration_rows
    assert calibration_rows(SMALL["lookback"], SMALL["horizon"]) > ROWS


def test_the_cli_reuses_its_store_too(capsys, frame, tmp_path, kept):
    csv = tmp_path / "candles.csv"
    frame.to_csv(csv, index=False)
    first = cli_calibrated(capsys, csv, tmp_path / "cli.sqlite")
    origins = first["calibrated"]["record"]["origins"]
    assert kept == {"found": 0, "put": origins}
    again = cli_calibrated(capsys, csv, tmp_path / "cli.sqlite", forecasts=False)  # nothing to forecast: no progress
    assert kept == {"found": 0, "put": origins} and again["calibrated"] == first["calibrated"]
    assert not first["calibrated"]["record"]["provisional"]


def test_an_over_budget_calibration_is_refused_before_any_work(client, frame, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("no forecast may start")

    monkeypatch.setattr(forecasts, "forecast_candles", no_work)
    samples = MAX_REQUEST_WORK // (201 * 24) + 1  # 200 origins + the forecast, 24 hours
    over = {**SMALL, "samples": samples, "horizon": 24, "calibrate": True}
    refused = [client.get("/predict_api", params=over), client.post("/predict_custom", json=custom_body(frame, **over))]
    for response in refused:
        assert response.status_code == 422
        assert f"{MAX_REQUEST_WORK:,}" in response.json()["error"] and "201 origins" in response.json()["error"]


def test_the_openapi_document_describes_calibrate_and_the_backtest_scores(client):
    document = client.get("/openapi.json").json()
    for path in ("/predict_api", "/predict_all", "/predict"):
        described = document["paths"][path]["get"]
        assert "202 with Retry-After" in described["description"]
        calibrate = next(p for p in described["parameters"] if p["name"] == "calibrate")
        assert calibrate["schema"]["default"] is False and "reuse" in calibrate["description"]
        choice = next(p for p in described["parameters"] if p["name"] == "calibration")
        assert choice["schema"]["enum"] == ["quick", "full"] and choice["schema"]["default"] == "quick"
        pending = described["responses"]["202"]
        assert {"Retry-After", "Location"} == set(pending["headers"])
        assert pending["content"]["application/json"]["schema"]["$ref"].endswith("/CalibrationPending")
    custom = document["components"]["schemas"]["CustomBody"]["properties"]["calibrate"]
    assert "202 with" in custom["description"] and re.search(r"\d[\d,]* generated candle", custom["description"])
    assert "202 with Retry-After" in document["paths"]["/predict_custom"]["post"]["description"]
    assert "202" in document["paths"]["/predict_custom"]["post"]["responses"]
    scores = document["components"]["schemas"]["BacktestScores"]["properties"]
    assert {"model", "model_calibrated", "random_walk", "bootstrap", "ewma", "garch", "combined",
            "trailing_frequency"} == set(scores)
    assert document["components"]["schemas"]["BacktestAnswer"]["properties"]["scores"]["$ref"].endswith(
        "/BacktestScores")
    assert {"Calibrated", "Unavailable"} <= set(document["components"]["schemas"])


def test_the_cli_returns_the_first_usable_record_when_quick(capsys, frame, tmp_path):
    csv = tmp_path / "candles.csv"
    frame.to_csv(csv, index=False)
    quick = cli_calibrated(capsys, csv, tmp_path / "quick.sqlite", calibration="quick")["calibrated"]["record"]
    fewest = minimum_origins(SMALL["horizon"], EVERY, MIN_COUNT)
    assert quick["provisional"] and quick["origins"] == fewest < quick["target"]
    full = cli_calibrated(capsys, csv, tmp_path / "full.sqlite", calibration="full")["calibrated"]["record"]
    assert not full["provisional"] and full["origins"] == full["target"] == quick["target"]
    assert full["last"] == quick["last"] and full["first"] < quick["first"]  # the newest origins come first


def test_the_cli_says_which_calibration_it_returned(capsys, frame, tmp_path):
    csv = tmp_path / "candles.csv"
    frame.to_csv(csv, index=False)
    arguments = [part for name, value in SMALL.items() for part in (f"--{name.replace('_', '-')}", str(value))]
    assert cli.main(["forecast", "--csv", str(csv), "--store", str(tmp_path / "s.sqlite"), "--model",
                     str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "128",
                     "--calibrate", "--calibration", "quick", *arguments]) == 0
    fewest = minimum_origins(SMALL["horizon"], EVERY, MIN_COUNT)
    assert f"calibrated (quick): a provisional record of {fewest} origins" in capsys.readouterr().err


def waiting_client(forecaster, frame, tmp_path, wait_s: float) -> TestClient:
    """The API on the parity checkpoint (no warm start), a request waiting `wait_s` s for its calibration."""
    return TestClient(create_app(forecaster=forecaster, store=filled_store(tmp_path / "api.sqlite", frame),
                                 server=ServerSettings(calibration_wait=wait_s), warm=False))


def test_a_calibration_not_ready_is_202_and_following_retry_after_ends_calibrated(forecaster, frame, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setattr(market, "make_exchange", offline_exchange)
    with waiting_client(forecaster, frame, tmp_path, 0) as client:
        first = client.get("/predict_api", params={**SMALL, "calibrate": True, "calibration": "full"})
        assert first.status_code == 202
        body = CalibrationPending.model_validate(first.json())
        retry = int(first.headers["Retry-After"])
        assert retry == body.retry_after >= 1 and first.headers["Location"] == body.location
        assert body.location.startswith("/predict_api?") and "calibrate=true" in body.location
        answered, deadline = first, time.monotonic() + 120
        while answered.status_code == 202:
            assert time.monotonic() < deadline, "the calibration never finished"
            time.sleep(int(answered.headers["Retry-After"]))
            answered = client.get(answered.headers["Location"])
        assert answered.status_code == 200
        record = Calibrated.model_validate(answered.json()["calibrated"]).record
        assert not record.provisional and record.origins == record.target


def test_quick_answers_from_the_first_usable_record_full_from_the_whole(forecaster, frame, tmp_path, monkeypatch):
    monkeypatch.setattr(market, "make_exchange", offline_exchange)
    with waiting_client(forecaster, frame, tmp_path, 120) as client:
        quick = client.get("/predict_api", params={**SMALL, "calibrate": True})  # quick is the default
        record = Calibrated.model_validate(quick.json()["calibrated"]).record
        assert quick.status_code == 200 and record.provisional
        assert record.origins == minimum_origins(SMALL["horizon"], EVERY, MIN_COUNT)
        full = client.get("/predict_api", params={**SMALL, "calibrate": True, "calibration": "full"})
        assert full.status_code == 200 and not full.json()["calibrated"]["record"]["provisional"]
        again = client.get("/predict_api", params={**SMALL, "calibrate": True})  # refined behind: now the full one
        assert again.json()["calibrated"]["record"] == full.json()["calibrated"]["record"]


def test_the_api_starts_the_default_market_calibration_when_the_store_holds_its_candles(forecaster, frame, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setattr(market, "make_exchange", offline_exchange)
    with TestClient(create_app(forecaster=forecaster, store=filled_store(tmp_path / "api.sqlite", frame))) as client:
        jobs = client.app.state.runtime.calibrations
        assert jobs.wait(60)
        kinds = [key[0] for key in jobs.keys()]
        assert kinds == ["warm start", "calibration"]  # the warm start queued the default settings' calibration
        warm = jobs.keys()[-1]
        asked = client.get("/predict_api", params={"calibrate": True})  # the defaults: joins the warm job
        assert asked.status_code == 200 and jobs.keys()[-1] == warm and len(jobs.keys()) == 2
    with TestClient(create_app(forecaster=forecaster, store=CandleStore(tmp_path / "empty.sqlite"))) as client:
        assert client.app.state.runtime.calibrations.keys() == []  # nothing stored: nothing to warm
