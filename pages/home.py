"""Home: what MS-LI is in one diagram, a 3-step quick start, and the state of this session."""

from __future__ import annotations

import streamlit as st

from msli_core import trained as trained_models
from msli_core import viz
from msli_core.errors import MsliError
from msli_core.serving.report import headline_speedup
from pages import state, widgets

widgets.enter_through_app(__file__)

st.title("MS-LI Lab")
st.markdown(
    "**Multi-segment late interaction** makes a large-model recommender fast: the user's history is cut "
    "into *K* segments, each encoded **once** by the expensive model and cached; items are encoded "
    "**offline**; a request only runs a cheap interaction between the *K* cached segment vectors and the "
    "candidates. Every score is an exact sum of per-segment contributions, so each recommendation "
    "explains itself."
)

STAGES_DOT = """
digraph msli {
  rankdir=LR; node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];
  subgraph cluster_off { label="offline · when the catalog changes · O(N)"; style=dashed; color="#888";
    items [label="item catalog\\n(id, genres, year)", fillcolor="#eef"];
    ienc [label="item encoder", fillcolor="#ccf"];
    table [label="item table E\\n(N × d)", fillcolor="#eef"];
    items -> ienc -> table; }
  subgraph cluster_near { label="nearline · on a new event · O(L_max·d + d²) per layer";
    style=dashed; color="#888";
    hist [label="history h = i₁ … i_L\\nwindow + K-1 closed segments", fillcolor="#efe"];
    senc [label="causal encoder\\n(the large model)\\nnew position of the window;\\na closed segment once",
          fillcolor="#cfc"];
    cache [label="segment cache\\nu₁ … u_K (K × d)", fillcolor="#efe"];
    hist -> senc -> cache; }
  subgraph cluster_on { label="online · per request · O(N K d)"; style=dashed; color="#888";
    li [label="late interaction\\ns_k(c) = ⟨u_k, e_c⟩\\ny(c) = Σ_k a_k(c) s_k(c)", fillcolor="#fec"];
    topk [label="top-k with\\nper-segment contributions", fillcolor="#ffe"];
    li -> topk; }
  table -> li; cache -> li;
}
"""
speedup = headline_speedup(state.bench_rows())
if speedup:
    where = state.bench_meta().get("cpu", "this machine")
    whose = (f"the bundled sweep, measured on *{where}*; run your own on the Latency page"
             if state.bench_is_bundled() else f"this session's sweep on *{where}*")  # fmt: skip
    st.success(
        f"**MS-LI is {viz.ratio_text(speedup['ratio'])} faster than the cross-encoder**: "
        f"{viz.ms_text(speedup['msli_ms'])} against {viz.ms_text(speedup['cross_ms'])} per request "
        f"(K = {speedup['segments']}, N = {speedup['candidates']:,} candidates, L = {speedup['history']} "
        f"events, p50 wall clock; {whose}).",
        icon=":material/speed:",
    )
st.graphviz_chart(STAGES_DOT, width="stretch")
st.caption(
    "The three stages of MS-LI. Where the latency goes: the cross-encoder (early interaction) runs the "
    "large model over [history ; candidate] for every candidate at request time, O(N·(L²d + Ld²)). "
    "MS-LI moves that work to the nearline stage (once per new event: the window's newest position, and "
    "each closed segment once, when it closes) and leaves only two (K×d)·(d×N) products online."
)

budget_shape = dict(history=200, segments=8, dim=64, layers=2, candidates=1000)
try:  # a broken calibration file is a sentence here, not a crashed page
    budget_chart = state.home_latency_budget(**budget_shape)
    hardware_name = state.hardware_here().name
except MsliError as err:
    widgets.show_error(err)
else:
    widgets.chart("home_budget", budget_chart)
    st.caption(
        f"Shapes: L = {budget_shape['history']} events, K = {budget_shape['segments']} segments, "
        f"d = {budget_shape['dim']}, {budget_shape['layers']} layers, "
        f"N = {budget_shape['candidates']:,} candidates, float32, torch, on *{hardware_name}*. "
        "Try other sizes on the What-if page."
    )

st.subheader("Quick start")
c1, c2, c3 = st.columns(3)
with c1:
    st.markdown(
        "**1 · Data**  \nThe bundled synthetic sample is loaded already. Upload MovieLens or your own "
        "interactions on the Data page."
    )
    st.page_link("pages/data.py", label="Open Data", icon=":material/table_chart:")
with c2:
    st.markdown(
        "**2 · Train**  \nTrain MS-LI next to a two-tower model, the cross-encoder and simple baselines; "
        "compare NDCG@10 across segment counts (fewer epochs and a smaller width train faster)."
    )
    st.page_link("pages/train.py", label="Open Train", icon=":material/model_training:")
with c3:
    st.markdown(
        "**3 · Explain and measure**  \nSee which history segment drove each recommendation, then "
        "time every stage and ask what-if questions."
    )
    st.page_link("pages/explain.py", label="Open Explain", icon=":material/lightbulb:")

st.subheader("This session")
data = state.dataset()
trained = state.usable_models()
st.markdown(f"**Dataset:** {state.dataset_label()}")
m1, m2, m3, m4 = st.columns(4)
m1.metric("Users · items", f"{data.n_users:,} · {data.n_items:,}")
m2.metric("Models trained", len(trained))
best = trained_models.best_model(trained)  # the highest finite test NDCG@10 (a NaN one is not measured)
m3.metric(
    "Best test NDCG@10", f"{best.metrics['NDCG@10']:.4f}" if best else "–", help=best.name if best else None
)
m4.metric("Latency rows measured", len(state.bench_rows()))
if honest := trained_models.ladder_note(trained):
    st.caption(honest)
if note := state.refused_models_note():
    st.warning(note)

st.subheader("Workspace")
saved = state.workspace_contents()
if saved["problem"] is None:
    st.markdown(
        f"Models you train and latency sweeps you run are kept in `{saved['path']}` "
        f"({saved['models']} model(s), {saved['sweeps']} sweep(s) now), so a reload or a new tab finds them."
    )
else:  # the one sentence says what is wrong and how to fix it; nothing claims they are kept
    st.warning(saved["problem"])
if (saved["models"] or saved["sweeps"]) and st.button("Clear the workspace", key="home_clear_workspace"):
    removed = state.clear_workspace()
    st.success(f"Removed {removed} saved model(s) and sweep(s); this session keeps what it shows.")
for problem in state.workspace_problems():
    if problem != saved["problem"]:
        st.warning(problem)
