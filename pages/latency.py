"""Latency: run a sweep (K, N, L, backend, models) with a progress bar, then see the serving ladder against
N, p50/p95 against K with the cross-encoder and the floors, the stage costs, torch vs ONNX Runtime,
incremental vs full nearline update, and download the rows as CSV."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from msli_core import kinds, viz
from msli_core.errors import MsliError
from msli_core.serving import report
from msli_core.serving.bench import headline
from pages import state, widgets

st.title("Latency")
st.markdown(
    "Time every stage of one request (batch 1, one user) on this machine: warm-up, then each call timed "
    "on the wall clock; each figure is the median over the passes, thread counts fixed and recorded. The "
    "ladder: **full-forward** runs the encoder over the whole history on every request (what MS-LI "
    "avoids), **MS-LI** scores K cached segment vectors, the **two-tower** model one cached vector, and "
    "the **cross-encoder** a transformer pass per candidate. Latency does not depend on the "
    "weights, so the sweep builds fresh models of the chosen shapes (use the width and depth of a trained "
    "model to place it on the Train page's quality-vs-latency chart). The cross-encoder runs in the same "
    "sweep, at the same N, L, width and depth, capped by its own time budget."
)

with st.form("latency_form"):
    c1, c2, c3 = st.columns(3)
    segments = c1.multiselect("Segments K", [1, 2, 4, 8, 16, 32], default=[1, 4, 16], key="latency_segments")
    candidates = c1.multiselect(
        "Candidates N", [100, 1_000, 10_000, 100_000], default=[1_000, 10_000], key="latency_candidates"
    )
    history = c2.multiselect("History length L", [50, 200], default=[50], key="latency_history")
    backends = c2.multiselect(
        "Backends", ["torch", "onnxruntime"], default=["torch", "onnxruntime"], key="latency_backends"
    )
    w1, w2 = c2.columns(2)
    dim = w1.select_slider("Width d", [16, 32, 64, 128, 256], value=64, key="latency_dim")
    layers = w2.select_slider("Depth", [1, 2, 4, 8], value=2, key="latency_layers")
    models = c3.multiselect(
        "Models",
        list(kinds.LADDER),
        default=list(kinds.LADDER),
        key="latency_models",
    )
    request_candidates = c1.multiselect(
        "Per-request candidate lists M (fresh random ids, where M < N)",
        [1_000, 10_000],
        default=[1_000],
        key="latency_request_candidates",
    )
    budget = c3.select_slider(
        "Time budget per point (s)", [0.02, 0.05, 0.1, 0.2, 0.5], value=0.05, key="latency_budget"
    )
    cross_budget = c3.select_slider(
        "Cross-encoder budget per point (s)", [0.2, 0.5, 1.0, 2.0, 5.0], value=2.0, key="latency_cross_budget"
    )
    passes = c3.select_slider(
        "Passes (each figure is their median)", [1, 2, 3, 4, 5], value=3, key="latency_passes"
    )
    calibrate = st.checkbox(
        "Also calibrate the cost model on this machine (a few seconds; the What-if page then uses it)",
        value=True,
        key="latency_calibrate",
    )
    run = st.form_submit_button("Run the sweep", type="primary")

empty = [name for name, chosen in (("segment count", segments), ("candidate count", candidates),
                                   ("history length", history), ("backend", backends), ("model", models))
         if not chosen]  # fmt: skip
if run and empty:
    st.error(f"Choose at least one {', one '.join(empty)} for the sweep.", icon=":material/error:")
elif run:
    from msli_core.serving.bench import BenchSettings, run_bench

    try:
        settings = BenchSettings(
            segments=tuple(sorted(segments)),
            candidates=tuple(sorted(candidates)),
            history=tuple(sorted(history)),
            request_candidates=tuple(sorted(request_candidates)),
            encoder_sizes=((1, 32), (2, 64), (4, 128)),  # measured; the larger ones from the cost model
            backends=tuple(backends),
            models=tuple(models),
            budget_s=float(budget),
            cross_budget_s=float(cross_budget),
            passes=int(passes),
            dim=int(dim),
            layers=int(layers),
            calibrate=calibrate,
        )
        live = widgets.LiveProgress("Measuring")
        result = run_bench(settings, progress=live)
    except MsliError as err:
        widgets.show_error(err)
    else:
        live.done(f"{len(result.rows)} rows in {viz.human_number(result.meta['seconds'], 's')}")
        state.set_bench(result)
        st.rerun()

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
    st.warning("The sweep has no MS-LI online rows; include the msli model to see the charts.")
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
