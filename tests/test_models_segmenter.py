"""Segmenter: anchored at the first event, last K kept right-aligned, only the open segment changes."""

from __future__ import annotations

import numpy as np
import pytest

from msli_core.models.segmenter import segment, segment_batch, segment_bounds


def test_anchored_at_first_event_and_last_k_kept():
    history = np.arange(101, 111)  # 10 events, S = 3: segments [0,3) [3,6) [6,9) [9,10)
    s = segment(history, segments=2, segment_len=3)
    assert s.items.tolist() == [[107, 108, 109], [110, 0, 0]]
    assert s.start.tolist() == [6, 9] and s.end.tolist() == [9, 10]
    assert s.mask.tolist() == [True, True]


def test_short_history_is_right_aligned_with_empty_old_slots():
    s = segment(np.array([7, 8, 9, 10]), segments=4, segment_len=3)
    assert s.mask.tolist() == [False, False, True, True]
    assert s.items[:2].sum() == 0
    assert s.items[2].tolist() == [7, 8, 9] and s.items[3].tolist() == [10, 0, 0]


def test_empty_history():
    s = segment(np.array([], dtype=np.int64), segments=3, segment_len=2)
    assert not s.mask.any() and s.items.shape == (3, 2)


@pytest.mark.parametrize("length", [1, 5, 6, 7, 17])
def test_appending_an_event_changes_only_the_open_segment(length):
    rng = np.random.default_rng(length)
    history = rng.integers(1, 50, size=length)
    before = segment(history, segments=4, segment_len=3)
    after = segment(np.append(history, 99), segments=4, segment_len=3)
    if length % 3:  # the open segment still has room: the new event joins it, nothing else moves
        assert np.array_equal(before.items[:3], after.items[:3])
        assert after.items[3].tolist()[length % 3] == 99
    else:  # the open segment was full: it closes unchanged and a new open segment starts
        assert np.array_equal(before.items[1:], after.items[:3])
        assert after.items[3].tolist() == [99, 0, 0]


def test_session_segmenter_splits_on_gaps_and_long_sessions():
    ts = np.array([0, 10, 20, 30, 5000, 5010, 99999])
    bounds = segment_bounds(7, 3, segmenter="session", timestamps=ts, session_gap=100)
    assert bounds.tolist() == [[0, 3], [3, 4], [4, 6], [6, 7]]
    s = segment(np.arange(1, 8), ts, segments=2, segment_len=3, segmenter="session", session_gap=100)
    assert s.items.tolist() == [[5, 6, 0], [7, 0, 0]]


def test_batch_helper_stacks_users():
    b = segment_batch([np.array([1, 2, 3]), np.array([4])], segments=2, segment_len=2)
    assert b.items.shape == (2, 2, 2) and b.mask.tolist() == [[True, True], [False, True]]
    assert b.start.tolist() == [[0, 2], [0, 0]] and b.end.tolist() == [[2, 3], [0, 1]]


def test_bad_segmenter_is_rejected():
    with pytest.raises(ValueError, match="segmenter"):
        segment_bounds(3, 2, segmenter="weekly")
