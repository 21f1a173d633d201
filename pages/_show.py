"""What the pages have in common on screen: failures as messages, the data banner, headline figures, downloads."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterator

import streamlit as st

from kronos.charts import fan_chart, upside_chart, volume_chart
from kronos.data.candles import Candles, custom_candles
from kronos.data.market import utc_now
from kronos.data.validation import Validation
from kronos.data.store import CandleStore
from kronos.engine import ForecastSource
from kronos.errors import DataUnavailableError, EmptyStoreError, InvalidInputError, StoreUnavailableError, \
    WeightsUnavailableError
from kronos.flows import answer
from kronos.forecast import Forecast
from kronos.evaluation.calibration import MIN_COUNT
from kronos.evaluation.live import calibrated_view
from kronos.evaluation.record import score_closed
from kronos.evaluation.record import track_record as record_of
from kronos.summary import data_banner, headline

CUSTOM_PAGE = "pages/custom_data.py"
CUSTOM_CANDLES, CUSTOM_ORIGIN, CUSTOM_MESSAGES = "custom.candles", "custom.origin", "custom.messages"
WEIGHTS_HELP = ("**How to get weights:** start the app once where the Hugging Face hub is reachable (the weights "
                "are cached), or download them elsewhere with `hf download NeoQuasar/Kronos-mini` and "
                "`hf download NeoQuasar/Kronos-Tokenizer-2k`; or choose *Other: a directory or hub id* under Model "
                "in the sidebar and give a folder holding config.json and model.safetensors (where the server "
                "allows it: KRONOS_ALLOW_ANY_MODEL=1); or start the app with "
                "KRONOS_MODEL and KRONOS_TOKENIZER set to such folders.")
MARKET_HELP = ("Check the exchange, symbol and timeframe in the sidebar, or forecast your own candles on the "
               "Custom data page.")
BANNER_STYLE = {"live": st.success, "stale": st.warning, "store": st.warning, "custom": st.info}
log = logging.getLogger("kronos.dashboard")


def bullets(lines: list[str]) -> str:
    """Markdown bullet list."""
    return "\n".join(f"- {line}" for line in lines)


@contextmanager
def reported() -> Iterator[None]:
    """Run a page's body; any failure becomes an error message saying what to do, never a traceback."""
    try:
        yield
    except WeightsUnavailableError as error:
        st.error(f"The model could not be loaded: {error}")
        st.info(WEIGHTS_HELP)
    except EmptyStoreError as error:
        st.error(f"No market data: {error}.")
        st.page_link(CUSTOM_PAGE, label="Forecast your own candles on the Custom data page", icon=":material/upload:")
    except StoreUnavailableError as error:
        st.error(f"{str(error)[:1].upper()}{str(error)[1:]}.")
        st.page_link(CUSTOM_PAGE, label="Forecast your own candles on the Custom data page", icon=":material/upload:")
    except DataUnavailableError as error:
        st.error(f"No market data: {error}.")
        st.info(MARKET_HELP)
    except InvalidInputError as error:
        st.error("The forecast cannot run with this input:\n" + bullets(error.problems))
    except Exception as error:  # the last line of defence: a message, and the traceback in the server log only
        log.exception("dashboard page failed")
        st.error(f"Something went wrong ({type(error).__name__}: {error}). Change a setting or reload the page to "
                 "try again; if it keeps happening, report it with the server's log.")


def banner(candles: Candles, model_name: str) -> None:
    """Where the data came from and how old it is, and which model forecasts it."""
    found = data_banner(candles, utc_now())
    BANNER_STYLE[found.level](f"{found.text} Forecast by **{model_name}**.")
    if found.notes:
        st.caption(" · ".join(found.notes))


def overview(forecast: Forecast, hour_idx: int | None) -> None:
    """Headline figures, the fan chart, upside probability per hour and volume."""
    figures = headline(forecast, hour_idx)
    hour = f"hour {figures.hour_idx}"
    when = f"Hour {figures.hour_idx} ahead: the candle opening {figures.timestamp:%Y-%m-%d %H:%M} UTC. "
    columns = st.columns(4)
    columns[0].metric("Last price", f"{figures.last_close:,.2f}",
                      help=f"Close of the candle opened {figures.last_timestamp:%Y-%m-%d %H:%M} UTC")
    columns[1].metric(f"Upside, {hour}", f"{figures.upside_probability:.0%}",
                      help=when + "Share of paths closing above the last price")
    vol = figures.volatility_amplification_probability
    columns[2].metric("Volatility amplification", "n/a" if vol is None else f"{vol:.0%}",
                      help="Share of paths more volatile over the horizon than the same span of history "
                           "(needs a horizon of 3 or more)")
    columns[3].metric(f"Expected return, {hour}", f"{figures.expected_return:+.2%}",
                      delta=f"80% interval {figures.return_low:+.2%} to {figures.return_high:+.2%}",
                      delta_color="off", delta_arrow="off",
                      help=when + "Mean over paths of close / last price - 1; the interval is the 10% and 90% "
                                  "quantiles of that return")
    st.caption(f"Last candle opened {figures.last_timestamp:%Y-%m-%d %H:%M} UTC · {forecast.samples} paths · "
               f"seed {forecast.seed} · lookback {len(forecast.history)}")
    st.plotly_chart(fan_chart(forecast), key="fan_chart")
    left, right = st.columns(2)
    left.plotly_chart(upside_chart(forecast, hour_idx), key="upside_chart")
    right.plotly_chart(volume_chart(forecast), key="volume_chart")


def track_record(candles: Candles, forecaster: ForecastSource, forecast: Forecast, hour_idx: int | None) -> None:
    """The record of this market's live forecasts by this model, and this forecast calibrated on it when it can be."""
    market = (CandleStore(), candles.exchange, candles.symbol, candles.timeframe, forecaster.fingerprint)
    fault = market[0].health()
    if fault is not None:
        st.warning(f"Live forecasts are not logged: {fault}.")
    try:
        score_closed(*market)  # the explicit step that writes outcomes
        record, view = record_of(*market), calibrated_view(*market, forecast)
    except StoreUnavailableError:
        return  # the warning says why
    k = forecast.hour_index(hour_idx)
    st.subheader("Track record of live forecasts")
    columns = st.columns(4)
    columns[0].metric("Forecasts logged / scored", f"{record.logged} / {record.scored}",
                      help="Live forecasts of this market by this model; scored once all their candles closed")
    cover = record.coverage["80"]
    columns[1].metric("80% band coverage", "n/a" if cover is None else f"{cover:.0%}",
                      help="Share of scored hours whose close fell inside the forecast's 80% band (nominal 80%)")
    brier = record.brier_upside
    columns[2].metric("Upside Brier score", "n/a" if brier is None else f"{brier:.3f}",
                      help="Mean squared error of the upside probability; always answering 50% scores 0.250, "
                           "lower is better")
    if view.upside[k - 1] is None:
        columns[3].metric(f"Calibrated upside, hour {k}", "n/a", help="Needs more scored forecasts")
        st.caption(f"Calibrated values appear once {MIN_COUNT} forecasts of this market by this model have closed "
                   f"before this one's first candle: {view.known[k - 1]} so far.")
        return
    columns[3].metric(f"Calibrated upside, hour {k}", f"{view.upside[k - 1]:.0%}",
                      delta=f"raw {view.upside_raw[k - 1]:.0%}", delta_color="off", delta_arrow="off",
                      help=f"Calibrated on {view.known[k - 1]} past forecasts whose outcome was known")
    raw, calibrated = view.band_prices("80", k, False), view.band_prices("80", k, True)
    st.caption(f"80% band of the close at hour {k}: calibrated {calibrated[0]:,.2f} to {calibrated[1]:,.2f} "
               f"(raw {raw[0]:,.2f} to {raw[1]:,.2f}), conformal on {view.known[k - 1]} past forecasts.")


def downloads(forecast: Forecast, candles: Candles, hour_idx: int | None, stem: str) -> None:
    """Every path as CSV (long format) and as JSON in the /predict_all shape, generated when clicked."""
    left, right = st.columns(2)
    left.download_button("Download paths (CSV, long format)", lambda: forecast.to_long_frame().to_csv(index=False),
                         file_name=f"{stem}_paths.csv", mime="text/csv", icon=":material/download:")
    right.download_button("Download forecast (JSON, /predict_all shape)",
                          lambda: answer(forecast, candles, hour_idx, all_samples=True).model_dump_json(),
                          file_name=f"{stem}_forecast.json", mime="application/json", icon=":material/download:")


def custom_input(origin: str, validate: Callable[[], Validation], name: str, source: str) -> None:
    """Validate an input once (per `origin`), show the validator's messages inline, keep usable candles."""
    state = st.session_state
    if state.get(CUSTOM_ORIGIN) != origin:
        result = validate()
        state[CUSTOM_ORIGIN], state[CUSTOM_MESSAGES] = origin, (result.errors, result.warnings)
        state[CUSTOM_CANDLES] = None if result.errors else custom_candles(result, name, source)
    errors, warnings = state[CUSTOM_MESSAGES]
    if errors:
        st.error(f"'{name}' cannot be used:\n" + bullets(errors))
    if warnings:
        st.warning(f"'{name}' was read with warnings:\n" + bullets(warnings))
