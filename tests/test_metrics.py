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


def test_ndcg_gains_are_the_per_user_terms_of_ndcg():
    ranks = np.array([0.0, 1.0, 3.0, 9.0, 10.0, np.nan, 500.0])
    gains = metrics.ndcg_gains(ranks, 10)
    assert gains[:5] == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(5), 1 / math.log2(11), 0.0])
    assert math.isnan(gains[5]) and gains[6] == 0.0
    assert np.nanmean(gains) == pytest.approx(metrics.ndcg_at_k(ranks, 10))


def test_paired_bootstrap_hand_checked_cases():
    # a constant shift: every resample has the same mean difference
    assert metrics.paired_bootstrap([0.5, 0.2, 0.9], [0.4, 0.1, 0.8]) == pytest.approx((0.1, 0.1, 0.1))
    # equal metrics: difference 0, interval [0, 0]
    assert metrics.paired_bootstrap([0.3, 0.6], [0.3, 0.6]) == (0.0, 0.0, 0.0)
    # one user +1, one user -1: resampled means are -1, 0 or +1 (1/4, 1/2, 1/4), so the 95% interval
    # runs from -1 to +1 and holds 0
    assert metrics.paired_bootstrap([1.0, 0.0], [0.0, 1.0]) == (0.0, -1.0, 1.0)
    # a user with NaN (no ground truth) in either model is left out of both
    mean, low, high = metrics.paired_bootstrap([1.0, np.nan, 0.5], [0.5, 0.2, np.nan])
    assert (mean, low, high) == pytest.approx((0.5, 0.5, 0.5))
    assert all(math.isnan(x) for x in metrics.paired_bootstrap([np.nan], [1.0]))
    with pytest.raises(ValueError, match="same users"):
        metrics.paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="level"):
        metrics.paired_bootstrap([1.0], [1.0], level=1.0)


def test_paired_bootstrap_matches_the_normal_interval_and_covers_the_truth():
    # many users: the percentile interval approaches mean ± 1.96·sd/sqrt(n) of the per-user differences
    rng = np.random.default_rng(3)
    a = rng.random(2000)
    b = a - 0.05 + rng.normal(0, 0.3, 2000)
    mean, low, high = metrics.paired_bootstrap(a, b, seed=1)
    half = 1.96 * np.std(a - b, ddof=1) / np.sqrt(2000)
    assert mean == pytest.approx(np.mean(a - b))
    assert low == pytest.approx(mean - half, abs=0.2 * half)
    assert high == pytest.approx(mean + half, abs=0.2 * half)
    assert low > 0  # a true difference of 0.05 with per-user noise 0.3 is resolved on 2000 users
    # coverage: on 200 users drawn from a population whose true mean difference is 0.02, about 95% of
    # the intervals hold 0.02
    inside = []
    for trial in range(200):
        d = rng.normal(0.02, 0.3, 200)
        _, lo, hi = metrics.paired_bootstrap(d, np.zeros(200), resamples=500, seed=trial)
        inside.append(lo <= 0.02 <= hi)
    assert 0.88 <= np.mean(inside) <= 0.99


def test_paired_bootstrap_is_repeatable_and_independent_of_its_chunking(monkeypatch):
    rng = np.random.default_rng(0)
    a, b = rng.random(300), rng.random(300)
    whole = metrics.paired_bootstrap(a, b, seed=7)
    assert metrics.paired_bootstrap(a, b, seed=7) == whole
    monkeypatch.setattr(metrics, "BOOTSTRAP_CHUNK_CELLS", 300 * 7)  # 7 resamples per draw
    assert metrics.paired_bootstrap(a, b, seed=7) == pytest.approx(whole, rel=1e-12)
