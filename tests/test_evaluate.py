"""Full-ranking evaluation: seen items masked (never recommended), ranks with ties, cascade labelling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny_data import make_tiny_dataset

from msli_core import evaluate as ev
from msli_core.data.dataset import leave_one_out
from msli_core.errors import MsliError
from msli_core.models.registry import build_model


class FixedRandom(torch.nn.Module):
    """Continuous random scores (no ties), the same for every user."""

    kind = "fixed-random"

    def __init__(self, n_items):
        super().__init__()
        self.scores = torch.rand(n_items + 1, generator=torch.Generator().manual_seed(3))

    def score_histories(self, histories, timestamps=None):
        del timestamps
        return self.scores.repeat(len(histories), 1)


class SeenLover(torch.nn.Module):
    """Scores every item the user has seen highest: masking must still keep them out."""

    kind = "seen-lover"

    def __init__(self, n_items):
        super().__init__()
        self.n_items = n_items

    def score_histories(self, histories, timestamps=None):
        del timestamps
        scores = torch.arange(self.n_items + 1, dtype=torch.float32).repeat(len(histories), 1) / 1000
        for b, h in enumerate(histories):
            scores[b, torch.as_tensor(h.copy())] = 100.0
        return scores


@pytest.fixture(scope="module")
def tiny():
    data = make_tiny_dataset(users=30, items=40)
    return data, leave_one_out(data)


def test_mask_seen_is_vectorised_and_complete():
    scores = torch.zeros(2, 6)
    ev.mask_seen(scores, [np.array([1, 3]), np.array([5])])
    assert torch.isinf(scores[0, [0, 1, 3]]).all() and torch.isfinite(scores[0, [2, 4, 5]]).all()
    assert torch.isinf(scores[1, [0, 5]]).all() and torch.isfinite(scores[1, 1:5]).all()


def test_target_rank_counts_ties_against_the_target():
    scores = torch.tensor([[0.0, 3.0, 2.0, 2.0, 1.0]])
    assert ev.target_ranks(scores, torch.tensor([2])).tolist() == [2.0]  # item 1 above, item 3 tied
    assert ev.target_ranks(scores, torch.tensor([1])).tolist() == [0.0]


def test_earlier_items_are_never_recommended(tiny):
    data, split = tiny
    ranks, tops = ev.rank_users(SeenLover(data.n_items), split, "test")
    for u, top in zip(split.eval_users, tops, strict=True):
        assert not set(top.tolist()) & set(split.history(int(u), "test").tolist())
        unseen = data.n_items - len(set(split.history(int(u), "test").tolist()))
        assert (top != 0).sum() == min(len(top), unseen)  # padding 0 only once no unseen item is left
    # the scorer prefers higher ids: the target's rank = unseen items with a larger id
    for u, r in zip(split.eval_users, ranks, strict=True):
        seen = set(split.history(int(u), "test").tolist())
        target = split.target(int(u), "test")
        expected = sum(1 for i in range(target + 1, data.n_items + 1) if i not in seen)
        assert r == expected


def test_evaluate_returns_the_contract_keys(tiny):
    data, split = tiny
    model = build_model("popularity", data=data).fit(split.train_sequences())
    out = ev.evaluate(model, data, split)
    for key in ("NDCG@10", "HR@10", "MRR", "Recall@20", "Coverage@10", "users"):
        assert key in out
    assert out["users"] == len(split.eval_users) and out["evaluation"] == "full ranking"
    assert 0.0 <= out["NDCG@10"] <= out["HR@10"] <= out["Recall@20"] <= 1.0


def test_cross_encoder_over_budget_is_refused_then_cascaded(tiny, monkeypatch):
    data, split = tiny
    torch.manual_seed(0)
    cross = build_model("cross-encoder", data=data, dim=16, layers=1, max_len=10)
    monkeypatch.setattr(ev, "CROSS_ENCODER_FULL_RANKING_PAIRS", 10)
    with pytest.raises(MsliError, match="cascade"):
        ev.evaluate(cross, data, split)
    first = FixedRandom(data.n_items)
    out = ev.evaluate(cross, data, split, cascade_from=first, cascade_top=15)
    assert out["evaluation"].startswith("cascade: fixed-random top-15")
    # a target outside the first stage's top-15 keeps its first-stage rank (>= 15)
    base_ranks, _ = ev.rank_users(first, split, "test")
    casc_ranks, casc_tops = ev.rank_users_cascade(cross, first, split, "test", top_m=15)
    outside = base_ranks >= 15
    assert np.array_equal(casc_ranks[outside], base_ranks[outside])
    assert (casc_ranks[~outside] < 15).all()
    _, base_tops = ev.rank_users(first, split, "test")
    assert all(
        set(a[:15]) == set(b[:15]) for a, b in zip(casc_tops, base_tops, strict=True)
    )  # same candidates


def test_cross_encoder_full_ranking_within_budget(tiny):
    data, split = tiny
    torch.manual_seed(0)
    cross = build_model("cross-encoder", data=data, dim=16, layers=1, max_len=10)
    out = ev.evaluate(cross, data, split, users=split.eval_users[:5])
    assert out["evaluation"] == "full ranking" and out["users"] == 5


class CoarseScores(torch.nn.Module):
    """Scores rounded to a few levels, different per user: many ties, and seen items among the best."""

    kind = "coarse"

    def __init__(self, n_items):
        super().__init__()
        self.n_items = n_items

    def score_histories(self, histories, timestamps=None):
        del timestamps
        out = torch.zeros(len(histories), self.n_items + 1)
        for b, h in enumerate(histories):
            g = torch.Generator().manual_seed(int(h[-1]) * 7 + len(h))
            out[b] = torch.randint(0, 4, (self.n_items + 1,), generator=g).float()  # 4 levels: ties
        return out


def _reference_metrics(model, split, n_items):
    """An independent reference, one user and one item at a time in plain Python: the candidates are the
    items the user has not seen, the target's rank counts every other candidate scoring at least as high
    (ties against the target), and the metrics follow their textbook formulas."""
    ndcg, hits, rr, rec20 = [], [], [], []
    for user in split.eval_users:
        history, stamps, target = (x[0] for x in split.batch([user], "test"))
        scores = model.score_histories([history], [stamps])[0].tolist()
        seen = set(history.tolist())
        rank = sum(1 for item in range(1, n_items + 1)
                   if item != target and item not in seen and scores[item] >= scores[target])  # fmt: skip
        ndcg.append(1 / math.log2(rank + 2) if rank < 10 else 0.0)
        hits.append(1.0 if rank < 10 else 0.0)
        rr.append(1 / (rank + 1))
        rec20.append(1.0 if rank < 20 else 0.0)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"NDCG@10": mean(ndcg), "HR@10": mean(hits), "MRR": mean(rr), "Recall@20": mean(rec20)}


@pytest.mark.parametrize("model_class", [FixedRandom, CoarseScores, SeenLover])
def test_evaluate_matches_an_independent_reference_with_ties(tiny, model_class):
    """evaluate() end to end (batched scoring, scatter masking, tie-aware ranks, metric averages) equals a
    one-user-at-a-time Python reference, on scores without ties, with many ties, and with seen items
    scored highest; in batches of 7 as in one."""
    data, split = tiny
    model = model_class(data.n_items)
    want = _reference_metrics(model, split, data.n_items)
    for batch_size in (7, 256):
        got = ev.evaluate(model, data, split, batch_size=batch_size)
        for name, value in want.items():
            assert got[name] == pytest.approx(value, abs=1e-12), (name, batch_size)
    assert 0 < want["HR@10"] < 1  # the case is not degenerate: some users hit, some miss
