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
accuracy over a few dozen users is a proportion with a wide interval).

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


def ndcg_at_k(ranks, k: int = 10) -> float:
    """Mean NDCG@k of single-target rankings.

    >>> round(ndcg_at_k([0, 1, 10], k=10), 4)  # (1 + 1/log2(3) + 0) / 3
    0.5436
    >>> ndcg_at_k([float("nan")])
    nan
    """
    r = _valid(ranks)
    return _mean(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0))


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
    """
    if trials <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in 0..{trials}, not {successes}")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


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
