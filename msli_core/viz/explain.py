"""The Explain page's figures: the history timeline by segment, per-segment contributions, the items
inside each segment, the deletion check and the PCA map of the item table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from msli_core.errors import MsliError
from msli_core.viz.common import (
    SEGMENT_COLORS,
    _layout,
)


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
    # a column is labelled by its rank, its title (shortened; whole in the hover) and its score
    columns = [
        f"#{i + 1} {_short(str(t), 12)}<br>{s:.3f}"
        for i, (t, s) in enumerate(zip(item_titles, scores, strict=True))
    ]
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
        xaxis_title="recommendation: rank, title and score (the sum of its column)",
        height=max(300, 140 + 55 * z.shape[0]),
        xaxis=dict(side="bottom"),
    )


def within_segment_weights(segments: Sequence[Mapping[str, Any]], top: int = 6) -> go.Figure:
    """The items each segment vector mostly stands for: its ``top`` attention-pooling weights.

    ``segments``: ``index``, ``label``, ``titles`` (the segment's items) and ``weights`` (same length): the
    pooling weights of a closed segment (sum 1) or the recency weights of the newest items, in the open
    window or in their own slot (0 for the other events, which are left out).
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
        xaxis_title="pooling or recency weight",
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
