"""What the pages have in common on screen: failures as messages, the data banner, headline figures, downloads."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from kronos.data.candles import Candles, custom_candles
from kronos.data.market import utc_now
from kronos.data.store import CandleStore
from kronos.data.validation import Validation
from kronos.engine import ForecastSource
from kronos.engine.forecast import Forecast
from kronos.errors import (
    DataUnavailableError,
    EmptyStoreError,
    InvalidInputError,
    KronosError,
    StoreUnavailableError,
    WeightsUnavailableError,
)
from kronos.evaluation.calibration import MIN_COUNT
from kronos.evaluation.combined import ORIGINS
from kronos.evaluation.live import calibrated_view
from kronos.flows import answer
from kronos.flows import track_record as record_of
from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.serving.jobs import Job
from kronos.views.charts import fan_chart, forecasters, upside_chart, volume_chart
from kronos.views.texts import data_banner, headline, price_text

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
NOT_YET = "not calibrated yet"
COMPONENTS = {"model_calibrated": "Kronos (calibrated)"}  # the pool's components, where the charts' labels differ
POLL_S = 2  # how often a page waiting for its calibration looks again (each look costs the browser a redraw)
LEASE_S = 5 * POLL_S  # a session's lease on its calibration lapses this long after its page last looked
GRACE_S = 0.25  # waited before saying "not calibrated yet": what needs no backtest (too few rows) shows at once
QUICK_S = 1.5  # waited at most for a calibration that forecasts nothing (from kept paths), so it shows at once too
# Prices in tables: six significant digits, so that one far below 1 shows its digits (Streamlit's default keeps a
# single one: 0.000008)
PRICE_FORMAT = "%.6g"
BANNER_STYLE = {"live": st.success, "stale": st.warning, "store": st.warning, "custom": st.info}
log = logging.getLogger("kronos.dashboard")


def bullets(lines: list[str]) -> str:
    """Markdown bullet list."""
    return "\n".join(f"- {line}" for line in lines)


def public(error: KronosError) -> str:
    """What a visitor reads of an error: its `public()` words, which name no server path; the full message (the
    store's or the checkpoint's path) goes to the server log."""
    said = error.public()
    if said != str(error):
        log.warning("%s", error)
    return said


@contextmanager
def reported() -> Iterator[None]:
    """Run a page's body; any failure becomes an error message saying what to do, never a traceback or a server
    path."""
    try:
        yield
    except WeightsUnavailableError as error:
        st.error(f"The model could not be loaded: {public(error)}")
        st.info(WEIGHTS_HELP)
    except EmptyStoreError as error:
        st.error(f"No market data: {public(error)}.")
        st.page_link(CUSTOM_PAGE, label="Forecast your own candles on the Custom data page", icon=":material/upload:")
    except StoreUnavailableError as error:
        said = public(error)
        st.error(f"{said[:1].upper()}{said[1:]}.")
        st.page_link(CUSTOM_PAGE, label="Forecast your own candles on the Custom data page", icon=":material/upload:")
    except DataUnavailableError as error:
        st.error(f"No market data: {public(error)}.")
        st.info(MARKET_HELP)
    except InvalidInputError as error:
        st.error("The forecast cannot run with this input:\n" + bullets(error.problems))
    except Exception as error:  # the last line of defence: a message, and the traceback in the server log only
        log.exception("dashboard page failed")
        st.error(f"Something went wrong ({type(error).__name__}; the server's log has the details). Change a "
                 "setting or reload the page to try again; if it keeps happening, report it with the server's log.")


def banner(candles: Candles, model_name: str) -> None:
    """Where the data came from and how old it is, and which model forecasts it."""
    found = data_banner(candles, utc_now())
    BANNER_STYLE[found.level](f"{found.text} Forecast by **{model_name}**.")
    if found.notes:
        st.caption(" · ".join(found.notes))


def session() -> Hashable | None:
    """This browser session's id: what waits for (leases) its page's calibration (None outside a session)."""
    context = get_script_run_ctx()
    return None if context is None else context.session_id


def calibration(job: Job[Calibrated | Unavailable] | None) -> tuple[Calibrated | None, bool]:
    """The combined forecast once its calibration is done (waited for a moment, longer while it forecasts nothing),
    or why there is none; until then (pending: True) the newest provisional record's when there is one, and the
    refinement's progress, looked at every POLL_S seconds, the page shown again when a larger record arrives or the
    calibration ends."""
    if job is None:
        return None, False
    if not job.wait(GRACE_S) and not job.wait_if_quick(QUICK_S - GRACE_S):
        latest = job.latest if isinstance(job.latest, Calibrated) else None
        _calibrating(job, 0 if latest is None else latest.record.origins)
        return latest, True
    return _finished(job), False


def _finished(job: Job[Calibrated | Unavailable]) -> Calibrated | None:
    try:
        block = job.result()
    except KronosError as error:
        st.warning(f"The forecast could not be calibrated: {public(error)}. The values below are Kronos alone.")
        return None
    except Exception as error:  # a message here, the traceback in the server log; the raw forecast stands
        log.error("calibration failed", exc_info=error)
        st.warning(f"The forecast could not be calibrated ({type(error).__name__}). The values below are Kronos alone.")
        return None
    if isinstance(block, Unavailable):
        st.info(f"Not calibrated: {block.unavailable}. The values below are Kronos alone.")
        return None
    fault = CandleStore().health()
    if fault is not None:
        st.caption(f"The calibration's backtest origins are not kept ({public(fault)}), so it runs in full each "
                   "time.")
    return block


@st.fragment(run_every=POLL_S)
def _calibrating(job: Job, shown: int) -> None:
    """The calibration's progress; the page again once it ends or a record larger than the `shown` one arrives.
    Each look renews this session's lease on it (a closed tab stops looking: its lease lapses)."""
    job.renew(session(), LEASE_S)
    latest = job.latest
    if job.done or (isinstance(latest, Calibrated) and latest.record.origins != shown):
        st.rerun(scope="app")
    if shown:
        st.progress(job.fraction, text=f"Refining the calibration: the figures below stand on the last {shown} "
                                       f"forecasts of a record growing to {latest.record.target}; "
                                       f"{job.fraction:.0%} of its missing origins forecast.")
        return
    st.progress(job.fraction, text=f"Calibrating on the recent history (a record of up to {ORIGINS} origins, newest "
                                   f"first, usable once the first few dozen are in): {job.fraction:.0%}. Until then "
                                   f"the values below are Kronos alone, {NOT_YET}.")


def figures(forecast: Forecast, hour_idx: int | None, block: Calibrated | None, pending: bool) -> None:
    """The headline figures at an hour: the combined forecast's with Kronos alone beside them, or Kronos alone
    (labelled "not calibrated yet" while `pending`); and the record's sentence and the pool's weights."""
    raw = headline(forecast, hour_idx)
    k, hour = raw.hour_idx, f"hour {raw.hour_idx}"
    when = f"Hour {k} ahead: the candle opening {raw.timestamp:%Y-%m-%d %H:%M} UTC. "
    columns = st.columns(4)
    columns[0].metric("Last price", price_text(raw.last_close),
                      help=f"Close of the candle opened {raw.last_timestamp:%Y-%m-%d %H:%M} UTC")
    vol, interval = raw.volatility_amplification_probability, f"{raw.return_low:+.2%} to {raw.return_high:+.2%}"
    if block is None:
        note = f" · {NOT_YET}" if pending else ""
        upside = ("Kronos alone" + note, "Share of paths closing above the last price")
        amplified = ("n/a" if vol is None else f"{vol:.0%}", "Kronos alone" + note)
        expected = (f"{raw.expected_return:+.2%}", f"80% interval {interval}{note}",
                    ("Mean over paths of close / last price - 1; the interval is the 10% and 90% quantiles of that "
                     "return"))
        columns[1].metric(f"Upside, {hour}", f"{raw.upside_probability:.0%}", delta=upside[0], delta_color="off",
                          delta_arrow="off", help=when + upside[1])
    else:
        combined = block.upside_probability_all_hours[k - 1]
        columns[1].metric(f"Upside, {hour}", f"{combined:.0%}", delta=f"Kronos alone {raw.upside_probability:.0%}",
                          delta_color="off", delta_arrow="off",
                          help=when + "The combined forecast's probability of closing above the last price "
                                      "(Kronos calibrated and pooled with volatility baselines by its record); "
                                      "Kronos alone: its share of paths closing above")
        combined_vol = block.volatility_amplification_probability
        amplified = ("n/a" if combined_vol is None else f"{combined_vol:.0%}",
                     "Kronos alone " + ("n/a" if vol is None else f"{vol:.0%}"))
        band, median = block.bands["80"], block.median[k - 1]
        kronos_median = float(forecast.quantile(0.5)["close"].iloc[k - 1]) / raw.last_close - 1
        expected = (f"{median / raw.last_close - 1:+.2%}",
                    (f"80% band {band.low[k - 1] / raw.last_close - 1:+.2%} to "
                     f"{band.high[k - 1] / raw.last_close - 1:+.2%} · Kronos alone {kronos_median:+.2%}"),
                    ("The combined forecast's median of close / last price - 1 and its 80% band (conformal); Kronos "
                     "alone: the median over its paths"))
    columns[2].metric("Volatility amplification", amplified[0], delta=amplified[1], delta_color="off",
                      delta_arrow="off", help="Probability that the horizon is more volatile than the same span of "
                                              "history (needs a horizon of 3 or more)")
    columns[3].metric(f"Expected return, {hour}", expected[0], delta=expected[1], delta_color="off",
                      delta_arrow="off", help=when + expected[2])
    if block is not None:
        styles = forecasters()
        weights = " · ".join(f"{COMPONENTS.get(name, styles[name][0])} {values[k - 1]:.0%}"
                             for name, values in block.weights.items())
        st.success(block.summary)
        record = block.record
        so_far = f" so far (of {record.target}: provisional, refined as the rest arrive)" if record.provisional else ""
        st.caption(f"The combined forecast at hour {k} weighs {weights} (learnt from {record.origins} backtest "
                   f"origins{so_far}, {record.first[:10]} to {record.last[:10]}; {record.live} scored live forecasts "
                   "of this market by this model in its record).")


def calibrated_figures(forecast: Forecast, hour_idx: int | None,
                       job: Job[Calibrated | Unavailable] | None) -> Calibrated | None:
    """The headline figures: the combined forecast's once `job` has calibrated it (returned), Kronos alone's until
    then or when it cannot be."""
    block, pending = calibration(job)
    figures(forecast, hour_idx, block, pending)
    return block


def overview(forecast: Forecast, hour_idx: int | None,
             job: Job[Calibrated | Unavailable] | None = None) -> Calibrated | None:
    """Headline figures (the combined forecast's once `job` has calibrated it: returned), the fan chart, the upside
    probability per hour and volume."""
    block = calibrated_figures(forecast, hour_idx, job)
    st.caption(f"Last candle opened {forecast.last_timestamp:%Y-%m-%d %H:%M} UTC · {forecast.samples} paths · "
               f"seed {forecast.seed} · lookback {len(forecast.history)}")
    st.plotly_chart(fan_chart(forecast, calibrated=block), key="fan_chart")
    left, right = st.columns(2)
    left.plotly_chart(upside_chart(forecast, hour_idx, block), key="upside_chart")
    right.plotly_chart(volume_chart(forecast), key="volume_chart")
    return block


def track_record(candles: Candles, forecaster: ForecastSource, forecast: Forecast, hour_idx: int | None) -> None:
    """The record of this market's live forecasts by this model, and this forecast calibrated on it when it can be."""
    market = (CandleStore(), candles.exchange, candles.symbol, candles.timeframe, forecaster.fingerprint)
    fault = market[0].health()
    if fault is not None:
        st.warning(f"Live forecasts are not logged: {public(fault)}.")
    try:
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
        columns[3].metric(f"Upside calibrated on live forecasts, hour {k}", "n/a", help="Needs more scored forecasts")
        st.caption(f"Values calibrated on the live forecasts alone appear once {MIN_COUNT} forecasts of this market "
                   f"by this model have closed before this one's first candle: {view.known[k - 1]} so far.")
        return
    columns[3].metric(f"Upside calibrated on live forecasts, hour {k}", f"{view.upside[k - 1]:.0%}",
                      delta=f"raw {view.upside_raw[k - 1]:.0%}", delta_color="off", delta_arrow="off",
                      help=f"Calibrated on {view.known[k - 1]} past forecasts whose outcome was known")
    raw, calibrated = view.band_prices("80", k, False), view.band_prices("80", k, True)
    st.caption(f"80% band of the close at hour {k}: calibrated {price_text(calibrated[0])} to "
               f"{price_text(calibrated[1])} (raw {price_text(raw[0])} to {price_text(raw[1])}), conformal on "
               f"{view.known[k - 1]} past forecasts.")


def downloads(forecast: Forecast, candles: Candles, hour_idx: int | None, stem: str,
              block: Calibrated | None = None) -> None:
    """Every path as CSV (long format) and as JSON in the /predict_all shape (with the `calibrated` block when
    there is one), generated when clicked."""
    def as_json() -> str:
        made = answer(forecast, candles, hour_idx, all_samples=True)
        if block is not None:
            upside = block.upside_probability_all_hours[forecast.hour_index(hour_idx) - 1]
            made = made.model_copy(update={"calibrated": block.model_copy(update={"upside_probability": upside})})
        return made.model_dump_json()

    left, right = st.columns(2)
    left.download_button("Download paths (CSV, long format)", lambda: forecast.to_long_frame().to_csv(index=False),
                         file_name=f"{stem}_paths.csv", mime="text/csv", icon=":material/download:")
    right.download_button("Download forecast (JSON, /predict_all shape)", as_json,
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
