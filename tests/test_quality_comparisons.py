"""The quality ladder's rungs as paired NDCG@10 differences (msli_core.quality.ladder_comparisons)."""

from __future__ import annotations

import numpy as np
import pytest

from msli_core.data.formats import load_dataset
from msli_core.data.synth import SynthConfig, write_synthetic
from msli_core.quality import TWO_TOWER, ladder_comparisons, quality_table, reranker_sentence, to_markdown


def test_verdicts_follow_the_interval_and_rows_without_ranks_are_skipped():
    rng = np.random.default_rng(0)
    users = 400
    knn = rng.integers(0, 40, users).astype(float)  # ranks
    better = np.maximum(knn - 20, 0)  # every user's target ranked 20 places higher (or first)
    ranks = {
        "item-kNN": knn,
        TWO_TOWER: knn + 20,
        "MS-LI K=4": better,
        "MS-LI K=8": None,
        "cross-encoder": better,
    }
    found = {(c["model"], c["against"]): c for c in ladder_comparisons(ranks, first_stage="MS-LI K=4")}
    assert list(found) == [
        ("MS-LI K=4", TWO_TOWER),
        (TWO_TOWER, "item-kNN"),
        ("MS-LI K=4", "item-kNN"),
        ("cross-encoder", "item-kNN"),
        ("cross-encoder", "MS-LI K=4"),
    ]  # K=8 has no ranks: no pair
    assert found[("MS-LI K=4", TWO_TOWER)]["verdict"] == "higher"
    assert found[(TWO_TOWER, "item-kNN")]["verdict"] == "lower"
    same = found[("cross-encoder", "MS-LI K=4")]
    assert (same["difference"], same["low"], same["high"], same["verdict"]) == (0.0, 0.0, 0.0, "tie")
    assert all(c["users"] == users for c in found.values())
    for c in found.values():
        assert c["low"] <= c["difference"] <= c["high"]
        gap = np.mean(
            np.where(ranks[c["model"]] < 10, 1 / np.log2(ranks[c["model"]] + 2), 0)
            - np.where(ranks[c["against"]] < 10, 1 / np.log2(ranks[c["against"]] + 2), 0)
        )
        assert c["difference"] == pytest.approx(gap)


@pytest.mark.parametrize(
    ("segments", "recency_slot", "first_stage"),
    [([1, 4], None, "MS-LI K=4"), ([2, 1], None, "MS-LI K=2"), ([1, 4], False, "MS-LI K=4 (one open slot)")],
)
def test_the_cross_encoder_is_compared_with_the_first_stage_it_reranked(
    tmp_path, segments, recency_slot, first_stage
):
    folder = tmp_path / "synth"
    write_synthetic(folder, SynthConfig(users=30, items=60, interactions=900, interests=4, min_events=8,
                                        max_events=60, seed=1))  # fmt: skip
    rows, meta = quality_table(
        load_dataset(folder), segments=segments, epochs=1, seed=0, recency_slot=recency_slot
    )
    assert [r["label"] for r in rows if r["model"] == "msli"][-1 if segments[-1] == 4 else 0] == first_stage
    pairs = [(c["model"], c["against"]) for c in meta["comparisons"]]
    # the cascade re-ranks K=4's top-100, or the first MS-LI row's when there is no K=4
    assert pairs[-2:] == [("cross-encoder", "item-kNN"), ("cross-encoder", first_stage)]
    cross = next(r for r in rows if r["label"] == "cross-encoder")
    assert cross["evaluation"].startswith("cascade")
    assert f"| cross-encoder | {first_stage} |" in to_markdown(rows, meta)
    assert "Paired differences in NDCG@10 on the same 30 test users" in to_markdown(rows, meta)
    # the re-ranker's best validation against its epoch 0 (the first stage's own ranking), in the table
    assert isinstance(cross["valid_NDCG@10"], float) and isinstance(cross["reference_valid_NDCG@10"], float)
    assert all(r["reference_valid_NDCG@10"] == "" for r in rows if r["model"] != "cross-encoder")
    assert reranker_sentence(rows) in to_markdown(rows, meta)


def test_the_reranker_check_says_whether_validation_beat_the_first_stage():
    above = {"model": "cross-encoder", "valid_NDCG@10": 0.3, "reference_valid_NDCG@10": 0.25}
    assert "(0.3000) is above its first stage's own ranking of the same candidates (0.2500)." in (
        reranker_sentence([above])
    )
    for reference in (0.3, 0.35):  # level or below: not shown to earn its cost
        level = {**above, "reference_valid_NDCG@10": reference}
        assert "is not above" in reranker_sentence([level]) and "serve the first stage" in reranker_sentence(
            [level]
        )
    assert reranker_sentence([{**above, "reference_valid_NDCG@10": ""}]) is None  # no epoch 0: full ranking
    assert reranker_sentence([{"model": "msli", "valid_NDCG@10": 0.3, "reference_valid_NDCG@10": ""}]) is None


def test_the_sentence_says_what_the_interval_says():
    from msli_core.quality import comparison_sentence

    base = {"model": "A", "against": "B", "users": 943}
    tie = comparison_sentence({**base, "difference": 0.002, "low": -0.01, "high": 0.014, "verdict": "tie"})
    assert "NDCG@10 +0.0020 (95% interval −0.0100 … +0.0140 over the same 943 test users)" in tie
    assert "cannot tell the two apart" in tie
    lower = comparison_sentence(
        {**base, "difference": -0.0099, "low": -0.0203, "high": -0.0001, "verdict": "lower"}
    )
    assert "A is below B" in lower and "excludes 0" in lower and "−0.0203 … −0.0001" in lower
    higher = comparison_sentence({**base, "difference": 0.05, "low": 0.03, "high": 0.07, "verdict": "higher"})
    assert "A is above B" in higher


def test_too_few_users_get_no_verdict():
    from msli_core.quality import MIN_USERS_FOR_VERDICT, compare_ranks, comparison_sentence

    few = MIN_USERS_FOR_VERDICT - 1
    c = compare_ranks("A", np.zeros(few), "B", np.full(few, 50.0))  # every user prefers A
    assert (c["users"], c["verdict"]) == (few, "too few users")
    said = comparison_sentence(c)
    assert "read no verdict" in said and f"only {few} test user(s)" in said
    enough = compare_ranks("A", np.zeros(few + 1), "B", np.full(few + 1, 50.0))
    assert enough["verdict"] == "higher"


def _dataset(sequences: dict[int, list[int]], interests: dict[int, list[int]] | None = None):
    import pandas as pd

    from msli_core.data.dataset import build_dataset

    rows = [(u, i, t, float("nan")) for u, seq in sequences.items() for t, i in enumerate(seq)]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    truth = None
    if interests is not None:
        truth = pd.DataFrame(
            {"phase": 0, "interest": [k for u in sequences for k in interests[u]]}
        )  # one row per row of frame, in its order
    return build_dataset(frame, items_meta=None, format="test", source="test", truth=truth)


def test_closed_reach_counts_held_out_interests_only_the_closed_slots_hold():
    from msli_core.data.dataset import leave_one_out
    from msli_core.quality import closed_reach, reach_sentence

    # a window of 4 events, one closed slot of 2 (the segment before the window; K = 2 without the
    # recency slot, which would take that slot); each user's test history is its first 8 events, the 9th
    # is held out
    sequences = {u: [*range(10 * u, 10 * u + 9)] for u in (1, 2, 3, 4, 5)}
    sequences[6] = [60, 61, 62, 63]  # fits in the window: no closed slot
    interests = {
        1: [0, 0, 7, 7, 1, 1, 1, 1, 7],  # the held-out interest 7 is only in the closed slot (events 2, 3)
        2: [2] * 8 + [-1],  # noise
        3: [5, 5, 5, 5, 6, 6, 5, 6, 6],  # interest 6 is in the window
        4: [9, 9, 3, 3, 3, 3, 3, 3, 9],  # 9 only in events 0, 1: older than the closed slot, so neither
        5: [4, 4, 4, 4, 4, 4, 4, 4, 4],  # in the closed slot and in the window: the window
        6: [8] * 4,
    }
    split = leave_one_out(_dataset(sequences, interests))
    one, two = closed_reach(split, [1, 2], {"max_len": 4, "segment_len": 2, "recency_slot": False})
    assert (one["segments"], one["users"], one["with_closed"]) == (1, 6, 0)  # K = 1: the two-tower model
    assert "no closed slot can add an event the two-tower model lacks" in reach_sentence(one)
    keys = ("users", "with_closed", "interest_window", "interest_closed_only", "interest_neither", "noise")
    assert [two[k] for k in keys] == [6, 5, 2, 1, 1, 1]
    said = reach_sentence(two)
    assert "5 of 6 test users (83.3%) have closed slots holding events before the 4-event window" in said
    assert "only in those older events for 1 of them (in the window: 2; in neither: 1; noise: 1)" in said
    # no ground truth: only the users are counted, and the sentence says what that means
    plain = closed_reach(leave_one_out(_dataset(sequences)), [3], {"max_len": 4, "segment_len": 2})[0]
    assert plain["with_closed"] == 5 and plain["interest_closed_only"] is None
    assert "ground truth" not in reach_sentence(plain)
    assert "for the others MS-LI reads no event the two-tower model does not" in reach_sentence(plain)


def test_closed_slots_inside_the_window_reach_nothing_beyond_it():
    """closed_segments="recent": the closed slots are the segments before the open one, inside the
    window, so they add no event the two-tower model does not read (a user is not counted for them)."""
    from msli_core.data.dataset import leave_one_out
    from msli_core.quality import closed_reach

    sequences = {u: [*range(20 * u, 20 * u + 13)] for u in (1, 2)}  # test histories of 12 events
    split = leave_one_out(_dataset(sequences))
    older = closed_reach(split, [3], {"max_len": 8, "segment_len": 2})[0]
    recent = closed_reach(split, [3], {"max_len": 8, "segment_len": 2, "closed_segments": "recent"})[0]
    assert (older["with_closed"], recent["with_closed"]) == (2, 0)
    # a window shorter than the recent segments: the part of them before the window counts
    short = closed_reach(split, [3], {"max_len": 3, "segment_len": 4, "closed_segments": "recent"})[0]
    assert short["with_closed"] == 2


def test_closed_reach_on_synthetic_data_adds_up(tmp_path):
    from msli_core.data.dataset import leave_one_out
    from msli_core.quality import closed_reach

    folder = tmp_path / "synth"
    write_synthetic(folder, SynthConfig(users=40, items=80, interactions=2400, interests=4, min_events=20,
                                        max_events=120, seed=3))  # fmt: skip
    split = leave_one_out(load_dataset(folder))
    window = 30
    r = closed_reach(split, [4], {"max_len": window})[0]
    longer = sum(len(split.history(u, "test")) > window for u in split.eval_users)
    assert r["with_closed"] == longer > 0  # fixed segments, closed slots before the window
    interest = r["interest_window"] + r["interest_closed_only"] + r["interest_neither"] + r["noise"]
    assert interest == r["with_closed"]


def test_a_log_without_answerable_users_says_so_instead_of_nan(tmp_path):
    """Every history fits in the 200-event window: MS-LI K=4 with one open slot has no second segment to
    credit, so the explanation columns say there was no user to count, never "nan / nan"."""
    folder = tmp_path / "synth"
    write_synthetic(folder, SynthConfig(users=30, items=60, interactions=900, interests=4, min_events=8,
                                        max_events=60, seed=1))  # fmt: skip
    rows, meta = quality_table(
        load_dataset(folder), segments=[4], epochs=1, seed=0, cross_encoder=False, recency_slot=False
    )
    k4 = next(r for r in rows if r["label"] == "MS-LI K=4 (one open slot)")
    assert k4["explanation_users"] == 0
    table = to_markdown(rows, meta)
    assert "nan" not in table
    assert "| no answerable user | no answerable user |" in table
