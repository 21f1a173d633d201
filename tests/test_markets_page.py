"""The Markets page through Streamlit's AppTest: Binance's recorded answers, the parity checkpoint, a temporary
store."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from markets_recorded import RecordedBinance, install
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
LINK = {"horizon": "8", "samples": "6", "lookback": "64", "seed": "7", "hour_idx": "6"}


def run(app: AppTest | None = None, query: dict[str, str] | None = None,
        page: str | None = "pages/markets.py") -> AppTest:
    """Run the dashboard (first run, or again after widget changes) on `page`; fail on any exception."""
    if app is None:
        app = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
        app.query_params.update(query or LINK)
        app.run()
        if page:
            app.switch_page(page)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


@pytest.fixture
def recorded(store, monkeypatch) -> RecordedBinance:
    return install(monkeypatch, RecordedBinance())


def scanned(app: AppTest):
    """The table the page shows, after pressing Scan."""
    app.button(key="markets.run").click()
    run(app)
    return app.dataframe[0].value


def test_the_top_markets_ranked_with_links_chart_and_downloads(recorded):
    app = run()
    assert "Press **Scan**" in app.info[0].value
    app.number_input(key="markets.top").set_value(4)
    table = scanned(app)
    assert set(table["symbol"]) == {"BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"}
    upside = table["upside_probability"].tolist()
    assert upside == sorted(upside, reverse=True) and set(table["basis"]) == {"raw"}
    assert set(table["source"]) == {"exchange"} and set(table["age"]) == {"1 h 30 min"}
    (figure,) = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    assert sorted(figure["data"][0]["text"]) == sorted(table["symbol"])
    assert len(app.get("download_button")) == 2
    app.selectbox(key="markets.sort").set_value("band_width")
    app.toggle(key="markets.descending").set_value(False)
    resorted = run(app).dataframe[0].value
    assert resorted["band_width"].tolist() == sorted(table["band_width"])


def test_a_rows_link_reproduces_it_on_the_live_page(recorded):
    app = run()
    app.number_input(key="markets.top").set_value(2)
    table = scanned(app)
    row = table.iloc[-1]
    link = urlsplit(row["live"])
    query = dict(parse_qsl(link.query))
    assert link.path == "forecast" and (query["symbol"], query["exchange"], query["timeframe"]) == (
        row["symbol"], "binance", "1h")
    assert {key: query[key] for key in LINK} == LINK
    live = run(query=query, page=None)
    (forecast,) = live.session_state["loading.forecasts"].values()
    assert forecast.upside_probability()[5] == row["upside_probability"] and forecast.seed == 7


def test_my_symbols_with_one_the_exchange_cannot_answer(recorded):
    app = run()
    app.radio(key="markets.choice").set_value("symbols")
    run(app)
    app.multiselect(key="markets.symbols").set_value(["ETH/USDT", "BNB/USDT"])
    table = scanned(app)
    assert table["symbol"].tolist() == ["ETH/USDT"]
    assert any("**BNB/USDT** is not ranked" in w.value for w in app.warning)


def test_markets_seen_first_are_backtested_in_the_background_and_fill_in(store):
    from conftest import PARITY

    from kronos.engine import Forecaster
    from kronos.engine.synthetic import random_walk
    from kronos.scan.ranking import scan_answer
    from kronos.schemas.markets import ScanQuery
    from ui.loaders import calibrations

    symbols = ["AAA/USDT", "BBB/USDT"]
    for i, symbol in enumerate(symbols):
        store.merge(random_walk(300, seed=i), "binance", symbol, "1h")
    app = run()
    app.radio(key="markets.choice").set_value("symbols")
    app.toggle(key="markets.stored").set_value(True)
    run(app)
    app.multiselect(key="markets.symbols").set_value(symbols)
    table = scanned(app)
    assert set(table["basis"]) == {"raw"} and sorted(table["symbol"]) == symbols
    (progress,) = app.get("progress")
    assert "Calibrating at first sight" in progress.proto.text and "2 of 2 markets to go" in progress.proto.text
    assert calibrations().wait(120)
    table = run(app).dataframe[0].value
    assert set(table["basis"]) == {"combined"} and not app.get("progress")
    query = ScanQuery(symbols=symbols, source="store", **{key: int(value) for key, value in LINK.items()})
    forecaster = Forecaster.from_pretrained(str(PARITY / "model"), str(PARITY / "tokenizer"))  # the page's model
    later = {r.symbol: r for r in scan_answer(query, forecaster, store).rows}  # combined from the stored backtests
    assert [later[s].basis for s in symbols] == ["combined"] * 2, [later[s].notes for s in symbols]
    assert {s: later[s].upside_probability for s in symbols} == dict(zip(table["symbol"], table["upside_probability"],
                                                                                     strict=True))
