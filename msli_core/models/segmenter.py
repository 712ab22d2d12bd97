"""Cutting a chronological history into K segments (docs/design.md §2). Pure numpy; no torch.

Fixed segmenter (default): segment ``j`` holds events ``[j·S, (j+1)·S)`` counted from the user's FIRST
event, so a segment's content never changes once it is closed; only the newest ("open") segment changes
when an event is appended, which is what lets the nearline stage cache every closed segment's vector.
The last K segments are kept, right-aligned: slot ``K-1`` is the open segment, slot ``K-2`` the one
before it, ...; slots older than the user's first segment are empty (``mask`` False).
Inside a slot, items are left-aligned in event order and 0-padded on the right, so position ``p`` is
the p-th event of the segment (the segment encoder's positions, causal attention).

Session segmenter (option): a new segment starts where the gap between two consecutive events exceeds
``session_gap`` seconds, and a session longer than S events is cut into chunks of S anchored at the
session's first event. Closed sessions never change either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEGMENTERS = ("fixed", "session")


@dataclass(frozen=True)
class Segments:
    """One user's segments. ``start``/``end`` are event indices into the history, ``[start, end)``."""

    items: np.ndarray  # (K, S) int64, 0-padded on the right inside a slot
    mask: np.ndarray  # (K,) bool, True = the slot holds a non-empty segment
    start: np.ndarray  # (K,) int64, first event index of the slot's segment (0 for empty slots)
    end: np.ndarray  # (K,) int64, one past the last event index (0 for empty slots)


@dataclass(frozen=True)
class SegmentBatch:
    items: np.ndarray  # (B, K, S) int64
    mask: np.ndarray  # (B, K) bool
    start: np.ndarray  # (B, K) int64
    end: np.ndarray  # (B, K) int64


def segment_bounds(
    length: int,
    segment_len: int,
    *,
    segmenter: str = "fixed",
    timestamps: np.ndarray | None = None,
    session_gap: float = 3600.0,
) -> np.ndarray:
    """(n, 2) int64 ``[start, end)`` of ALL segments of a history of ``length`` events, oldest first.

    >>> segment_bounds(7, 3).tolist()
    [[0, 3], [3, 6], [6, 7]]
    >>> ts = np.array([0, 1, 100, 101, 102])
    >>> segment_bounds(5, 2, segmenter="session", timestamps=ts, session_gap=10).tolist()
    [[0, 2], [2, 4], [4, 5]]
    """
    if segment_len < 1:
        raise ValueError(f"segment_len must be >= 1, not {segment_len}")
    if length == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if segmenter == "fixed":
        starts = np.arange(0, length, segment_len, dtype=np.int64)
    elif segmenter == "session":
        if timestamps is None or len(timestamps) != length:
            raise ValueError("the session segmenter needs one timestamp per event")
        gaps = np.diff(np.asarray(timestamps, dtype=np.int64))
        session_starts = np.concatenate([[0], np.flatnonzero(gaps > session_gap) + 1]).astype(np.int64)
        session_ends = np.concatenate([session_starts[1:], [length]])
        # chunks of S inside each session, anchored at the session's first event
        starts = np.concatenate(
            [
                np.arange(s, e, segment_len, dtype=np.int64)
                for s, e in zip(session_starts, session_ends, strict=True)
            ]
        )
    else:
        raise ValueError(f"segmenter must be one of {SEGMENTERS}, not {segmenter!r}")
    ends = np.minimum(np.concatenate([starts[1:], [length]]), starts + segment_len)  # (n,)
    return np.stack([starts, ends], axis=1)


def segment(
    history: np.ndarray,
    timestamps: np.ndarray | None = None,
    *,
    segments: int,
    segment_len: int,
    segmenter: str = "fixed",
    session_gap: float = 3600.0,
) -> Segments:
    """The last ``segments`` (K) segments of ``history``, right-aligned (slot K-1 = the open segment).

    >>> s = segment(np.array([11, 12, 13, 14, 15, 16, 17]), segments=2, segment_len=3)
    >>> s.items.tolist(), s.mask.tolist(), s.start.tolist(), s.end.tolist()
    ([[14, 15, 16], [17, 0, 0]], [True, True], [3, 6], [6, 7])
    >>> segment(np.array([5]), segments=2, segment_len=3).mask.tolist()
    [False, True]
    """
    history = np.asarray(history, dtype=np.int64)
    K, S = segments, segment_len
    bounds = segment_bounds(
        len(history), S, segmenter=segmenter, timestamps=timestamps, session_gap=session_gap
    )
    bounds = bounds[-K:] if K > 0 else bounds[:0]
    items = np.zeros((K, S), dtype=np.int64)
    mask = np.zeros(K, dtype=bool)
    start = np.zeros(K, dtype=np.int64)
    end = np.zeros(K, dtype=np.int64)
    offset = K - len(bounds)  # right-align: the newest segment goes to slot K-1
    for row, (s, e) in enumerate(bounds):
        slot = offset + row
        items[slot, : e - s] = history[s:e]
        mask[slot], start[slot], end[slot] = True, s, e
    return Segments(items, mask, start, end)


def segment_batch(
    histories: list[np.ndarray],
    timestamps: list[np.ndarray] | None = None,
    *,
    segments: int,
    segment_len: int,
    segmenter: str = "fixed",
    session_gap: float = 3600.0,
) -> SegmentBatch:
    """:func:`segment` for B histories at once: items (B, K, S), mask/start/end (B, K)."""
    parts = [
        segment(
            h,
            None if timestamps is None else timestamps[b],
            segments=segments,
            segment_len=segment_len,
            segmenter=segmenter,
            session_gap=session_gap,
        )
        for b, h in enumerate(histories)
    ]
    K, S = segments, segment_len
    if not parts:
        return SegmentBatch(
            np.zeros((0, K, S), np.int64),
            np.zeros((0, K), bool),
            np.zeros((0, K), np.int64),
            np.zeros((0, K), np.int64),
        )
    return SegmentBatch(
        np.stack([p.items for p in parts]),
        np.stack([p.mask for p in parts]),
        np.stack([p.start for p in parts]),
        np.stack([p.end for p in parts]),
    )
