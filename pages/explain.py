"""Explain: pick a model and a user; see their history by segment, the top-n recommendations, the exact
per-segment contributions, the items inside each segment, the deletion check, the ground truth on
synthetic data, a PCA map of the item table, and one recommendation's score told in numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from msli_core import viz
from msli_core.errors import MsliError
from pages import state

STAGES = {
    "at the held-out test event (shows the truth)": "test",
    "after the whole history": None,
}
MAX_USERS_IN_PICKER = 20_000

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

lengths = state.for_dataset("user_lengths", lambda d: np.array([len(s) for s in d.sequences[1:]]))
c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
model_name = c1.selectbox("Model", list(candidates), key="explain_model")
if data.n_users <= MAX_USERS_IN_PICKER:
    # the longest history by default: closed segments lie before the last L_max events, so a long
    # history fills the most slots and makes the richest picture
    default_user = int(np.argmax(lengths))
    user_id = c2.selectbox(
        "User (type to search)",
        data.user_ids[1:].tolist(),
        index=default_user,
        key="explain_user",
        format_func=lambda uid: f"user {uid} · {lengths[data.user_index[uid] - 1]} events",
    )
else:
    user_id = c2.text_input(
        "User id (as written in the data file)", value=str(data.user_ids[1]), key="explain_user"
    )
top_n = c3.slider("Top n", 3, 20, 10, key="explain_top_n")
stage = STAGES[c4.radio("Recommend", list(STAGES), key="explain_stage")]

try:
    ex = state.explanation(model_name, user_id, top_n, stage)
except MsliError as err:
    state.show_error(err)
    st.stop()

user = data.internal_user(user_id)
segments = ex["segments"]
recs = ex["recommendations"]
labels = {
    s["index"]: (
        f"open window (events {s['start']}–{s['end'] - 1})"
        if s.get("role") == "open window"
        else viz.segment_label(s["index"], s["start"], s["end"])
    )
    for s in segments
}
has_truth = bool(segments) and "true_phases" in segments[0]
if has_truth:  # on synthetic data, name each segment's true phase next to it
    labels = {
        s["index"]: f"{labels[s['index']]} · phase {np.bincount(s['true_phases']).argmax()}" for s in segments
    }
held = ex.get("held_out")

m = st.columns(4)
m[0].metric("Events used", f"{ex['history_length']:,}")
m[1].metric("Non-empty slots", f"{len(segments)}")
if held:
    m[2].metric("Held-out item's rank", f"{held['rank'] + 1:.0f} of {data.n_items:,}")
deletion = ex["deletion"]
if deletion.get("applicable"):
    m[3].metric("Top segment removal hurts more", f"{deletion['top_larger_fraction']:.0%} of items")

# ------------------------------------------------------------------------------------------ timeline
history_ts = data.timestamps[user][: ex["history_length"]]
segment_of = np.full(ex["history_length"], -1)
for s in segments:
    segment_of[s["start"] : s["end"]] = s["index"]
titles = data.items["title"].to_numpy()
events = pd.DataFrame(
    {
        "position": np.arange(ex["history_length"]),
        "timestamp": history_ts,
        "title": titles[data.sequences[user][: ex["history_length"]]],
        "segment": segment_of,
    }
)
target = None
if held:
    target = {"timestamp": int(data.timestamps[user][ex["history_length"]]), "title": held["title"]}
state.chart("timeline", viz.history_timeline(events, labels, target))

# --------------------------------------------------------------------------------- recommendations
st.subheader(f"Top {len(recs)} recommendations")
rec_table = pd.DataFrame(
    {
        "rank": np.arange(1, len(recs) + 1),
        "title": [r["title"] for r in recs],
        "genres": [r["genres"] for r in recs],
        "score": [r["score"] for r in recs],
        "top segment": [labels.get(r["top_segment"], "–") for r in recs],
        "held-out item": ["✓" if held and r["item"] == held["item"] else "" for r in recs],
    }
)
st.dataframe(
    rec_table,
    hide_index=True,
    key="explain_recs",
    column_config={"score": st.column_config.NumberColumn(format="%.4f")},
)

order = [s["index"] for s in segments]  # oldest first
contributions = np.array([[r["contributions"][k] for r in recs] for k in order])  # (K', n)
state.chart(
    "heatmap",
    viz.contribution_heatmap(
        contributions, [r["score"] for r in recs], [r["title"] for r in recs], [labels[k] for k in order]
    ),
)

# ----------------------------------------------------------------------------------- ground truth
if held:
    top_seg = next((s for s in segments if s["index"] == held["top_segment"]), None)
    lines = [
        f"The held-out item **{held['title']}** is ranked **{held['rank'] + 1:.0f}**; its largest "
        f"contribution comes from **{labels.get(held['top_segment'], 'no segment')}**."
    ]
    if "true_phase" in held and top_seg is not None:
        match = top_seg["dominant_interest"] == held["true_interest"] and held["true_interest"] >= 0
        lines.append(
            f"Ground truth: it was generated by interest **{held['true_interest']}** in phase "
            f"**{held['true_phase']}** of this user; the top segment's dominant interest is "
            f"**{top_seg['dominant_interest']}** (its events come from phases "
            f"{sorted(set(top_seg['true_phases']))}) → "
            + ("**the explanation points at the right part of the history.**" if match else "not a match.")
            + (" (Interest −1 is noise: no segment can be right.)" if held["true_interest"] < 0 else "")
        )
    st.info("\n\n".join(lines))

if has_truth:
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
            a[0].metric("Top segment is right", f"{accuracy['accuracy']:.0%}")
            a[1].metric("Chance", f"{accuracy['chance']:.0%}")
            a[2].metric("Newest segment", f"{accuracy['newest_segment']:.0%}")
            a[3].metric("Users counted", f"{accuracy['users']:,}")
            rows = [
                {
                    "variant": variant,
                    "top segment right": accuracy.get(f"{prefix}accuracy", float("nan")),
                    "chance": accuracy.get(f"{prefix}chance", float("nan")),
                    "users": accuracy.get(f"{prefix}users") if prefix else accuracy["users"],
                }
                for variant, prefix in (
                    ("any segment of the item's interest counts", ""),
                    ("strict: only the segment holding most of it", "strict_"),
                    ("returns only: the newest segment is wrong", "return_"),
                )
            ]
            variants = pd.DataFrame(rows)
            variants["× chance"] = variants["top segment right"] / variants["chance"]
            st.dataframe(
                variants,
                hide_index=True,
                key="explain_accuracy_table",
                column_config={
                    "top segment right": st.column_config.NumberColumn(format="percent"),
                    "chance": st.column_config.NumberColumn(format="percent"),
                    "× chance": st.column_config.NumberColumn(format="%.2f"),
                },
            )
            st.caption(
                f"Left out: {accuracy['skipped_noise']} users whose held-out item is noise and "
                f"{accuracy['skipped_unanswerable']} whose segments hold none of its interest, and "
                f"{accuracy.get('skipped_one_slot', 0)} with a single non-empty slot (nothing to choose "
                "between). The strict "
                "variant has exactly one right segment; the returns-only one keeps users whose held-out item "
                "comes back to an older interest, where recency alone is wrong."
            )

# ---------------------------------------------------------------------------------- within segment
left, right = st.columns(2)
with left:
    state.chart(
        "within_segment",
        viz.within_segment_weights(
            [
                {
                    "index": s["index"],
                    "label": labels[s["index"]],
                    "titles": s["titles"],
                    "weights": s["weights"],
                }
                for s in segments
            ]
        ),
    )
with right:
    if deletion.get("applicable"):
        rows = [
            {
                "title": r["title"],
                "score": r["score"],
                "without_top": r["score"] - r["deletion"]["drop_top"],
                "without_random": r["score"] - r["deletion"]["drop_random"],
            }
            for r in recs
        ]
        state.chart("deletion", viz.deletion_check(rows))
        st.caption(
            f"Mean score drop: {deletion['mean_drop_top']:.3f} without the top segment against "
            f"{deletion['mean_drop_random']:.3f} without a random other one. " + " ".join(ex.get("notes", []))
        )
    else:
        st.info(f"Deletion check not applicable: {deletion.get('reason', 'one segment only')}.")

# ---------------------------------------------------------------------------------------- PCA map
item_vectors, vectors = state.segment_vectors(model_name, ex)
state.chart(
    "item_map",
    viz.item_map(
        item_vectors,
        titles.tolist(),
        vectors[order],
        [labels[k] for k in order],
        [state.internal_item(r["item"]) for r in recs],
        history=data.sequences[user][: ex["history_length"]],
    ),
)

# ------------------------------------------------------------------------------- one score, in numbers
st.subheader("One recommendation, from history to score")
rank = st.selectbox(
    "Recommendation",
    range(len(recs)),
    format_func=lambda r: f"{r + 1}. {recs[r]['title']}",
    key="explain_path_rank",
)
path = state.score_path(ex, rank, ex["aggregation"])
rec = recs[rank]
st.dataframe(
    path,
    hide_index=True,
    key="explain_path",
    column_config={
        "s_k = ⟨u_k, e_c⟩": st.column_config.NumberColumn(format="%.4f"),
        "a_k": st.column_config.NumberColumn(format="%.4f"),
        "c_k": st.column_config.NumberColumn(format="%.4f"),
        "share of score": st.column_config.NumberColumn(format="percent"),
    },
)
terms = " ".join(f"{'+' if c >= 0 else '−'} {abs(c):.4f}" for c in path["c_k"])
lead = path.loc[path["c_k"].idxmax()]
HOW_WEIGHED = {
    "attention": "the attention aggregation weighs it by a_k (a softmax over segments, per item) "
    "into c_k = a_k·s_k",
    "sum": "the sum aggregation weighs it by a learned per-segment weight a_k into c_k = a_k·s_k",
    "max": "the max aggregation gives the whole score to the segment with the largest s_k "
    "(a_k = 1, others 0)",
    "mlp": "the mlp aggregation passes u_k ⊙ e_c through a small network and weighs the result into c_k "
    "(so c_k is not a multiple of s_k and a_k is not shown)",
}
heaviest = str(lead["heaviest items (pooling weight)"]).split(";")[0]
st.markdown(
    f"**{rec['title']}**: each segment's items are pooled into a vector u_k (weights in brackets); the "
    f"item's vector e_c meets each u_k in a dot product s_k; {HOW_WEIGHED.get(ex['aggregation'], '')}. "
    f"Score = {terms.lstrip('+ ')} = **{path['c_k'].sum():.4f}** (the model's score: {rec['score']:.4f}). "
    f"Segment {int(lead['segment'])} (events {lead['events']}) gives the most, {lead['share of score']:.0%} "
    f"of the score, mostly through {heaviest}."
)
