"""The Kronos dashboard: `streamlit run dashboard.py`. The sidebar's controls serve every page.

The url paths differ from the file names on purpose: Streamlit also registers every file of a `pages/`
folder as a page of its own (the old multipage scheme), and a path equal to a file name would run that
file without this script, so without the sidebar.
"""

import streamlit as st

from pages import _controls

st.set_page_config(page_title="Kronos forecast", page_icon=":material/candlestick_chart:", layout="wide")
page = st.navigation([
    st.Page("pages/live.py", title="Live forecast", icon=":material/show_chart:", url_path="forecast", default=True),
    st.Page("pages/sample_paths.py", title="Sample paths", icon=":material/stacked_line_chart:", url_path="paths"),
    st.Page("pages/custom_data.py", title="Custom data", icon=":material/upload_file:", url_path="custom"),
])
_controls.sidebar()
page.run()
