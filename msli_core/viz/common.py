"""What every figure shares: colours, labels, the sentence under each chart, numbers for humans, log-axis
ticks, the common layout, and the HTML report writer.

Names with a leading underscore are helpers for the other modules of ``msli_core.viz`` only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

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
    "within_segment": "Inside each segment, the attention-pooling weights of its items (a closed segment's "
    "weights sum to 1; the newest events show their recency weights, in a slot of their own or inside the "
    "open window). Compare them with "
    "1/S (0.02 for S = 50): weights near 1/S mean a flat segment, whose vector stands for all its items "
    "alike; only weights well above 1/S single an item out.",
    "deletion": "Faithfulness check: the score after removing the top-contributing segment and re-scoring, "
    "against removing a random other segment. If the explanation is faithful, removing the top segment "
    "drops the score much more.",
    "item_map": "A 2-D PCA projection of the item table (grey dots, a sample of the catalog; open circles: "
    "the user's history). The coloured crosses are this user's segment vectors, drawn at the items' "
    "typical length since a score depends on their direction; the stars are the top recommendations, "
    "numbered by rank. A score is a dot product in all d dimensions, and PCA keeps only two of them: a "
    "recommendation need not lie near the segment vector that scored it here, so read the map for the "
    "catalog's layout and the heatmap above for who scored what.",
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


def ratio_text(ratio: float) -> str:
    """A speed-up as a headline says it: whole numbers with thousands separators up to 100,000×
    (``1,340×``, not ``1.3 k×``), two significant digits below 10 (``3.2×``), prefixes beyond.

    >>> ratio_text(1340.4), ratio_text(3.24), ratio_text(2.5e7)
    ('1,340×', '3.2×', '25 M×')
    """
    if math.isfinite(ratio) and 10 <= abs(ratio) < 1e5:
        return f"{ratio:,.0f}×"
    return human_number(ratio, "×")


def human_number(x: float, unit: str = "", *, digits: int = 2) -> str:
    """A number for humans, to ``digits`` significant digits with a prefix per factor of 1000.

    ``unit=""`` (a count) and ``"×"`` (a ratio) say k, M, B, T, P: ``human_number(5_820_050, "×")`` is
    "5.8 M×", ``human_number(1.2e9)`` "1.2 B". Any other unit takes the SI prefix:
    ``human_number(4.113e15, "FLOP")`` is "4.1 PFLOP". ``unit="s"`` reads ``x`` as seconds and picks the
    unit of time: ``human_number(82_800, "s")`` is "23 h", ``human_number(0.0021, "s")`` "2.1 ms".
    NaN and infinities are "–".

    >>> human_number(5_820_050, "×"), human_number(4.113e15, "FLOP"), human_number(0.0021, "s")
    ('5.8 M×', '4.1 PFLOP', '2.1 ms')
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

    >>> log_ticks(20, 300)
    [20.0, 50.0, 100.0, 200.0]
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


def _require_rows(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, what: str, columns: Sequence[str]):
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = [c for c in columns if c not in frame.columns]
    if frame.empty or missing:
        raise MsliError(
            f"No {what} to plot" + (f" (missing columns: {', '.join(missing)})" if missing else "") + "."
        )
    return frame


MODEL_LABELS = kinds.LABELS
STAGE_LABELS = {
    "offline": "offline (item table, per catalog refresh)",
    "nearline": "nearline (open window, per new event)",
    "nearline_full": "nearline, full re-encode",
    "online": "online (per request)",
    "end_to_end": "end to end (nearline + online)",
}


def ms_text(ms: float) -> str:
    """Milliseconds as a duration: "120 µs", "4.2 ms", "1.58 s", "23 h" (:func:`human_number`).

    >>> ms_text(1580.0)
    '1.58 s'
    """
    return human_number(ms / 1e3, "s", digits=3)


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


def _first(frame: pd.DataFrame, column: str) -> Any:
    values = frame[column].dropna() if column in frame.columns else pd.Series(dtype=object)
    return values.iloc[0] if len(values) else "?"
