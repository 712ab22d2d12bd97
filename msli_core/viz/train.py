"""The Train page's figures: training curves, quality against K, quality against measured latency."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from msli_core import kinds
from msli_core.errors import MsliError
from msli_core.viz.common import (
    MODEL_COLORS,
    SEGMENT_COLORS,
    _layout,
    _require_rows,
)


def training_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]], metric: str = "NDCG@10"
) -> go.Figure:
    """Loss (left) and validation ``metric`` (right) per epoch for each trained model.

    ``histories`` maps a model name to its per-epoch rows, each with ``epoch`` and any of ``loss`` and
    ``metric`` (rows without a value are skipped, so a baseline without a loss just has no left curve).
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", f"validation {metric}"))
    for i, (name, rows) in enumerate(histories.items()):
        frame = pd.DataFrame(list(rows))
        if frame.empty or "epoch" not in frame.columns:
            continue
        color = SEGMENT_COLORS[i % len(SEGMENT_COLORS)]
        for col, key in ((1, "loss"), (2, metric)):
            if key not in frame.columns:
                continue
            part = frame[["epoch", key]].dropna()
            if part.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=part["epoch"],
                    y=part[key],
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1 or "loss" not in frame.columns,
                    line=dict(color=color),
                    hovertemplate="epoch %{x}: %{y:.4g}<extra>" + name + "</extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="epoch", dtick=1)
    if not fig.data:
        raise MsliError("No training history to plot yet; train a model first.")
    return _layout(
        fig, "Training curves", height=400, legend=dict(orientation="h", yanchor="top", y=-0.3, x=0)
    )


def quality_vs_segments(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame, metric: str = "NDCG@10"
) -> go.Figure:
    """Test ``metric`` against K for the late-interaction models (one line per aggregation), baselines
    (models without segments) as dashed horizontal lines.

    ``rows``: one per trained model with ``name``, ``kind``, ``segments`` (None for baselines),
    ``aggregation`` and ``metric``.
    """
    frame = _require_rows(rows, "trained models", ["name", "kind", metric])
    has_k = (
        frame["kind"].isin(kinds.LATE_INTERACTION)
        & frame.get("segments", pd.Series(None, frame.index)).notna()
    )
    fig = go.Figure()
    segmented = frame[has_k].copy()
    if not segmented.empty:
        aggregation = segmented.get("aggregation", pd.Series(None, segmented.index, dtype=object))
        segmented["aggregation"] = aggregation.fillna("attention")
        segmented.loc[segmented["kind"] == "two-tower", "aggregation"] = "attention"
        for i, (agg, group) in enumerate(segmented.groupby("aggregation", sort=True)):
            # Two-tower (K = 1) is the K = 1 point of every aggregation's curve: they coincide at one vector.
            tower = segmented[segmented["kind"] == "two-tower"]
            group = pd.concat([group, tower]).drop_duplicates("name").sort_values("segments")
            best = group.groupby("segments", as_index=False)[metric].max()
            fig.add_trace(
                go.Scatter(
                    x=best["segments"],
                    y=best[metric],
                    mode="lines+markers",
                    name=f"MS-LI, {agg}",
                    line=dict(color=SEGMENT_COLORS[i % len(SEGMENT_COLORS)], width=2.5),
                    marker=dict(size=9),
                    hovertemplate="K=%{x}: " + metric + " %{y:.4f}<extra>" + str(agg) + "</extra>",
                )
            )
    ks = segmented["segments"].astype(float) if not segmented.empty else pd.Series([1.0, 2.0])
    span = [float(ks.min()), float(max(ks.max(), ks.min() * 2))]
    for name, value, kind in frame[~has_k][["name", metric, "kind"]].itertuples(index=False):
        fig.add_trace(
            go.Scatter(
                x=span,
                y=[value, value],
                mode="lines",
                line=dict(dash="dash", color=MODEL_COLORS.get(kind, "#888")),
                name=f"{name} (no segments)",
                hovertemplate=metric + " %{y:.4f}<extra>" + str(name) + "</extra>",
            )
        )
    ticks = sorted({int(k) for k in ks})
    return _layout(
        fig,
        f"Quality against segment count (test {metric}, full ranking)",
        xaxis_type="log",
        xaxis=dict(tickvals=ticks, ticktext=[str(k) for k in ticks]),
        xaxis_title="segments K (log scale)",
        yaxis_title=f"test {metric}",
        height=400,
    )


def quality_vs_latency(
    points: Iterable[Mapping[str, Any]] | pd.DataFrame, metric: str = "NDCG@10"
) -> go.Figure:
    """Every trained model as one point: test ``metric`` against measured online p50 (log x).

    ``points``: ``name``, ``kind``, ``metric``, ``p50_ms`` (the online p50 measured for its shape).
    """
    frame = _require_rows(points, "models with a measured latency", ["name", "kind", metric, "p50_ms"])
    frame = frame[frame["p50_ms"].notna() & (frame["p50_ms"] > 0)]
    if frame.empty:
        raise MsliError("No trained model has a measured latency yet; run a sweep on the Latency page.")
    fig = go.Figure()
    for kind, group in frame.groupby("kind", sort=False):
        fig.add_trace(
            go.Scatter(
                x=group["p50_ms"],
                y=group[metric],
                mode="markers+text",
                text=group["name"],
                textposition="top center",
                marker=dict(size=13, color=MODEL_COLORS.get(str(kind), "#444")),
                name=str(kind),
                hovertemplate="%{text}<br>online p50 %{x:.4g} ms<br>" + metric + " %{y:.4f}<extra></extra>",
            )
        )
    lo, hi = np.log10(frame["p50_ms"].min()), np.log10(frame["p50_ms"].max())
    pad = max(0.4, 0.15 * (hi - lo))  # room for the labels of the outermost points
    return _layout(
        fig,
        f"Quality against latency (test {metric} vs measured online p50)",
        xaxis_type="log",
        xaxis_range=[lo - pad, hi + pad],
        xaxis_title="online p50 latency, ms (log scale; left is faster)",
        yaxis_title=f"test {metric} (up is better)",
        height=420,
    )
