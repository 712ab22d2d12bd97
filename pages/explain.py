"""Explain: pick a model and a user; see their history by segment, the top-n recommendations, the exact
per-segment contributions, the items inside each segment, the deletion check, the ground truth on
synthetic data, a PCA map of the item table, and one recommendation's score told in numbers."""

from __future__ import annotations

import streamlit as st

from msli_core import explain_view, viz
from msli_core.errors import MsliError
from pages import forms, state, widgets

widgets.enter_through_app(__file__)

STAGES = {
    "at the held-out test event (shows the truth)": "test",
    "after the whole history": None,
}

st.title("Explain")
st.markdown(
    "Why was an item recommended? In MS-LI every score is **exactly** the sum of one contribution per "
    "segment of the user's history, `y(c) = Σ_k c_k(c)`; inside a segment, the attention-pooling weights "
    "say which items formed its vector. Nothing here is post-hoc: the numbers are the model's own."
)

data = state.dataset()
candidates = state.explainable_models()
if note := state.refused_models_note():
    st.warning(note)
if not candidates:
    st.info(
        "Train an MS-LI or two-tower model on this dataset first (Train page): explanations need a "
        "late-interaction model."
    )
    st.page_link("pages/train.py", label="Open Train", icon=":material/model_training:")
    st.stop()

model_name, user_id, top_n, stage_label = forms.explain_picker(
    data, list(candidates), list(STAGES), explain_view.MAX_USERS_IN_PICKER
)
stage = STAGES[stage_label]

try:
    ex = state.explanation(model_name, user_id, top_n, stage)
except MsliError as err:
    widgets.show_error(err)
    st.stop()

labels = explain_view.segment_labels(ex)
segments, recs, held, deletion = ex["segments"], ex["recommendations"], ex.get("held_out"), ex["deletion"]
m = st.columns(4)
used = max(g["end"] for g in segments) - min(g["start"] for g in segments) if segments else 0
m[0].metric(
    "Events used",
    f"{used:,} of {ex['history_length']:,}",
    help="The events in the segments the model reads; older ones (grey below) are not used.",
)
m[1].metric("Non-empty slots", f"{len(segments)}")
if held:
    m[2].metric("Held-out item's rank", f"{held['rank'] + 1:.0f} of {data.n_items:,}")
if deletion.get("applicable"):
    m[3].metric(
        f"Deletion check passed, top {len(recs)}",
        f"{deletion['top_larger_fraction']:.0%}",
        help="For each recommendation: removing its top-contributing segment lowers its score more than "
        "removing a random other segment (the explanation is faithful).",
    )

events, target = explain_view.timeline(data, ex)
widgets.chart("timeline", viz.history_timeline(events, labels, target))

st.subheader(f"Top {len(recs)} recommendations")
st.dataframe(
    explain_view.recommendation_table(ex, labels),
    hide_index=True,
    key="explain_recs",
    column_config={"score": st.column_config.NumberColumn(format="%.4f")},
)
widgets.chart("heatmap", viz.contribution_heatmap(*explain_view.heatmap_inputs(ex, labels)))

if truth := explain_view.ground_truth_text(ex, labels):
    st.info(truth)
if explain_view.has_truth(ex):
    with st.expander("Explanation accuracy over all users (synthetic ground truth)"):
        st.caption(
            "For every evaluated user: is the segment that contributes most to the held-out item the one "
            "holding the interest that truly generated it? Compared with picking a non-empty segment at "
            "random (chance) and with always picking the newest segment (recency)."
        )
        accuracy = state.explanation_accuracy_cached(model_name)
        if accuracy is None and st.button("Measure it (one pass over all users)", key="explain_accuracy"):
            accuracy = state.explanation_accuracy_cached(model_name, compute=True)
        if accuracy is not None and not accuracy["users"]:
            st.info(
                "No evaluated user has two or more non-empty slots with the held-out item's interest, so "
                "there is no choice of segment to check: the histories here fit in the model's window. "
                "Try a dataset with longer histories (the bundled sample has many).",
                icon=":material/info:",
            )
        elif accuracy is not None:
            a = st.columns(4)
            a[0].metric(
                "Top segment is right",
                f"{accuracy['accuracy']:.0%}",
                help=f"95% interval {explain_view.interval_text(accuracy['accuracy_interval'])} "
                f"(Wilson, {accuracy['users']:,} users): with a few dozen users, a few points either way "
                "is noise. The table below also counts the users with a closed segment alone: the window "
                "and its newest events overlap, which raises chance for the others.",
            )
            a[1].metric("Chance", f"{accuracy['chance']:.0%}")
            a[2].metric("Newest segment", f"{accuracy['newest_segment']:.0%}")
            a[3].metric("Users counted", f"{accuracy['users']:,}")
            percent = st.column_config.NumberColumn(format="percent")
            st.dataframe(
                explain_view.accuracy_variants(accuracy),
                hide_index=True,
                key="explain_accuracy_table",
                column_config={"top segment right": percent, "chance": percent,
                               "× chance": st.column_config.NumberColumn(format="%.2f")},
            )  # fmt: skip
            st.caption(explain_view.accuracy_note(accuracy))

left, right = st.columns(2)
with left:
    widgets.chart("within_segment", viz.within_segment_weights(explain_view.segment_weights(ex, labels)))
with right:
    if deletion.get("applicable"):
        widgets.chart("deletion", viz.deletion_check(explain_view.deletion_rows(ex)))
        st.caption(
            f"Mean score drop: {deletion['mean_drop_top']:.3f} without the top segment against "
            f"{deletion['mean_drop_random']:.3f} without a random other one. " + " ".join(ex.get("notes", []))
        )
    else:
        st.info(f"Deletion check not applicable: {deletion.get('reason', 'one segment only')}.")

model = state.models()[model_name].loaded.model
widgets.chart("item_map", viz.item_map(**explain_view.item_map_inputs(model, data, ex, labels)))

st.subheader("One recommendation, from history to score")
rank = st.selectbox(
    "Recommendation",
    range(len(recs)),
    format_func=lambda r: f"{r + 1}. {recs[r]['title']}",
    key="explain_path_rank",
)
path = explain_view.score_path(ex, rank)
number = st.column_config.NumberColumn(format="%.4f")
st.dataframe(
    path,
    hide_index=True,
    key="explain_path",
    column_config={"s_k = ⟨u_k, e_c⟩": number, "a_k": number, "c_k": number,
                   "share of score": st.column_config.NumberColumn(format="percent")},
)  # fmt: skip
st.markdown(explain_view.score_story(ex, rank, path))
