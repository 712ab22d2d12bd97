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

from msli_core import kinds
from msli_core.errors import MsliError

# One colour per segment index (oldest → newest), reused by every explanation figure so that
# "segment 2" has the same colour on the timeline, the heatmap and the map.
SEGMENT_COLORS = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D",
    "#BAB0AC", "#EECA3B", "#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#17BECF",
)  # fmt: skip
MODEL_COLORS = {**kinds.COLORS, "floor": "#888888"}
STAGE_COLORS = {
    "offline": "#9ecae1",
    "nearline": "#54A24B",
    "online": "#4C78A8",
    "end_to_end": "#E45756",
    "floor": "#888888",
}
_LAYOUT = dict(
    template="plotly_white",
    margin=dict(l=60, r=20, t=90, b=50),
    legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0),
)

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
    "heatmap": "Rows are the user's segments (oldest at the top), columns the recommended items by rank (#1 "
    "is the first row of the table above). Each cell is that segment's contribution c_k to the item's "
    "score; a column sums exactly to the score written under it. Red cells pushed the item up, blue cells "
    "pushed it down.",
    "within_segment": "Inside each segment, the attention-pooling weights of its items (each segment's "
    "weights sum to 1). They say which items the segment vector u_k mostly stands for.",
    "deletion": "Faithfulness check: the score after removing the top-contributing segment and re-scoring, "
    "against removing a random other segment. If the explanation is faithful, removing the top segment "
    "drops the score much more.",
    "item_map": "A 2-D PCA projection of the item table (grey dots, a sample of the catalog; open circles: "
    "the user's history). The coloured crosses are this user's segment vectors, drawn at the items' "
    "typical length since a score depends on their direction; the stars are the top recommendations, "
    "numbered by rank. Recommendations lie toward the segment vectors that scored them; PCA keeps only "
    "two directions, so distances are rough.",
    "latency_vs_k": "Online p50 latency against the number of segments K (lines), with the p95 band shaded. "
    "The cross-encoder (early interaction) and the floors (a bare matmul of the same shapes; bytes over "
    "memory bandwidth) are on the same logarithmic axis: the gap between them is what MS-LI buys.",
    "stage_costs": "What one new event plus one request cost (p50, stacked, total on top): the nearline "
    "update of the open window (once per new event) and the online scoring (per request, the part a user "
    "waits for). The offline item table is paid only when the catalog changes; its cost is written above the "
    "chart instead of stacked.",
    "backends": "The same online scoring measured with torch (eager, inference_mode) and with ONNX Runtime, "
    "p50 per shape. Bars of equal height mean the framework overhead does not matter at that size.",
    "nearline": "Cost of updating a user's segment cache after one new event: re-encoding only the open "
    "segment (incremental) against re-encoding the whole history (full). The ratio is shown on each pair.",
    "whatif_stages": "Predicted p50 latency per stage for each model at the chosen sizes and hardware (log "
    "scale). Offline and nearline costs are amortised; the online bar is what a user waits for.",
    "whatif_measured": "Measured p50 of the last sweep (x) against the cost model's prediction (y), log-log. "
    "Points on the diagonal are predicted exactly; the dotted lines mark 2× off. The title gives the "
    "median and worst ratio.",
    "whatif_curve": "The cost model's prediction of MS-LI's online latency as K grows (line) at the "
    "last sweep's largest N, with the measured p50 at each K (dots; the bar reaches p95). "
    "Where the dots follow the line, the model can be trusted to extrapolate to other sizes.",
    "home_budget": "Predicted per-request latency of one request (N candidates, L history) for the same "
    "model size, split by where it is spent. The cross-encoder pays the large model per candidate; MS-LI "
    "pays it nearline, once per new event.",
}


# ------------------------------------------------------------------------------------ numbers and ticks

_SI_PREFIXES = ("", "k", "M", "G", "T", "P", "E")  # a measured unit: 4.1 PFLOP, 3.2 GB/s
_COUNT_PREFIXES = ("", "k", "M", "B", "T", "P", "E")  # a bare count or a ratio: 1.2 B parameters, 5.8 M×
_TIME_UNITS = (  # (name, seconds, how many of it before the next unit)
    ("ns", 1e-9, 1000),
    ("µs", 1e-6, 1000),
    ("ms", 1e-3, 1000),
    ("s", 1.0, 60),
    ("min", 60.0, 60),
    ("h", 3600.0, 24),
    ("d", 86400.0, 365.25),
    ("y", 31_557_600.0, math.inf),
)


def _mantissa(m: float, digits: int) -> str:
    """``m`` to ``digits`` significant digits (never fewer than its integer digits), no trailing zeros."""
    if m == 0:
        return "0"
    places = max(0, digits - 1 - math.floor(math.log10(abs(m))))
    text = f"{m:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def human_number(x: float, unit: str = "", *, digits: int = 2) -> str:
    """A number for humans, to ``digits`` significant digits with a prefix per factor of 1000.

    ``unit=""`` (a count) and ``"×"`` (a ratio) say k, M, B, T, P: ``human_number(5_820_050, "×")`` is
    "5.8 M×", ``human_number(1.2e9)`` "1.2 B". Any other unit takes the SI prefix:
    ``human_number(4.113e15, "FLOP")`` is "4.1 PFLOP". ``unit="s"`` reads ``x`` as seconds and picks the
    unit of time: ``human_number(82_800, "s")`` is "23 h", ``human_number(0.0021, "s")`` "2.1 ms".
    NaN and infinities are "–".
    """
    x = float(x)
    if not math.isfinite(x):
        return "–"
    if unit == "s":
        return _human_seconds(x, digits)
    prefixes = _COUNT_PREFIXES if unit in ("", "×") else _SI_PREFIXES
    power = 0 if x == 0 else min(max(0, math.floor(math.log10(abs(x)) / 3)), len(prefixes) - 1)
    text = _mantissa(x / 1000**power, digits)
    if abs(float(text)) >= 1000 and power < len(prefixes) - 1:  # 999.7 k rounds to 1000 k: say 1 M
        power += 1
        text = _mantissa(x / 1000**power, digits)
    if prefixes[power]:
        return f"{text} {prefixes[power]}{unit}"
    return f"{text}{'' if unit == '×' else ' '}{unit}" if unit else text


def _human_seconds(x: float, digits: int) -> str:
    if x == 0:
        return "0 s"
    last = len(_TIME_UNITS) - 1
    for i, (name, scale, limit) in enumerate(_TIME_UNITS):
        if abs(x) < scale * limit or i == last:
            text = _mantissa(x / scale, digits)
            if abs(float(text)) >= limit and i < last:  # 59.97 s rounds to 60 s: say 1 min
                name, scale, _ = _TIME_UNITS[i + 1]
                text = _mantissa(x / scale, digits)
            return f"{text} {name}"
    raise AssertionError("unreachable")  # the last unit takes every size


# Mantissas per decade, coarsest first: log_ticks takes the first that labels the range well enough.
_LOG_STEPS = (
    (1,),
    (1, 2, 5),
    (1, 2, 3, 5),
    (1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9),
)
_MIN_LOG_SPAN = 0.3  # decades: a log axis narrower than this (one value) is widened to show two ticks


def log_ticks(lo: float, hi: float, *, at_least: int = 3) -> list[float]:
    """Tick values of a log axis that shows ``lo``..``hi`` (both above 0), all inside that range.

    The coarsest of: one per decade, 1-2-5, 1-2-3-5, 1…9, 1…9 with 1.5 and 2.5, that puts ``at_least``
    ticks in the range; else the one that puts the most. ``log_ticks(1, 1000)`` is [1, 10, 100, 1000],
    ``log_ticks(20, 300)`` [20, 50, 100, 200], ``log_ticks(0.11, 0.4)`` [0.2, 0.3, 0.4]. A range under
    about a fifth of a decade can get fewer than two (see :func:`set_log_ticks`).
    """
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        return []
    decades = range(math.floor(math.log10(lo)), math.floor(math.log10(hi)) + 1)
    best: list[float] = []
    for steps in _LOG_STEPS:
        values = (float(f"{m * 10.0**e:.12g}") for e in decades for m in steps)
        ticks = [v for v in values if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]
        if len(ticks) > 10:  # many decades: every other (or third) decade
            ticks = ticks[:: math.ceil(len(ticks) / 8)]
        if len(ticks) >= at_least:
            return ticks
        if len(ticks) > len(best):
            best = ticks
    return best


def _axis_values(fig: go.Figure, letter: str, ref: str) -> np.ndarray:
    """The positive finite numbers the traces on axis ``ref`` ("x", "y2", …) draw along ``letter``,
    error bars included."""
    parts = []
    for trace in fig.data:
        if (getattr(trace, f"{letter}axis", None) or letter) != ref:
            continue
        values = getattr(trace, letter, None)
        if values is None:
            continue
        flat = np.asarray(values, dtype=object).ravel()
        numbers = pd.to_numeric(pd.Series(flat), errors="coerce").to_numpy(dtype=float)
        parts.append(numbers)
        error = getattr(trace, f"error_{letter}", None)
        if error is not None and error.array is not None and len(error.array) == len(numbers):
            parts.append(numbers + np.asarray(error.array, dtype=float))
    values = np.concatenate(parts) if parts else np.zeros(0)
    return values[np.isfinite(values) & (values > 0)]


def set_log_ticks(fig: go.Figure) -> go.Figure:
    """Give every log axis of ``fig`` at least two labelled ticks over the range it shows.

    The range is the axis's own ``range`` when set, else its data's; the ticks are :func:`log_ticks` of
    it, labelled by :func:`human_number`. An axis whose own ``tickvals`` already put two ticks in that
    range (the segment counts K) keeps them; a range too narrow for two ticks (a single value) is widened
    to :data:`_MIN_LOG_SPAN` decades around its middle.
    """
    for letter in ("x", "y"):
        for axis in getattr(fig, f"select_{letter}axes")():
            if axis.type != "log":
                continue
            ref = letter + axis.plotly_name[len(letter) + 4 :]  # "xaxis2" -> "x2"
            if axis.range is not None:
                lo, hi = (10.0 ** float(r) for r in axis.range)
            else:
                values = _axis_values(fig, letter, ref)
                if not len(values):
                    continue
                lo, hi = float(values.min()), float(values.max())
            if axis.tickvals is not None:
                inside = [v for v in axis.tickvals if isinstance(v, (int, float)) and lo <= v <= hi]
                if len(inside) >= 2:
                    continue
            ticks = log_ticks(lo, hi)
            if len(ticks) < 2:
                middle = math.log10(lo * hi) / 2
                half = max(math.log10(hi / lo), _MIN_LOG_SPAN) / 2
                axis.update(range=[middle - half, middle + half])
                ticks = log_ticks(10.0 ** (middle - half), 10.0 ** (middle + half))
            axis.update(tickmode="array", tickvals=ticks, ticktext=[human_number(v, digits=3) for v in ticks])
    return fig


def _layout(fig: go.Figure, title: str, **kwargs: Any) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", y=0.98, yanchor="top"), **_LAYOUT)
    fig.update_layout(**kwargs)
    return set_log_ticks(fig)  # plotly's default often labels one tick (or none) on a short log axis


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


def _rank_curve(
    counts: np.ndarray, *, who: str, verb: str, title: str, color: str, log_x: bool, fill: bool
) -> go.Figure:
    """Events per user or item, sorted descending (rank on x), with the share the top 10% hold."""
    counts = np.sort(counts)[::-1]  # (n,) most active / popular first
    rank = np.arange(1, len(counts) + 1)
    share = np.cumsum(counts) / max(1, counts.sum())
    fig = go.Figure(
        go.Scatter(
            x=rank,
            y=counts,
            mode="lines",
            fill="tozeroy" if fill else None,
            line=dict(color=color),
            customdata=share,
            hovertemplate=f"{who} rank %{{x}}<br>%{{y}} events<br>"
            f"top %{{x}} {who}s {verb} %{{customdata:.0%}} of events<extra></extra>",
            name=f"events per {who}",
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
        text=f"top 10% of {who}s {verb} {top10:.0%} of events",
    )
    order = "most active" if who == "user" else "most popular"
    return _layout(
        fig,
        title,
        xaxis_title=f"{who} rank ({order} first)",
        yaxis_title=f"events per {who}",
        yaxis_type="log",
        height=340,
        **({"xaxis_type": "log"} if log_x else {}),
    )


def activity_long_tail(data) -> go.Figure:
    """Events per user, users sorted by activity (rank on x, events on a log y axis)."""
    return _rank_curve(
        _events_per_user(data),
        who="user",
        verb="hold",
        title="User activity (long tail)",
        color=MODEL_COLORS["msli"],
        log_x=False,
        fill=True,
    )


def item_popularity(data) -> go.Figure:
    """Events per item, items sorted by popularity, log-log (items never seen are left out)."""
    counts = _events_per_item(data)
    return _rank_curve(
        counts[counts > 0],
        who="item",
        verb="take",
        title="Item popularity",
        color=MODEL_COLORS["cross-encoder"],
        log_x=True,
        fill=False,
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
        # its own round ticks (not synced to the bars' axis, which gave 3.422 / 3.736 / 4.05)
        fig.update_yaxes(
            title_text="mean rating", secondary_y=True, showgrid=False, tickmode="auto", tickformat=".2~f"
        )
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

MODEL_LABELS = kinds.LABELS
STAGE_LABELS = {
    "offline": "offline (item table, per catalog refresh)",
    "nearline": "nearline (open window, per new event)",
    "nearline_full": "nearline, full re-encode",
    "online": "online (per request)",
    "end_to_end": "end to end (nearline + online)",
}


def _ms_text(ms: float) -> str:
    """Milliseconds as a duration: "120 µs", "4.2 ms", "1.58 s", "23 h" (:func:`human_number`)."""
    return human_number(ms / 1e3, "s", digits=3)


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
        legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0, traceorder="reversed"),
    )


def _filter(frame: pd.DataFrame, **equal: Any) -> pd.DataFrame:
    keep = np.ones(len(frame), dtype=bool)
    for column, value in equal.items():
        if value is None:
            continue
        if column not in frame.columns:
            return frame.iloc[0:0]
        keep &= (frame[column] == value).to_numpy()
    return frame[keep]


def _variant(frame: pd.DataFrame) -> pd.Series:
    return (
        frame["variant"].fillna("").astype(str) if "variant" in frame.columns else pd.Series("", frame.index)
    )


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
                text=["", f"{_ms_text(p50)}  "],
                textposition="bottom left",
                hovertemplate="cross-encoder: %{y:.4g} ms<extra></extra>",
            )
        )
    floors = shape[shape["stage"] == "floor"]
    if not floors.empty:
        variants = _variant(floors)
        matmul = floors[variants == "matmul"]
        if not matmul.empty:
            per_k = matmul.groupby("segments", as_index=False)["p50_ms"].median().sort_values("segments")
            fig.add_trace(
                go.Scatter(
                    x=per_k["segments"],
                    y=per_k["p50_ms"],
                    mode="lines+markers",
                    line=dict(color=MODEL_COLORS["floor"], dash="dot"),
                    marker=dict(symbol="x"),
                    name="floor: bare numpy matmul",
                    hovertemplate="K=%{x}: %{y:.4g} ms<extra>matmul floor</extra>",
                )
            )
        compute = floors[variants == "compute"]
        if not compute.empty:
            per_k = compute.groupby("segments", as_index=False)["p50_ms"].median().sort_values("segments")
            fig.add_trace(
                go.Scatter(
                    x=per_k["segments"],
                    y=per_k["p50_ms"],
                    mode="lines",
                    line=dict(color="#555555", dash="dot", width=1),
                    name="floor: FLOPs / peak GEMM rate",
                    hovertemplate="K=%{x}: %{y:.4g} ms<extra>compute floor</extra>",
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
    for model, k, label, dash in lines:
        part = _filter(shape, model=model, stage="online", backend=backend, segments=k)
        part = part[_variant(part) == ""].dropna(subset=["p50_ms"])
        if part.empty:
            continue
        per_n = part.groupby("candidates", as_index=False)["p50_ms"].median().sort_values("candidates")
        fig.add_trace(
            go.Scatter(
                x=per_n["candidates"],
                y=per_n["p50_ms"],
                mode="lines+markers",
                name=label,
                line=dict(color=MODEL_COLORS[model], width=2.5, dash=dash),
                hovertemplate="N=%{x:,}: %{y:.4g} ms<extra>" + MODEL_LABELS[model] + "</extra>",
            )
        )
    cross = _filter(shape, model="cross-encoder", stage="online")
    if not cross.empty:
        measured = cross.dropna(subset=["p50_ms"]).groupby("candidates", as_index=False)["p50_ms"].median()
        if not measured.empty:
            fig.add_trace(
                go.Scatter(
                    x=measured["candidates"],
                    y=measured["p50_ms"],
                    mode="lines+markers",
                    name="cross-encoder: a transformer pass per candidate",
                    line=dict(color=MODEL_COLORS["cross-encoder"], width=2.5),
                    hovertemplate="N=%{x:,}: %{y:.4g} ms<extra>cross-encoder</extra>",
                )
            )
        if "estimated_ms" in cross.columns:
            estimated = cross[cross["p50_ms"].isna()].dropna(subset=["estimated_ms"])
            if not estimated.empty:
                fig.add_trace(
                    go.Scatter(
                        x=estimated["candidates"],
                        y=estimated["estimated_ms"],
                        mode="markers",
                        marker=dict(symbol="circle-open", size=11, color=MODEL_COLORS["cross-encoder"]),
                        name="cross-encoder, cost-model estimate (not timed: over the time budget)",
                        hovertemplate="N=%{x:,}: ~%{y:.4g} ms (estimate)<extra>cross-encoder</extra>",
                    )
                )
    floors = _filter(shape, stage="floor", segments=segments)
    for variant, label, color in (
        ("compute", "floor: FLOPs / peak GEMM rate", "#555555"),
        ("bandwidth", "floor: item table bytes / bandwidth", "#bbbbbb"),
    ):
        part = floors[_variant(floors) == variant]
        if part.empty:
            continue
        per_n = part.groupby("candidates", as_index=False)["p50_ms"].median().sort_values("candidates")
        fig.add_trace(
            go.Scatter(
                x=per_n["candidates"],
                y=per_n["p50_ms"],
                mode="lines",
                name=label,
                line=dict(color=color, dash="dot"),
                hovertemplate="N=%{x:,}: %{y:.4g} ms<extra>" + variant + " floor</extra>",
            )
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
        yaxis_title="online p50, ms (log scale)",
        height=460,
    )


def _first(frame: pd.DataFrame, column: str) -> Any:
    values = frame[column].dropna() if column in frame.columns else pd.Series(dtype=object)
    return values.iloc[0] if len(values) else "?"


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
                text=[_ms_text(v) for v in values],
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
            text=[_ms_text(v) for v in stacked],
            textposition="top center",
            showlegend=False,
            hoverinfo="skip",
        )
    )
    if "offline" in table.columns:
        offline = table["offline"].dropna()
        lo, hi = _ms_text(float(offline.min())), _ms_text(float(offline.max()))
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
        yaxis_title="milliseconds",
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
        yaxis_title="p50 ms (log scale)",
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
        yaxis_title="p50 ms (log scale)",
        height=400,
    )


# ------------------------------------------------------------------------------------------- training


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


# ------------------------------------------------------------------------------------------- explain


def _short(title: str, n: int = 28) -> str:
    return title if len(title) <= n else title[: n - 1] + "…"


def segment_label(index: int, start: int, end: int) -> str:
    return f"segment {index} (events {start}–{end - 1})"


def history_timeline(
    events: pd.DataFrame, segment_labels: Mapping[int, str], target: Mapping[str, Any] | None = None
) -> go.Figure:
    """The user's history as dots in time, one row per segment, coloured by segment.

    ``events`` columns: ``position`` (0-based event index), ``timestamp`` (unix s), ``title``,
    ``segment`` (segment index, or -1 for events older than the kept segments). ``target``: the held-out
    event (``timestamp``, ``title``), drawn as a star on its own row.
    """
    if events.empty:
        raise MsliError("This user has no history to draw.")
    fig = go.Figure()
    when = pd.to_datetime(events["timestamp"], unit="s")
    rows = {-1: "older (not used)", **{k: segment_labels[k] for k in sorted(segment_labels)}}
    for k, label in rows.items():
        part = events["segment"] == k
        if not part.any():
            continue
        color = "#BBBBBB" if k < 0 else SEGMENT_COLORS[k % len(SEGMENT_COLORS)]
        fig.add_trace(
            go.Scatter(
                x=when[part],
                y=[label] * int(part.sum()),
                mode="markers",
                marker=dict(color=color, size=9, line=dict(width=0.5, color="white")),
                name=label,
                customdata=np.stack([events.loc[part, "position"], events.loc[part, "title"]], axis=1),
                hovertemplate="event %{customdata[0]}: %{customdata[1]}<br>%{x}<extra></extra>",
            )
        )
    if target:
        fig.add_trace(
            go.Scatter(
                x=[pd.to_datetime(int(target["timestamp"]), unit="s")],
                y=["held-out test event"],
                mode="markers+text",
                marker=dict(symbol="star", size=16, color="#222"),
                text=[_short(str(target["title"]), 40)],
                textposition="middle left",
                name="held-out test event",
                hovertemplate=str(target["title"]) + "<br>%{x}<extra>test target</extra>",
            )
        )
    n_rows = len(fig.data)
    return _layout(
        fig,
        "History timeline, coloured by segment",
        xaxis_title="time",
        yaxis=dict(categoryorder="array", categoryarray=[*rows.values(), "held-out test event"][::-1]),
        height=max(260, 70 + 45 * n_rows),
        showlegend=False,
    )


def contribution_heatmap(
    contributions: np.ndarray,
    scores: Sequence[float],
    item_titles: Sequence[str],
    segment_labels: Sequence[str],
) -> go.Figure:
    """Segments × recommended items; each cell is c_k(item), each column sums to the item's score.

    ``contributions`` (K, n) rows in ``segment_labels`` order (oldest first), columns in rank order.
    """
    z = np.asarray(contributions, dtype=float)  # (K, n)
    sums = z.sum(axis=0)
    # a column is labelled by its rank and score (titles are in the hover and the table of recommendations)
    columns = [f"#{i + 1}<br>{s:.3f}" for i, s in enumerate(scores)]
    hover_titles = np.broadcast_to(np.asarray([str(t) for t in item_titles], dtype=object), z.shape)
    bound = float(np.abs(z).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=list(segment_labels),
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            colorscale="RdBu_r",
            text=np.vectorize(lambda v: f"{v:+.3f}")(z),
            texttemplate="%{text}",
            customdata=np.stack([np.broadcast_to(sums, z.shape), hover_titles], axis=-1),
            hovertemplate="%{y}<br>%{customdata[1]}<br>c_k = %{z:.4f}<br>column sum %{customdata[0]:.4f}"
            "<extra></extra>",
            colorbar=dict(title="c_k"),
        )
    )
    gap = float(np.max(np.abs(sums - np.asarray(scores, dtype=float)))) if len(sums) else 0.0
    fig.add_annotation(
        x=1.0,
        y=1.0,
        xref="paper",
        yref="paper",
        yanchor="bottom",
        xanchor="right",
        showarrow=False,
        text=f"every column sums to its score (largest |Σc − y| = {gap:.1e})",
    )
    return _layout(
        fig,
        "Per-segment contributions to each recommendation",
        yaxis=dict(autorange="reversed"),
        xaxis_title="recommendation: rank and score (the sum of its column)",
        height=max(300, 140 + 55 * z.shape[0]),
        xaxis=dict(side="bottom"),
    )


def within_segment_weights(segments: Sequence[Mapping[str, Any]], top: int = 6) -> go.Figure:
    """The items each segment vector mostly stands for: its ``top`` attention-pooling weights.

    ``segments``: ``index``, ``label``, ``titles`` (the segment's items) and ``weights`` (same length): the
    pooling weights of a closed segment (sum 1) or the recency weights of the open window's newest items
    (0 for its other events, which are left out).
    """
    fig = go.Figure()
    for seg in segments:
        weights = np.asarray(seg["weights"], dtype=float)
        if not len(weights):
            continue
        order = np.argsort(-weights)[:top]
        order = order[weights[order] != 0]  # the open window's events without a direct weight
        titles = [str(seg["titles"][i]) for i in order]
        fig.add_trace(
            go.Bar(
                y=[f"{seg['index']} · {_short(t, 34)}" for t in titles][::-1],
                x=weights[order][::-1],
                orientation="h",
                name=seg["label"],
                marker_color=SEGMENT_COLORS[int(seg["index"]) % len(SEGMENT_COLORS)],
                hovertemplate="%{y}: weight %{x:.3f}<extra>" + seg["label"] + "</extra>",
            )
        )
    if not fig.data:
        raise MsliError("This user has no segment with items.")
    return _layout(
        fig,
        f"Inside each segment: the {top} items with the largest pooling weights",
        xaxis_title="pooling weight (sums to 1 per closed segment); open window: recency weight",
        height=max(300, 90 + 20 * sum(len(t.x) for t in fig.data)),
        yaxis=dict(automargin=True),
        showlegend=False,  # each bar's label starts with its segment number, in the segment's colour
    )


def deletion_check(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Score of each recommendation as is, without its top segment, and without a random other segment.

    ``rows``: ``title``, ``score``, ``without_top``, ``without_random`` (None when there is no other segment).
    """
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise MsliError("No recommendations to check.")
    labels = [
        f"#{i + 1}" for i in range(len(frame))
    ]  # the title is in the hover: ranks keep the axis legible
    fig = go.Figure()
    for column, name, color in (
        ("score", "full score", "#4C78A8"),
        ("without_top", "top segment removed", "#E45756"),
        ("without_random", "a random other segment removed", "#BAB0AC"),
    ):
        if column in frame.columns and frame[column].notna().any():
            fig.add_trace(
                go.Bar(
                    x=labels,
                    y=frame[column],
                    name=name,
                    marker_color=color,
                    customdata=frame["title"],
                    hovertemplate="%{x} %{customdata}: %{y:.4f}<extra>" + name + "</extra>",
                )
            )
    return _layout(
        fig,
        "Deletion check: re-scoring without a segment",
        barmode="group",
        yaxis_title="score",
        xaxis_title="recommendation (rank)",
        height=380,
    )


def item_map(
    item_vectors: np.ndarray,
    titles: Sequence[str],
    segment_vectors: np.ndarray,
    segment_labels: Sequence[str],
    recommended: Sequence[int],
    *,
    history: Sequence[int] = (),
    sample: int = 1500,
    seed: int = 0,
) -> go.Figure:
    """A 2-D PCA map of the item table with the user's segment vectors and top recommendations.

    ``item_vectors`` (N+1, d) with row 0 the padding (left out); ``segment_vectors`` (K', d) of the
    user's non-empty segments, oldest first; ``recommended``/``history`` are item ids.
    """
    from sklearn.decomposition import PCA

    table = np.asarray(item_vectors, dtype=np.float64)[1:]  # (N, d) without padding
    if len(table) < 3:
        raise MsliError("The item table is too small for a 2-D map.")
    pca = PCA(n_components=2, random_state=seed).fit(table)
    coords = pca.transform(table)  # (N, 2)
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(len(table), size=min(sample, len(table)), replace=False))
    fig = go.Figure(
        go.Scattergl(
            x=coords[shown, 0],
            y=coords[shown, 1],
            mode="markers",
            marker=dict(color="#CCCCCC", size=5),
            name=f"items ({len(shown):,} of {len(table):,})",
            text=[titles[i + 1] for i in shown],
            hovertemplate="%{text}<extra>item</extra>",
        )
    )
    hist = np.asarray([i for i in history if i > 0], dtype=int)
    if len(hist):
        fig.add_trace(
            go.Scatter(
                x=coords[hist - 1, 0],
                y=coords[hist - 1, 1],
                mode="markers",
                marker=dict(color="#777777", size=6, symbol="circle-open"),
                name="the user's history",
                text=[titles[i] for i in hist],
                hovertemplate="%{text}<extra>history</extra>",
            )
        )
    # Segment vectors can be much longer or shorter than item vectors; ranking depends on their direction
    # (a dot product per item), so they are drawn at the items' median length to stay on the same map.
    u = np.asarray(segment_vectors, dtype=np.float64)
    item_norm = float(np.median(np.linalg.norm(table, axis=1)))
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12) * item_norm
    seg = pca.transform(u)  # (K', 2)
    for k, label in enumerate(segment_labels):
        index = int(label.split()[1]) if label.startswith("segment ") else k
        fig.add_trace(
            go.Scatter(
                x=[seg[k, 0]],
                y=[seg[k, 1]],
                mode="markers+text",
                marker=dict(
                    symbol="x", size=16, color=SEGMENT_COLORS[index % len(SEGMENT_COLORS)], line=dict(width=2)
                ),
                text=[f"u{index}"],
                textposition="top center",
                name=label,
                hovertemplate=label + "<extra>segment vector</extra>",
            )
        )
    rec = np.asarray(recommended, dtype=int)
    fig.add_trace(
        go.Scatter(
            x=coords[rec - 1, 0],
            y=coords[rec - 1, 1],
            mode="markers+text",
            marker=dict(symbol="star", size=15, color="#222222"),
            text=[str(i + 1) for i in range(len(rec))],
            textposition="bottom center",
            name="top recommendations (rank)",
            customdata=[titles[i] for i in rec],
            hovertemplate="%{customdata}<extra>recommended</extra>",
        )
    )
    share = pca.explained_variance_ratio_
    return _layout(
        fig,
        "Item table, segment vectors and recommendations (PCA)",
        xaxis_title=f"PC 1 ({share[0]:.0%} of variance)",
        yaxis_title=f"PC 2 ({share[1]:.0%} of variance)",
        height=520,
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
