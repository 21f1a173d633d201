"""Custom data: forecast candles from a CSV file or pasted JSON, checked by the validator first."""

import streamlit as st

from kronos.data.reading import read_csv_bytes, read_json_text
from kronos.views.charts import candles_chart
from kronos.views.texts import template_csv
from ui import loaders, sidebar, widgets

st.title("Custom data")
st.markdown("Forecast your own candles: a CSV with the columns `timestamps,open,high,low,close` "
            "(`volume`, `amount` optional), one row per candle, at least 32 rows; or the same as JSON.")
st.download_button("Template CSV", template_csv(), file_name="kronos_template.csv", mime="text/csv",
                   icon=":material/download:")
kind = st.radio("Input", ("Upload CSV", "Paste JSON"), horizontal=True, key="custom.kind")
with widgets.reported():
    if kind == "Upload CSV":
        upload = st.file_uploader("CSV file (.csv or .csv.gz)", type=["csv", "gz", "txt"], key="custom.file")
        if upload is not None:
            widgets.custom_input(f"csv:{upload.file_id}", lambda: read_csv_bytes(upload.getbuffer()), upload.name,
                                 "csv")
    else:
        text = st.text_area("JSON", height=200, key="custom.json",
                            placeholder='{"timestamps": [...], "open": [...], "high": [...], "low": [...], '
                                        '"close": [...]}')
        if text.strip():
            widgets.custom_input(f"json:{hash(text)}", lambda: read_json_text(text), "pasted JSON", "json")
    candles = st.session_state.get(widgets.CUSTOM_CANDLES)
    if candles is None:
        st.info("Upload a CSV file or paste JSON to see it here and forecast it; the template shows the layout.")
        st.stop()
    controls = sidebar.current()
    forecaster = loaders.model(controls.model)
    widgets.banner(candles, forecaster.name)
    st.plotly_chart(candles_chart(candles.frame, f"'{candles.symbol}': {len(candles.frame)} rows"),
                    key="custom_preview")
    forecast = loaders.forecast(forecaster, candles, controls.settings)
    block = widgets.overview(forecast, controls.settings.hour_idx, loaders.calibration(forecaster, candles, forecast))
    widgets.downloads(forecast, candles, controls.settings.hour_idx, "kronos_custom", block)
