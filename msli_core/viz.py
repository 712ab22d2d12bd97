"""Plotly figures of MS-LI Lab, shared by the Streamlit pages and the CLI's HTML reports.

Every function takes plain data (a dataset, a list of row dicts, a DataFrame) and returns a
``plotly.graph_objects.Figure``; nothing here imports streamlit or runs a model. Each figure has a
title and axis labels that say what the numbers are; :data:`HOW_TO_READ` holds the sentence the app
shows under each one, so the CLI report and the app tell the same story.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from msli_core.errors import MsliError

# One colour per segment index (oldest → newest), reused by every explanation figure so that
# "segment 2" has the same colour on the timeline, the heatmap and the map.
SEGMENT_COLORS = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D",
    "#BAB0AC", "#EECA3B", "#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#17BECF",
)  # fmt: skip
MODEL_COLORS = {
    "msli": "#4C78A8",
    "two-tower": "#F58518",
    "cross-encoder": "#E45756",
    "popularity": "#9D755D",
    "item-knn": "#72B7B2",
    "floor": "#888888",
}
STAGE_COLORS = {
    "offline": "#9ecae1",
    "nearline": "#54A24B",
    "online": "#4C78A8",
    "end_to_end": "#E45756",
    "floor": "#888888",
}
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h"))

HOW_TO_READ: dict[str, str] = {
    "activity": "Users sorted from most to least active (log scale). A steep left end and a long flat tail "
    "mean a few heavy users and many light ones; light users have short histories, so they have few "
    "segments to explain.",
    "popularity": "Items sorted from most to least interacted-with, both axes logarithmic. A straight line "
    "is a power law (Zipf); the annotation says how much of all interactions the top 10% of items take, "
    "which is roughly what a popularity baseline can exploit.",
    "over_time": "Interactions per month. Gaps or spikes show collection artefacts (bulk imports, crawls); "
    "leave-one-out uses each user's last events, so the right end is where the test targets lie.",
    "history_length": "How many events each user has. The dashed line is the median; the dotted line is "
    "L_max (histories longer than it are cut to their newest L_max events). Users with fewer than 3 "
    "events are kept for training but never evaluated.",
    "training": "Left: training loss per epoch (it should fall). Right: validation NDCG@10 per epoch; "
    "training stops early when it stops improving, and the best epoch's weights are kept.",
    "quality_vs_k": "Test NDCG@10 for each number of segments K (K = 1 is a two-tower model). Dashed "
    "lines are baselines without segments. A rising curve means splitting the history into interest "
    "segments helps; a plateau says where more segments stop paying for their online cost (K·d·N).",
    "quality_vs_latency": "Each point is a trained model: quality (test NDCG@10, up is better) against the "
    "measured online p50 latency of its shape (log scale, left is faster). The best trade-offs sit in "
    "the upper left.",
    "timeline": "Each dot is one event of the user's history, in time order; its colour is the segment it "
    "falls in. Grey dots are older than the last K segments and are not used. The star is the held-out "
    "test item when the user has one.",
    "heatmap": "Rows are the user's segments (oldest at the top), columns the recommended items. Each cell "
    "is that segment's contribution c_k to the item's score; a column sums exactly to the score shown "
    "above it. Red cells pushed the item up, blue cells pushed it down.",
    "within_segment": "Inside each segment, the attention-pooling weights of its items (each segment's "
    "weights sum to 1). They say which items the segment vector u_k mostly stands for.",
    "deletion": "Faithfulness check: the score after removing the top-contributing segment and re-scoring, "
    "against removing a random other segment. If the explanation is faithful, removing the top segment "
    "drops the score much more.",
    "item_map": "A 2-D PCA projection of the item table (grey dots, a sample of the catalog). The coloured "
    "crosses are this user's segment vectors; the stars are the top recommendations. Recommendations sit "
    "near the segment vectors that scored them; PCA keeps only two directions, so distances are rough.",
    "latency_vs_k": "Online p50 latency against the number of segments K (lines), with the p95 band shaded. "
    "The cross-encoder (early interaction) and the floors (a bare matmul of the same shapes; bytes over "
    "memory bandwidth) are on the same logarithmic axis: the gap between them is what MS-LI buys.",
    "stage_costs": "Per-request cost of each stage (p50, stacked). Offline work (the item table) is paid "
    "when the catalog changes and nearline work (one open segment) once per new event; only the online "
    "part is paid per request.",
    "backends": "The same online scoring measured with torch (eager, inference_mode) and with ONNX Runtime, "
    "p50 per shape. Bars of equal height mean the framework overhead does not matter at that size.",
    "nearline": "Cost of updating a user's segment cache after one new event: re-encoding only the open "
    "segment (incremental) against re-encoding the whole history (full). The ratio is shown on each pair.",
    "whatif_stages": "Predicted p50 latency per stage for each model at the chosen sizes and hardware (log "
    "scale). Offline and nearline costs are amortised; the online bar is what a user waits for.",
    "whatif_measured": "Measured p50 of the last sweep (x) against the cost model's prediction (y), log-log. "
    "Points on the diagonal are predicted exactly; the dotted lines mark 2× off. The title gives the "
    "median and worst ratio.",
    "home_budget": "Predicted per-request latency of one request (N candidates, L history) for the same "
    "model size, split by where it is spent. The cross-encoder pays the large model per candidate; MS-LI "
    "pays it nearline, once per new event.",
}


def _layout(fig: go.Figure, title: str, **kwargs: Any) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left"), **_LAYOUT)
    fig.update_layout(**kwargs)
    return fig


def figure_point_count(fig: go.Figure) -> int:
    """How many data points a figure draws (x/y/z values over all traces): 0 means an empty chart."""
    total = 0
    for trace in fig.data:
        for attr in ("y", "x", "z", "values"):
            values = getattr(trace, attr, None)
            if values is not None:
                total += int(np.size(np.asarray(values, dtype=object)))
                break
    return total


def write_html(figures: Sequence[tuple[str, go.Figure]], path: str | Path, title: str = "MS-LI Lab") -> Path:
    """Write several figures into one self-contained HTML report (plotly.js embedded once).

    ``figures`` is a list of (key, figure); a key found in :data:`HOW_TO_READ` puts its sentence under
    the chart, as in the app.
    """
    from msli_core.outputs import atomic_write_text

    parts = [f"<html><head><meta charset='utf-8'><title>{title}</title></head><body>", f"<h1>{title}</h1>"]
    for i, (key, fig) in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False))
        if key in HOW_TO_READ:
            parts.append(f"<p style='color:#555;max-width:60em'>{HOW_TO_READ[key]}</p>")
    parts.append("</body></html>")
    path = Path(path)
    atomic_write_text(path, "\n".join(parts))
    return path


# ----------------------------------------------------------------------------------------------- data


def _events_per_user(data) -> np.ndarray:
    counts = np.bincount(data.interactions["user"].to_numpy(np.int64), minlength=data.n_users + 1)
    return counts[1:]  # (U,)


def _events_per_item(data) -> np.ndarray:
    counts = np.bincount(data.interactions["item"].to_numpy(np.int64), minlength=data.n_items + 1)
    return counts[1:]  # (N,)


def activity_long_tail(data) -> go.Figure:
    """Events per user, users sorted by activity (rank on x, events on a log y axis)."""
    counts = np.sort(_events_per_user(data))[::-1]
    rank = np.arange(1, len(counts) + 1)
    share = np.cumsum(counts) / max(1, counts.sum())
    fig = go.Figure(
        go.Scatter(
            x=rank,
            y=counts,
            mode="lines",
            fill="tozeroy",
            line=dict(color=MODEL_COLORS["msli"]),
            customdata=share,
            hovertemplate="user rank %{x}<br>%{y} events<br>top %{x} users hold %{customdata:.0%} of events"
            "<extra></extra>",
            name="events per user",
        )
    )
    top10 = share[max(0, math.ceil(0.1 * len(counts)) - 1)] if len(counts) else 0.0
    fig.add_annotation(
        x=0.98,
        y=0.95,
        xref="paper",
        yref="paper",
        showarrow=False,
        xanchor="right",
        text=f"top 10% of users hold {top10:.0%} of events",
    )
    return _layout(
        fig,
        "User activity (long tail)",
        xaxis_title="user rank (most active first)",
        yaxis_title="events per user",
        yaxis_type="log",
        height=340,
    )


def item_popularity(data) -> go.Figure:
    """Events per item, items sorted by popularity, log-log."""
    counts = np.sort(_events_per_item(data))[::-1]
    counts = counts[counts > 0]
    rank = np.arange(1, len(counts) + 1)
    share = np.cumsum(counts) / max(1, counts.sum())
    fig = go.Figure(
        go.Scatter(
            x=rank,
            y=counts,
            mode="lines",
            line=dict(color=MODEL_COLORS["cross-encoder"]),
            customdata=share,
            hovertemplate="item rank %{x}<br>%{y} events<br>top %{x} items take %{customdata:.0%}"
            "<extra></extra>",
            name="events per item",
        )
    )
    top10 = share[max(0, math.ceil(0.1 * len(counts)) - 1)] if len(counts) else 0.0
    fig.add_annotation(
        x=0.98,
        y=0.95,
        xref="paper",
        yref="paper",
        showarrow=False,
        xanchor="right",
        text=f"top 10% of items take {top10:.0%} of interactions",
    )
    return _layout(
        fig,
        "Item popularity",
        xaxis_title="item rank (most popular first)",
        yaxis_title="events per item",
        xaxis_type="log",
        yaxis_type="log",
        height=340,
    )


def interactions_over_time(data) -> go.Figure:
    """Interactions per month (bars) and, when the data has ratings, the monthly mean rating (line)."""
    frame = data.interactions
    month = pd.to_datetime(frame["timestamp"].to_numpy(np.int64), unit="s").to_period("M")
    grouped = pd.DataFrame({"month": month, "rating": frame["rating"].to_numpy()}).groupby("month")
    counts = grouped.size()
    x = counts.index.to_timestamp()
    has_ratings = bool(frame["rating"].notna().any())
    fig = make_subplots(specs=[[{"secondary_y": has_ratings}]])
    fig.add_trace(
        go.Bar(x=x, y=counts.to_numpy(), name="interactions", marker_color=MODEL_COLORS["msli"]),
        secondary_y=False,
    )
    if has_ratings:
        mean_rating = grouped["rating"].mean()
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean_rating.to_numpy(),
                name="mean rating",
                mode="lines",
                line=dict(color=MODEL_COLORS["cross-encoder"], width=1.5),
            ),
            secondary_y=True,
        )
        fig.update_yaxes(title_text="mean rating", secondary_y=True, showgrid=False)
    fig.update_yaxes(title_text="interactions per month", secondary_y=False)
    return _layout(fig, "Interactions over time", xaxis_title="month", height=340)


def history_length_distribution(data, max_history: int = 200) -> go.Figure:
    """Histogram of events per user, with the median and L_max marked."""
    lengths = _events_per_user(data)
    lengths = lengths[lengths > 0]
    fig = go.Figure(
        go.Histogram(
            x=lengths,
            nbinsx=min(60, max(5, len(np.unique(lengths)))),
            marker_color=MODEL_COLORS["two-tower"],
            name="users",
            hovertemplate="%{x} events: %{y} users<extra></extra>",
        )
    )
    if len(lengths):
        median = float(np.median(lengths))
        fig.add_vline(
            x=median, line_dash="dash", annotation_text=f"median {median:g}", annotation_position="top"
        )
        if lengths.max() >= max_history:
            over = float((lengths > max_history).mean())
            fig.add_vline(
                x=max_history,
                line_dash="dot",
                annotation_text=f"L_max {max_history} ({over:.0%} of users cut)",
                annotation_position="top right",
            )
    return _layout(
        fig,
        "History length per user",
        xaxis_title="events per user",
        yaxis_title="users",
        bargap=0.05,
        height=340,
    )


def data_figures(data, max_history: int = 200) -> list[tuple[str, go.Figure]]:
    """The Data page's four charts, keyed by their :data:`HOW_TO_READ` entry."""
    return [
        ("activity", activity_long_tail(data)),
        ("popularity", item_popularity(data)),
        ("over_time", interactions_over_time(data)),
        ("history_length", history_length_distribution(data, max_history)),
    ]


def _require_rows(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, what: str, columns: Sequence[str]):
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = [c for c in columns if c not in frame.columns]
    if frame.empty or missing:
        raise MsliError(
            f"No {what} to plot" + (f" (missing columns: {', '.join(missing)})" if missing else "") + "."
        )
    return frame


# -------------------------------------------------------------------------------------------- latency

MODEL_LABELS = {"msli": "MS-LI", "two-tower": "two-tower", "cross-encoder": "cross-encoder"}
STAGE_LABELS = {
    "offline": "offline (item table, per catalog refresh)",
    "nearline": "nearline (open segment, per new event)",
    "nearline_full": "nearline, full re-encode",
    "online": "online (per request)",
    "end_to_end": "end to end (nearline + online)",
}


def _ms_text(ms: float) -> str:
    if not math.isfinite(ms):
        return "–"
    if ms >= 1000:
        return f"{ms / 1000:.3g} s"
    if ms >= 1:
        return f"{ms:.3g} ms"
    return f"{ms * 1000:.3g} µs"


def count_text(n: float) -> str:
    """A count for humans: 950, 12.3 k, 4.5 M, 1.2 B."""
    for scale, unit in ((1e9, " B"), (1e6, " M"), (1e3, " k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


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
                text=[_ms_text(m) if m > 0 else "none" for m in ms],
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
                text=[_ms_text(v) if v > 0 else "none" for v in ms],
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
        legend=dict(orientation="h", traceorder="reversed"),
    )
