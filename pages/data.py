"""Data: choose a dataset (bundled sample, upload, local path, official MovieLens download), then see
its statistics, validation notes and four charts."""

from __future__ import annotations

import streamlit as st

from msli_core import viz
from msli_core.data import sources
from msli_core.data.audience import app_user
from msli_core.errors import MsliError
from pages import forms, state, widgets

widgets.enter_through_app(__file__)

SOURCES = ("Bundled sample", "Generate synthetic", "Upload files", "Local path", "Download MovieLens")

st.title("Data")
st.markdown(
    "Every number in the lab uses one protocol: each rating is an implicit interaction, each user's events "
    "are sorted by time, the **last** event is the test target and the second-to-last the validation "
    "target, and ranking is over **all** items. The bundled sample is synthetic MovieLens-format data with "
    "planted interest phases, so explanations can be checked against the truth."
)

source = st.radio("Where the data comes from", SOURCES, horizontal=True, key="data_source")

min_rating, k_core, column_map = forms.data_filters()
filters, filter_note = sources.filters(min_rating, k_core)
if column_map and source not in ("Upload files", "Local path"):
    st.caption(
        f"The column boxes are not used for “{source}”: they apply only to an interactions table loaded with "
        "“Upload files” or “Local path”."
    )


def _keep(data, label: str) -> None:
    """Make ``data`` this session's dataset and say so."""
    state.set_dataset(data, label + (f" ({filter_note})" if filter_note else ""))
    st.success(
        f"Loaded {state.dataset_label()}: {data.n_users:,} users, {data.n_items:,} items, "
        f"{data.n_interactions:,} interactions.",
        icon=":material/check_circle:",
    )


try:
    if source == "Bundled sample":
        st.caption(
            f"`{state.sample_data_dir()}`: synthetic, MovieLens latest-small layout, with ground truth."
        )
        label = (
            "Reload the bundled sample"
            if state.dataset_label().startswith("bundled")
            else "Use the bundled sample"
        )
        if st.button(
            label + (" with the filters" if filter_note else ""), key="data_load_sample", type="primary"
        ):
            if filters["min_rating"] is None and not filters["k_core"]:
                with app_user():  # as every load here (app.py runs pages in it; sources' calls are in it)
                    state.use_bundled_sample()
                _keep(state.dataset(), state.dataset_label())
            else:
                with st.spinner("Reading the bundled sample…"):
                    folder = state.sample_data_dir()
                    _keep(*sources.load_folder(folder, "bundled sample (synthetic)", **filters))
    elif source == "Generate synthetic":
        from msli_core.data.synth import SynthConfig

        default = SynthConfig()  # the bundled sample's settings
        st.caption(
            "The project's generator (`msli data synth`): users move through interest phases (about one "
            f"every {default.phase_events:.0f} events), with Zipf item popularity, skewed activity (at "
            f"least {default.min_events} events each) and noise; the phase behind every event is recorded, "
            "so the Explain page can check its explanations. The same settings and seed give the same data."
        )
        synth = forms.synth_settings(default)
        if st.button("Generate and load", key="data_generate", type="primary"):
            bar = widgets.LiveProgress("Generating")
            data, label = sources.generate(synth, filters, progress=bar)
            bar.done("generated")
            _keep(data, label)
    elif source == "Upload files":
        uploads = st.file_uploader(
            "An official MovieLens zip, or its files (u.data + u.item, ratings.dat + movies.dat, "
            "ratings.csv + movies.csv), or one interactions CSV/TSV/Parquet",
            accept_multiple_files=True,
            key="data_upload",
        )
        if st.button("Load the uploaded files", key="data_load_upload", type="primary", disabled=not uploads):
            with st.spinner("Reading the uploaded files…"):
                files = [(upload.name, upload.getvalue()) for upload in uploads]
                _keep(*sources.load_uploads(files, column_map=column_map, **filters))
    elif source == "Local path":
        path = st.text_input(
            "A folder, an official zip or an interactions file on the machine running the app",
            key="data_path",
            placeholder="/data/ml-1m",
        )
        if st.button("Load this path", key="data_load_path", type="primary", disabled=not path.strip()):
            with st.spinner("Reading the path…"):
                _keep(*sources.load_path(path, column_map=column_map, **filters))
    else:
        from msli_core.data import MOVIELENS_NAMES

        name = st.selectbox(
            "Official MovieLens archive (GroupLens: downloaded for you, checksum-verified, "
            "never redistributed)",
            MOVIELENS_NAMES,
            key="data_movielens",
            format_func=lambda n: f"{n} · {sources.ARCHIVE_SIZES.get(n, '')}",
        )
        if st.button(f"Download and load {name}", key="data_fetch", type="primary"):
            bar = widgets.LiveProgress(f"Downloading {name}")
            folder = sources.fetch(name, progress=bar)
            bar.done(f"{name} downloaded and verified")
            with st.spinner(f"Reading {name}…"):
                _keep(*sources.load_folder(folder, name, **filters))
except MsliError as err:
    widgets.show_error(err)

# ------------------------------------------------------------------------------------ the loaded data
with app_user():  # the bundled sample, loaded here when nothing else was
    data = state.dataset()
summary = state.for_dataset("summary", lambda d: d.summary())
st.subheader(f"Loaded: {state.dataset_label()}")
c = st.columns(5)
c[0].metric("Users", f"{summary['users']:,}")
c[1].metric("Items", f"{summary['items']:,}")
c[2].metric("Interactions", f"{summary['interactions']:,}")
c[3].metric("Density", f"{summary['density']:.2%}")
c[4].metric("Median history (events)", f"{summary['history_length_median']:g}")
st.caption(sources.summary_caption(summary))
notes = summary["validation"]
if notes == ["ok"]:
    st.success(
        "Validation: every row passed; nothing was dropped or repaired.", icon=":material/check_circle:"
    )
else:
    st.info("Validation notes (what was dropped or repaired, and by which rule):\n\n- " + "\n- ".join(notes))
if note := state.refused_models_note():
    st.warning(note)

figures = state.for_dataset("data_figures", viz.data_figures)
left, right = st.columns(2)
for i, (key, fig) in enumerate(figures):
    with left if i % 2 == 0 else right:
        widgets.chart(key, fig)

with st.expander("Item table (first 200 rows)"):
    st.dataframe(
        state.for_dataset("items_preview", lambda d: d.items.iloc[1:201].reset_index()),
        hide_index=True,
        key="data_items_table",
    )
