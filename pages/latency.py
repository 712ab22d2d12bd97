"""Latency: run a sweep (K, N, L, backend, models) with a progress bar, then see the serving ladder against
N, p50/p95 against K with the cross-encoder and the floors, the stage costs, torch vs ONNX Runtime,
incremental vs full nearline update, and download the rows as CSV."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from msli_core import viz
from msli_core.errors import MsliError
from msli_core.serving import report
from msli_core.serving.bench import headline
from pages import forms, state, widgets

widgets.enter_through_app(__file__)

st.title("Latency")
st.markdown(
    "Time every stage of one request (batch 1, one user) on this machine: warm-up, then each call timed "
    "on the wall clock; each figure is the median over the passes, thread counts fixed and recorded. The "
    "ladder: **full-forward** runs the encoder over the whole history on every request (what MS-LI "
    "avoids), **MS-LI** scores K cached segment vectors, the **two-tower** model one cached vector, and "
    "the **cross-encoder** a transformer pass per candidate. Latency hardly depends on the weights "
    "(only through how many candidates the online bound prunes), so the sweep builds fresh models of "
    "the chosen shapes (use the width and depth of a trained "
    "model to place it on the Train page's quality-vs-latency chart). The cross-encoder runs in the same "
    "sweep, at the same N, L, width and depth, capped by its own time budget."
)

settings = forms.latency_sweep_form()
if settings is not None:
    from msli_core.serving.bench import run_bench

    try:
        live = widgets.LiveProgress("Measuring")
        result = run_bench(settings, progress=live, note=state.warn_on("latency"))
    except MsliError as err:
        widgets.show_error(err)
    else:
        live.done(f"{len(result.rows)} rows in {viz.human_number(result.meta['seconds'], 's')}")
        state.set_bench(result)
        st.rerun()

for kind, message in dict.fromkeys(state.take_page_notes("latency")):  # e.g. a failed workspace save
    (st.warning if kind == "warning" else st.info)(message)
rows = state.bench_rows()
if not rows:
    st.info("No sweep yet in this session: choose the shapes above and press **Run the sweep**.")
    st.stop()

meta = state.bench_meta()
if state.bench_is_bundled():
    st.info(
        f"Showing the **bundled sweep**, measured on {meta.get('cpu', 'another machine')} "
        f"({str(meta.get('started_at', ''))[:10]}), not on this machine: press **Run the sweep** to measure "
        "here. It is there so that the charts have something real to show in the first minute.",
        icon=":material/inventory_2:",
    )
st.caption(report.sweep_caption(rows, meta))

summary = headline(rows, meta)
if summary:
    st.dataframe(
        pd.DataFrame({"comparison (shapes)": list(summary), "p50, wall clock": list(summary.values())}),
        hide_index=True,
        key="latency_headline",
    )

choices = report.chart_choices(rows)  # the shapes the K charts can be drawn at
if choices is None:
    st.warning(
        "The sweep has no MS-LI whole-catalog requests, so the charts against K cannot be drawn; include "
        "the msli model in the sweep's models to see them."
    )
    if report.has_encoder_size_rows(rows):  # measured for msli whatever the models picked
        widgets.chart("encoder_size", viz.latency_vs_encoder_size(rows))
    st.stop()
p1, p2, p3 = st.columns(3)
shown_n = p1.selectbox("Charts at N =", choices["candidates"], index=len(choices["candidates"]) - 1,
                       key="latency_show_n", format_func=lambda n: f"{n:,}")  # fmt: skip
shown_l = p2.selectbox("and L =", choices["history"], key="latency_show_l")
shown_backend = p3.selectbox("backend", choices["backends"], key="latency_show_backend")

try:
    widgets.chart("ladder", viz.serving_ladder(rows, shown_l, max(choices["segments"]), shown_backend))
    if choices["encoder_size"]:
        widgets.chart(
            "encoder_size",
            viz.latency_vs_encoder_size(rows),
            caption="Full-forward runs the encoder on every request, so its latency grows with the "
            "encoder; MS-LI and the two-tower model run it nearline (once per event, off the request "
            "path), so their request pays only the scoring of N items, which grows with the width alone. "
            "Dashed: the cost model's extrapolation from this machine's constants, not timed.",
        )
    widgets.chart("latency_vs_k", viz.latency_vs_segments(rows, shown_n, shown_l, shown_backend))
    widgets.chart("stage_costs", viz.stage_cost_bars(rows, shown_n, shown_l, shown_backend))
except MsliError as err:
    widgets.show_error(err)

left, right = st.columns(2)
with left:
    if choices["both_backends"]:
        widgets.chart("backends", viz.backend_comparison(rows))
    else:
        st.info("Include both backends in the sweep to compare torch with ONNX Runtime.")
with right:
    if choices["nearline_pair"]:
        widgets.chart("nearline", viz.nearline_update_comparison(rows))
    else:
        st.info("Include MS-LI in the sweep to compare incremental and full nearline updates.")

ann = report.ann_table(rows)
if ann is not None:
    st.subheader("ANN first stage against exhaustive scoring")
    from msli_core.viz.latency import ann_tradeoff

    widgets.chart(
        "ann_tradeoff",
        ann_tradeoff(ann),
        caption="Each line is one index at one catalog size, its points the probes swept (IVF nprobe); the "
        "star is the exhaustive request over the same table. Recall@10 is the share of the exhaustive "
        "top-10 that the ANN request returns (averaged over users, seen items excluded in both); whatever "
        "it returns is re-scored exactly: its scores and per-segment contributions are late interaction's.",
    )
    st.dataframe(ann, hide_index=True, key="latency_ann",
                 column_config={c: st.column_config.NumberColumn(format="%.4g") for c in
                                ("recall@10", "p50 ms", "CPU p50 ms", "speed-up", "candidates re-scored",
                                 "index MiB", "build s")})  # fmt: skip
    described = (meta.get("ann") or {}).get("table_description")
    if described:
        st.caption(f"Table of the ANN points: {described}. The index keeps its own copy of the vectors.")

with st.expander("All rows"):
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="latency_rows")
st.download_button(
    "Download the rows as CSV",
    state.bench_csv(),
    file_name="msli-bench.csv",
    mime="text/csv",
    key="latency_csv",
)
if caption := report.cost_model_caption(meta):
    st.caption(caption)
