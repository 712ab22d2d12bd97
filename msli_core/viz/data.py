"""The Data page's figures: user activity, item popularity, interactions over time, history lengths."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from msli_core.viz.common import (
    MODEL_COLORS,
    _layout,
)


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
