"""Live forecast: the chosen market's latest candles, the forecast's headline figures and charts."""

import streamlit as st

from pages import _controls, _loading, _show

REFRESH_S = 60

st.title("Live forecast")
refresh = st.toggle("Refresh every minute", key="live.refresh",
                    help="Fetch the latest candles and forecast again every minute while this page is open")


@st.fragment(run_every=REFRESH_S if refresh else None)
def live() -> None:
    """Everything below the toggle; rerun on its own when refreshing."""
    with _show.reported():
        controls = _controls.current()
        candles, forecaster, forecast = _loading.live_forecast(controls)
        _show.overview(forecast, controls.settings.hour_idx, _loading.calibration(forecaster, candles, forecast))
        _show.track_record(candles, forecaster, forecast, controls.settings.hour_idx)


live()
