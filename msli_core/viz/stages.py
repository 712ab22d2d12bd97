"""The Latency page's per-stage figures: MS-LI's stage costs, torch against ONNX Runtime, and the
incremental nearline update against a full re-encode."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from msli_core.errors import MsliError
from msli_core.viz.common import (
    STAGE_COLORS,
    STAGE_LABELS,
    _filter,
    _layout,
    _require_rows,
    _variant,
    ms_text,
)


def stage_cost_bars(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame, candidates: int, history: int, backend: str = "torch"
) -> go.Figure:
    """Stacked p50 of nearline (incremental, per new event) and online (per request) per K, for MS-LI at
    one (N, L, backend); the offline item-table cost (per catalog refresh) is a dotted line beside them, not
    stacked, since no request pays it."""
    frame = _require_rows(rows, "latency rows", ["model", "stage", "segments", "candidates", "p50_ms"])
    msli = _filter(frame, model="msli", history=history, backend=backend)
    # nearline rows do not depend on N (their candidates are empty); the other stages are taken at N
    msli = msli[(msli["stage"] == "nearline") | (msli["candidates"] == candidates)]
    msli = msli[_variant(msli).isin(["", "incremental"])]
    if msli.empty:
        raise MsliError(f"The sweep has no MS-LI rows at N = {candidates}, L = {history}, backend {backend}.")
    table = msli.pivot_table(
        index="segments", columns="stage", values="p50_ms", aggfunc="median"
    ).sort_index()
    fig = go.Figure()
    labels = [f"K={int(k)}" for k in table.index]
    for stage in ("online", "nearline"):
        if stage not in table.columns:
            continue
        values = table[stage].to_numpy()
        fig.add_trace(
            go.Bar(
                x=labels,
                y=values,
                name=STAGE_LABELS[stage],
                marker_color=STAGE_COLORS[stage],
                text=[ms_text(v) for v in values],
                textposition="inside",
                hovertemplate="%{x}: %{y:.4g} ms<extra>" + stage + "</extra>",
            )
        )
    stacked = table[[s for s in ("online", "nearline") if s in table.columns]].sum(axis=1).to_numpy()
    fig.add_trace(  # the total on top of each stack
        go.Scatter(
            x=labels,
            y=stacked,
            mode="text",
            text=[ms_text(v) for v in stacked],
            textposition="top center",
            showlegend=False,
            hoverinfo="skip",
        )
    )
    if "offline" in table.columns:
        offline = table["offline"].dropna()
        lo, hi = ms_text(float(offline.min())), ms_text(float(offline.max()))
        fig.add_annotation(
            x=1.0,
            y=1.0,
            xref="paper",
            yref="paper",
            xanchor="right",
            yanchor="bottom",
            showarrow=False,
            text=f"not stacked: the offline item table takes {lo if lo == hi else lo + '–' + hi} "
            "per catalog refresh",
        )
    fig.update_yaxes(range=[0, float(np.nanmax(stacked)) * 1.2 if len(stacked) else 1])
    return _layout(
        fig,
        f"Stage costs of MS-LI (p50, N = {candidates:,}, L = {history}, {backend})",
        barmode="stack",
        yaxis_title="p50 wall-clock, ms",
        height=400,
    )


def backend_comparison(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, stage: str = "online") -> go.Figure:
    """p50 of the same MS-LI stage under each backend, one group per (K, N, L)."""
    frame = _require_rows(
        rows, "latency rows", ["model", "stage", "segments", "candidates", "backend", "p50_ms"]
    )
    part = _filter(frame, model="msli", stage=stage)
    part = part[_variant(part).isin(["", "incremental"])]
    if part["backend"].nunique() < 2:
        raise MsliError("The sweep measured one backend only; include torch and onnxruntime to compare them.")
    history = part["history"] if "history" in part.columns else pd.Series(0, part.index)
    part = part.assign(
        shape=[
            f"K={int(k)} N={int(n):,}" + (f" L={int(h)}" if h else "")
            for k, n, h in zip(part["segments"], part["candidates"], history, strict=True)
        ]
    )
    fig = go.Figure()
    colors = {"torch": "#EE4C2C", "onnxruntime": "#4C78A8"}
    for backend, group in part.groupby("backend", sort=True):
        group = group.groupby("shape", sort=False, as_index=False)["p50_ms"].median()
        fig.add_trace(
            go.Bar(
                x=group["shape"],
                y=group["p50_ms"],
                name=str(backend),
                marker_color=colors.get(str(backend)),
                hovertemplate="%{x}: %{y:.4g} ms<extra>" + str(backend) + "</extra>",
            )
        )
    return _layout(
        fig,
        f"torch vs ONNX Runtime, MS-LI {stage} (p50)",
        barmode="group",
        yaxis_type="log",
        yaxis_title="p50 wall-clock, ms (log scale)",
        xaxis_title="shape",
        height=400,
    )


def nearline_update_comparison(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> go.Figure:
    """Incremental (open window only) vs full re-encode of the nearline stage, per (K, L), with the ratio."""
    frame = _require_rows(rows, "latency rows", ["model", "stage", "segments", "history", "p50_ms"])
    near = _filter(frame, model="msli", stage="nearline")
    near = near.assign(variant=_variant(near).replace("", "incremental"))
    if set(near["variant"]) < {"incremental", "full"}:
        raise MsliError(
            "The sweep has no full nearline re-encode rows to compare the incremental update with."
        )
    table = near.pivot_table(
        index=["segments", "history"], columns="variant", values="p50_ms", aggfunc="median"
    )
    table = table.dropna(subset=["incremental", "full"]).sort_index()
    labels = [f"K={int(k)} L={int(h)}" for k, h in table.index]
    fig = go.Figure()
    for variant, color in (("full", "#E45756"), ("incremental", "#54A24B")):
        fig.add_trace(
            go.Bar(
                x=labels,
                y=table[variant].to_numpy(),
                name="full re-encode" if variant == "full" else "incremental (open window only)",
                marker_color=color,
                hovertemplate="%{x}: %{y:.4g} ms<extra>" + variant + "</extra>",
            )
        )
    ratio = (table["full"] / table["incremental"]).to_numpy()
    fig.add_trace(
        go.Scatter(
            x=labels,
            y=table["full"].to_numpy() * 1.15,
            mode="text",
            text=[f"{r:.1f}× cheaper" for r in ratio],
            textposition="top center",
            showlegend=False,
            hoverinfo="skip",
        )
    )
    return _layout(
        fig,
        "Nearline update: incremental vs full re-encode (p50)",
        barmode="group",
        yaxis_type="log",
        yaxis_title="p50 wall-clock, ms (log scale)",
        height=400,
    )
