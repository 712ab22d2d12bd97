"""MS-LI Lab: the Streamlit entry point. It only sets up navigation and the shared sidebar.

Run with `make run` (or `streamlit run app.py`). Each page lives in pages/ and reads like a
description of its UI: widgets -> one msli_core call -> render.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages import state

st.set_page_config(page_title="MS-LI Lab", page_icon="🧩", layout="wide")

ROOT = Path(__file__).resolve().parent
PAGE_SPECS = [  # (file, title, icon)
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/data.py", "Data", ":material/table_chart:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/explain.py", "Explain", ":material/lightbulb:"),
    ("pages/latency.py", "Latency", ":material/timer:"),
    ("pages/whatif.py", "What-if", ":material/calculate:"),
]
# TEMPORARY while the pages are written one by one: list only those that exist.
PAGES = [
    st.Page(path, title=title, icon=icon, default=path.endswith("home.py"))
    for path, title, icon in PAGE_SPECS
    if (ROOT / path).exists()
]

current = st.navigation(PAGES)
state.render_sidebar()
current.run()
