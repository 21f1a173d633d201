"""Markets: a watchlist, or the exchange's top markets by volume, forecast at once and ranked; each row links to that
market's live page with the same settings."""

import functools
import logging
from collections.abc import Callable
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.engine import ForecastSource, Progress
from kronos.engine.forecast import Forecast
from kronos.errors import KronosError
from kronos.scan.combining import ScanCalibration, market_combined
from kronos.scan.ranking import scan_answer, upside_risk_chart, with_combined
from kronos.schemas.markets import SORT_COLUMNS, Combined, Scan, ScanQuery
from kronos.serving.jobs import Job
from kronos.serving.pieces import Yielding
from kronos.settings import SCAN_MAX_MARKETS, SCAN_QUOTE, SCAN_TOP
from kronos.timeframes import describe_age
from ui import loaders, sidebar, widgets

RESULT = "markets.result"  # (query, scan, background jobs by symbol) of the latest scan
QUEUED = "not calibrated yet: its first-sight backtest runs in the background"
POLL_S = 2.0  # seconds between looks at the background's progress
log = logging.getLogger("kronos.dashboard")
KEPT = "markets.kept"  # this page's inputs: Streamlit forgets a widget's value while another page shows
POPULAR = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT", "DOGE/USDT")
CHOICES = {"top": "Top markets by 24 h volume", "symbols": "My symbols"}
PERCENT = {"change_1d": "1 day", "upside_probability": "Upside", "expected_return": "Expected return",
           "return_low": "Low (10%)", "return_high": "High (90%)", "band_width": "Risk (80% band)",
           "volatility_amplification_probability": "Volatility amplification", "crps_skill": "CRPS skill",
           "model_weight": "Model weight"}
LABELS = {"symbol": "Market", "last_price": "Last price", **PERCENT, "basis": "Figures", "source": "Data",
          "age": "Age", "live": "Live page"}


def live_link(controls: sidebar.Controls, symbol: str, exchange: str, timeframe: str) -> str:
    """The live page's address showing this market with the sidebar's model and settings."""
    query = {**controls.to_query(), "symbol": symbol, "exchange": exchange, "timeframe": timeframe, "mode": "aligned"}
    return "forecast?" + urlencode(query)


def ranking(result: Scan, controls: sidebar.Controls) -> None:
    """The available markets as a sortable table with links, then why the others are missing."""
    table = result.table()
    table = table[table["available"]].copy()
    table["age"] = table["age_s"].map(lambda seconds: describe_age(pd.Timedelta(seconds=seconds)))
    table["live"] = [live_link(controls, s, e, result.watchlist.timeframe)
                     for s, e in zip(table["symbol"], table["exchange"], strict=True)]
    config = {name: st.column_config.NumberColumn(label, format="percent") for name, label in PERCENT.items()}
    config |= {"symbol": "Market",
               "last_price": st.column_config.NumberColumn("Last price", format=widgets.PRICE_FORMAT),
               "basis": st.column_config.TextColumn("Figures", help="raw: the model's own paths; combined: pooled "
                                                                     "with baselines by the market's record"),
               "source": "Data", "age": "Age",
               "live": st.column_config.LinkColumn("Live page", display_text="open",
                                                   help="This market's live forecast with these settings")}
    st.dataframe(table[list(LABELS)], column_config=config, hide_index=True, key="markets.table")
    for row in result.rows:
        if not row.available:
            st.warning(f"**{row.symbol}** is not ranked: {row.problem}.")


def queued(calibration: ScanCalibration, forecaster: ForecastSource, store: CandleStore) -> dict[str, Job]:
    """The first-sight backtests of the scan's markets not calibrated yet, queued (or joined) in the dashboard's
    background registry, shared with every session and the other pages' calibrations; by symbol."""
    jobs = {}
    for pending in calibration.pending:
        work = functools.partial(_combined, Yielding(forecaster), pending.candles, pending.forecast, store,
                                 pending.hour)
        key = ("markets", *pending.key(forecaster.fingerprint), str(store.path))
        jobs[pending.candles.symbol] = loaders.calibrations().start(key, work)
    return jobs


def _combined(forecaster: ForecastSource, candles: Candles, forecast: Forecast, store: CandleStore, hour: int,
              progress: Progress, publish: Callable[[Combined | str], None]) -> Combined | str:
    """A background job's work: the market's combined figures (published once, when they are in)."""
    return market_combined(forecaster, candles, forecast, store, hour, progress)


def finished(job: Job) -> Combined | str | None:
    """A background backtest's row figures, or why there are none; None while it runs."""
    if not job.done:
        return None
    try:
        return job.result()
    except KronosError as error:
        return f"no combined forecast: {error.public()}"
    except Exception:  # one market's failure leaves its raw figures, not the page
        log.exception("first-sight backtest failed")
        return "no combined forecast: its backtest failed (see the server's log)"


def results(result: Scan, jobs: dict[str, Job], controls: sidebar.Controls, waited: bool) -> None:
    """The ranking with the background's finished markets filled in, the progress of the others, the chart and the
    downloads; rerun every POLL_S seconds while markets wait (a fragment), the whole page once they are all in."""
    found = {symbol: figures for symbol, job in jobs.items() if (figures := finished(job)) is not None}
    result = with_combined(result, found, QUEUED)
    waiting = [job for symbol, job in jobs.items() if symbol not in found]
    if waited and not waiting:
        st.rerun()
    if waiting:
        doing = max(job.fraction for job in waiting)
        st.progress(1 - len(waiting) / len(jobs), text=f"Calibrating at first sight, market by market: "
                    f"{len(waiting)} of {len(jobs)} markets to go, the current one {doing:.0%} through its backtest "
                    "(rows marked raw fill in when theirs is done; later scans reuse it)")
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    column = left.selectbox("Sort by", SORT_COLUMNS, format_func=lambda c: LABELS.get(c, c.replace("_", " ")),
                            key="markets.sort")
    descending = right.toggle("Largest first", value=True, key="markets.descending")
    result = result.sorted_by(column, descending)
    st.subheader(f"{len(result.available)} of {len(result.rows)} markets, hour {result.hour_idx} ahead")
    ranking(result, controls)
    st.plotly_chart(upside_risk_chart(result), key="markets.chart")
    left, right = st.columns(2)
    left.download_button("Download ranking (CSV)", result.to_csv, file_name="kronos_scan.csv", mime="text/csv",
                         icon=":material/download:")
    right.download_button("Download scan (JSON)", result.model_dump_json,
                          file_name="kronos_scan.json", mime="application/json", icon=":material/download:")


st.title("Markets")
st.markdown("Which of these markets look most likely to rise, or to move, by the chosen hour? Every market is "
            "forecast with the sidebar's model and settings (the same seed for each, so each row equals that "
            "market's live forecast), then ranked by its **combined forecast**: the model pooled with volatility "
            "baselines by its record on that market. A market seen for the first time is backtested in the "
            "background, one market at a time (tens of seconds each); its row shows the model's raw figures, "
            "marked raw, until then, and later scans reuse its backtest.")
state = st.session_state
for key, value in state.setdefault(KEPT, {"markets.choice": "top", "markets.top": SCAN_TOP, "markets.quote": SCAN_QUOTE,
                                          "markets.stored": False, "markets.symbols": [POPULAR[0]]}).items():
    state.setdefault(key, value)
with widgets.reported():
    controls = sidebar.current()
    fields = controls.market_fields
    choice = st.radio("Watchlist", list(CHOICES), format_func=CHOICES.get, horizontal=True, key="markets.choice")
    symbols = None
    if choice == "top":
        left, right = st.columns(2)
        left.number_input("Markets", 1, SCAN_MAX_MARKETS, key="markets.top",
                          help="How many spot markets of the quote currency, the most traded first (stablecoin pairs "
                               "and leveraged tokens left out)")
        right.text_input("Quote currency", key="markets.quote")
    else:
        contents = CandleStore().contents()
        stored = contents[(contents["exchange"] == fields["exchange"]) & (contents["timeframe"] == fields["timeframe"])]
        options = list(dict.fromkeys([fields["symbol"], *POPULAR, *stored["symbol"]]))
        symbols = st.multiselect("Symbols", options, key="markets.symbols", accept_new_options=True,
                                 max_selections=SCAN_MAX_MARKETS, help="Pick or type BASE/QUOTE symbols") or None
    st.toggle("Stored candles only", key="markets.stored",
              help="Forecast the candles the local store holds, without asking the exchange")
    state[KEPT] = {key: state.get(key, kept) for key, kept in state[KEPT].items()}
    st.caption(f"Exchange {fields['exchange']}, {fields['timeframe']} candles; model, lookback, horizon, paths, "
               f"seed and hour from the sidebar.")
    query = ScanQuery.checked(symbols=symbols, top=state["markets.top"], quote=state["markets.quote"].strip() or
                              SCAN_QUOTE, exchange=fields["exchange"], timeframe=fields["timeframe"],
                              source="store" if state["markets.stored"] else "exchange",
                              **controls.settings.model_dump())
    if st.button("Scan", type="primary", icon=":material/travel_explore:", key="markets.run"):
        forecaster, store = loaders.model(controls.model), CandleStore()
        calibration = ScanCalibration(forecaster, store, waiting=QUEUED)
        bar = st.progress(0.0, text="Fetching candles and forecasting")
        try:
            made = scan_answer(query, forecaster, store, calibration=calibration, progress=lambda done, total:
                               bar.progress(done / total, text=f"Forecasting: {done / total:.0%}"))
        finally:
            bar.empty()
        state[RESULT] = (query, made, queued(calibration, forecaster, store))
    if RESULT not in state:
        st.info("Press **Scan** to fetch and forecast the markets (seconds for twenty markets).")
        st.stop()
    asked, result, jobs = state[RESULT]
    if asked != query:
        st.caption("The watchlist or the settings changed since this scan: press **Scan** to see them.")
    for note in result.watchlist.notes:
        st.info(f"Note: {note}.")
    waiting = any(not job.done for job in jobs.values())
    st.fragment(run_every=POLL_S if waiting else None)(results)(result, jobs, controls, waiting)
