"""The model and the candles loaded once and shared, forecasts made once per (data, settings), with feedback."""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import streamlit as st

from kronos import Forecast, Forecaster, WeightsUnavailableError
from kronos.data.candles import Candles
from kronos.data.market import DEFAULT_LIMIT, fetch_candles, load_stored
from kronos.data.store import CandleStore, usable
from kronos.engine import ForecastSource, Progress
from kronos.errors import KronosError, StoreUnavailableError
from kronos.evaluation.backtest import Backtest, BacktestSettings, run_backtest
from kronos.evaluation.combined import calibration_rows
from kronos.flows import calibrated, forecast_candles
from kronos.model.checkpoints import check_allowed, model_label
from kronos.schemas.calibrated import Calibrated, Unavailable
from kronos.serving.batching import Batcher
from kronos.serving.jobs import Job, Jobs
from kronos.serving.pieces import Yielding
from kronos.settings import Environment, ForecastSettings, MarketChoice, ModelChoice
from kronos.views.texts import fingerprint
from ui import widgets
from ui.sidebar import Controls

CANDLES_TTL_S = 60  # live candles are fetched again at most once a minute per market
FETCH_TIMEOUT_S = 5.0  # per exchange; the store answers when none does
log = logging.getLogger("kronos.dashboard")
KEPT = 8  # forecasts and backtests per session, so switching pages or settings back does not resample
FORECASTS, BACKTESTS = "loading.forecasts", "loading.backtests"

T = TypeVar("T")


@st.cache_resource(show_spinner=False, max_entries=2, on_release=lambda batcher: batcher.close())
def load_forecaster(model: str, tokenizer: str | None) -> Batcher:
    """One Forecaster per (model, tokenizer) for every session of this server, its forecasts batched across
    sessions (kronos.serving.batching); only a model this server allows (kronos.model.checkpoints.allowed). A model
    leaving the
    cache has its batching thread closed, so its memory is freed."""
    if not model:
        raise WeightsUnavailableError("no model named: type a checkpoint directory or hub id under Model "
                                      "in the sidebar, or pick a preset")
    environment = Environment.read()
    check_allowed(ModelChoice(model, tokenizer), environment)
    started = time.perf_counter()
    forecaster = Batcher(Forecaster.from_pretrained(model, tokenizer, compile=environment.compile))
    print(f"kronos dashboard: loaded model {forecaster.name} ({model}, tokenizer {tokenizer or 'its own'}) in "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)  # the operator's log: the paths
    return forecaster


@st.cache_data(ttl=CANDLES_TTL_S, show_spinner=False, max_entries=64)
def load_candles(market: MarketChoice, limit: int) -> Candles:
    """The latest candles of a market from the exchanges, else the local store; kept for CANDLES_TTL_S."""
    return fetch_candles(market, limit, timeout=FETCH_TIMEOUT_S)


@st.cache_data(ttl=CANDLES_TTL_S, show_spinner=False, max_entries=16)
def stored_candles(market: MarketChoice, limit: int) -> Candles:
    """The latest `limit` candles the local store holds for a market (its exchange only), read at most once a minute."""
    return load_stored([market.exchange], market.symbol, market.timeframe, limit)


def _under_status(label: str, load: Callable[[], T], done: Callable[[T], str]) -> T:
    """Run `load` inside a collapsed st.status that ends as complete (with `done`'s label) or as an error."""
    with st.status(label, expanded=False) as status:
        try:
            result = load()
        except Exception:
            status.update(label=f"{label} failed", state="error")
            raise
        status.update(label=done(result), state="complete")
    return result


def model(choice: ModelChoice) -> ForecastSource:
    """The chosen model, loaded once for all sessions."""
    return _under_status(f"Loading model {model_label(choice.model) if choice.model else '?'}",
                         lambda: load_forecaster(choice.model, choice.tokenizer),
                         _model_label)


def _model_label(forecaster: ForecastSource) -> str:
    return f"Model {forecaster.name} (context {forecaster.max_context})"


def _market(controls: Controls, market: MarketChoice) -> tuple[ForecastSource, Candles]:
    """The model, then the chosen market's latest candles (the lookback and what its calibration reads before it, as
    the CLI and the API load them), fetched at most once a minute."""
    settings = controls.settings
    limit = max(calibration_rows(settings.lookback, settings.horizon), DEFAULT_LIMIT)
    forecaster = load_forecaster(controls.model.model, controls.model.tokenizer)
    return forecaster, load_candles(market, limit)


def _kept(name: str, key: Hashable, make: Callable[[], T] | None) -> T | None:
    """The session's result under `key` in the kept results called `name` (the latest KEPT of them), else `make`'s
    (None without `make`)."""
    kept: OrderedDict = st.session_state.setdefault(name, OrderedDict())
    if key in kept:
        kept.move_to_end(key)
    elif make is None:
        return None
    else:
        kept[key] = make()
        while len(kept) > KEPT:
            kept.popitem(last=False)
    return kept[key]


def _with_progress(text: str, make: Callable[[Progress], T]) -> T:
    """`make(progress)` with a progress bar that it moves and that goes away when it ends."""
    bar = st.progress(0.0, text=text)

    def progress(step: int, total: int) -> None:
        bar.progress(step / total, text=f"{text}: step {step} of {total}")

    try:
        return make(progress)
    finally:
        bar.empty()


def forecast(forecaster: ForecastSource, candles: Candles, settings: ForecastSettings) -> Forecast:
    """Forecast the candles with the settings (lookback cut to the rows there are), once per session for equal
    inputs, with a progress bar."""
    key = (forecaster.fingerprint, fingerprint(candles.frame),
           tuple(sorted(settings.engine_arguments(rows=len(candles.frame)).items())))
    result = _kept(FORECASTS, key, lambda: _with_progress("Sampling paths", lambda progress: forecast_candles(
        forecaster, candles, settings, progress, log=CandleStore())))
    if result.settings.lookback < settings.lookback:
        st.info(f"Only {len(candles.frame)} candles are available, so the model looks back "
                f"{result.settings.lookback} rather than {settings.lookback}.")
    return result


def backtest(forecaster: ForecastSource, candles: Candles, settings: BacktestSettings, run: bool) -> Backtest | None:
    """The backtest of the candles (typed), kept per session by (data, weights, settings); run only when `run` (with
    a progress bar, reusing the origins the store kept), else None until it has been."""
    def make() -> Backtest:
        return _with_progress("Forecasting the origins", lambda progress: run_backtest(
            forecaster, candles.frame, settings, store=usable(CandleStore()), progress=progress))

    return _kept(BACKTESTS, (fingerprint(candles.frame), forecaster.fingerprint, settings), make if run else None)


@st.cache_resource(show_spinner=False, on_release=lambda jobs: jobs.close())
def calibrations() -> Jobs:
    """The calibrations running or done for every session of this server, one per (model, data, forecast, store);
    a session waits for one at a time: when its settings change, the one it waited for is cancelled unless another
    session still waits for it."""
    return Jobs()


def calibration(forecaster: ForecastSource, candles: Candles, forecast: Forecast,
                leased: bool = True) -> Job[Calibrated | Unavailable]:
    """The forecast's calibration (kronos.flows.calibrated: a backtest of the candles' recent history, newest first,
    publishing each provisional record), started in the background or joined when any session already asked for it,
    leased by this session (else kept whoever waits: a warm start); its origins are kept in the store when it
    can take them, else it runs without keeping them."""
    store = CandleStore()
    key = (forecaster.fingerprint, fingerprint(candles.frame), candles.source, candles.exchange, candles.symbol,
           candles.timeframe, forecast.seed, tuple(sorted(forecast.settings.model_dump().items())), str(store.path))

    def work(progress: Progress, publish: Callable[[Calibrated], None]) -> Calibrated | Unavailable:
        kept = usable(store)
        try:
            return calibrated(Yielding(forecaster), candles, forecast, kept, progress=progress, publish=publish)
        except StoreUnavailableError:
            if kept is None:
                raise
            return calibrated(Yielding(forecaster), candles, forecast, None, progress=progress)  # failed midway

    return calibrations().start(key, work, widgets.session() if leased else None, widgets.LEASE_S)


@st.cache_resource(show_spinner=False)
def warm_start() -> Job | None:
    """Once per server: when the store holds the default market's candles, a background job that loads the default
    model and those candles as a first visitor's page would, forecasts them at the default settings and starts their
    calibration (kept whoever comes), so that the first visitor usually finds it ready; else None."""
    market, settings, choice = MarketChoice(), ForecastSettings(), Environment.read().model
    try:
        if not choice.model or CandleStore().latest_timestamp(market.exchange, market.symbol, market.timeframe) is None:
            return None
    except StoreUnavailableError:
        return None

    def work(progress: Progress, publish: Callable[[object], None]) -> None:
        try:
            forecaster = load_forecaster(choice.model, choice.tokenizer)
            candles = load_candles(market, max(calibration_rows(settings.lookback, settings.horizon), DEFAULT_LIMIT))
            forecast = forecast_candles(forecaster, candles, settings)
        except KronosError as error:  # nothing to warm: the first visitor's page will say why
            log.warning("warm start skipped: %s", error.public())
            return
        calibration(forecaster, candles, forecast, leased=False)

    return calibrations().start(("warm start", market, choice), work)


def live_forecast(controls: Controls) -> tuple[Candles, ForecastSource, Forecast]:
    """Model, latest candles (with the data banner) and their forecast for the sidebar's market and settings."""
    market = controls.market()
    forecaster, candles = _under_status(
        f"Loading the model and {market.symbol} {market.timeframe} candles", lambda: _market(controls, market),
        lambda loaded: f"{_model_label(loaded[0])} · {len(loaded[1].frame)} {loaded[1].symbol} {loaded[1].timeframe} "
                       f"candles from {loaded[1].exchange} ({loaded[1].source})")
    widgets.banner(candles, forecaster.name)
    return candles, forecaster, forecast(forecaster, candles, controls.settings)

