"""What-if: model sizes and hardware in, predicted per-stage latency and throughput out, for MS-LI,
two-tower and the cross-encoder; the last measured sweep overlaid to show the cost model's error."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from msli_core import viz
from msli_core.errors import MsliError
from msli_core.serving import calibrate, costmodel, report
from pages import forms, state, widgets

widgets.enter_through_app(__file__)

USER_ENTERED = "user-entered"

st.title("What-if latency")
st.markdown(
    "Ask *“with a large segment encoder, long histories and many candidates, what does each stage cost?”* "
    "The answer comes from a roofline cost model: per phase `t ≈ max(FLOPs / GEMM rate, bytes / bandwidth) + "
    "elements / element-wise rate + calls · per-call cost`, with GEMM rates per backend and shape class "
    "(square, skinny, attention), bandwidth, the rate of the scorer's element-wise passes and per-call costs "
    "measured on this machine on first use (or a preset, or typed in). "
    "Nothing is trained or run here, so every slider answers at once."
)

# ----------------------------------------------------------------------------------------- hardware
try:  # a broken calibration file is a sentence here, not a crashed page; the presets still answer
    measured_here = state.hardware_here()
except MsliError as err:
    widgets.show_error(err)
    st.caption(
        "Until this machine is measured, pick a preset or type constants in; “Measure this machine now” "
        "measures it again and replaces a calibration file msli wrote."
    )
    measured_here = None
presets = costmodel.hardware_presets(measured_here)
h1, h2 = st.columns([2, 3])
preset = h1.selectbox("Hardware", [*presets, USER_ENTERED], key="whatif_hardware")
if h1.button("Measure this machine now (a few seconds)", key="whatif_calibrate"):
    try:  # the calibration file is refused (before measuring) when msli did not write it
        with st.spinner("Timing matmuls, a streaming copy and tiny operator calls…"):
            st.session_state["whatif_measured_hw"] = calibrate.calibrate(save=True)
    except MsliError as err:  # the rest of the page still answers with the constants it had
        widgets.show_error(err)
    else:
        st.rerun()
try:
    if preset == USER_ENTERED:
        u1, u2, u3 = h2.columns(3)
        tflops = u1.number_input("TFLOP/s sustained", 0.001, 10000.0, 1.0, key="whatif_tflops", format="%.3f")
        gbps = u2.number_input("memory GB/s", 0.1, 100000.0, 100.0, key="whatif_gbps")
        overhead_us = u3.number_input("µs per operator call", 0.01, 10000.0, 5.0, key="whatif_overhead")
        hardware = costmodel.custom_hardware(tflops * 1e12, gbps * 1e9, overhead_us * 1e-6)
    else:
        hardware = presets[preset]
except MsliError as err:
    widgets.show_error(err)
    st.stop()
h2.caption(
    f"Constants in use: **{hardware.name}**, {hardware.dtype}: {hardware.rate('torch', 'square') / 1e12:.3g} "
    f"TFLOP/s square, {hardware.rate('torch', 'skinny') / 1e12:.3g} skinny (torch) · "
    f"{hardware.bandwidth / 1e9:.3g} GB/s · {hardware.elements_rate() / 1e9:.3g} G elements/s element-wise"
    f"{'' if hardware.elementwise_rate else ' (bandwidth / 8 bytes)'} · "
    f"{hardware.overhead('torch') * 1e6:.3g} µs per torch call, "
    f"{hardware.overhead('onnxruntime') * 1e6:.3g} µs per ONNX Runtime call  \n_{hardware.source}_"
)

# ------------------------------------------------------------------------------------------- shapes
s1, s2, s3 = st.columns(3)
history = s1.slider("History length L (events)", 10, 2000, 200, step=10, key="whatif_history")
segments = s1.select_slider("Segments K", [1, 2, 4, 8, 16, 32, 64], value=8, key="whatif_segments")
size_by = s2.radio("Encoder size by", ["width × depth", "parameter count"], horizontal=True,
                   key="whatif_size_by")  # fmt: skip
if size_by == "parameter count":
    millions = s2.number_input(
        "Encoder parameters (millions)", 0.01, 1_000_000.0, 1000.0, key="whatif_params"
    )
    layers, dim = costmodel.shape_for_parameters(millions * 1e6)
    shaped = costmodel.encoder_parameters(layers, dim)  # what that shape holds: the asked count rounded
    s2.caption(
        f"Shaped as {layers} layers × width {dim:,} (width ≈ 64 × depth, as large transformers are): "
        f"{viz.human_number(shaped)} parameters"
        + (
            " (the smallest shape: 1 layer of width 64)"
            if (layers, dim) == (1, 64) and shaped > millions * 1e6
            else ""
        )
        + "."
    )
else:
    dim = s2.select_slider("Width d", [32, 64, 128, 256, 512, 1024, 2048, 4096], value=64, key="whatif_dim")
    layers = s2.slider("Depth (transformer layers)", 1, 48, 2, key="whatif_layers")
candidates = s3.select_slider(
    "Candidates N per request",
    [10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000],
    value=1_000,
    key="whatif_candidates",
    format_func=lambda n: f"{n:,}",
)
dtype = s3.selectbox("Data type", list(report.DTYPES), key="whatif_dtype")
backend = s3.radio("Backend", ["torch", "onnxruntime"], horizontal=True, key="whatif_backend")

retrieval = forms.retrieval_stage_form(candidates)  # {} (whole catalog) or index, probes, lists, neighbours

try:
    shapes, predictions = report.ladder_predictions(
        hardware, backend, history=history, segments=segments, dim=dim, layers=layers,
        heads=max(1, dim // 64), candidates=candidates, dtype_bytes=report.DTYPES[dtype], **retrieval,
    )  # fmt: skip
except MsliError as err:
    widgets.show_error(err)
    st.stop()
if retrieval:
    ann_ms, whole_ms = (
        predictions[k]["online_s"] * 1e3 for k in (viz.MODEL_LABELS["msli"], report.WHOLE_CATALOG)
    )
    st.caption(
        f"With the {retrieval['index'].upper()} first stage an MS-LI request is predicted at "
        f"**{viz.ms_text(ann_ms)}**, against {viz.ms_text(whole_ms)} scoring all {candidates:,} items "
        f"({viz.human_number(whole_ms / ann_ms, '×')}); the index build is offline work. The "
        "late-interaction models (MS-LI, two-tower, full-forward) get the first stage; the cross-encoder "
        "has no vectors to index and still scores every candidate. Recall is not predicted: measure it with "
        "`msli bench --ann ivf` (the Latency page shows it)."
    )

msli, cross = (predictions[viz.MODEL_LABELS[k]] for k in ("msli", "cross-encoder"))
params = shapes["MS-LI"].parameters()
m = st.columns(4)
m[0].metric("Segment-encoder parameters", viz.human_number(params))
m[1].metric("MS-LI online (per request)", viz.ms_text(msli["online_s"] * 1e3))
m[2].metric("Cross-encoder online", viz.ms_text(cross["online_s"] * 1e3))
speedup = cross["online_s"] / msli["online_s"] if msli["online_s"] > 0 else float("nan")
m[3].metric("MS-LI is faster online by", viz.human_number(speedup, "×"))

widgets.chart("whatif_stages", viz.whatif_stage_bars(predictions))

table = report.prediction_table(predictions)
st.dataframe(
    table,
    hide_index=True,
    key="whatif_table",
    column_config={  # text columns (the model, "bound by", the FLOPs) stay text
        c: st.column_config.NumberColumn(format="%.4g")
        for c in table.columns
        if pd.api.types.is_numeric_dtype(table[c])
    },
)
st.caption(
    "“Bound by” says which term of the roofline dominates the online stage: *compute* (FLOPs), *skinny* "
    "(streaming the item table through a few-row product), *memory* (bytes), *gather* (a request's own "
    "rows) or *overhead* (library calls; typical at small sizes). QPS counts one nearline update plus one "
    "request per query on one worker. Full-forward runs the encoder over the history on every request. "
    "The nearline update: with torch, a one-position KV-cached step while the history is shorter than the "
    "window, and a pass over the window once it slides (the case costed here: a user with a full window); "
    "with ONNX Runtime, the exported open-window graph re-encodes the window on every event (no KV cache)."
)
with st.expander("Per-phase breakdown"):
    st.dataframe(
        report.phase_table(predictions),
        hide_index=True,
        key="whatif_phases",
        column_config={"ms": st.column_config.NumberColumn(format="%.4g")},
    )

# ------------------------------------------------------------------------- measured points overlaid
st.subheader("How good is the cost model here?")
rows = state.bench_rows()
if not rows:
    st.info(
        "Run a sweep on the Latency page: its measured points will be compared with the predictions here."
    )
elif measured_here is None:  # the sweep was measured here: only this machine's constants can judge it
    st.info("Measure this machine (above) to compare the last sweep with the cost model's predictions.")
else:
    errors = costmodel.error_report(rows, measured_here)
    if errors["points"]:
        curve, measured, shape = report.whatif_curve(rows, measured_here)
        if not measured.empty:
            widgets.chart("whatif_curve", viz.whatif_curve_vs_segments(curve, measured, **shape))
        widgets.chart("whatif_measured", viz.whatif_measured_vs_predicted(errors))
        if preset != "this machine":
            st.caption(
                "The comparison always uses this machine's constants, since the sweep was measured here."
            )
    else:
        st.info("The last sweep has no rows the cost model predicts (offline-only or floor rows).")
