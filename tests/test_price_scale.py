"""Forecasts that do not depend on the price's scale: candles times 10^k forecast as the originals times 10^k, through
the engine, a scan, the command line, the API and the dashboard; no predicted price at or below 0.

The parity fixture's BTC-like candles (about 65,000) are the originals; PEPE/USDT and SHIB/USDT trade near 1e-5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PARITY
from fastapi.testclient import TestClient
from markets_recorded import RecordedBinance, install
from streamlit.testing.v1 import AppTest

from kronos import cli
from kronos.api import create_app
from kronos.cli.scan import table
from kronos.data.store import CandleStore
from kronos.data.validation import PRICE_COLUMNS
from kronos.scan.ranking import scan
from kronos.scan.watchlist import given
from kronos.settings import ForecastSettings
from kronos.views.texts import price_text
from ui import loaders

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["--model", str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "128"]
QUANTILES = (0.1, 0.5, 0.9)


def scaled(frame: pd.DataFrame, prices: int, volume: int = 0) -> pd.DataFrame:
    """The candles with prices times 10^prices and volume times 10^volume (so amount times both)."""
    out = frame.copy()
    out[list(PRICE_COLUMNS)] *= 10.0 ** prices
    out["volume"] *= 10.0 ** volume
    out["amount"] *= 10.0 ** (prices + volume)
    return out


def assert_positive_prices(paths: np.ndarray) -> None:
    prices = paths[..., :len(PRICE_COLUMNS)]
    assert (prices > 0).all() and np.isfinite(np.log(prices)).all()


@pytest.mark.parametrize("prices, volume", [(-6, 0), (-10, 0), (-12, 0), (-10, -10)])
def test_candles_times_a_power_of_ten_forecast_as_the_originals_times_it(forecaster, parity_input, prices, volume):
    settings = dict(horizon=12, samples=40, seed=3)
    original = forecaster.forecast(parity_input, **settings)
    tiny = forecaster.forecast(scaled(parity_input, prices, volume), **settings)
    assert (tiny.tokens == original.tokens).all(axis=(1, 2)).mean() >= 0.9  # the same paths but for rare flips
    expected = np.quantile(original.column("close"), QUANTILES, axis=0) * 10.0 ** prices
    np.testing.assert_allclose(np.quantile(tiny.column("close"), QUANTILES, axis=0), expected, rtol=0.02)
    assert_positive_prices(tiny.paths)


def test_a_flat_tiny_series_forecasts_positive_prices_near_it(forecaster, parity_input):
    flat = parity_input.assign(open=1e-8, high=1e-8, low=1e-8, close=1e-8, amount=parity_input["volume"] * 1e-8)
    forecast = forecaster.forecast(flat, horizon=12, samples=20, seed=3)
    assert_positive_prices(forecast.paths)
    np.testing.assert_allclose(forecast.paths[..., :len(PRICE_COLUMNS)], 1e-8, rtol=1e-3)


def test_a_price_the_model_puts_below_zero_is_raised_to_a_positive_floor(forecaster, parity_input):
    """Where the std rivals the mean (a spike in the lookback), mean + row * std can cross 0: the floor keeps it
    above, at the float32 resolution of the lookback's level; ordinary rows are left as they are."""
    spiky = parity_input.copy()
    spiky[list(PRICE_COLUMNS)] = 1.0
    spiky.loc[::20, list(PRICE_COLUMNS)] = 1000.0
    prepared = forecaster.prepare(spiky, horizon=4)
    low, middle = prepared.denormalise(np.full((1, 4, 6), -5.0)), prepared.denormalise(np.zeros((1, 4, 6)))
    assert_positive_prices(low)
    floor = prepared.mean[:4].astype(np.float64) * np.finfo(np.float32).eps / prepared.scale[:4]
    np.testing.assert_allclose(low[0, :, :4], np.broadcast_to(floor, (4, 4)))
    np.testing.assert_array_equal(middle[0, 0], prepared.mean)


@pytest.mark.parametrize("price, text", [(77500.123, "77,500.12"), (1.0, "1.00"), (0.5, "0.5"), (0.123456, "0.1235"),
                                         (7.7543e-6, "0.000007754"), (7.75e-12, "7.75e-12")])
def test_prices_are_shown_by_their_magnitude(price, text):
    assert price_text(price) == text


def test_a_scan_with_a_tiny_price_market_ranks_it_with_the_figures_of_the_same_market_at_another_scale(
        monkeypatch, tmp_path, forecaster):
    recorded = install(monkeypatch, RecordedBinance())
    recorded.klines["PEPEUSDT"] = [[k[0], *(f"{float(v) * 1e-10:.6e}" for v in k[1:5]), f"{float(k[5]) * 1e10:.6e}",
                                    *k[6:]] for k in recorded.klines["BTCUSDT"]]  # BTC's candles, in PEPE's units
    settings = ForecastSettings(horizon=8, samples=6, lookback=64, seed=5)
    result = scan(forecaster, given(["BTC/USDT", "PEPE/USDT"], "binance", "1h"), settings,
                  CandleStore(tmp_path / "candles.sqlite")).sorted_by("expected_return")
    rows = {row.symbol: row for row in result.rows}
    btc, pepe = rows["BTC/USDT"], rows["PEPE/USDT"]
    assert pepe.available and pepe.last_price == pytest.approx(btc.last_price * 1e-10)
    assert pepe.upside_probability == btc.upside_probability and pepe.change_1d == pytest.approx(btc.change_1d)
    for figure in ("expected_return", "return_low", "return_high", "band_width"):
        assert getattr(pepe, figure) == pytest.approx(getattr(btc, figure), abs=1e-3), figure
    line = next(line for line in table(result).splitlines() if line.startswith("PEPE/USDT"))
    assert line.split()[1] == price_text(pepe.last_price) and line.split()[1].startswith("0.00000")


def forecast_json(capsys, path: Path) -> dict:
    assert cli.main(["forecast", "--csv", str(path), *MODEL, "--horizon", "4", "--samples", "8", "--seed", "2"]) == 0
    return json.loads(capsys.readouterr().out)


def assert_scaled_answer(tiny: dict, original: dict, factor: float) -> None:
    """A forecast answer of tiny candles against the original candles' answer times `factor`."""
    assert tiny["last_close"] == pytest.approx(original["last_close"] * factor)
    assert tiny["upside_probability_all_hours"] == original["upside_probability_all_hours"]
    for mine, theirs in zip(tiny["predictions"], original["predictions"], strict=True):
        for key in ("mean", "min", "max"):
            for column in PRICE_COLUMNS:
                assert mine[key][column] > 0
                assert mine[key][column] == pytest.approx(theirs[key][column] * factor, rel=0.01), (key, column)


def test_the_command_line_forecasts_tiny_prices_as_the_originals_scaled(capsys, tmp_path, parity_input):
    original, tiny = tmp_path / "btc.csv", tmp_path / "tiny.csv"
    parity_input.to_csv(original, index=False)
    scaled(parity_input, -10).to_csv(tiny, index=False, float_format="%.10e")
    assert_scaled_answer(forecast_json(capsys, tiny), forecast_json(capsys, original), 1e-10)


def test_the_api_forecasts_tiny_prices_as_the_originals_scaled(forecaster, store, parity_input):
    def body(frame: pd.DataFrame) -> dict:
        return {"timestamps": frame["timestamps"].astype(str).tolist(), "horizon": 4, "samples": 8, "seed": 2,
                **{c: frame[c].tolist() for c in ("open", "high", "low", "close", "volume", "amount")}}

    with TestClient(create_app(forecaster=forecaster, store=store)) as client:
        original = client.post("/predict_custom", json=body(parity_input))
        tiny = client.post("/predict_custom", json=body(scaled(parity_input, -12)))
    assert tiny.status_code == original.status_code == 200
    assert_scaled_answer(tiny.json(), original.json(), 1e-12)


def test_the_live_page_shows_a_tiny_last_price_by_its_magnitude(store, parity_input):
    store.merge(scaled(parity_input, -10), "binance", "BTC/USDT", "1h")
    app = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    app.run()
    assert loaders.calibrations().wait(120)
    assert not app.exception, [e.value for e in app.exception]
    shown = {m.label: m.value for m in app.metric}
    assert shown["Last price"] == price_text(parity_input["close"].iloc[-1] * 1e-10) != "0.00"
    assert shown["Last price"].startswith("0.00000")


def test_backtest_keys_name_the_scale_of_rescaled_windows_only(forecaster, parity_input, monkeypatch):
    """Paths stored before the engine rescaled tiny windows are wrong: their keys change; ordinary keys stay."""
    from kronos.evaluation import backtest

    settings = backtest.BacktestSettings(ForecastSettings(horizon=4, samples=6, lookback=40), origins=3, every=5)
    runs, tiny = [100, 150], scaled(parity_input, -10)
    keys = {name: backtest.origin_keys(forecaster, frame, runs, settings)
            for name, frame in (("ordinary", parity_input), ("tiny", tiny))}
    monkeypatch.setattr(backtest, "column_scales", lambda values: np.ones(values.shape[1]))  # as if never rescaled
    assert backtest.origin_keys(forecaster, parity_input, runs, settings) == keys["ordinary"]
    assert not set(backtest.origin_keys(forecaster, tiny, runs, settings)) & set(keys["tiny"])
