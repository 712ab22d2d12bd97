"""The cost model's figures (What-if and Home pages): predicted stage costs, where one request's latency
goes, prediction against measurement, and the predicted curve against K."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from msli_core.errors import MsliError
from msli_core.viz.common import (
    MODEL_COLORS,
    STAGE_COLORS,
    STAGE_LABELS,
    _layout,
    ms_text,
)


def whatif_stage_bars(predictions: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Predicted seconds per stage for each model, grouped bars on a log axis.

    ``predictions`` maps a model label to ``msli_core.serving.costmodel.Prediction.as_dict()`` (keys
    ``offline_s``, ``nearline_s``, ``online_s``, ``end_to_end_s``, ``qps``, ``bound``).
    """
    stages = ("offline", "nearline", "online", "end_to_end")
    fig = go.Figure()
    for label, pred in predictions.items():
        ms = [float(pred.get(f"{s}_s", math.nan)) * 1e3 for s in stages]
        bound = pred.get("bound", {})
        shown = [m if m > 0 else None for m in ms]  # a stage the model does not have (0 s) has no bar
        fig.add_trace(
            go.Bar(
                x=[STAGE_LABELS[s] for s in stages],
                y=shown,
                name=label,
                marker_color=MODEL_COLORS.get(str(pred.get("model", label))),
                text=[ms_text(m) if m > 0 else "none" for m in ms],
                textposition="outside",
                customdata=[bound.get(s, "") for s in stages],
                hovertemplate="%{x}<br>%{y:.4g} ms<br>bound by %{customdata}<extra>" + label + "</extra>",
            )
        )
    return _layout(
        fig,
        "Predicted latency per stage (p50)",
        barmode="group",
        yaxis_type="log",
        yaxis_title="milliseconds (log scale)",
        height=420,
    )


def whatif_measured_vs_predicted(report: Mapping[str, Any]) -> go.Figure:
    """Measured p50 against the cost model's prediction for every row of a sweep, log-log, with y = x and
    the 2× band. ``report`` is ``msli_core.serving.costmodel.error_report(rows, hardware)``."""
    points = pd.DataFrame(report.get("points", []))
    if points.empty:
        raise MsliError("The last sweep has no timed rows the cost model can predict; run a sweep first.")
    fig = go.Figure()
    for stage, group in points.groupby("stage", sort=False):
        fig.add_trace(
            go.Scatter(
                x=group["measured_ms"],
                y=group["predicted_ms"],
                mode="markers",
                name=str(stage),
                marker=dict(color=STAGE_COLORS.get(str(stage)), size=8, opacity=0.8),
                customdata=np.stack(
                    [group["model"], group["segments"], group["candidates"], group["ratio"]], axis=1
                ),
                hovertemplate="%{customdata[0]} K=%{customdata[1]} N=%{customdata[2]}<br>measured %{x:.4g} ms"
                "<br>predicted %{y:.4g} ms<br>ratio %{customdata[3]:.2f}<extra>%{fullData.name}</extra>",
            )
        )
    lo = float(min(points["measured_ms"].min(), points["predicted_ms"].min())) / 2
    hi = float(max(points["measured_ms"].max(), points["predicted_ms"].max())) * 2
    for factor, dash, name in (
        (1.0, "solid", "predicted = measured"),
        (2.0, "dot", "2× off"),
        (0.5, "dot", None),
    ):
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo * factor, hi * factor],
                mode="lines",
                line=dict(color="#999", dash=dash, width=1),
                name=name or "",
                showlegend=name is not None,
                hoverinfo="skip",
            )
        )
    title = (
        f"Cost model vs last sweep: median ratio {report['median_ratio']:.2f}, "
        f"worst {report['worst_ratio']:.2f}, "
        f"{report.get('within_2x', math.nan):.0%} within 2×"
    )
    return _layout(
        fig,
        title,
        xaxis_type="log",
        yaxis_type="log",
        xaxis_title="measured p50 (ms)",
        yaxis_title="predicted p50 (ms)",
        height=420,
    )


def latency_budget(predictions: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Where one request's latency goes, per model: the nearline part (once per new event) and the online
    part (per request) side by side on a log axis, since the models differ by orders of magnitude."""
    fig = go.Figure()
    labels = list(predictions)[::-1]  # first model on top
    for stage in ("online", "nearline"):
        ms = [float(predictions[m].get(f"{stage}_s", 0.0)) * 1e3 for m in labels]
        fig.add_trace(
            go.Bar(
                y=labels,
                x=[v if v > 0 else None for v in ms],
                orientation="h",
                name=STAGE_LABELS[stage],
                marker_color=STAGE_COLORS[stage],
                text=[ms_text(v) if v > 0 else "none" for v in ms],
                textposition="outside",
                cliponaxis=False,
                hovertemplate="%{y}: %{x:.4g} ms<extra>" + stage + "</extra>",
            )
        )
    return _layout(
        fig,
        "Where the latency goes (predicted p50 per part of a request)",
        barmode="group",
        xaxis_type="log",
        xaxis_title="milliseconds (log scale)",
        height=300,
        legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0, traceorder="reversed"),
    )


def whatif_curve_vs_segments(
    curve: pd.DataFrame, measured: pd.DataFrame, *, candidates: int, history: int, backend: str
) -> go.Figure:
    """The cost model's online p50 against K (line) with the sweep's measured p50 (dots, p95 as error bar).

    ``curve``: ``segments``, ``predicted_ms``; ``measured``: ``segments``, ``p50_ms``, ``p95_ms``.
    """
    if curve.empty:
        raise MsliError("Nothing to predict: the curve has no segment counts.")
    fig = go.Figure(
        go.Scatter(
            x=curve["segments"],
            y=curve["predicted_ms"],
            mode="lines",
            line=dict(color=MODEL_COLORS["msli"], width=2.5),
            name="cost model (predicted p50)",
            hovertemplate="K=%{x}: predicted %{y:.4g} ms<extra></extra>",
        )
    )
    if not measured.empty:
        fig.add_trace(
            go.Scatter(
                x=measured["segments"],
                y=measured["p50_ms"],
                mode="markers",
                marker=dict(size=11, color="#E45756"),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=(measured["p95_ms"] - measured["p50_ms"]).clip(lower=0),
                    arrayminus=np.zeros(len(measured)),
                    color="#E45756",
                ),
                name="measured p50 (bar: up to p95)",
                hovertemplate="K=%{x}: measured %{y:.4g} ms<extra></extra>",
            )
        )
    ticks = sorted({int(k) for k in curve["segments"]} | {int(k) for k in measured.get("segments", [])})
    return _layout(
        fig,
        f"MS-LI online p50 against K: cost model vs measured (N = {candidates:,}, L = {history}, {backend})",
        xaxis_type="log",
        xaxis=dict(tickvals=ticks, ticktext=[str(k) for k in ticks]),
        yaxis_type="log",
        xaxis_title="segments K (log scale)",
        yaxis_title="p50 ms (log scale)",
        height=400,
    )
