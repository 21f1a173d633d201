"""Scans: watchlists, candles fetched together with store fallback, the ranking and its order, the command line.

Binance answers from recorded responses (tests/markets_recorded.py); the model is the parity checkpoint."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time

import ccxt
import numpy as np
import pandas as pd
import pytest
from markets_recorded import LAST_CLOSED, RecordedBinance, install

from kronos.cli import main
from kronos.data.store import CandleStore
from kronos.errors import EmptyStoreError, InvalidInputError, UnknownMarketError
from kronos.scan.ranking import day_change, forecast_markets, scan, scan_answer
from kronos.scan.watchlist import RateLimiter, excluded, fetch_watchlist, given, top_markets
from kronos.schemas.markets import SORT_COLUMNS, Combined, Scan, ScanQuery
from kronos.settings import EXCHANGES, ForecastSettings
from kronos.views.texts import headline

PARITY = "tests/fixtures/kronos_parity"
SETTINGS = ForecastSettings(horizon=8, samples=6, lookback=64, seed=5)
TOP5 = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT")


@pytest.fixture
def recorded(monkeypatch) -> RecordedBinance:
    return install(monkeypatch, RecordedBinance())


@pytest.fixture
def store(tmp_path) -> CandleStore:
    return CandleStore(tmp_path / "candles.sqlite")


def test_top_markets_rank_by_quote_volume_without_stablecoin_pairs_or_leveraged_tokens(recorded):
    listed = top_markets("binance", "1h", "USDT", 8)
    # left out: USDC/USDT, FDUSD/USDT, EUR/USDT (pegged pairs), BTCUP, ETH3L (leveraged), ETHDOWN (also inactive)
    assert listed.symbols == (*TOP5, "BNB/USDT", "PEPE/USDT", "JUP/USDT")
    assert (listed.chosen_by, listed.quote, listed.notes) == ("volume", "USDT", ())
    assert top_markets("binance", "1h", "btc", 5).symbols == ("ETH/BTC",)
    assert top_markets("binance", "1h", count=3).symbols == TOP5[:3]


@pytest.mark.parametrize("base, quote, bases, left_out", [
    ("USDC", "USDT", set(), True), ("EUR", "USDT", set(), True), ("BTC", "USDT", set(), False),
    ("BTCUP", "USDT", {"BTC"}, True), ("ETHDOWN", "USDT", {"ETH"}, True), ("XRPBEAR", "USDT", {"XRP"}, True),
    ("ETH3L", "USDT", {"ETH"}, True), ("BTC5S", "USDT", {"BTC"}, True),
    ("JUP", "USDT", {"J", "JUP"}, False),  # ends in UP, but J is no base worth leveraging: too short
    ("SYRUP", "USDT", {"SYRUP"}, False),  # no SYR listed
    ("BTCUP", "USDT", {"ETH"}, False),
])
def test_left_out_markets(base, quote, bases, left_out):
    assert excluded(base, quote, bases) is left_out


def test_top_markets_are_the_stored_ones_when_the_exchange_cannot_be_asked(recorded, store):
    recorded.down = ccxt.NetworkError("binance GET https://data-api.binance.vision/api/v3/ticker/24hr timed out")
    with pytest.raises(EmptyStoreError, match="the local store holds none"):
        top_markets("binance", "1h", store=store)
    store.merge(recorded.frame("ETHUSDT"), "binance", "ETH/USDT", "1h")
    store.merge(recorded.frame("BTCUSDT", 40), "binance", "BTC/USDT", "1h")
    store.merge(recorded.frame("BTCUSDT", 40), "binance", "ETH/BTC", "1h")  # another quote
    store.merge(recorded.frame("BTCUSDT", 40), "okx", "SOL/USDT", "1h")  # another exchange
    listed = top_markets("binance", "1h", store=store)
    assert (listed.symbols, listed.chosen_by) == (("ETH/USDT", "BTC/USDT"), "store")
    assert "binance could not be reached" in listed.notes[0] and "the most candles first" in listed.notes[0]
    assert top_markets("binance", "1h", count=1, store=store, live=False).symbols == ("ETH/USDT",)


def test_given_symbols_are_checked_and_kept_in_order():
    assert given(["eth/usdt", "BTC/USDT", "ETH/USDT"], "binance", "1h").symbols == ("ETH/USDT", "BTC/USDT")
    with pytest.raises(InvalidInputError, match="should look like BASE/QUOTE"):
        given(["BTCUSDT"], "binance", "1h")
    with pytest.raises(InvalidInputError, match="timeframe"):
        given(["BTC/USDT"], "binance", "1hour")
    with pytest.raises(UnknownMarketError, match="unknown exchange"):
        given(["BTC/USDT"], "nowhere", "1h")
    with pytest.raises(InvalidInputError, match="at least one symbol"):
        given([" "], "binance", "1h")


def test_rate_limiter_spaces_calls_across_threads():
    limiter, calls = RateLimiter(0.03), []

    def work():
        for _ in range(3):
            limiter()
            calls.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 12 and max(calls) - started >= 11 * 0.03  # the 12th call's slot: 11 intervals after the first
    limiter(cost=4)
    before = time.monotonic()
    limiter()
    assert time.monotonic() - before >= 0.9 * 4 * 0.03  # a call of cost 4 takes 4 slots


def test_candles_come_through_one_rate_limited_exchange_on_several_threads(monkeypatch, store):
    recorded = install(monkeypatch, RecordedBinance(delay_s=0.01))
    fetched = fetch_watchlist(given(TOP5, "binance", "1h"), 64, store)
    (exchange,) = recorded.made  # one exchange, its markets loaded once, for every market
    assert isinstance(exchange.throttle, RateLimiter) and exchange.throttle.interval_s == 0.050  # Binance's 50 ms
    assert [f.symbol for f in fetched] == list(TOP5) and all(f.problem is None for f in fetched)
    assert {f.candles.source for f in fetched} == {"exchange"}
    assert len({thread for _, thread, _ in recorded.requests}) > 1  # concurrent
    times = sorted(t for t, _, _ in recorded.requests)
    # Binance's rate limit across the threads: 50 ms per unit of weight, spot klines weighing 0.4 (ccxt's costs)
    assert times[-1] - times[0] >= 0.9 * 4 * 0.050 * 0.4
    for f in fetched:
        assert store.latest_timestamp("binance", f.symbol, "1h") == LAST_CLOSED  # merged into the store
        assert len(f.candles.frame) == 64 and f.candles.as_of == LAST_CLOSED


def test_a_failing_market_falls_back_to_the_store_and_one_without_candles_is_listed(recorded, store, forecaster):
    recorded.failing["DOGEUSDT"] = ccxt.RequestTimeout("binance GET https://data-api.binance.vision/api/v3/klines "
                                                       "timed out")
    store.merge(recorded.frame("DOGEUSDT", 60), "binance", "DOGE/USDT", "1h")  # stored before: 12 hours old
    result = scan(forecaster, given(["BTC/USDT", "DOGE/USDT", "BNB/USDT"], "binance", "1h"), SETTINGS, store)
    btc, doge, bnb = result.rows
    assert (btc.available, btc.source, btc.age_s) == (True, "exchange", 5400.0)
    assert doge.available and doge.source == "store" and doge.rows == 60
    assert doge.newest_candle == LAST_CLOSED - pd.Timedelta(hours=12) and doge.is_stale
    assert doge.notes[0].startswith("binance did not answer in time") and "answered from the local store" in doge.notes
    assert not bnb.available and bnb.source is None  # listed, but no candles: neither the exchange nor the store
    assert "returned no BNB/USDT 1h candles" in bnb.problem and "has no BNB/USDT 1h candles" in bnb.problem
    assert str(store.path) not in result.model_dump_json()  # a scan's answer names no server path
    assert result.sorted_by("upside_probability").rows[-1].symbol == "BNB/USDT"


def test_an_unreachable_exchange_reads_every_market_from_the_store(recorded, store, forecaster):
    store.merge(recorded.frame("ETHUSDT"), "binance", "ETH/USDT", "1h")
    store.merge(recorded.frame("XRPUSDT", 20), "binance", "XRP/USDT", "1h")
    recorded.down = ccxt.ExchangeNotAvailable("binance GET https://data-api.binance.vision/api/v3/exchangeInfo 451 "
                                              "restricted location")
    result = scan(forecaster, given(["ETH/USDT", "XRP/USDT", "SOL/USDT"], "binance", "1h"), SETTINGS, store)
    eth, xrp, sol = result.rows
    assert eth.available and eth.source == "store" and eth.notes[0].startswith("binance refused requests")
    assert not xrp.available and xrp.rows == 20 and "only 20 candles" in xrp.problem
    assert not sol.available and sol.problem.startswith("binance refused requests from this location")
    assert len(recorded.requests) == 0


def test_each_row_is_the_markets_own_forecast_with_the_scans_seed(recorded, store, forecaster):
    result = scan(forecaster, given(TOP5, "binance", "1h"), SETTINGS, store)
    for row in result.rows:
        history = recorded.frame(row.symbol.replace("/", "")).iloc[-64:].reset_index(drop=True)
        alone = forecaster.forecast(history, **SETTINGS.engine_arguments())
        figures = headline(alone, 8)
        assert (row.upside_probability, row.expected_return, row.return_low, row.return_high) == (
            figures.upside_probability, figures.expected_return, figures.return_low, figures.return_high)
        assert row.band_width == figures.return_high - figures.return_low
        assert row.volatility_amplification_probability == figures.volatility_amplification_probability
        assert row.last_price == history["close"].iloc[-1]
        assert row.change_1d == pytest.approx(history["close"].iloc[-1] / history["close"].iloc[-25] - 1)
        assert (row.basis, row.crps_skill, row.model_weight) == ("raw", None, None)
        entries = store.logged_forecasts("binance", row.symbol, "1h", forecaster.fingerprint)
        assert len(entries) == 1 and entries[0]["forecast"]["seed"] == 5  # logged, to be scored
    assert (result.hour_idx, result.model, result.fingerprint) == (8, forecaster.name, forecaster.fingerprint)


def test_markets_share_generation_loops_and_get_their_solo_paths(recorded, store, forecaster):
    fetched = fetch_watchlist(given(TOP5, "binance", "1h"), 64, store)
    short = fetched[0].candles
    short.frame = short.frame.iloc[-40:].reset_index(drop=True)  # a market with fewer rows than the lookback
    calls = []
    real = forecaster.forecast_many
    forecaster.forecast_many = lambda histories, **kw: calls.append(len(histories)) or real(histories, **kw)
    try:
        made = forecast_markets(forecaster, [f.candles for f in fetched], SETTINGS)
    finally:
        del forecaster.forecast_many
    assert sorted(calls) == [1, 4]  # one call per lookback length
    for found, forecast in zip(fetched, made):
        alone = forecaster.forecast(found.candles.frame, **SETTINGS.engine_arguments(rows=len(found.candles.frame)))
        assert np.array_equal(forecast.paths, alone.paths) and forecast.seed == 5
    assert len(made[0].history) == 40


def test_the_combined_forecast_replaces_the_raw_figures_where_there_is_one(recorded, store, forecaster):
    seen = []

    def combine(candles, forecast, hour):
        seen.append((candles.symbol, forecast.last_close, hour))
        if candles.symbol == "BTC/USDT":
            raise InvalidInputError("the record needs 200 origins, the store holds 72 candles")
        if candles.symbol != "ETH/USDT":
            return None
        return Combined(upside_probability=0.61, expected_return=0.004, return_low=-0.01, return_high=0.02,
                        volatility_amplification_probability=0.4, crps_skill=-0.05, model_weight=0.2)

    result = scan(forecaster, given(["BTC/USDT", "ETH/USDT", "SOL/USDT"], "binance", "1h"), SETTINGS, store,
                  combine=combine)
    btc, eth, sol = result.rows
    assert [s for s, _, _ in seen] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"] and seen[0][2] == 8
    assert (eth.basis, eth.upside_probability, eth.crps_skill, eth.model_weight) == ("combined", 0.61, -0.05, 0.2)
    assert eth.band_width == pytest.approx(0.03)
    assert sol.basis == "raw" and sol.model_weight is None and not any("combined" in n for n in sol.notes)
    assert btc.basis == "raw" and btc.notes[-1] == ("no combined forecast: the record needs 200 origins, the store "
                                                    "holds 72 candles")


def test_sorting_by_any_column_keeps_missing_values_and_unavailable_markets_last(recorded, store, forecaster):
    result = scan(forecaster, given([*TOP5, "BNB/USDT"], "binance", "1h"), SETTINGS, store)
    for column in SORT_COLUMNS:
        for descending in (True, False):
            ordered = result.sorted_by(column, descending)
            assert (ordered.sort, ordered.descending) == (column, descending)
            values = [getattr(r, column) for r in ordered.rows if r.available and getattr(r, column) is not None]
            assert values == sorted(values, reverse=descending)
            assert ordered.rows[-1].symbol == "BNB/USDT" and len(ordered.rows) == 6
    with pytest.raises(ValueError, match="sort by one of"):
        result.sorted_by("colour")


def test_csv_and_json_come_from_the_typed_scan(recorded, store, forecaster):
    result = scan(forecaster, given(TOP5, "binance", "1h"), SETTINGS, store).sorted_by("band_width", False)
    assert Scan.model_validate_json(result.model_dump_json()) == result
    table = pd.read_csv(io.StringIO(result.to_csv()))
    assert table["symbol"].tolist() == [r.symbol for r in result.rows]
    assert table["band_width"].tolist() == pytest.approx([r.band_width for r in result.rows])
    assert json.loads(result.model_dump_json())["settings"]["seed"] == 5


def test_scan_answer_keeps_a_request_within_its_budget(recorded, store, forecaster):
    with pytest.raises(InvalidInputError, match="at most 50 markets"):
        scan_answer(ScanQuery(top=51), forecaster, store)
    with pytest.raises(InvalidInputError, match=r"at most 1500 paths \(markets x samples\), got 20 x 100"):
        scan_answer(ScanQuery(samples=100), forecaster, store)
    with pytest.raises(InvalidInputError, match=r"hour_idx must be between 1 and the horizon \(4\), got 6"):
        ScanQuery.checked(symbols=["BTC/USDT"], horizon=4, hour_idx=6)  # refused as the query is made
    with pytest.raises(InvalidInputError, match="symbols: Value error, symbols should look like BASE/QUOTE"):
        ScanQuery.checked(symbols="BTC-USDT")
    query = ScanQuery(top=3, horizon=8, samples=6, lookback=64, seed=5, sort="symbol", descending=False)
    result = scan_answer(query, forecaster, store)
    assert [r.symbol for r in result.rows] == sorted(TOP5[:3])
    assert ScanQuery(symbols="btc/usdt,ETH/USDT").symbols == ["BTC/USDT", "ETH/USDT"]


def test_day_change_over_the_lookbacks_last_day():
    history = pd.DataFrame({"close": np.arange(1.0, 31.0)})
    assert day_change(history, "1h") == 30 / 6 - 1
    assert day_change(history, "4h") == 30 / 24 - 1
    assert day_change(history, "1d") == 30 / 29 - 1
    assert day_change(history.iloc[:24], "1h") is None


def cli(capsys, *arguments: str) -> tuple[int, str, str]:
    code = main(["scan", "--model", f"{PARITY}/model", "--tokenizer", f"{PARITY}/tokenizer", "--max-context", "128",
                 "--horizon", "8", "--samples", "6", "--lookback", "64", "--seed", "5", *arguments])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_prints_the_ranking_or_the_scans_json(recorded, store, forecaster, capsys):
    code, out, _ = cli(capsys, "--top", "3", "--json", "--store", str(store.path))
    result = Scan.model_validate_json(out)
    assert code == 0 and {r.symbol for r in result.rows} == set(TOP5[:3]) and result.watchlist.chosen_by == "volume"
    values = [r.upside_probability for r in result.rows]
    assert values == sorted(values, reverse=True)
    same = scan_answer(ScanQuery(top=3, horizon=8, samples=6, lookback=64, seed=5), forecaster, store)
    assert [r.model_dump(exclude={"age_s"}) for r in same.rows] == [r.model_dump(exclude={"age_s"})
                                                                    for r in result.rows]
    code, out, _ = cli(capsys, "--symbols", "ETH/USDT,BTC/USDT", "BNB/USDT", "--sort", "symbol", "--ascending",
                       "--store", str(store.path))
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("binance 1h, 2 of 3 markets, hour 8, 6 paths, seed 5")
    assert lines[2].split()[0] == "BTC/USDT" and lines[3].split()[0] == "ETH/USDT" and "raw" in lines[2]
    assert lines[-1].startswith("unavailable: BNB/USDT: ") and "binance returned no BNB/USDT 1h candles" in lines[-1]


def test_the_command_scans_stored_markets_offline_and_says_what_is_wrong(recorded, store, capsys):
    recorded.down = ccxt.NetworkError("binance: no network")
    store.merge(recorded.frame("SOLUSDT"), "binance", "SOL/USDT", "1h")
    code, out, err = cli(capsys, "--source", "store", "--json", "--store", str(store.path))
    result = Scan.model_validate_json(out)
    assert code == 0 and [r.symbol for r in result.rows] == ["SOL/USDT"] and result.rows[0].source == "store"
    assert "note: the stored USDT markets of binance 1h" in err
    code, out, err = cli(capsys, "--symbols", "XRP/USDT", "NOPE/USDT", "--store", str(store.path))
    assert code == 2 and out == "" and len(err.splitlines()) == 1  # no market: an error, one line
    assert err.startswith("error: no market could be forecast (XRP/USDT: binance could not be reached")
    assert "NOPE/USDT: " in err
    code, _, err = cli(capsys, "--top", "1001", "--store", str(store.path))
    assert code == 2 and err == "error: a scan may ask for at most 1000 markets, got 1001\n"
    code, _, err = cli(capsys, "--symbols", "BTCUSDT", "--store", str(store.path))
    assert code == 2 and "should look like BASE/QUOTE" in err and len(err.splitlines()) == 1


def test_get_scan_gives_the_commands_rows_and_refuses_over_budget_at_once(recorded, store, forecaster):
    from fastapi.testclient import TestClient

    from kronos.api import create_app

    params = {"top": 3, "horizon": 8, "samples": 6, "lookback": 64, "seed": 5}
    with TestClient(create_app(forecaster=forecaster, store=store)) as client:
        answer = client.get("/scan", params=params)
        assert answer.status_code == 200, answer.text
        started = time.perf_counter()
        over = client.get("/scan", params={**params, "top": 51})
        assert over.status_code == 422 and "at most 50 markets" in over.json()["error"]
        assert time.perf_counter() - started < 1
        assert "/scan" in client.get("/openapi.json").json()["paths"]
        empty = client.get("/scan", params={**params, "symbols": ""})  # was: the stored markets, silently
        assert empty.status_code == 422 and "symbols is empty" in empty.json()["error"]
        long = client.get("/scan", params={**params, "symbols": "A" * 10_000 + "/USDT"})
        assert long.status_code == 422 and len(long.content) < 500 and "(10,007 characters)" in long.text
    same = scan_answer(ScanQuery(**params), forecaster, store)
    assert [r.model_dump(exclude={"age_s"}) for r in Scan.model_validate_json(answer.text).rows] == \
        [r.model_dump(exclude={"age_s"}) for r in same.rows]


def test_a_scan_of_stored_candles_never_imports_ccxt(tmp_path):
    """ccxt takes about 0.4 s to import: the command line, the supported exchanges' check and the store's candles
    do without it."""
    assert set(EXCHANGES) <= set(ccxt.exchanges)  # check_exchange takes them for ccxt ids unasked
    code = ("import sys; import kronos.cli; from kronos.data.store import CandleStore; "
            "from kronos.scan.watchlist import fetch_watchlist, given; "
            f"store = CandleStore({str(tmp_path / 'candles.sqlite')!r}); "
            "fetched = fetch_watchlist(given(['BTC/USDT'], 'binance', '1h'), 8, store, live=False); "
            "assert fetched[0].problem, fetched; assert 'ccxt' not in sys.modules, 'ccxt was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
