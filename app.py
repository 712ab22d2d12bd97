"""MS-LI Lab: the Streamlit entry point. It only sets up navigation and the shared sidebar.

Run with `make run` (or `streamlit run app.py`). Each page lives in pages/ and reads like a
description of its UI: widgets -> one msli_core call -> render.
"""

from __future__ import annotations

import streamlit as st

from pages import widgets

st.set_page_config(page_title="MS-LI Lab", page_icon="🧩", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/table_chart:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/explain.py", title="Explain", icon=":material/lightbulb:"),
    st.Page("pages/latency.py", title="Latency", icon=":material/timer:"),
    st.Page("pages/whatif.py", title="What-if", icon=":material/calculate:"),
]

current = st.navigation(PAGES)
widgets.open_deep_link()
widgets.keep_widget_state()
widgets.render_sidebar()
current.run()
