"""Top-N metrics on target ranks (LensKit style: one small pure function per metric, NaN when no truth).

Input is the 0-based rank of each user's held-out item among all candidates (0 = ranked first),
as a float array where NaN marks a user without ground truth. With one held-out item per user
(leave-one-out, docs/design.md §3):

- ``NDCG@k``  = mean of ``1 / log2(rank + 2)`` if ``rank < k`` else 0 (the ideal DCG is 1);
- ``HR@k``    = mean of ``rank < k``;
- ``MRR``     = mean of ``1 / (rank + 1)`` (over the full ranking, no cut-off);
- ``Recall@k`` = fraction of the user's relevant items in the top k; with one relevant item it equals
  ``HR@k`` (both are reported because scripts and papers ask for either);
- ``Coverage@k`` = fraction of the catalog that appears in at least one user's top-k list.

:func:`wilson_interval` gives the 95% interval of a proportion measured on few users (an explanation
accuracy over a few dozen users is a proportion with a wide interval). :func:`paired_bootstrap` gives
the interval of the difference of two models' NDCG@k on the *same* users (per-user gains from
:func:`ndcg_gains`): the test users are a sample, and on a few hundred of them a difference of 0.01 is
often inside it, however many training seeds are averaged.

Averages skip NaN users; an input with no non-NaN rank gives NaN.
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("NDCG@10", "HR@10", "MRR", "Recall@20", "Coverage@10")


def _valid(ranks) -> np.ndarray:
    ranks = np.asarray(ranks, dtype=np.float64).reshape(-1)
    return ranks[~np.isnan(ranks)]


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def ndcg_gains(ranks, k: int = 10) -> np.ndarray:
    """Each user's NDCG@k, (U,) float: ``1 / log2(rank + 2)`` if ``rank < k`` else 0; NaN stays NaN.

    >>> ndcg_gains([0, 1, 10, float("nan")], k=10).round(4).tolist()
    [1.0, 0.6309, 0.0, nan]
    """
    r = np.asarray(ranks, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(r), np.nan, np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0))


def ndcg_at_k(ranks, k: int = 10) -> float:
    """Mean NDCG@k of single-target rankings.

    >>> round(ndcg_at_k([0, 1, 10], k=10), 4)  # (1 + 1/log2(3) + 0) / 3
    0.5436
    >>> ndcg_at_k([float("nan")])
    nan
    """
    return _mean(_valid(ndcg_gains(ranks, k)))


def hit_rate_at_k(ranks, k: int = 10) -> float:
    """Mean of ``rank < k``.

    >>> hit_rate_at_k([0, 9, 10, 50], k=10)
    0.5
    """
    return _mean((_valid(ranks) < k).astype(np.float64))


def recall_at_k(ranks, k: int = 20) -> float:
    """Recall@k for one held-out item per user (equals ``hit_rate_at_k``).

    >>> recall_at_k([0, 19, 20], k=20)
    0.6666666666666666
    """
    return hit_rate_at_k(ranks, k)


def mrr(ranks) -> float:
    """Mean reciprocal rank.

    >>> mrr([0, 1, 3])  # (1 + 1/2 + 1/4) / 3
    0.5833333333333334
    """
    return _mean(1.0 / (_valid(ranks) + 1.0))


def catalog_coverage(top_items, n_items: int) -> float:
    """Fraction of the ``n_items`` catalog items (ids 1..N) found in any row of ``top_items`` (U, k).

    >>> catalog_coverage([[1, 2], [2, 3]], n_items=6)
    0.5
    """
    top = np.asarray(top_items, dtype=np.int64).reshape(-1)
    if n_items <= 0:
        return float("nan")
    top = top[(top >= 1) & (top <= n_items)]
    return float(len(np.unique(top)) / n_items)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / trials`` (z = 1.96: 95%); (nan, nan) for no
    trials. Unlike the normal approximation it stays inside [0, 1] and is honest at a few dozen trials:

    >>> [round(x, 3) for x in wilson_interval(27, 29)]  # 0.931 measured on 29 users
    [0.78, 0.981]
    >>> wilson_interval(0, 0)
    (nan, nan)
    >>> wilson_interval(0, 5)[0], wilson_interval(5, 5)[1]  # exact ends, not a rounding error away
    (0.0, 1.0)
    """
    if trials <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in 0..{trials}, not {successes}")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    low = 0.0 if successes == 0 else max(0.0, float(centre - half))  # at 0 (or all) the bound is exact
    high = 1.0 if successes == trials else min(1.0, float(centre + half))
    return low, high


BOOTSTRAP_RESAMPLES = 2000  # an endpoint moves by about 1.5% of the width between seeds (sd, 300 users)
BOOTSTRAP_CHUNK_CELLS = 1 << 22  # resamples x users drawn at once (4M indices, 32 MB): memory stays bounded


def paired_bootstrap(
    a, b, *, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean(a - b), low, high)``: the mean per-user difference of two metrics measured on the same
    users, with its percentile bootstrap interval at ``level`` (users resampled with replacement, the
    same draw for both, so what the users share cancels out: a *paired* test).

    ``a``, ``b``: (U,) per-user values in the same user order (e.g. :func:`ndcg_gains` of two models'
    ranks); users where either is NaN are left out. An interval that excludes 0 says the difference is
    larger than the spread of the test users alone explains; one that includes 0 says this test set
    cannot tell the two apart (it says nothing of training noise: that needs more seeds). Deterministic
    for a given ``seed``; (nan, nan, nan) when no user has both values.

    >>> [round(x, 4) for x in paired_bootstrap([1.0, 0.0, 0.5], [0.5, 0.0, 0.0])]  # no user's is < 0
    [0.3333, 0.0, 0.5]
    >>> [round(x, 4) for x in paired_bootstrap([0.2, 0.7], [0.1, 0.6])]  # a constant shift: a point
    [0.1, 0.1, 0.1]
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same users: {a.shape[0]} against {b.shape[0]}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")
    diff = (a - b)[~(np.isnan(a) | np.isnan(b))]  # (U',)
    n = len(diff)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, BOOTSTRAP_CHUNK_CELLS // n)
    for lo in range(0, resamples, step):
        hi = min(resamples, lo + step)
        means[lo:hi] = diff[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    mean = float(diff.mean())
    # the interval holds the observed mean (a constant difference: only rounding in the means moves it)
    return mean, float(min(low, mean)), float(max(high, mean))


def summarize(ranks, top_items, n_items: int) -> dict[str, float]:
    """All reported metrics, named as in the CLI's JSON (``top_items`` needs at least 10 columns)."""
    top = np.asarray(top_items)
    return {
        "NDCG@10": ndcg_at_k(ranks, 10),
        "HR@10": hit_rate_at_k(ranks, 10),
        "MRR": mrr(ranks),
        "Recall@20": recall_at_k(ranks, 20),
        "Coverage@10": catalog_coverage(top[:, :10], n_items),
    }
