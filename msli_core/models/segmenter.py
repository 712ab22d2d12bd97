"""Cutting a chronological history into K slots (docs/design.md §2). Pure numpy; no torch.

The K slots of a user:

- slot ``K-1``, the **open slot**, is the *window*: the last ``W = window_len`` events (``L_max``),
  whatever segment they fall in. The shared encoder reads it causally and its last state is the open
  vector, so every model (the two-tower model is K = 1) sees the same last ``L_max`` events;
- slots ``0..K-2``, the **closed slots**, are K-1 segments, oldest first, right-aligned; slots with no
  segment to fill them are empty (``mask`` False). Which segments (:func:`newest_closed`):
  ``closed="older"`` (the model's default) takes the K-1 segments that start before the window, so they
  reach back beyond the last ``L_max`` events and a history that fits in the window has none (a short
  user gets exactly the two-tower score); ``closed="recent"`` takes the K-1 segments before the one
  holding the newest event, which overlap the window.

With ``newest_events = m > 0`` (the model's ``recency_slot``) the last slot, ``K-1``, holds the newest
``m`` events of the window on their own (the *newest-events slot*: a weighted sum of their item vectors,
no encoder), the window moves to slot ``K-2`` and ``K-2`` closed slots remain: K still counts the user's
vectors.

Fixed segmenter (default): segment ``j`` holds events ``[j·S, (j+1)·S)`` counted from the user's FIRST
event, so a segment's content never changes once it is closed: the nearline stage encodes it once, when
it closes, and caches its vector forever. Only the window changes when an event is appended.
Inside a slot, items are left-aligned in event order and 0-padded on the right, so position ``p`` is
the p-th event of the segment (the encoder's positions, causal attention).

Session segmenter (option): a new segment starts where the gap between two consecutive events exceeds
``session_gap`` seconds, and a session longer than S events is cut into chunks of S anchored at the
session's first event. Closed sessions never change either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEGMENTERS = ("fixed", "session")
CLOSED_SEGMENTS = ("recent", "older")


@dataclass(frozen=True)
class Segments:
    """One user's slots. ``start``/``end`` are event indices into the history, ``[start, end)``."""

    items: np.ndarray  # (K, S) int64 closed segments, 0-padded on the right; the open slots' rows are 0
    window: np.ndarray  # (W,) int64 the window's events (the last W), left-aligned, 0-padded
    mask: np.ndarray  # (K,) bool, True = the slot is non-empty
    start: np.ndarray  # (K,) int64, first event index of the slot (0 for empty slots)
    end: np.ndarray  # (K,) int64, one past the last event index (0 for empty slots)


@dataclass(frozen=True)
class SegmentBatch:
    items: np.ndarray  # (B, K, S) int64
    window: np.ndarray  # (B, W) int64
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


def newest_closed(bounds: np.ndarray, window_start, closed: str = "recent"):
    """Index into ``bounds`` of the newest closed segment (-1 = none) for a history whose window starts at
    event ``window_start`` (an int; or an array of window starts -> an int64 array of indices, one each,
    for training positions).

    ``"recent"``: the segment before the open one (the segment holding the newest event), so the closed
    slots overlap the window; ``"older"``: the newest segment that starts before the window, so the
    closed slots reach back beyond the last ``L_max`` events (and a history that fits in the window has
    none). Either way the open segment is never a closed slot (with a window shorter than a segment it
    can start before the window; it is not finished, and in training it would hold later events).

    >>> b = np.array([[0, 3], [3, 6], [6, 9], [9, 10]])
    >>> newest_closed(b, 6), newest_closed(b, 6, "older"), newest_closed(b, 0, "older")
    (2, 1, -1)
    >>> newest_closed(b, 10, "older")  # a window of 0 events: still not the open segment [9, 10)
    2
    >>> newest_closed(b, np.array([0, 4, 7]), "older").tolist()
    [-1, 1, 2]
    """
    if closed not in CLOSED_SEGMENTS:
        raise ValueError(f"closed_segments must be one of {CLOSED_SEGMENTS}, not {closed!r}")
    scalar = np.ndim(window_start) == 0
    if len(bounds) == 0 or closed == "recent":
        newest = len(bounds) - 2 if len(bounds) else -1
        return newest if scalar else np.full(np.shape(window_start), newest, dtype=np.int64)
    before = np.searchsorted(bounds[:, 0], window_start, side="left") - 1  # newest starting before it
    newest = np.minimum(before, len(bounds) - 2)
    return int(newest) if scalar else newest.astype(np.int64)


def closed_bounds(bounds: np.ndarray, segments: int, newest: int) -> np.ndarray:
    """(K-1, 2) or fewer rows: the segments ``newest-K+2 .. newest`` that fill the closed slots.

    >>> closed_bounds(np.array([[0, 3], [3, 6], [6, 7]]), 2, 1).tolist()
    [[3, 6]]
    >>> closed_bounds(np.array([[0, 3]]), 4, -1).tolist()
    []
    """
    if segments <= 1 or newest < 0:
        return bounds[:0]
    return bounds[max(0, newest - segments + 2) : newest + 1]


def segment(
    history: np.ndarray,
    timestamps: np.ndarray | None = None,
    *,
    segments: int,
    segment_len: int,
    window_len: int,
    segmenter: str = "fixed",
    session_gap: float = 3600.0,
    closed: str = "recent",
    newest_events: int = 0,
) -> Segments:
    """The K slots of ``history``: closed segments right-aligned, then the window (slot K-1, or K-2 with
    ``newest_events = m > 0``, when slot K-1 holds the newest ``m`` events).

    >>> s = segment(np.array([11, 12, 13, 14, 15, 16, 17]), segments=3, segment_len=3, window_len=4)
    >>> s.items.tolist(), s.window.tolist()
    ([[11, 12, 13], [14, 15, 16], [0, 0, 0]], [14, 15, 16, 17])
    >>> s.mask.tolist(), s.start.tolist(), s.end.tolist()
    ([True, True, True], [0, 3, 3], [3, 6, 7])
    >>> segment(np.array([5]), segments=2, segment_len=3, window_len=4).mask.tolist()
    [False, True]
    >>> s = segment(np.arange(11, 18), segments=3, segment_len=3, window_len=4, newest_events=2)
    >>> s.start.tolist(), s.end.tolist()  # one closed slot, the window, the newest 2 events
    ([3, 3, 5], [6, 7, 7])
    """
    history = np.asarray(history, dtype=np.int64)
    K, S, W = segments, segment_len, window_len
    if W < 1:
        raise ValueError(f"window_len must be >= 1, not {W}")
    if newest_events < 0 or (newest_events and K < 2):
        raise ValueError(f"newest_events must be 0, or >= 1 with at least 2 segments, not {newest_events}")
    n = len(history)
    window_slot = K - 1 - (newest_events > 0)  # the window's slot; the closed ones come before it
    bounds = segment_bounds(n, S, segmenter=segmenter, timestamps=timestamps, session_gap=session_gap)
    closed = closed_bounds(bounds, window_slot + 1, newest_closed(bounds, n - min(n, W), closed))
    items = np.zeros((K, S), dtype=np.int64)
    window = np.zeros(W, dtype=np.int64)
    mask = np.zeros(K, dtype=bool)
    start = np.zeros(K, dtype=np.int64)
    end = np.zeros(K, dtype=np.int64)
    offset = window_slot - len(closed)  # right-align: the newest closed segment goes just before the window
    for row, (s, e) in enumerate(closed):
        slot = offset + row
        items[slot, : e - s] = history[s:e]
        mask[slot], start[slot], end[slot] = True, s, e
    if n:
        w = min(n, W)
        window[:w] = history[n - w :]
        mask[window_slot], start[window_slot], end[window_slot] = True, n - w, n
        if newest_events:
            mask[K - 1], start[K - 1], end[K - 1] = True, n - min(n, newest_events, W), n
    return Segments(items, window, mask, start, end)


def segment_batch(
    histories: list[np.ndarray],
    timestamps: list[np.ndarray] | None = None,
    *,
    segments: int,
    segment_len: int,
    window_len: int,
    segmenter: str = "fixed",
    session_gap: float = 3600.0,
    closed: str = "recent",
    newest_events: int = 0,
) -> SegmentBatch:
    """:func:`segment` for B histories: items (B, K, S), window (B, W'), mask/start/end (B, K).

    The window is cut to the longest one in the batch (W' <= W, at least 1): with right padding and
    causal attention that changes no real position's state.
    """
    parts = [
        segment(
            h,
            None if timestamps is None else timestamps[b],
            segments=segments,
            segment_len=segment_len,
            window_len=window_len,
            segmenter=segmenter,
            session_gap=session_gap,
            closed=closed,
            newest_events=newest_events,
        )
        for b, h in enumerate(histories)
    ]
    K, S = segments, segment_len
    if not parts:
        return SegmentBatch(
            np.zeros((0, K, S), np.int64),
            np.zeros((0, 1), np.int64),
            np.zeros((0, K), bool),
            np.zeros((0, K), np.int64),
            np.zeros((0, K), np.int64),
        )
    window_slot = K - 1 - (newest_events > 0)
    longest = max(1, max(int(p.end[window_slot] - p.start[window_slot]) for p in parts))
    return SegmentBatch(
        np.stack([p.items for p in parts]),
        np.stack([p.window[:longest] for p in parts]),
        np.stack([p.mask for p in parts]),
        np.stack([p.start for p in parts]),
        np.stack([p.end for p in parts]),
    )
