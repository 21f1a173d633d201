"""Sample paths: the headline figures, then every Monte Carlo path of the current forecast (Kronos alone), its
spread, one path as candles, downloads."""

import streamlit as st

from kronos.views.charts import final_close_histogram, path_candles, paths_chart
from ui import loaders, sidebar, widgets

st.title("Sample paths")
with widgets.reported():
    controls = sidebar.current()
    custom = st.session_state.get(widgets.CUSTOM_CANDLES)
    if custom is not None and st.radio("Data", ("Live market", f"Custom data '{custom.symbol}'"),
                                       horizontal=True, key="paths.source") != "Live market":
        forecaster = loaders.model(controls.model)
        candles, forecast = custom, loaders.forecast(forecaster, custom, controls.settings)
    else:
        candles, forecaster, forecast = loaders.live_forecast(controls)
    block = widgets.calibrated_figures(forecast, controls.settings.hour_idx,
                                     loaders.calibration(forecaster, candles, forecast))
    st.subheader("Kronos alone: its sampled paths")
    show_paths = st.toggle("Show every path", value=True, key="paths.show")
    st.plotly_chart(paths_chart(forecast, show_paths), key="paths_chart")
    left, right = st.columns(2)
    left.plotly_chart(final_close_histogram(forecast), key="final_close_histogram")
    with right:
        path = st.number_input("Path to show as candles", 1, forecast.samples, 1, key="paths.path")
        st.plotly_chart(path_candles(forecast, path), key="path_candles")
    st.subheader("Quantiles of the close per hour")
    quantiles = forecast.close_quantiles().rename(columns=lambda q: f"{q:.1%}")
    st.dataframe(quantiles, width="stretch",
                 column_config={name: st.column_config.NumberColumn(format=widgets.PRICE_FORMAT) for name in quantiles})
    widgets.downloads(forecast, candles, controls.settings.hour_idx, "kronos", block)
