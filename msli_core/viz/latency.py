"""The Latency page's figures from ``msli bench`` rows (docs/design.md §6): latency against K, the
serving ladder against catalog size, latency against encoder size; and the figures of one sweep's HTML
report."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from msli_core.errors import MsliError
from msli_core.viz.common import (
    MODEL_COLORS,
    MODEL_LABELS,
    _filter,
    _first,
    _layout,
    _require_rows,
    _variant,
    ms_text,
)
from msli_core.viz.stages import backend_comparison, nearline_update_comparison, stage_cost_bars


def latency_vs_segments(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame, candidates: int, history: int, backend: str = "torch"
) -> go.Figure:
    """Online p50 (line) and p95 (band) of MS-LI against K at one (N, L, backend), with the cross-encoder and
    the floors of the same shapes, on a log axis. ``rows`` are ``msli bench`` rows (docs/design.md §6)."""
    frame = _require_rows(rows, "latency rows", ["model", "stage", "segments", "candidates", "p50_ms"])
    shape = _filter(frame, candidates=candidates, history=history)
    fig = go.Figure()
    msli = _filter(shape, model="msli", stage="online", backend=backend).sort_values("segments")
    msli = msli[_variant(msli) == ""]  # the catalog request (not paired / per-request candidate lists)
    if msli.empty:
        raise MsliError(
            f"The sweep has no MS-LI online rows at N = {candidates}, L = {history}, backend {backend}; "
            "include them in the sweep."
        )
    msli = msli.groupby("segments", as_index=False)[["p50_ms", "p95_ms"]].median()
    ks = msli["segments"].to_numpy()
    fig.add_trace(
        go.Scatter(
            x=np.concatenate([ks, ks[::-1]]),
            y=np.concatenate([msli["p95_ms"].to_numpy(), msli["p50_ms"].to_numpy()[::-1]]),
            fill="toself",
            mode="lines",
            fillcolor="rgba(76,120,168,0.18)",
            line=dict(width=0),
            name="MS-LI p50–p95",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=ks,
            y=msli["p50_ms"],
            mode="lines+markers",
            name="MS-LI online p50",
            line=dict(color=MODEL_COLORS["msli"], width=2.5),
            hovertemplate="K=%{x}: p50 %{y:.4g} ms<extra>MS-LI</extra>",
        )
    )
    x_span = [float(ks.min()), float(ks.max())] if len(ks) > 1 else [float(ks[0]) * 0.8, float(ks[0]) * 1.25]

    tower = _filter(shape, model="two-tower", stage="online", backend=backend)
    tower = tower[_variant(tower) == ""]
    if not tower.empty:
        fig.add_trace(
            go.Scatter(
                x=[1],
                y=[float(tower["p50_ms"].median())],
                mode="markers",
                marker=dict(symbol="diamond", size=12, color=MODEL_COLORS["two-tower"]),
                name="two-tower online p50",
            )
        )
    full = _filter(shape, model="full-forward", stage="online", backend=backend)["p50_ms"].dropna()
    if len(full):
        value = float(full.median())
        fig.add_trace(
            go.Scatter(
                x=x_span,
                y=[value, value],
                mode="lines",
                line=dict(color=MODEL_COLORS["full-forward"], width=2.5, dash="dashdot"),
                name="full-forward p50 (encoder over L events on every request)",
                hovertemplate="full-forward: %{y:.4g} ms<extra></extra>",
            )
        )
    cross = _filter(shape, model="cross-encoder", backend=backend)
    cross = cross[cross["stage"].isin(["online", "end_to_end"])]
    measured = cross["p50_ms"].dropna()
    estimated = cross["estimated_ms"].dropna() if "estimated_ms" in cross.columns else measured.iloc[0:0]
    if len(measured) or len(estimated):
        if len(measured):
            p50 = float(measured.median())
            capped = "capped" in cross.columns and bool(cross["capped"].fillna(False).astype(bool).any())
            label = "cross-encoder p50" + (" (fewer calls: time budget)" if capped else "")
        else:
            p50 = float(estimated.median())
            label = "cross-encoder (cost-model estimate: one call exceeds the time budget)"
        fig.add_trace(
            go.Scatter(
                x=x_span,
                y=[p50, p50],
                mode="lines+text",
                line=dict(color=MODEL_COLORS["cross-encoder"], width=2.5, dash="dash"),
                name=label,
                text=["", f"{ms_text(p50)}  "],
                textposition="bottom left",
                hovertemplate="cross-encoder: %{y:.4g} ms<extra></extra>",
            )
        )
    floors = shape[shape["stage"] == "floor"]
    if not floors.empty:
        variants = _variant(floors)
        per_k_floors = (
            (
                "matmul",
                "floor: bare numpy matmul",
                "lines+markers",
                dict(color=MODEL_COLORS["floor"], dash="dot"),
            ),
            ("compute", "floor: FLOPs / peak GEMM rate", "lines", dict(color="#555555", dash="dot", width=1)),
        )
        for variant, name, mode, line in per_k_floors:
            part = floors[variants == variant]
            if part.empty:
                continue
            per_k = part.groupby("segments", as_index=False)["p50_ms"].median().sort_values("segments")
            fig.add_trace(
                go.Scatter(
                    x=per_k["segments"],
                    y=per_k["p50_ms"],
                    mode=mode,
                    line=line,
                    marker=dict(symbol="x"),
                    name=name,
                    hovertemplate="K=%{x}: %{y:.4g} ms<extra>" + variant + " floor</extra>",
                )
            )
        bandwidth = floors[variants == "bandwidth"]
        if not bandwidth.empty:
            value = float(bandwidth["p50_ms"].median())
            fig.add_trace(
                go.Scatter(
                    x=x_span,
                    y=[value, value],
                    mode="lines",
                    line=dict(color="#bbbbbb", dash="dot"),
                    name="floor: item table bytes / bandwidth",
                    hovertemplate="%{y:.4g} ms<extra>bandwidth floor</extra>",
                )
            )
    return _layout(
        fig,
        f"Online latency against segment count (N = {candidates:,} candidates, L = {history}, {backend})",
        xaxis_type="log",
        xaxis=dict(tickvals=list(ks), ticktext=[str(int(k)) for k in ks]),
        yaxis_type="log",
        xaxis_title="segments K (log scale)",
        yaxis_title="p50 wall-clock latency, ms (log scale)",
        height=440,
    )


def serving_ladder(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame, history: int, segments: int, backend: str = "torch"
) -> go.Figure:
    """The serving ladder against catalog size: online p50 (wall clock) of full-forward, MS-LI at K, the
    two-tower model and the cross-encoder (its skipped points as the cost model's estimate, hollow), with
    the memory and compute floors of MS-LI's product, at one L; log-log axes."""
    frame = _require_rows(rows, "latency rows", ["model", "stage", "segments", "candidates", "p50_ms"])
    shape = _filter(frame, history=history)
    fig = go.Figure()
    lines = (
        ("full-forward", None, "full-forward: the encoder on every request", "dashdot"),
        ("msli", segments, f"MS-LI K={segments}: cached segments, online scoring only", "solid"),
        ("two-tower", None, "two-tower: one cached vector", "solid"),
    )

    def per_n(part: pd.DataFrame, column: str, name: str, hover: str, **style: Any) -> None:
        """One trace of the median ``column`` per N of ``part`` (nothing when it is empty)."""
        part = part.dropna(subset=[column])
        if part.empty:
            return
        line = part.groupby("candidates", as_index=False)[column].median().sort_values("candidates")
        fig.add_trace(
            go.Scatter(
                x=line["candidates"],
                y=line[column],
                name=name,
                hovertemplate="N=%{x:,}: %{y:.4g} ms<extra>" + hover + "</extra>",
                **style,
            )
        )

    for model, k, label, dash in lines:
        part = _filter(shape, model=model, stage="online", backend=backend, segments=k)
        per_n(
            part[_variant(part) == ""],
            "p50_ms",
            label,
            MODEL_LABELS[model],
            mode="lines+markers",
            line=dict(color=MODEL_COLORS[model], width=2.5, dash=dash),
        )
    cross = _filter(shape, model="cross-encoder", stage="online")
    color = MODEL_COLORS["cross-encoder"]
    per_n(
        cross,
        "p50_ms",
        "cross-encoder: a transformer pass per candidate",
        "cross-encoder",
        mode="lines+markers",
        line=dict(color=color, width=2.5),
    )
    if "estimated_ms" in cross.columns:
        estimate = "cross-encoder, cost-model estimate (not timed: over the time budget)"
        per_n(
            cross[cross["p50_ms"].isna()],
            "estimated_ms",
            estimate,
            "cross-encoder estimate",
            mode="markers",
            marker=dict(symbol="circle-open", size=11, color=color),
        )
    floors = _filter(shape, stage="floor", segments=segments)
    for variant, label, grey in (
        ("compute", "floor: FLOPs / peak GEMM rate", "#555555"),
        ("bandwidth", "floor: item table bytes / bandwidth", "#bbbbbb"),
    ):
        per_n(
            floors[_variant(floors) == variant],
            "p50_ms",
            label,
            variant + " floor",
            mode="lines",
            line=dict(color=grey, dash="dot"),
        )
    if not fig.data:
        raise MsliError(f"The sweep has no online rows at L = {history}; include them in the sweep.")
    return _layout(
        fig,
        f"The serving ladder (online p50 at L = {history}, d = {_first(shape, 'dim')}, {backend})",
        xaxis_type="log",
        yaxis_type="log",
        xaxis_title="catalog size N (log scale)",
        yaxis_title="p50 wall-clock latency, ms (log scale)",
        height=460,
    )


def encoder_parameters(layers: int, dim: int) -> int:
    """Weights of a transformer encoder of ``layers`` blocks of width d with a 4d MLP: ``12·layers·d²``
    (attention 4d², MLP 8d²; biases and norms left out).

    >>> encoder_parameters(2, 64)
    98304
    """
    return 12 * int(layers) * int(dim) ** 2


def latency_vs_encoder_size(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> go.Figure:
    """The teaching chart: request latency (online p50) of full-forward, MS-LI and the two-tower model
    against the encoder's size, measured (solid) and then the cost model's extrapolation (dashed, hollow
    markers), from the ``encoder_size`` rows of ``msli bench``. Full-forward pays the encoder on every
    request; MS-LI and two-tower pay it nearline, so their request cost grows only with the width."""
    frame = _require_rows(rows, "latency rows", ["model", "stage", "segments", "candidates", "p50_ms"])
    part = frame[_variant(frame) == "encoder_size"]
    if part.empty:
        raise MsliError("The sweep has no encoder-size rows; run it with encoder sizes to see this chart.")
    part = part.assign(
        parameters=[encoder_parameters(a, b) for a, b in zip(part["layers"], part["dim"], strict=True)],
        value=part["p50_ms"].where(part["p50_ms"].notna(), part.get("estimated_ms")),
        estimated=part["p50_ms"].isna(),
    ).dropna(subset=["value"])
    fig = go.Figure()
    k = int(part.loc[part["model"] == "msli", "segments"].max()) if (part["model"] == "msli").any() else None
    for model in ("full-forward", "msli", "two-tower"):
        rows_m = part[part["model"] == model].sort_values("parameters")
        if rows_m.empty:
            continue
        name = MODEL_LABELS[model] + (f" K={k}" if model == "msli" else "")
        measured, estimated = rows_m[~rows_m["estimated"]], rows_m[rows_m["estimated"]]
        sizes = [f"{int(a)}×{int(b)}" for a, b in zip(rows_m["layers"], rows_m["dim"], strict=True)]
        hover = dict(zip(rows_m.index, sizes, strict=True))
        fig.add_trace(
            go.Scatter(
                x=measured["parameters"],
                y=measured["value"],
                mode="lines+markers",
                name=f"{name}, measured",
                line=dict(color=MODEL_COLORS[model], width=2.5),
                text=[hover[i] for i in measured.index],
                hovertemplate="%{text} (%{x:.3s} weights): %{y:.4g} ms<extra>" + name + "</extra>",
            )
        )
        if not estimated.empty:
            bridge = pd.concat(
                [measured.tail(1), estimated]
            )  # the dashed line starts at the last measurement
            fig.add_trace(
                go.Scatter(
                    x=bridge["parameters"],
                    y=bridge["value"],
                    mode="lines+markers",
                    name=f"{name}, cost-model extrapolation (not timed)",
                    line=dict(color=MODEL_COLORS[model], width=2, dash="dash"),
                    marker=dict(symbol="circle-open", size=9),
                    text=[hover[i] for i in bridge.index],
                    hovertemplate="%{text} (%{x:.3s} weights): ~%{y:.4g} ms<extra>"
                    + name
                    + " estimate</extra>",
                )
            )
    first = part[~part["estimated"]]
    if not first.empty:
        fig.add_vline(x=float(first["parameters"].max()), line=dict(color="#999999", dash="dot", width=1))
        fig.add_annotation(x=math.log10(float(first["parameters"].max())), y=1.0, yref="paper",
                           text="measured | extrapolated", showarrow=False, yanchor="bottom")  # fmt: skip
    n = int(part["candidates"].iloc[0])
    length = int(part["history"].iloc[0])
    return _layout(
        fig,
        f"Request latency against encoder size (N = {n:,}, L = {length})",
        xaxis_type="log",
        yaxis_type="log",
        xaxis_title="encoder weights, 12·layers·d² (log scale)",
        yaxis_title="online p50 wall-clock, ms (log scale)",
        height=460,
    )


def latency_figures(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> list[tuple[str, go.Figure]]:
    """The Latency page's figures for one sweep (at its largest N, smallest L, torch), for an HTML report."""
    frame = _require_rows(
        rows, "latency rows", ["model", "stage", "segments", "candidates", "history", "p50_ms"]
    )
    online = frame[(frame["model"] == "msli") & (frame["stage"] == "online")]
    if online.empty:
        raise MsliError("The sweep has no MS-LI online rows; include --models msli.")
    backend = "torch" if (online["backend"] == "torch").any() else str(online["backend"].iloc[0])
    n, length = int(online["candidates"].max()), int(online["history"].min())
    figures = [
        ("latency_vs_k", latency_vs_segments(frame, n, length, backend)),
        ("stage_costs", stage_cost_bars(frame, n, length, backend)),
    ]
    if online["backend"].nunique() > 1:
        figures.append(("backends", backend_comparison(frame)))
    variants = set(_variant(frame[frame["stage"] == "nearline"]))
    if {"incremental", "full"} <= variants:
        figures.append(("nearline", nearline_update_comparison(frame)))
    return figures


def ann_tradeoff(table: pd.DataFrame) -> go.Figure:
    """Recall@10 against p50 of the ANN first stage, one line per (N, index) through its probes, and the
    exhaustive request of the same table as a star at recall 1. ``table`` is
    :func:`msli_core.serving.report.ann_table`'s frame."""
    if table is None or table.empty:
        raise MsliError("The sweep has no ANN rows; run msli bench with --ann ivf to measure them.")
    fig = go.Figure()
    palette = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2"]
    for i, ((n, index), group) in enumerate(table.groupby(["N", "index"], sort=True)):
        color = palette[i % len(palette)]
        if str(index).startswith("none"):
            hover = f"exhaustive: %{{x:.4g}} ms<extra>N={n:,}</extra>"
            fig.add_trace(go.Scatter(x=group["p50 ms"], y=group["recall@10"], mode="markers",
                                     marker=dict(symbol="star", size=14, color="#333"),
                                     name=f"exhaustive, N={n:,}", hovertemplate=hover))  # fmt: skip
            continue
        group = group.sort_values("probes")
        fig.add_trace(go.Scatter(x=group["p50 ms"], y=group["recall@10"], mode="lines+markers+text",
                                 text=[f"{p}" for p in group["probes"]], textposition="top center",
                                 line=dict(color=color, width=2), name=f"{index}, N={n:,}",
                                 hovertemplate="probes %{text}: %{x:.4g} ms, recall@10 %{y:.3f}"
                                 f"<extra>{index}, N={n:,}</extra>"))  # fmt: skip
    fig.add_hline(y=0.95, line=dict(color="#999", dash="dot"), annotation_text="recall 0.95")
    return _layout(
        fig,
        "ANN first stage: recall@10 against latency (labels: probes)",
        xaxis_type="log",
        xaxis_title="online p50, ms (wall clock, log scale)",
        yaxis_title="recall@10 against exhaustive scoring",
        yaxis_range=[0, 1.05],
        height=420,
    )
