"""The Streamlit pieces every page shares: an error as its sentence, a chart with its caption, a live
progress bar with curves, the sidebar, and the widgets whose values survive a visit to another page."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from msli_core.errors import MsliError
from msli_core.progress import Throttle, eta_seconds
from msli_core.viz import HOW_TO_READ, human_number
from pages import state

# Widgets whose values survive a visit to another page (Streamlit forgets the state of widgets that were
# not drawn in the last run). Only widgets whose options never change are listed, so a kept value is
# always valid; buttons and file uploaders cannot be set and are not listed.
KEPT_WIDGETS = (
    "data_source", "data_min_rating", "data_k_core", "data_col_user", "data_col_item", "data_col_timestamp",
    "data_col_rating", "data_path", "data_movielens", "data_synth_users", "data_synth_items",
    "data_synth_interactions", "data_synth_noise", "data_synth_seed",
    "train_kinds", "train_segments", "train_aggregation", "train_dim", "train_layers", "train_epochs",
    "train_seed",
    "explain_top_n", "explain_stage",
    "latency_segments", "latency_candidates", "latency_history", "latency_backends", "latency_models",
    "latency_budget", "latency_cross_budget", "latency_passes", "latency_calibrate", "latency_dim",
    "latency_layers",
    "whatif_hardware", "whatif_tflops", "whatif_gbps", "whatif_overhead", "whatif_history", "whatif_segments",
    "whatif_dim", "whatif_layers", "whatif_candidates", "whatif_dtype", "whatif_backend",
)  # fmt: skip


THROUGH_APP = "_msli_through_app"  # session flag: app.py's navigation has run in this session
DEEP_LINK = "_msli_deep_link"  # the page a first request asked for, opened once app.py has run


def enter_through_app(page_file: str) -> None:
    """First line of every page. A fresh server that gets a deep link (``/latency``) as its very first
    request runs that page file on its own, with the ``pages/`` folder as navigation and without
    app.py's sidebar (streamlit#9624): hand the request to app.py, which opens the asked-for page."""
    if not st.session_state.get(THROUGH_APP):
        st.session_state[DEEP_LINK] = "pages/" + page_file.replace("\\", "/").rsplit("/", 1)[-1]
        st.switch_page("app.py")


def open_deep_link() -> None:
    """Called by app.py once its navigation exists: mark the session and open a pending deep link."""
    st.session_state[THROUGH_APP] = True
    target = st.session_state.pop(DEEP_LINK, None)
    if target:
        st.switch_page(target)


def keep_widget_state() -> None:
    """Called by app.py before a page runs: re-assigning a widget's key keeps its value across pages."""
    for key in KEPT_WIDGETS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def show_error(err: MsliError) -> None:
    st.error(str(err), icon=":material/error:")


def chart(key: str, fig, *, caption: str | None = None, widget_key: str | None = None) -> None:
    """Show a plotly figure with the sentence that says how to read it (msli_core.viz.HOW_TO_READ)."""
    st.plotly_chart(fig, width="stretch", key=widget_key or f"chart_{key}", config={"displaylogo": False})
    st.caption(caption or HOW_TO_READ.get(key, ""))


def render_sidebar() -> None:
    with st.sidebar:
        st.markdown("### This session")
        try:
            data = state.dataset()
        except MsliError as err:
            show_error(err)
            return
        st.caption(
            f"**Data:** {state.dataset_label()}  \n{data.n_users:,} users · {data.n_items:,} items · "
            f"{data.n_interactions:,} interactions"
        )
        trained = state.usable_models()
        st.caption(f"**Models trained:** {len(trained)}" + (f" ({', '.join(trained)})" if trained else ""))
        if state.bench_rows():
            st.caption(f"**Latency rows measured:** {len(state.bench_rows())}")


class LiveProgress:
    """A ProgressCallback drawing ``st.progress`` and live line charts of the numbers events carry.

    ``charts`` is a list of (x key, y key, title): every event whose ``metrics`` hold both keys adds a
    point to that chart. Streamlit repaints the placeholders in place while the core call runs, so the
    user sees the bar move and the curves grow without the script rerunning.
    """

    def __init__(
        self, label: str, charts: tuple[tuple[str, str, str], ...] = (), min_interval_s: float = 0.25
    ):
        self.label = label
        self.bar = st.progress(0.0, text=label)
        self.charts = charts
        self.points: list[list[dict]] = [[] for _ in charts]
        columns = st.columns(len(charts)) if charts else []
        self.slots = [col.empty() for col in columns]
        self.throttle = Throttle(min_interval_s)
        self.started = time.monotonic()

    def __call__(self, event) -> None:
        for points, (x, y, _title) in zip(self.points, self.charts, strict=True):
            if x in event.metrics and y in event.metrics:
                points.append({x: event.metrics[x], y: event.metrics[y]})
        if not self.throttle.due(event):
            return
        frac = event.fraction
        text = f"{self.label}: {event.message}".rstrip(": ")
        left = eta_seconds(time.monotonic() - self.started, frac)
        if left is not None and (frac or 0) < 1:
            text += f" · about {human_number(left, 's')} left"
        self.bar.progress(frac if frac is not None else 0.0, text=text)
        for slot, points, (x, _y, title) in zip(self.slots, self.points, self.charts, strict=True):
            if points:
                with slot.container():
                    st.caption(title)
                    st.line_chart(pd.DataFrame(points).set_index(x), height=200)

    def done(self, text: str) -> None:
        self.bar.progress(1.0, text=text)
