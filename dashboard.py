"""The Kronos dashboard: `streamlit run dashboard.py`. The sidebar's controls serve every page.

The url paths differ from the file names on purpose: Streamlit also registers every file of a `pages/`
folder as a page of its own (the old multipage scheme), and a path equal to a file name would run that
file without this script, so without the sidebar.
"""

from kronos.process import prepare
from kronos.settings import Environment

# Every session's forecasts run on one batching thread (kronos.serving.batching), so torch may use all the cores;
# KRONOS_TORCH_THREADS=N sets another count.
prepare(threads=Environment.read().torch_threads)

import streamlit as st  # noqa: E402

from ui import loaders, sidebar  # noqa: E402

st.set_page_config(page_title="Kronos forecast", page_icon=":material/candlestick_chart:", layout="wide")
page = st.navigation([
    st.Page("pages/live.py", title="Live forecast", icon=":material/show_chart:", url_path="forecast", default=True),
    st.Page("pages/sample_paths.py", title="Sample paths", icon=":material/stacked_line_chart:", url_path="paths"),
    st.Page("pages/custom_data.py", title="Custom data", icon=":material/upload_file:", url_path="custom"),
    st.Page("pages/track_record.py", title="Track record", icon=":material/fact_check:", url_path="record"),
    st.Page("pages/markets.py", title="Markets", icon=":material/leaderboard:", url_path="markets"),
])
loaders.warm_start()  # once per server: the default market's calibration, when the store holds its candles
sidebar.draw()
page.run()
