"""MS-LI Lab: the Streamlit entry point. It only sets up navigation and the shared sidebar.

Run with `make run` (or `streamlit run app.py`). Each page lives in pages/ and reads like a
description of its UI: widgets -> one msli_core call -> render.

Everything the app runs (navigation, the sidebar, every page, the data and models they load, the
bundled sample, the workspace) runs inside ``audience.app_user()``, so an error sentence names what the
app's user can do (a page's box, the Train page) and never a CLI flag or an environment variable
(:mod:`msli_core.data.audience`); a refusal no page caught is shown as its sentence, not a traceback.
"""

from __future__ import annotations

import streamlit as st

from msli_core.data.audience import app_user
from msli_core.errors import MsliError
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

with app_user():
    current = st.navigation(PAGES)
    widgets.open_deep_link()
    widgets.keep_widget_state()
    widgets.render_sidebar()
    try:
        current.run()
    except MsliError as err:  # bad input no page caught (the bundled sample does not load): its sentence
        widgets.show_error(err)
