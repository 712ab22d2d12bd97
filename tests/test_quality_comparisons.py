"""The quality ladder's rungs as paired NDCG@10 differences (msli_core.quality.ladder_comparisons)."""

from __future__ import annotations

import numpy as np
import pytest

from msli_core.data.formats import load_dataset
from msli_core.data.synth import SynthConfig, write_synthetic
from msli_core.quality import TWO_TOWER, ladder_comparisons, quality_table, to_markdown


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


@pytest.mark.parametrize(("segments", "first_stage"), [([1, 4], "MS-LI K=4"), ([2, 1], "MS-LI K=2")])
def test_the_cross_encoder_is_compared_with_the_first_stage_it_reranked(tmp_path, segments, first_stage):
    folder = tmp_path / "synth"
    write_synthetic(folder, SynthConfig(users=30, items=60, interactions=900, interests=4, min_events=8,
                                        max_events=60, seed=1))  # fmt: skip
    rows, meta = quality_table(load_dataset(folder), segments=segments, epochs=1, seed=0)
    pairs = [(c["model"], c["against"]) for c in meta["comparisons"]]
    # the cascade re-ranks K=4's top-100, or the first MS-LI row's when there is no K=4
    assert pairs[-2:] == [("cross-encoder", "item-kNN"), ("cross-encoder", first_stage)]
    cross = next(r for r in rows if r["label"] == "cross-encoder")
    assert cross["evaluation"].startswith("cascade")
    assert f"| cross-encoder | {first_stage} |" in to_markdown(rows, meta)
    assert "Paired differences in NDCG@10 on the same 30 test users" in to_markdown(rows, meta)


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
