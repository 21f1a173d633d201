"""Custom data: forecast candles from a CSV file or pasted JSON, checked by the validator first."""

import streamlit as st

from kronos.charts import candles_chart
from kronos.data.reading import read_csv_bytes, read_json_text
from kronos.summary import template_csv
from pages import _controls, _loading, _show

st.title("Custom data")
st.markdown("Forecast your own candles: a CSV with the columns `timestamps,open,high,low,close` "
            "(`volume`, `amount` optional), one row per candle, at least 32 rows; or the same as JSON.")
st.download_button("Template CSV", template_csv(), file_name="kronos_template.csv", mime="text/csv",
                   icon=":material/download:")
kind = st.radio("Input", ("Upload CSV", "Paste JSON"), horizontal=True, key="custom.kind")
with _show.reported():
    if kind == "Upload CSV":
        upload = st.file_uploader("CSV file (.csv or .csv.gz)", type=["csv", "gz", "txt"], key="custom.file")
        if upload is not None:
            _show.custom_input(f"csv:{upload.file_id}", lambda: read_csv_bytes(upload.getbuffer()), upload.name, "csv")
    else:
        text = st.text_area("JSON", height=200, key="custom.json",
                            placeholder='{"timestamps": [...], "open": [...], "high": [...], "low": [...], '
                                        '"close": [...]}')
        if text.strip():
            _show.custom_input(f"json:{hash(text)}", lambda: read_json_text(text), "pasted JSON", "json")
    candles = st.session_state.get(_show.CUSTOM_CANDLES)
    if candles is None:
        st.info("Upload a CSV file or paste JSON to see it here and forecast it; the template shows the layout.")
        st.stop()
    controls = _controls.current()
    forecaster = _loading.model(controls.model)
    _show.banner(candles, forecaster.name)
    st.plotly_chart(candles_chart(candles.frame, f"'{candles.symbol}': {len(candles.frame)} rows"),
                    key="custom_preview")
    forecast = _loading.forecast(forecaster, candles, controls.settings)
    block = _show.overview(forecast, controls.settings.hour_idx, _loading.calibration(forecaster, candles, forecast))
    _show.downloads(forecast, candles, controls.settings.hour_idx, "kronos_custom", block)
