"""An approximate-nearest-neighbour first stage for large catalogs (docs/design.md §4): faiss finds a few
hundred candidates per request, and late interaction re-scores them exactly.

Why per-segment search finds MS-LI's top items. With ``s_k(c) = <u_k, e_c>``, the attention score is
``y(c) = Σ_k a_k(c) s_k(c)`` with ``a_k(c)`` a softmax over the non-empty slots, so
``min_k s_k(c) <= y(c) <= max_k s_k(c)`` (the bound :mod:`scoring` prunes with). An item of the true
top-10 therefore has *some* segment ``k`` with ``s_k(c) >= y_10`` (the 10th best score): it is a large
inner product of at least one segment vector, and an inner-product search per segment reaches it when
it ranks within that segment's ``k'`` nearest neighbours. ``max`` (MaxSim) *is* ``max_k s_k``, so there
per-segment search is exact up to the index's own recall; one segment (two-tower) is one search.

When it can miss. The attention spreads its weight: an item that no single segment ranks highly but
that several segments rank *fairly* highly can have the best average, e.g. ``y = mean_k s_k`` when the
weights are uniform, which is ``<mean_k u_k, e_c>``: a direction none of the ``u_k`` points in. Measured
on the bench's fresh K = 8 models (N = 200,000, exact per-segment search, seen items excluded): the
union of the 8 segments' top-100 held only 82% of the true top-10 (93% at ``k'`` = 200). So the search
also sends one **pooled query**, ``ū = Σ_k w_k u_k`` with ``w = softmax_k(b_age(k))``, the attention a
candidate gets when its own logits ``<q_k, e_c>`` are equal (the weight a slot earns before looking at
the item): with it the same union reached 100% at ``k'`` = 50. The attention queries ``q_k`` are not
searched: they steer the weights, they do not bound the score. An item can still be missed when its
logits move the weights far from ``w`` towards segments that rank it below ``k'``, and, above all,
when the index's own search misses it (IVF: its list is not among the ``nprobe`` probed).

The union of the ``K' + 1`` result lists, minus the user's seen items, is re-scored exactly by the
engine's scorer (the per-request candidate path of :func:`scoring.top_k`), so every returned score and
contribution is late interaction's on those candidates (parity-tested): the approximation is only in
*which* candidates are scored, never in their scores.

Index kinds (decided by measurement, README "Latency", 1M items, d = 64, K = 8, one thread, a shared
2-core machine):

- ``ivf``: ``IndexIVFFlat``, inner product, ``nlist ≈ 4·sqrt(N)`` lists trained by k-means (10
  iterations) on a random sample of ``32·nlist`` rows; a query scores the ``nlist`` centroids, then
  every row of its ``nprobe`` best lists (``probes``). Recall 0.99 at ``nprobe`` = 64 on a clustered
  table in 4 ms; build 37 s. **The default.**
- ``hnsw``: ``IndexHNSWFlat`` (M = 32, efConstruction 64), ``probes`` = efSearch. On the same table
  recall 0.27-0.49 for efSearch 64-256 at 4.5-10 ms, and a 166 s build: graph search with inner
  products of unnormalised vectors reaches few of the largest products. Kept for comparison.

Neither finds structure that is not there: on a Gaussian table (no clusters) IVF at ``nprobe`` = 64
reached recall 0.30, which the bench reports beside the clustered table's.

Seen items: each query asks for ``k'`` plus up to ``k'`` more neighbours (as many as the user has seen
items), and seen ids are dropped from the union. faiss's ``IDSelector`` would exclude them inside the
search, but it tests every scanned row (+40% search time at ``nprobe`` 64, measured), while a request
scans about ``K'·nprobe·N/nlist`` rows and returns a few hundred.

Memory: faiss keeps its own copy of the vectors (IVF-Flat and HNSW-Flat store them uncompressed), so a
served catalog with an index holds the table twice; :func:`index_bytes` estimates what an index takes and
:func:`check_fits` refuses one that does not fit before anything is allocated. Building uses every core
(``build_threads``); searching uses one thread (``search_threads``, the lab's one request per core).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from msli_core.errors import MsliError

INDEX_KINDS = ("ivf", "hnsw")
LABELS = {"ivf": "IVF-Flat", "hnsw": "HNSW-Flat"}
TRAIN_PER_LIST = 32  # k-means training rows per IVF list (faiss wants 39+; 32 is enough here, and cheaper)
TRAIN_ITERATIONS = 10
HNSW_M = 32  # graph degree (level 0 keeps 2M neighbours)
HNSW_EF_CONSTRUCTION = 64
ADD_CHUNK = 1 << 18  # rows added to the index per call: the build's temporaries stay small
MAX_ITEMS = 20_000_000  # catalog of an ANN bench point or prediction (memory is checked as well)
MAX_PROBES = 65_536
MAX_NEIGHBOURS = 10_000


def default_lists(n_items: int) -> int:
    """IVF lists for a catalog of ``n_items``: ``round(4·sqrt(N))``, at least 1 and at most N/8 (so each
    list holds a few rows on small catalogs).

    >>> default_lists(1_000_000), default_lists(10_000_000), default_lists(100)
    (4000, 12649, 12)
    """
    return max(1, min(round(4 * math.sqrt(n_items)), n_items // 8))


@dataclass(frozen=True)
class AnnSettings:
    """What the first stage is: ``kind`` (``ivf`` or ``hnsw``), ``probes`` (IVF ``nprobe``: lists scanned
    per query; HNSW ``efSearch``), ``neighbours`` ``k'`` returned per query, ``lists`` (IVF ``nlist``; None:
    :func:`default_lists`), ``pooled`` (also search the pooled query ū, see the module docstring)."""

    kind: str = "ivf"
    probes: int = 32
    neighbours: int = 32
    lists: int | None = None
    pooled: bool = True
    seed: int = 0

    def validate(self, flag: str = "--ann") -> None:
        """Bad settings are one :class:`MsliError` sentence naming the option and the fix."""
        if self.kind not in INDEX_KINDS:
            raise MsliError(
                f"{flag} takes {', '.join(INDEX_KINDS)} (or none); {self.kind!r} is not an index kind."
            )
        checks = (
            ("probes", self.probes, 1, MAX_PROBES),
            ("neighbours", self.neighbours, 1, MAX_NEIGHBOURS),
            ("lists", 1 if self.lists is None else self.lists, 1, 10_000_000),
        )
        for name, value, lo, hi in checks:
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise MsliError(f"{flag} {name} must be a whole number in {lo}..{hi:,}; {value!r} is not.")


def index_bytes(kind: str, n_items: int, dim: int, lists: int | None = None) -> int:
    """Estimated peak bytes of building and holding an index over ``n_items`` rows of width ``dim``.

    IVF-Flat: the vectors (N·d·4) and their ids (N·8) in the inverted lists, with up to 1.5× for the
    lists' growth while rows are added; the centroids twice (quantizer and training); the training
    sample (32·nlist rows) and one add chunk's assignment. HNSW-Flat: the vectors, 2M level-0 links and
    about 1/M of the rows again on the upper levels (4 bytes each), plus per-row level offsets.

    >>> index_bytes("ivf", 1_000_000, 64) / 2**20 > 1.5 * 1_000_000 * 64 * 4 / 2**20
    True
    """
    if kind == "ivf":
        nlist = lists or default_lists(n_items)
        stored = n_items * (dim * 4 + 8)
        sample = min(n_items, TRAIN_PER_LIST * nlist) * (dim * 4 + 8)
        chunk = min(n_items, ADD_CHUNK) * 16
        return int(1.5 * stored + 2 * nlist * dim * 4 + sample + chunk)
    if kind == "hnsw":
        links = n_items * 2 * HNSW_M * 4 * (1 + 1 / HNSW_M)
        return int(n_items * dim * 4 + links + n_items * 24)
    raise MsliError(f"The index kind must be one of {', '.join(INDEX_KINDS)}, not {kind!r}.")


def check_fits(kind: str, n_items: int, dim: int, lists: int | None = None, also: int = 0) -> int:
    """The index's estimated bytes; an :class:`MsliError` sentence (before anything is allocated) when it
    plus ``also`` bytes (what else the caller is about to allocate) exceeds half of the memory available
    now (:data:`msli_core.limits.MEMORY_FRACTION`)."""
    from msli_core import limits

    need = index_bytes(kind, n_items, dim, lists)
    available = limits.available_memory_bytes()
    if available is not None and need + also > limits.MEMORY_FRACTION * available:
        raise MsliError(
            f"A {LABELS[kind]} index over {n_items:,} items of width {dim} needs about "
            f"{(need + also) / 2**30:.1f} GiB with what it serves, more than {limits.MEMORY_FRACTION:.0%} "
            f"of the {available / 2**30:.1f} GiB available; use fewer items or free memory first."
        )
    return need


class AnnIndex:
    """A faiss index over the rows ``1..N`` of an engine's item table (faiss id ``i`` = item ``i + 1``).

    Build it with :func:`build_index`; pass it to :meth:`InferenceEngine.recommend` as ``retrieval=``.
    ``probes`` and ``neighbours`` may be changed between requests (they are read on each search)."""

    def __init__(
        self, index, settings: AnnSettings, n_items: int, dim: int, lists: int | None, seconds: float
    ):
        self.index = index
        self.settings = settings
        self.kind = settings.kind
        self.probes = settings.probes
        self.neighbours = settings.neighbours
        self.pooled = settings.pooled
        self.n_items = n_items
        self.dim = dim
        self.lists = lists  # IVF nlist (None for HNSW)
        self.build_seconds = seconds
        self.bytes = self.stored_bytes()

    def stored_bytes(self) -> int:
        """Bytes the built index holds (its own copy of the vectors, ids or links, centroids)."""
        n, d = self.n_items, self.dim
        if self.kind == "ivf":
            return int(n * (d * 4 + 8) + (self.lists or 0) * d * 4)
        return int(n * d * 4 + n * 2 * HNSW_M * 4 * (1 + 1 / HNSW_M) + n * 24)

    def describe(self) -> str:
        """One line: the index and how it searches."""
        if self.kind == "ivf":
            how = f"nlist {self.lists:,}, nprobe {self.probes}"
        else:
            how = f"M {HNSW_M}, efSearch {max(self.probes, self.neighbours)}"
        return f"{LABELS[self.kind]} over {self.n_items:,} items ({how}, k' = {self.neighbours})"

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """(R, d) float32 queries -> (R, k) item ids of each query's ``k`` best inner products (0 where
        the index returned fewer), on one thread."""
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=min(self.probes, self.lists or 1))
        else:
            params = faiss.SearchParametersHNSW(efSearch=max(self.probes, k))
        with search_threads():
            _, found = self.index.search(queries, k, params=params)
        return found + 1  # faiss id -> item id; -1 (nothing found) -> 0 (padding, dropped)

    def candidates(self, online, seen: np.ndarray | None = None) -> np.ndarray:
        """The sorted unique item ids of one user's first stage: each non-empty segment's (and the pooled
        query's) ``k'`` nearest items by inner product, minus the sorted ``seen`` ids.

        ``online`` is the user's :class:`~msli_core.serving.scoring.OnlineQuery` (prepared nearline)."""
        queries = search_queries(online, self.pooled)  # (R, d)
        seen = np.zeros(0, dtype=np.int64) if seen is None else seen
        k = min(self.n_items, self.neighbours + min(len(seen), self.neighbours))  # room for seen items
        ids = np.unique(self.search(queries, k))  # sorted
        ids = ids[ids > 0]
        if len(seen):
            ids = ids[~np.isin(ids, seen, assume_unique=True)]
        return ids.astype(np.int64, copy=False)


def search_queries(online, pooled: bool = True) -> np.ndarray:
    """The (R, d) queries of one user: the K' non-empty segment vectors ``u_k`` and, for the attention
    aggregation with K' > 1 (and ``pooled``), ū = Σ_k softmax(b_age)_k u_k (uniform weights without an
    age bias). ``max`` and one-segment users need no pooled query (their score is a segment's product).

    >>> from msli_core.serving.scoring import OnlineQuery
    >>> u = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    >>> q = OnlineQuery("attention", u, u, np.zeros(2, dtype=np.float32), np.arange(2), np.zeros(0))
    >>> search_queries(q).tolist()
    [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    """
    vectors = np.asarray(online.vectors, dtype=np.float32)  # (K', d)
    if online.kind != "attention" or len(vectors) < 2 or not pooled:
        return vectors
    bias = np.zeros(len(vectors)) if online.bias is None else np.asarray(online.bias, dtype=np.float64)
    weights = np.exp(bias - bias.max())
    weights /= weights.sum()
    pooled_vector = (weights[:, None] * vectors).sum(axis=0, dtype=np.float64).astype(np.float32)
    return np.vstack([vectors, pooled_vector[None]])


class search_threads:
    """faiss's OpenMP threads set to ``threads`` inside the block (1: the timed path), restored after."""

    def __init__(self, threads: int = 1):
        self.threads = threads

    def __enter__(self) -> None:
        import faiss

        self.before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.threads)

    def __exit__(self, *exc) -> None:
        import faiss

        faiss.omp_set_num_threads(self.before)


def build_index(
    table: np.ndarray, settings: AnnSettings | None = None, *, build_threads: int | None = None
) -> AnnIndex:
    """An index over the rows ``1..N`` of ``table`` (N+1, d) float32 (row 0, the padding, is left out).

    The memory is checked first (:func:`check_fits`). IVF: k-means on ``32·nlist`` random rows (seeded),
    then the rows are added in chunks of :data:`ADD_CHUNK` (views of the table: no copy of it is made
    beyond the one faiss keeps). ``build_threads`` (default: every core) is the build's OpenMP threads."""
    import os

    import faiss

    settings = settings or AnnSettings()
    settings.validate()
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[0] < 2 or table.dtype != np.float32:
        raise MsliError(
            "The item table must be a (N+1, d) float32 array with at least one item; build the engine's "
            "table with offline() first."
        )
    n, d = table.shape[0] - 1, table.shape[1]
    lists = None
    if settings.kind == "ivf":
        lists = settings.lists or default_lists(n)
        if lists > n:
            raise MsliError(f"--ann lists {lists:,} exceeds the {n:,} items; pass at most {n:,} lists.")
    check_fits(settings.kind, n, d, lists)
    started = time.perf_counter()
    with search_threads(build_threads or os.cpu_count() or 1):
        if settings.kind == "ivf":
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, lists, faiss.METRIC_INNER_PRODUCT)
            index.cp.niter = TRAIN_ITERATIONS
            index.cp.seed = settings.seed
            index.cp.min_points_per_centroid = 1  # a small sample is a choice here, not a mistake
            index.cp.max_points_per_centroid = TRAIN_PER_LIST
            rng = np.random.default_rng(settings.seed)
            sample = np.sort(rng.choice(n, size=min(n, TRAIN_PER_LIST * lists), replace=False)) + 1
            index.train(table[sample])
            del sample  # (faiss's Python constructor keeps the quantizer alive with the index)
        else:
            index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        for lo in range(1, n + 1, ADD_CHUNK):
            index.add(table[lo : min(n + 1, lo + ADD_CHUNK)])
    return AnnIndex(index, settings, n, d, lists, time.perf_counter() - started)
