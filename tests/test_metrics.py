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


def test_wilson_interval_hand_checked_and_against_a_simulation():
    # 5 of 10: centre (0.5 + 1.96²/20) / (1 + 1.96²/10) = 0.5, half-width 1.96·sqrt(0.025 + 0.0096)/1.384
    lo, hi = metrics.wilson_interval(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert metrics.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # stays inside [0, 1]
    assert metrics.wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(x) for x in metrics.wilson_interval(0, 0))
    with pytest.raises(ValueError, match="successes"):
        metrics.wilson_interval(11, 10)
    # coverage: a true proportion of 0.9 measured on 29 users falls inside about 95% of the intervals
    rng = np.random.default_rng(0)
    hits = rng.binomial(29, 0.9, size=4000)
    inside = [lo <= 0.9 <= hi for lo, hi in (metrics.wilson_interval(int(h), 29) for h in hits)]
    assert 0.92 <= np.mean(inside) <= 0.99
