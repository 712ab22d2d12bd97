"""Train: choose models and settings, train with a live progress bar and curves, compare the trained
models (table, quality vs K, quality vs latency), download a model as a zip or load one back."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from msli_core import kinds, viz
from msli_core import trained as trained_models
from msli_core.data.audience import app_user
from msli_core.errors import MsliError
from msli_core.models.registry import load_zip
from msli_core.train import TrainSettings
from pages import forms, state, widgets

widgets.enter_through_app(__file__)

st.title("Train")
st.markdown(
    "Train MS-LI at several segment counts next to the models it is measured against: a two-tower model "
    "(one user vector), the cross-encoder (early interaction, the slow upper reference) and two simple "
    "baselines. Metrics are on each user's held-out **last** event, ranked against **all** items."
)
data = state.dataset()
st.caption(
    f"Training on **{state.dataset_label()}**: {data.n_users:,} users, {data.n_items:,} items, "
    f"{data.n_interactions:,} interactions."
)


def _paired_comparison(trained: dict) -> None:
    """Two models' NDCG@10 difference on the same test users, with its 95% bootstrap interval."""
    from msli_core.metrics import BOOTSTRAP_RESAMPLES
    from msli_core.quality import compare_ranks, comparison_sentence

    pair = trained_models.default_pair(trained)
    if pair is None:
        return
    names = trained_models.comparable(trained)
    with st.expander("Is a difference real? Compare two models on the same test users"):
        resamples = f"{BOOTSTRAP_RESAMPLES:,}"
        st.caption(
            f"Each user's held-out item is ranked by both models; users are resampled {resamples} times "
            "for the 95% interval of the difference in NDCG@10. The cross-encoder is left out here: its "
            "figure is a cascade over another model's top-100 (`msli quality` compares it with that first "
            "stage)."
        )
        c1, c2 = st.columns(2)
        first = c1.selectbox("Model", names, index=names.index(pair[0]), key="train_compare_model")
        others = [n for n in names if n != first]
        second = c2.selectbox(
            "against",
            others,
            index=others.index(pair[1]) if pair[1] in others else 0,
            key="train_compare_against",
        )
        if st.button("Compare", key="train_compare_go"):
            try:
                with st.spinner("Ranking every test user's held-out item with both models…"):
                    ranks = [state.held_out_ranks_cached(trained, n, data) for n in (first, second)]
                    reach = trained_models.closed_reach_note(trained[first], trained[second], data)
            except MsliError as err:
                st.error(str(err), icon=":material/error:")
            else:
                result = compare_ranks(first, ranks[0], second, ranks[1])
                kept = (trained[first].loaded, trained[second].loaded, result, reach)
                st.session_state["train_comparison"] = kept
        kept = st.session_state.get("train_comparison")  # (model, against, result, reach): while current
        if kept and kept[0] is trained[first].loaded and kept[1] is trained[second].loaded:
            (st.success if kept[2]["verdict"] in ("higher", "lower") else st.info)(
                comparison_sentence(kept[2])
            )
            if kept[3]:
                st.caption(f"What the closed slots can add, counted before training: {kept[3]}")


chosen_kinds, segment_counts, aggregation, dim, layers, epochs, seed, submitted = forms.train_form()

if submitted and not chosen_kinds:
    st.error("Choose at least one model to train.", icon=":material/error:")
elif submitted:
    jobs, errors = trained_models.plan_jobs(chosen_kinds, segment_counts, aggregation, dim, layers)
    st.session_state.setdefault("train_errors", []).extend(errors)
    from msli_core.train import train

    for i, (name, kind, config) in enumerate(jobs, start=1):
        st.markdown(f"**{i}/{len(jobs)} · {name}**")
        live = widgets.LiveProgress(
            f"Training {name}",
            charts=(
                ("step", "loss", "training loss per step"),
                ("epoch", "valid_NDCG@10", "validation NDCG@10"),
            ),
        )
        try:
            settings = TrainSettings.for_kind(kind, epochs=int(epochs), seed=int(seed))
            result = train(data, kind, settings, config, progress=live)
        except MsliError as err:  # kept for after the rerun below, which clears this run's output
            st.session_state.setdefault("train_errors", []).append(f"{name}: {err}")
            continue
        ndcg = result.metrics.get("NDCG@10", float("nan"))
        live.done(f"{name}: test NDCG@10 {ndcg:.4f} in {result.seconds:.1f} s")
        state.add_trained(name, result, data)  # a renamed or replaced model, a failed save: notes below
    st.rerun()  # draw the results below from session state (the live charts have served their purpose)

# ------------------------------------------------------------------------------------------ results
for message in st.session_state.pop("train_errors", []):
    st.error(message, icon=":material/error:")
for kind, message in dict.fromkeys(state.take_page_notes("train")):  # each sentence once
    (st.warning if kind == "warning" else st.info)(message)
trained = state.usable_models()
if note := state.refused_models_note():
    st.warning(note)
if not trained:
    st.info("No model trained on this dataset yet: choose models above and press **Train**.")
else:
    st.subheader("Comparison")
    table = pd.DataFrame([trained_models.model_row(m) for m in trained.values()])
    st.dataframe(
        trained_models.shown_table(table),
        hide_index=True,
        key="train_table",
        column_config={
            **{
                metric: st.column_config.NumberColumn(format="%.4f") for metric in ("NDCG@10", "HR@10", "MRR")
            },
            "training s": st.column_config.NumberColumn(format="%.1f"),
            "parameters": st.column_config.NumberColumn(format="localized"),
        },
    )
    if honest := trained_models.ladder_note(trained):
        st.info(honest, icon=":material/balance:")
    _paired_comparison(trained)
    st.caption(
        "Test metrics by full ranking over all items (a cross-encoder over a large catalog is evaluated as a "
        "labelled cascade, see *evaluation*). NDCG@10 rewards putting the held-out item near the top; HR@10 "
        "counts how often it is in the top 10; MRR averages 1/rank. Training time includes validation."
    )

    histories = {m.name: trained_models.curve_rows(m) for m in trained.values() if m.history}
    if histories:
        widgets.chart("training", viz.training_curves(histories))
    if any(kinds.is_late_interaction(m.loaded.kind) for m in trained.values()):
        widgets.chart("quality_vs_k", viz.quality_vs_segments(table))
    points = state.quality_latency_points(trained)
    if points:
        widgets.chart("quality_vs_latency", viz.quality_vs_latency(points))
    else:
        st.info(
            "Run a sweep on the **Latency** page to place every trained model on a quality-vs-latency chart "
            "(NDCG@10 against its measured online p50)."
        )

    st.subheader("Download a trained model")
    d1, d2 = st.columns([2, 1])
    chosen = d1.selectbox("Model", list(trained), key="train_download_model")
    payload = state.model_zip_cached(trained[chosen], data)
    d2.download_button(
        "Download as zip",
        payload,
        file_name=f"{trained_models.slug(chosen)}.zip",  # ASCII: a name may hold "·" or a path label
        mime="application/zip",
        key="train_download",
    )
    d1.caption(
        f"A folder with config.json (settings, metrics, the dataset's fingerprint) and model.safetensors "
        f"(weights, never a pickle); {len(payload) / 1024:,.0f} KiB."
    )

st.subheader("Load a model")
upload = st.file_uploader(
    "A model zip downloaded from this page (or a zipped `msli train --out` folder)",
    type=["zip"],
    key="train_upload",
)
if st.button("Load this model", key="train_load", disabled=upload is None):
    try:
        with app_user():  # its refusals name the Train page, not msli train (app.py runs pages in it too)
            loaded = load_zip(upload.name, upload.getvalue(), data=data)
    except MsliError as err:
        widgets.show_error(err)
    else:
        name = state.add_loaded(upload.name, loaded, data)
        st.toast(f"Loaded {name}; it is listed above and usable on the Explain page.")
        st.rerun()
