"""Segmenter: closed segments anchored at the first event, the K-1 before the open one kept right-aligned,
the window of the last L_max events in slot K-1; a closed segment never changes."""

from __future__ import annotations

import numpy as np
import pytest

from msli_core.models.segmenter import segment, segment_batch, segment_bounds


def test_anchored_at_first_event_and_the_segments_before_the_open_one_kept():
    history = np.arange(101, 111)  # 10 events, S = 3: segments [0,3) [3,6) [6,9) [9,10); open = [9,10)
    s = segment(history, segments=3, segment_len=3, window_len=4)
    assert s.items.tolist() == [[104, 105, 106], [107, 108, 109], [0, 0, 0]]
    assert s.window.tolist() == [107, 108, 109, 110]  # the last 4 events, whatever segment they are in
    assert s.start.tolist() == [3, 6, 6] and s.end.tolist() == [6, 9, 10]
    assert s.mask.tolist() == [True, True, True]


def test_short_history_is_right_aligned_with_empty_old_slots():
    s = segment(np.array([7, 8, 9, 10]), segments=4, segment_len=3, window_len=200)
    assert s.mask.tolist() == [False, False, True, True]  # one closed segment [0,3), then the window
    assert s.items[:2].sum() == 0 and s.items[2].tolist() == [7, 8, 9]
    assert s.window[:5].tolist() == [7, 8, 9, 10, 0] and (s.start[3], s.end[3]) == (0, 4)


def test_a_history_inside_one_segment_is_the_window_alone():
    s = segment(np.array([5, 6]), segments=4, segment_len=3, window_len=200)
    assert s.mask.tolist() == [False, False, False, True]  # a short user gets the two-tower score


def test_empty_history():
    s = segment(np.array([], dtype=np.int64), segments=3, segment_len=2, window_len=5)
    assert not s.mask.any() and s.items.shape == (3, 2) and not s.window.any()


@pytest.mark.parametrize("length", [1, 5, 6, 7, 17])
def test_appending_an_event_never_changes_a_closed_segment(length):
    rng = np.random.default_rng(length)
    history = rng.integers(1, 50, size=length)
    before = segment(history, segments=4, segment_len=3, window_len=5)
    after = segment(np.append(history, 99), segments=4, segment_len=3, window_len=5)
    assert after.window[min(length, 4)] == 99 if length < 5 else after.window[-1] == 99
    if length % 3:  # the open segment still has room: the closed slots stay as they are
        assert np.array_equal(before.items, after.items)
    else:  # the open segment was full: it joins the closed slots unchanged, the oldest one leaves
        assert np.array_equal(before.items[1:3], after.items[:2])
        assert after.items[2].tolist() == history[length - 3 :].tolist()


def test_session_segmenter_splits_on_gaps_and_long_sessions():
    ts = np.array([0, 10, 20, 30, 5000, 5010, 99999])
    bounds = segment_bounds(7, 3, segmenter="session", timestamps=ts, session_gap=100)
    assert bounds.tolist() == [[0, 3], [3, 4], [4, 6], [6, 7]]
    s = segment(np.arange(1, 8), ts, segments=3, segment_len=3, window_len=3, segmenter="session",
                session_gap=100)  # fmt: skip
    assert s.items.tolist() == [[4, 0, 0], [5, 6, 0], [0, 0, 0]] and s.window.tolist() == [5, 6, 7]


def test_batch_helper_stacks_users_and_cuts_the_window_to_the_longest():
    b = segment_batch([np.array([1, 2, 3]), np.array([4])], segments=2, segment_len=2, window_len=10)
    assert b.items.shape == (2, 2, 2) and b.mask.tolist() == [[True, True], [False, True]]
    assert b.window.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert b.start.tolist() == [[0, 0], [0, 0]] and b.end.tolist() == [[2, 3], [0, 1]]


def test_bad_segmenter_is_rejected():
    with pytest.raises(ValueError, match="segmenter"):
        segment_bounds(3, 2, segmenter="weekly")
