"""Explanations: contributions sum to the score, deletion check, ground truth, accuracy vs chance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_data import make_tiny_dataset

from msli_core.data.dataset import build_dataset, leave_one_out
from msli_core.errors import MsliError
from msli_core.explain import dominant_interest, explain, explanation_accuracy
from msli_core.metrics import wilson_interval
from msli_core.models.registry import build_model
from msli_core.train import TrainSettings, train


@pytest.fixture(scope="module")
def trained():
    data = make_tiny_dataset(users=30, items=36, events=20)
    # max_len 8: the 20-event histories reach past the window, so the "older" closed slots are filled
    config = {"dim": 16, "segments": 3, "segment_len": 6, "layers": 1, "max_len": 8}
    result = train(data, "msli", TrainSettings(epochs=2), config)
    return data, result.model


def test_contributions_sum_to_the_score(trained):
    data, model = trained
    ex = explain(model, data, "u3", top_n=5).to_dict()
    assert ex["user"] == "u3" and len(ex["recommendations"]) == 5
    for rec in ex["recommendations"]:
        assert abs(sum(rec["contributions"]) - rec["score"]) < 1e-4
        assert len(rec["contributions"]) == 3
    scores = [r["score"] for r in ex["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    seen = set(data.item_ids[data.sequences[data.internal_user("u3")]].tolist())
    assert not seen & {r["item"] for r in ex["recommendations"]}


def test_segment_scores_are_dot_products_of_the_reported_vectors(trained):
    data, model = trained
    ex = explain(model, data, "u3", top_n=4).to_dict()
    vectors = np.asarray(ex["segment_vectors"])  # (K, d)
    assert vectors.shape == (3, 16)
    with torch.no_grad():
        table = model.item_table().numpy()  # (N+1, d)
    for rec in ex["recommendations"]:
        e_c = table[data.item_index[rec["item"]]]
        np.testing.assert_allclose(rec["segment_scores"], vectors @ e_c, atol=1e-5)


def test_segments_describe_the_history(trained):
    data, model = trained
    ex = explain(model, data, "u5", top_n=3).to_dict()
    u = data.internal_user("u5")
    history = data.item_ids[data.sequences[u]].tolist()
    for seg in ex["segments"]:
        assert seg["items"] == history[seg["start"] : seg["end"]]
        if seg["role"] == "closed segment":
            assert abs(sum(seg["weights"]) - 1.0) < 1e-5  # pooling weights over the segment's items
        elif seg["role"] == "open window":  # the encoder's state alone (K = 3: the default recency slot)
            assert model.config.recency_slot and not any(seg["weights"])
        else:  # the newest events: the recency weights c·r_j, oldest first
            r = model.recency_weights().numpy()[::-1]
            np.testing.assert_allclose(seg["weights"], r, atol=1e-6)
        assert seg["dominant_interest"] == dominant_interest(np.array(seg["true_interests"]))
        assert seg["time_start"] <= seg["time_end"]
    assert ex["segments"][-1]["end"] == len(history)  # the newest slot ends with the last event
    assert ex["deletion"]["applicable"] and 0.0 <= ex["deletion"]["top_larger_fraction"] <= 1.0
    for rec in ex["recommendations"]:
        assert rec["deletion"]["random_segment"] != rec["deletion"]["top_segment"]


def test_a_recency_slot_model_explains_the_newest_events_as_their_own_segment():
    data = make_tiny_dataset(users=30, items=36, events=20)
    config = {"dim": 16, "segments": 4, "segment_len": 6, "layers": 1, "max_len": 8, "recency_slot": True}
    model = train(data, "msli", TrainSettings(epochs=1), config).model
    ex = explain(model, data, "u5", top_n=3).to_dict()
    u = data.internal_user("u5")
    n = len(data.sequences[u])
    roles = [seg["role"] for seg in ex["segments"]]
    assert roles == ["closed segment", "closed segment", "open window", "newest events"]  # 20 events
    window, newest = ex["segments"][2], ex["segments"][3]
    assert (window["start"], window["end"]) == (n - 8, n) and not any(window["weights"])  # the state alone
    r = model.recency_weights().numpy()[::-1]  # c·r_j on the newest events, oldest first
    m = model.config.recent_items
    assert (newest["start"], newest["end"]) == (n - m, n) and len(r) == m == 5  # item-kNN's 5 newest
    np.testing.assert_allclose(newest["weights"], r, atol=1e-6)
    for rec in ex["recommendations"]:
        assert len(rec["contributions"]) == 4 and abs(sum(rec["contributions"]) - rec["score"]) < 1e-4
    acc = explanation_accuracy(model, data)
    assert acc["skipped_one_slot"] == 0 and acc["users"] > 0  # every user has the window and its newest


def test_held_out_stage_reports_the_truth(trained):
    data, model = trained
    ex = explain(model, data, "u2", top_n=3, stage="test").to_dict()
    held = ex["held_out"]
    u = data.internal_user("u2")
    assert held["item"] == data.item_ids[data.sequences[u][-1]]
    assert abs(sum(held["contributions"]) - held["score"]) < 1e-4
    assert held["true_interest"] == int(
        data.truth["interest"].iloc[np.flatnonzero(data.interactions["user"] == u)[-1]]
    )


def test_deletion_drop_is_exact_for_the_sum_aggregation():
    data = make_tiny_dataset(users=12, items=30, events=18)
    torch.manual_seed(0)
    model = build_model(
        "msli", data=data, dim=8, segments=3, segment_len=5, layers=1, aggregation="sum", max_len=6
    ).eval()
    ex = explain(model, data, "u1", top_n=4).to_dict()
    assert ex["deletion"]["applicable"]  # 18 events, a 6-event window: closed slots are filled
    for rec in ex["recommendations"]:
        d = rec["deletion"]
        assert d["drop_top"] == pytest.approx(rec["contributions"][d["top_segment"]], abs=1e-5)
        assert d["drop_random"] == pytest.approx(rec["contributions"][d["random_segment"]], abs=1e-5)


def test_explanation_accuracy_is_well_defined(trained):
    data, model = trained
    acc = explanation_accuracy(model, data, leave_one_out(data))
    skipped = acc["skipped_noise"] + acc["skipped_unanswerable"] + acc["skipped_one_slot"]
    assert acc["users"] + skipped == len(leave_one_out(data).eval_users)
    assert 0.0 <= acc["accuracy"] <= 1.0 and 0.0 < acc["chance"] <= 1.0
    assert acc["ratio"] == pytest.approx(acc["accuracy"] / acc["chance"])
    assert acc["users"] > 0  # the fixture's histories reach past the window: the interval is exercised
    for name, users in (("accuracy", "users"), ("strict", "strict_users"), ("return", "return_users")):
        value = acc["accuracy" if name == "accuracy" else f"{name}_accuracy"]
        lo, hi = acc[f"{name}_interval"]
        if acc[users]:  # the interval is the Wilson interval of hits / users, and holds the accuracy
            assert (lo, hi) == pytest.approx(wilson_interval(round(value * acc[users]), acc[users]))
            assert 0.0 <= lo <= value <= hi <= 1.0


def test_bad_requests_are_sentences(trained):
    data, model = trained
    with pytest.raises(MsliError, match="not in"):
        explain(model, data, "nobody")
    pop = build_model("popularity", data=data)
    with pytest.raises(MsliError, match="late-interaction"):
        explain(pop, data, "u1")
    no_truth = dataclasses.replace(make_tiny_dataset(users=12, items=40), truth=None)
    with pytest.raises(MsliError, match="ground truth"):
        explanation_accuracy(build_model("msli", data=no_truth, dim=8, layers=1), no_truth)


def test_a_user_without_a_held_out_item_is_told_what_to_do_instead():
    data = make_tiny_dataset(users=12, items=40)
    frame = data.interactions
    first = frame["user"].iloc[0]
    kept = frame[frame["user"] != first]
    two = frame[frame["user"] == first].head(2)  # this user keeps two events: never evaluated
    raw = pd.concat([kept, two])
    short = build_dataset(
        raw[["user", "item", "timestamp", "rating"]], items_meta=None, format="synthetic", source="short"
    )
    model = build_model("msli", data=short, dim=8, layers=1)
    with pytest.raises(MsliError, match=r"fewer than 3 events.*after the whole history"):
        explain(model, short, str(first), stage="test")
    assert len(explain(model, short, str(first), top_n=5).to_dict()["recommendations"]) == 5  # stage None
