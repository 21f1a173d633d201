"""Live forecast: the chosen market's latest candles, the forecast's headline figures and charts."""

import streamlit as st

from ui import loaders, sidebar, widgets

REFRESH_S = 60

st.title("Live forecast")
refresh = st.toggle("Refresh every minute", key="live.refresh",
                    help="Fetch the latest candles and forecast again every minute while this page is open")


@st.fragment(run_every=REFRESH_S if refresh else None)
def live() -> None:
    """Everything below the toggle; rerun on its own when refreshing."""
    with widgets.reported():
        controls = sidebar.current()
        candles, forecaster, forecast = loaders.live_forecast(controls)
        widgets.overview(forecast, controls.settings.hour_idx, loaders.calibration(forecaster, candles, forecast))
        widgets.track_record(candles, forecaster, forecast, controls.settings.hour_idx)


live()
