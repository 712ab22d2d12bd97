"""Training: the all-positions batch matches inference, losses by hand, determinism, progress events."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_data import make_tiny_dataset

from msli_core import train as tr
from msli_core.data.dataset import leave_one_out
from msli_core.models.registry import build_model


@pytest.fixture(scope="module")
def tiny():
    data = make_tiny_dataset(users=30, items=36, events=20)
    return data, leave_one_out(data)


def test_full_softmax_loss_by_hand():
    scores = torch.tensor([[50.0, 1.0, 1.0, 1.0]])  # padding column 0 is ignored however large
    assert tr.full_softmax_loss(scores, torch.tensor([2])).item() == pytest.approx(np.log(3))


def test_sampled_softmax_log_q_correction_by_hand():
    # equal scores; the frequent candidate (q = e) is corrected down: p(target) = 1 / (1 + 1/e)
    scores = torch.zeros(1, 2)
    loss = tr.sampled_softmax_loss(scores, torch.tensor([0]), torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx(np.log(1 + np.exp(-1)))


@pytest.mark.parametrize("segmenter", ["fixed", "session"])
def test_every_position_sees_what_inference_sees(tiny, segmenter):
    """The one-pass training representation of each target equals encoding its history from scratch."""
    data, split = tiny
    torch.manual_seed(0)
    model = build_model(
        "msli", data=data, dim=16, segments=3, segment_len=4, segmenter=segmenter, session_gap=400
    )
    model.eval()
    users = [1, 2, 3]
    seqs = [split.train_sequence(u) for u in users]
    stamps = [data.timestamps[u][: len(s)] for u, s in zip(users, seqs, strict=True)]
    c = model.config
    batch = tr.position_batch(
        seqs,
        stamps,
        segments=3,
        segment_len=4,
        segmenter=segmenter,
        session_gap=c.session_gap,
        max_positions=200,
    )
    with torch.no_grad():
        table = model.item_table()
        prefix, _ = model.encode_prefixes(batch.segment_items, table)
        S_used = prefix.shape[1]
        index = (batch.prefix_index // 4) * S_used + batch.prefix_index % 4
        vectors = prefix.reshape(-1, 16)[index]  # (P, K, d)
        histories = [s[:t] for s, ts in zip(seqs, stamps, strict=True) for t in range(1, len(s))]
        hstamps = [ts[:t] for s, ts in zip(seqs, stamps, strict=True) for t in range(1, len(s))]
        segs = model.segment_batch(histories, hstamps)
        ref, _ = model.encode_segments(torch.as_tensor(segs.items), table)
    assert batch.targets.tolist() == [int(s[t]) for s in seqs for t in range(1, len(s))]
    assert np.array_equal(batch.slot_mask.numpy(), segs.mask)
    m = torch.as_tensor(segs.mask)
    torch.testing.assert_close(vectors[m], ref[m], atol=1e-5, rtol=1e-5)


def _tiny_train(data, split, seed, **kw):
    return tr.train(
        data, "msli", epochs=2, seed=seed, split=split, dim=16, segments=2, segment_len=6, layers=1, **kw
    )


def test_same_seed_same_metrics(tiny):
    data, split = tiny
    a, b = _tiny_train(data, split, 3), _tiny_train(data, split, 3)
    assert a.metrics == {**b.metrics, "seconds": a.metrics["seconds"]}
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    c = _tiny_train(data, split, 4)
    assert [h["loss"] for h in c.history] != [h["loss"] for h in a.history]


def test_progress_events_carry_loss_and_validation_metrics(tiny):
    data, split = tiny
    events = []
    result = _tiny_train(data, split, 0, progress=events.append)
    steps = [e for e in events if "loss" in e.metrics]
    epochs = [e for e in events if "valid_NDCG@10" in e.metrics]
    assert steps and all(np.isfinite(e.metrics["loss"]) for e in steps)
    assert [e.metrics["epoch"] for e in epochs] == [1, 2] == [h["epoch"] for h in result.history]
    assert events[-1].done == events[-1].total
    assert result.parameters > 0 and result.epochs == 2


def test_sampled_softmax_path_trains(tiny, monkeypatch):
    data, split = tiny
    monkeypatch.setattr(tr, "SAMPLED_SOFTMAX_ABOVE", 10)
    result = tr.train(
        data,
        "msli",
        epochs=1,
        split=split,
        dim=16,
        segments=2,
        layers=1,
        settings_overrides={"sampled_negatives": 20},
    )
    assert np.isfinite(result.history[0]["loss"]) and result.metrics["users"] == len(split.eval_users)


def test_baselines_and_cross_encoder_train(tiny):
    data, split = tiny
    pop = tr.train(data, "popularity", split=split)
    knn = tr.train(data, "item-knn", split=split)
    cross = tr.train(data, "cross-encoder", epochs=1, split=split, dim=16, layers=1, max_len=8)
    for r in (pop, knn, cross):
        assert 0.0 <= r.metrics["NDCG@10"] <= 1.0 and r.metrics["users"] == len(split.eval_users)
    assert cross.metrics["evaluation"] == "full ranking" and cross.epochs == 1


def test_early_stopping_restores_the_best_epoch(tiny):
    data, split = tiny
    result = tr.train(
        data, "msli", epochs=6, patience=1, split=split, dim=16, segments=2, layers=1, lr=0.3
    )  # a silly learning rate: validation soon stops improving
    best = max(h["valid_NDCG@10"] for h in result.history)
    assert result.valid_metrics["NDCG@10"] == best
    assert result.history[result.best_epoch - 1]["valid_NDCG@10"] == best
