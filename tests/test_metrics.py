"""Metrics on target ranks: hand-worked cases and a cross-check against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from msli_core import metrics


def test_hand_worked_cases():
    ranks = [0, 1, 4, 12]
    assert metrics.ndcg_at_k(ranks, 10) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 0) / 4)
    assert metrics.hit_rate_at_k(ranks, 10) == 0.75
    assert metrics.hit_rate_at_k(ranks, 1) == 0.25
    assert metrics.mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 13) / 4)
    assert metrics.recall_at_k(ranks, 20) == 1.0


def test_nan_means_no_ground_truth():
    assert metrics.ndcg_at_k([0, np.nan]) == 1.0
    assert math.isnan(metrics.ndcg_at_k([np.nan]))
    assert math.isnan(metrics.mrr([]))


def test_coverage():
    assert metrics.catalog_coverage([[1, 2, 3], [3, 4, 0]], n_items=8) == 0.5  # 0 is padding, not an item


def test_summary_names():
    out = metrics.summarize(np.array([0.0, 3.0]), np.arange(1, 21).reshape(1, 20), 40)
    assert list(out) == list(metrics.METRIC_NAMES)
    assert out["Coverage@10"] == 0.25


def test_ndcg_matches_sklearn_on_random_rankings():
    rng = np.random.default_rng(0)
    for _ in range(20):
        users, n = 30, 50
        scores = rng.normal(size=(users, n))  # continuous: no ties
        targets = rng.integers(0, n, size=users)
        truth = np.zeros((users, n))
        truth[np.arange(users), targets] = 1.0
        ranks = (scores > scores[np.arange(users), targets][:, None]).sum(1)
        assert metrics.ndcg_at_k(ranks, 10) == pytest.approx(ndcg_score(truth, scores, k=10), abs=1e-12)
        assert metrics.mrr(ranks) == pytest.approx(np.mean(1 / (ranks + 1)))
