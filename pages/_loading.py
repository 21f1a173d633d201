"""The model and the candles loaded once and shared, forecasts made once per (data, settings), with feedback."""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from typing import Callable, TypeVar

import pandas as pd
import streamlit as st
import torch

from kronos import Forecast, Forecaster, WeightsUnavailableError
from kronos.market import DEFAULT_LIMIT, Candles, fetch_candles
from kronos.settings import ForecastSettings, ModelChoice
from kronos.summary import fingerprint
from pages import _show
from pages._controls import Controls

CANDLES_TTL_S = 60  # live candles are fetched again at most once a minute per market
FETCH_TIMEOUT_S = 5.0  # per exchange; the store answers when none does
FORECASTS_KEPT = 8  # per session, so switching pages or settings back does not resample
FORECASTS = "loading.forecasts"
# Threads per forecast. Sessions forecast at the same time, each in its own thread, so one torch thread
# each keeps them from fighting over the cores; KRONOS_TORCH_THREADS=N gives a lone user more.
THREADS = os.environ.get("KRONOS_TORCH_THREADS", "1")
torch.set_num_threads(int(THREADS) if THREADS.isdigit() and int(THREADS) > 0 else 1)

T = TypeVar("T")


@st.cache_resource(show_spinner=False, max_entries=2)
def load_forecaster(model: str, tokenizer: str | None) -> Forecaster:
    """One Forecaster per (model, tokenizer) for every session of this server."""
    if not model:
        raise WeightsUnavailableError("no model named: type a checkpoint directory or hub id under Model "
                                      "in the sidebar, or pick a preset")
    started = time.perf_counter()
    forecaster = Forecaster.from_pretrained(model, tokenizer)
    print(f"kronos dashboard: loaded model {forecaster.name} in {time.perf_counter() - started:.1f} s",
          file=sys.stderr, flush=True)
    return forecaster


@st.cache_data(ttl=CANDLES_TTL_S, show_spinner=False, max_entries=64)
def load_candles(exchange: str, symbol: str, timeframe: str, limit: int, mode: str) -> Candles:
    """The latest candles of a market from the exchanges, else the local store; kept for CANDLES_TTL_S."""
    return fetch_candles(exchange, symbol, timeframe, limit, mode, timeout=FETCH_TIMEOUT_S)


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


def model(choice: ModelChoice) -> Forecaster:
    """The chosen model, loaded once for all sessions."""
    return _under_status(f"Loading model {choice.model or '?'}", lambda: load_forecaster(choice.model, choice.tokenizer),
                         _model_label)


def _model_label(forecaster: Forecaster) -> str:
    return f"Model {forecaster.name} (context {forecaster.max_context})"


def _market(controls: Controls) -> tuple[Forecaster, Candles]:
    """The model, then the chosen market's latest candles (at least the lookback), fetched at most once a minute."""
    limit = max(controls.settings.lookback, DEFAULT_LIMIT)
    forecaster = load_forecaster(controls.model.model, controls.model.tokenizer)
    return forecaster, load_candles(controls.exchange, controls.symbol, controls.timeframe, limit, controls.mode)


def forecast(forecaster: Forecaster, frame: pd.DataFrame, settings: ForecastSettings) -> Forecast:
    """Forecast `frame` with `settings` (lookback cut to the rows there are), once per session for equal inputs."""
    lookback = min(settings.lookback, len(frame))
    if lookback < settings.lookback:
        st.info(f"Only {len(frame)} candles are available, so the model looks back {lookback} rather than "
                f"{settings.lookback}.")
    arguments = {**settings.engine_arguments(), "lookback": lookback}
    key = (forecaster.name, fingerprint(frame), tuple(sorted(arguments.items())))
    kept: OrderedDict = st.session_state.setdefault(FORECASTS, OrderedDict())
    if key in kept:
        kept.move_to_end(key)
        return kept[key]
    bar = st.progress(0.0, text="Sampling paths")

    def progress(step: int, total: int) -> None:
        bar.progress(step / total, text=f"Sampling paths: step {step} of {total}")

    result = forecaster.forecast(frame, **arguments, progress=progress)
    bar.empty()
    kept[key] = result
    while len(kept) > FORECASTS_KEPT:
        kept.popitem(last=False)
    return result


def live_forecast(controls: Controls) -> tuple[Candles, Forecaster, Forecast]:
    """Model, latest candles (with the data banner) and their forecast for the sidebar's market and settings."""
    forecaster, candles = _under_status(
        f"Loading the model and {controls.symbol} {controls.timeframe} candles", lambda: _market(controls),
        lambda loaded: f"{_model_label(loaded[0])} · {len(loaded[1].frame)} {loaded[1].symbol} {loaded[1].timeframe} "
                       f"candles from {loaded[1].exchange} ({loaded[1].source})")
    _show.banner(candles, forecaster.name)
    return candles, forecaster, forecast(forecaster, candles.frame, controls.settings)
