"""A scan's combined forecasts: stored calibrations inline, first-sight backtests within the call (the command's
--calibrate, GET /scan's calibrate=true within the request's budget) or in the background (the Markets page:
tests/test_markets_page.py).

Stored synthetic markets (300 hourly candles: a first sight of 38 origins with these settings, the last aligned to
the clock), the parity checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PARITY

from kronos.cli import main
from kronos.engine.synthetic import random_walk
from kronos.evaluation.combined import calibration_rows, first_sight
from kronos.flows import calibrated, forecast_candles
from kronos.scan.combining import NotStored, ScanCalibration, StoredOnly, market_combined
from kronos.scan.ranking import AGAIN, WAITING_HERE, scan_answer, with_combined
from kronos.scan.watchlist import fetch_watchlist, given
from kronos.schemas.markets import Combined, Scan, ScanQuery

MARKETS = ("AAA/USDT", "BBB/USDT", "CCC/USDT")  # CCC: too few candles to calibrate
QUERY = {"symbols": list(MARKETS), "source": "store", "horizon": 8, "samples": 6, "lookback": 64, "seed": 5,
         "hour_idx": 4}
FIRST_SIGHT = 38 * 6 * 8  # a market's first sight as a budget counts it: the origins it lacks x samples x horizon


@pytest.fixture
def markets(store):
    for i, symbol in enumerate(MARKETS[:2]):
        store.merge(random_walk(300, seed=i), "binance", symbol, "1h")
    store.merge(random_walk(100, seed=9), "binance", MARKETS[2], "1h")
    return store


class Counting:
    """A forecaster that counts the histories it is asked to forecast."""

    def __init__(self, forecaster):
        self._forecaster, self.histories = forecaster, 0
        self.name, self.max_context, self.fingerprint = forecaster.name, forecaster.max_context, forecaster.fingerprint
        self.check_arguments = forecaster.check_arguments

    def forecast_many(self, histories, **arguments):
        self.histories += len(histories)
        return self._forecaster.forecast_many(histories, **arguments)


def rows(result: Scan) -> dict:
    return {r.symbol: r for r in result.rows}


def same(a: Scan, b: Scan) -> bool:
    return [r.model_dump(exclude={"age_s"}) for r in a.rows] == [r.model_dump(exclude={"age_s"}) for r in b.rows]


def test_first_sight_runs_when_asked_then_later_scans_combine_from_the_store(markets, forecaster):
    raw = rows(scan_answer(ScanQuery(**QUERY), forecaster, markets, remote=False))
    assert [raw[s].basis for s in MARKETS] == ["raw"] * 3 and raw["AAA/USDT"].notes == [WAITING_HERE]
    assert raw["AAA/USDT"].crps_skill is None and raw["AAA/USDT"].model_weight is None
    assert raw["CCC/USDT"].notes == [("no combined forecast: calibration needs about 264 rows of history (32 backtest "
                                      "origins every 6 rows with a lookback of 64); there are 100")]
    counted = Counting(forecaster)
    first = scan_answer(ScanQuery(**QUERY, calibrate=True), counted, markets, remote=False)
    assert counted.histories == 3 + 2 * 38  # the scan's forecasts, then each calibrated market's origins
    done = rows(first)
    assert [done[s].basis for s in MARKETS] == ["combined", "combined", "raw"] and done["AAA/USDT"].notes == []
    assert done["CCC/USDT"].notes == raw["CCC/USDT"].notes
    counted.histories = 0
    later = scan_answer(ScanQuery(**QUERY), counted, markets, remote=False)
    assert counted.histories == 3 and same(later, first)  # nothing but the scan's own forecasts


def test_a_rows_combined_figures_are_its_markets_calibrated_block_at_the_hour(markets, forecaster):
    row = rows(scan_answer(ScanQuery(**QUERY, calibrate=True), forecaster, markets, remote=False))["AAA/USDT"]
    query = ScanQuery(**QUERY)
    (found,) = fetch_watchlist(given(["AAA/USDT"], "binance", "1h"), calibration_rows(64, 8), markets, live=False)
    forecast = forecast_candles(forecaster, found.candles, query.settings())
    block = calibrated(forecaster, found.candles, forecast, markets, 4)
    close = forecast.last_close
    assert row.last_price == close and row.upside_probability == block.upside_probability
    assert row.expected_return == block.median[3] / close - 1
    assert (row.return_low, row.return_high) == (block.bands["80"].low[3] / close - 1,
                                                 block.bands["80"].high[3] / close - 1)
    assert row.band_width == row.return_high - row.return_low
    assert row.volatility_amplification_probability == block.volatility_amplification_probability
    assert row.model_weight == block.weights["model_calibrated"][3] and 0 <= row.model_weight <= 1
    record = first_sight(forecaster, found.candles.frame, forecast, markets)
    assert row.crps_skill == record.skill("model_calibrated", record.best_baseline)[3]
    assert record.reused == record.origins == row.record_origins == 38 and row.provisional is False


def test_a_backtest_that_would_forecast_stops_on_a_stored_only_forecaster(markets, forecaster):
    (found,) = fetch_watchlist(given(["AAA/USDT"], "binance", "1h"), calibration_rows(64, 8), markets, live=False)
    forecast = forecast_candles(forecaster, found.candles, ScanQuery(**QUERY).settings())
    with pytest.raises(NotStored):
        market_combined(StoredOnly(forecaster), found.candles, forecast, markets, 4)
    assert isinstance(market_combined(forecaster, found.candles, forecast, markets, 4), Combined)
    assert isinstance(market_combined(StoredOnly(forecaster), found.candles, forecast, markets, 4), Combined)


def test_a_call_calibrates_within_its_budget_and_the_next_one_goes_on(markets, forecaster, monkeypatch):
    calibration = ScanCalibration(forecaster, markets, run=True, budget=FIRST_SIGHT, waiting="later")
    found = rows(scan_answer(ScanQuery(**QUERY, calibrate=True), forecaster, markets, calibration=calibration))
    assert (found["AAA/USDT"].basis, found["BBB/USDT"].basis, found["BBB/USDT"].notes) == ("combined", "raw",
                                                                                           ["later"])
    assert [p.candles.symbol for p in calibration.pending] == ["BBB/USDT"] and calibration.budget == 0
    # a request's budget: MAX_REQUEST_WORK less the scan's own forecasts (3 markets x 6 paths x 8 h)
    monkeypatch.setattr("kronos.scan.ranking.MAX_REQUEST_WORK", 3 * 6 * 8 + FIRST_SIGHT - 1)
    found = rows(scan_answer(ScanQuery(**QUERY, calibrate=True), forecaster, markets))
    assert (found["AAA/USDT"].basis, found["BBB/USDT"].notes) == ("combined", [AGAIN])
    monkeypatch.setattr("kronos.scan.ranking.MAX_REQUEST_WORK", 3 * 6 * 8 + FIRST_SIGHT)
    found = rows(scan_answer(ScanQuery(**QUERY, calibrate=True), forecaster, markets))
    assert (found["AAA/USDT"].basis, found["BBB/USDT"].basis) == ("combined", "combined")


def test_get_scan_with_calibrate_within_the_budget(markets, forecaster, monkeypatch):
    from fastapi.testclient import TestClient

    from kronos.api import create_app

    monkeypatch.setattr("kronos.scan.ranking.MAX_REQUEST_WORK", 3 * 6 * 8 + FIRST_SIGHT)
    params = {**QUERY, "symbols": ",".join(MARKETS)}
    with TestClient(create_app(forecaster=forecaster, store=markets)) as client:
        plain = Scan.model_validate_json(client.get("/scan", params=params).text)
        first = Scan.model_validate_json(client.get("/scan", params={**params, "calibrate": "true"}).text)
        second = Scan.model_validate_json(client.get("/scan", params={**params, "calibrate": "true"}).text)
        later = Scan.model_validate_json(client.get("/scan", params=params).text)
        described = client.get("/openapi.json").json()["paths"]["/scan"]["get"]["parameters"]
    assert {r.basis for r in plain.rows} == {"raw"} and rows(plain)["AAA/USDT"].notes == [WAITING_HERE]
    assert [rows(first)[s].notes for s in MARKETS[:2]] == [[], [AGAIN]]
    assert [rows(second)[s].basis for s in MARKETS[:2]] == ["combined"] * 2 and same(later, second)
    (calibrate,) = [p for p in described if p["name"] == "calibrate"]
    assert "generated candle steps" in calibrate["description"]


def test_the_command_calibrates_market_by_market_with_progress_on_stderr(markets, forecaster, capsys):
    common = ["scan", "--model", f"{PARITY}/model", "--tokenizer", f"{PARITY}/tokenizer", "--max-context", "128",
              "--horizon", "8", "--samples", "6", "--lookback", "64", "--seed", "5", "--hour", "4", "--source",
              "store", "--store", str(markets.path), "--json", "--symbols", *MARKETS]
    assert main(common) == 0
    out, err = capsys.readouterr()
    assert {r.basis for r in Scan.model_validate_json(out).rows} == {"raw"} and "calibrating" not in err
    assert main(common + ["--calibrate"]) == 0
    out, err = capsys.readouterr()
    told = err.splitlines()
    assert told[0] == "calibrating AAA/USDT: backtest 0%" and "calibrating AAA/USDT: backtest 100%" in told
    assert told.index("calibrating AAA/USDT: backtest 100%") < told.index("calibrating BBB/USDT: backtest 0%")
    result = Scan.model_validate_json(out)
    assert same(result, scan_answer(ScanQuery(**QUERY), forecaster, markets, remote=False))


def test_filling_in_a_scans_rows(markets, forecaster):
    calibration = ScanCalibration(forecaster, markets, waiting="queued")
    result = scan_answer(ScanQuery(**QUERY), forecaster, markets, calibration=calibration)
    pending = {p.candles.symbol: p for p in calibration.pending}
    assert sorted(pending) == ["AAA/USDT", "BBB/USDT"]
    aaa = pending["AAA/USDT"]
    figures = market_combined(forecaster, aaa.candles, aaa.forecast, markets, aaa.hour)
    filled = rows(with_combined(result, {"AAA/USDT": figures, "BBB/USDT": "no combined forecast: why"}, "queued"))
    assert filled["AAA/USDT"].basis == "combined" and filled["AAA/USDT"].notes == []
    assert filled["BBB/USDT"].basis == "raw" and filled["BBB/USDT"].notes == ["no combined forecast: why"]
    calibrated_now = rows(scan_answer(ScanQuery(**QUERY), forecaster, markets))["AAA/USDT"]
    assert calibrated_now.model_dump(exclude={"age_s"}) == filled["AAA/USDT"].model_dump(exclude={"age_s"})
    assert np.isfinite(filled["AAA/USDT"].crps_skill)


def test_the_command_line_loads_no_front_end_or_optional_package_it_does_not_use():
    import subprocess
    import sys

    probe = ("import sys, kronos.cli; print(','.join(sorted(name for name in ('streamlit', 'plotly', 'fastapi', "
             "'uvicorn', 'ray', 'arch', 'scoringrules', 'scipy') if name in sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
