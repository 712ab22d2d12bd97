"""The re-ranking cross-encoder's co-occurrence features: counts by hand, leave-user-out in training,
the residual start, and what train() builds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny_data import make_tiny_dataset

from msli_core import train as tr
from msli_core.data.dataset import leave_one_out
from msli_core.evaluate import evaluate
from msli_core.models.cross_encoder import CrossEncoder, CrossEncoderConfig, sequence_cooccurrence
from msli_core.models.registry import build_model, load_model, save_model


@pytest.fixture(scope="module")
def tiny():
    data = make_tiny_dataset(users=30, items=36, events=20)
    return data, leave_one_out(data)


def _fitted(sequences, **config) -> CrossEncoder:
    model = CrossEncoder(CrossEncoderConfig(n_items=5, n_genres=1, dim=8, layers=1, max_len=2,
                                            cooccurrence=True, cooc_window=1, **config))  # fmt: skip
    model.fit_cooccurrence([np.array(s) for s in sequences])
    return model.eval()


def test_sequence_cooccurrence_by_hand():
    # window 2 over [1, 2, 3, 1]: position pairs (1,2) (1,3) (2,3) (2,1) (3,1), both orders; 1-1 is not one
    counts = sequence_cooccurrence(np.array([1, 2, 3, 1]), 2, np.array([1, 2, 4]), np.array([1, 2, 3, 0]))
    assert counts.tolist() == [[0, 2, 2, 0], [2, 0, 1, 0], [0, 0, 0, 0]]
    assert sequence_cooccurrence(np.array([7]), 3, np.array([7]), np.array([7])).tolist() == [[0]]


def test_fitted_statistics_are_item_knn_counts():
    model = _fitted([[1, 2, 3], [2, 3], [4]])  # window 1: 1-2 once, 2-3 twice, 1-3 never (distance 2)
    assert model.item_counts.tolist() == [0, 1, 2, 2, 1, 0]
    history = torch.tensor([[1, 2]])
    for candidate, expected in ((2, [1, 0]), (3, [0, 2]), (5, [0, 0])):
        tokens, _ = model.cooc_features(history, torch.tensor([candidate]))
        assert torch.expm1(tokens[0, :, 1]).tolist() == pytest.approx(expected)


def test_cooccurrence_features_by_hand():
    model = _fitted([[1, 2], [1, 2], [2, 3]])  # count(1, 2) = 2, n_1 = 2, n_2 = 3
    tokens, vote = model.cooc_features(torch.tensor([[0, 1]]), torch.tensor([2]))  # padding, then item 1
    sim = 10 * 2 / math.sqrt(2 * 3)
    assert tokens[0, 0].tolist() == [0.0, 0.0]  # padding carries nothing
    assert tokens[0, 1].tolist() == pytest.approx([sim, math.log(3)])
    assert vote[0].tolist() == pytest.approx([sim, sim / 2])  # newest token: weight 1; mean over L = 2


def test_training_leaves_the_users_own_sequence_out():
    """A model fitted on one user's sequence, with that user's own counts subtracted, sees nothing."""
    seq = np.array([1, 2, 3, 4])
    model = _fitted([seq])
    history, candidates = torch.tensor([[2, 3]]), torch.tensor([4])
    tokens, _ = model.cooc_features(history, candidates)
    assert tokens[0, 1, 1] > 0  # 3-4 co-occur
    own_pairs = torch.as_tensor(sequence_cooccurrence(seq, 1, candidates.numpy(), history[0].numpy()))
    own_counts = torch.tensor([float((seq == 4).sum())])
    left_out, vote = model.cooc_features(history, candidates, (own_pairs, own_counts))
    assert left_out.abs().sum() == 0 and vote.abs().sum() == 0


def test_a_fresh_cooccurrence_reranker_keeps_its_first_stage_order(tiny):
    data, split = tiny
    first = tr.train(
        data, "two-tower", tr.TrainSettings(epochs=1), {"dim": 16, "layers": 1}, split=split
    ).model
    fresh = build_model("cross-encoder", data=data, dim=16, layers=1, max_len=8, cooccurrence=True)
    fresh.fit_cooccurrence(split.train_sequences())
    cascade = evaluate(fresh, data, split, "test", cascade_from=first, cascade_top=10)
    alone = evaluate(first, data, split, "test")
    assert cascade["NDCG@10"] == pytest.approx(alone["NDCG@10"], abs=1e-12)
    assert cascade["MRR"] == pytest.approx(alone["MRR"], abs=1e-12)


def test_train_builds_a_fitted_cooccurrence_reranker_that_round_trips(tiny, tmp_path):
    data, split = tiny
    first = tr.train(
        data, "two-tower", tr.TrainSettings(epochs=1), {"dim": 16, "layers": 1}, split=split
    ).model
    settings = tr.TrainSettings.for_kind("cross-encoder", epochs=1, cascade_top=10, valid_cascade_top=10)
    result = tr.train(
        data, "cross-encoder", settings, {"dim": 16, "layers": 1}, split=split, cascade_from=first
    )
    model = result.model
    assert model.config.cooccurrence and model.config.max_len == tr.CROSS_ENCODER_CONFIG["max_len"]
    assert model.item_counts.sum() == sum(len(s) for s in split.train_sequences())
    assert result.settings["cut_span"] == 20 and result.settings["head_lr_scale"] == 10.0
    save_model(model, tmp_path / "ce", data=data)
    loaded = load_model(tmp_path / "ce", data).model.eval()
    history, candidates = torch.tensor([[0, 3, 5, 7]]), torch.tensor([[1, 2, 9]])
    first_scores = torch.tensor([[0.5, -1.0, 2.0]])
    with torch.no_grad():
        expected = model.score(history, candidates, first_scores)
        assert torch.equal(loaded.score(history, candidates, first_scores), expected)
