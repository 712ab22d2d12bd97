"""Block-wise exact top-k for the online stage: the late interaction of a few users with a whole table.

The reference :func:`msli_core.models.late_interaction.late_interaction` materialises every segment's
score and attention weight for every candidate, (B, K, N). Serving needs only the top-k and their
contributions, so this module walks the item table in cache-sized blocks and keeps a running top-k:

1. per block, one product ``U · Eᵀ_block`` gives every non-empty segment's score ``s_k(c)``, (K', b);
2. for ``attention`` the score ``Σ_k a_k(c) s_k(c)`` is a convex combination of the ``s_k(c)`` (the
   ``a_k`` are a softmax), so ``max_k s_k(c)`` bounds it from above. A candidate whose bound does not
   beat the current k-th best score cannot enter the top-k; only the few that do get their attention
   logits ``<q_k, e_c>``, the softmax (the only ``exp``) and the exact score (numpy, parity-tested
   against the model's :func:`~msli_core.models.late_interaction.aggregate`). The top-k is therefore
   exactly the reference's, at about half the reference's FLOPs (the query rows are skipped);
3. ``max`` (MaxSim) *is* the bound; one segment (two-tower, ``sum``) is one row.

In the first block, with nothing to beat yet, the k columns with the best bounds are scored first:
their k-th score is a valid threshold, and the rest of the block must beat it.

Nothing of size K·N is ever allocated: the intermediates of one block, (K', b) floats, stay in cache.
Seen items are dropped only among the columns that pass the bound (a sorted id array per user), so
excluding a long history costs O(passing · log seen), not O(N).

Shapes: ``table`` (N+1, d) float32 row-major (row 0 = padding, never scored); ``ids`` (M,) int64 item
ids of a per-request candidate list, gathered block by block into a reused (b, d) buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKENDS = ("numpy", "torch")
SCOUT = 4  # in the first block, when over SCOUT·k columns pass the bound, the 2k best bounds go first
DEFAULT_BLOCK = 4096  # columns per block: (K', b) scores + (b, d) gathered rows stay within ~1 MB of L2


@dataclass
class OnlineQuery:
    """One user's online operands, prepared nearline (when the segments change), not per request.

    ``vectors`` (K', d) u_k of the non-empty slots; ``queries`` (K', d) q_k = W u_k and ``bias`` (K',)
    b_age(k) for ``attention`` (None otherwise); ``slots`` (K',) their slot numbers in 0..K-1;
    ``seen`` (S,) sorted int64 ids of the items the user has seen (excluded from recommendations).
    """

    kind: str  # "attention" (softmax over K' > 1 segments), "max", or "dot" (one row: K' = 1 or sum)
    vectors: np.ndarray
    queries: np.ndarray | None
    bias: np.ndarray | None
    slots: np.ndarray
    seen: np.ndarray


@dataclass
class TopK:
    """The exact top-k of one user: ids (k,), scores (k,), contributions (k, K') of the query's rows, and
    how many candidates passed the bound and were scored exactly (the weight-dependent part of the cost)."""

    ids: np.ndarray
    scores: np.ndarray
    contributions: np.ndarray
    exact: int = 0


def attention_contributions(
    scores: np.ndarray, logits: np.ndarray, bias: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``c_k = softmax_k(l_k + b_k) · s_k`` for (K', m) scores and logits: returns (m,) totals, (K', m).

    The numpy twin of :func:`~msli_core.models.late_interaction.aggregate` (attention) for the few
    columns that pass the bound: torch's per-operation overhead on such small arrays cost more than the
    math (measured: 50 µs against 14 µs per call at K' = 8, m = 10). Parity-tested against it.

    >>> s = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    >>> y, c = attention_contributions(s, np.zeros_like(s), None)
    >>> y.tolist(), c.tolist()
    ([0.5, 1.0], [[0.5, 0.0], [0.0, 1.0]])
    """
    z = logits if bias is None else logits + bias[:, None]
    z = np.exp(z - z.max(axis=0, keepdims=True))  # (K', m), the only exp: on passing columns alone
    contributions = z * scores / z.sum(axis=0, keepdims=True)
    return contributions.sum(axis=0), contributions


def exact_scores(
    query: OnlineQuery,
    scores: np.ndarray,
    rows: np.ndarray,
    columns: np.ndarray,
    threshold: float = -np.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact scores of the block's rows ``rows[columns]`` from their segment scores (K', m) (only
    attention reads the rows: its query product; for max and one segment the bound is the score).

    Returns ``kept`` (m',) positions into ``columns``, their totals (m',) and contributions (K', m'):
    with a ``threshold`` (the running k-th best), attention first computes every column's softmax-
    weighted score without its (K', m) contributions and keeps the columns that can reach the threshold
    (a 1e-5 relative margin covers float rounding): past the first block most columns that beat the
    bound do not beat the exact threshold, and building and merging their contributions was half the
    exact step at K = 16."""
    everything = np.arange(scores.shape[1])
    if query.kind == "attention":
        # (m, d) rows taken row-major, multiplied as (m, d)·(d, K'): 2-3x faster here than the fancy
        # index rows[columns] and the transposed-operand product q @ rowsᵀ (measured at d = 32..128)
        picked = np.take(rows, columns, axis=0)  # (m, d)
        logits = np.ascontiguousarray(np.matmul(picked, query.queries.T).T)  # (K', m): <q_k, e_c>
        if threshold == -np.inf:
            return (everything, *attention_contributions(scores, logits, query.bias))
        z = logits if query.bias is None else logits + query.bias[:, None]
        z -= z.max(axis=0, keepdims=True)
        np.exp(z, out=z)  # (K', m) unnormalised softmax weights
        approx = np.einsum("km,km->m", z, scores) / z.sum(axis=0)  # (m,)
        kept = np.flatnonzero(approx >= threshold - 1e-5 * max(1.0, abs(threshold)))
        if not len(kept):
            return kept, approx[:0], scores[:, :0]
        totals, contributions = attention_contributions(
            np.take(scores, kept, axis=1), np.take(logits, kept, axis=1), query.bias
        )
        return kept, totals, contributions
    if query.kind == "max":
        winner = scores.argmax(axis=0)  # (m,) first maximal segment, as the reference
        contributions = np.zeros_like(scores)
        contributions[winner, everything] = scores[winner, everything]
        return everything, scores[winner, everything], contributions
    return everything, scores[0], scores[:1]  # one segment: its score is the whole score


class _Running:
    """A running top-k: the best k (ids, exact scores, contributions) seen so far, and its threshold."""

    def __init__(self, k: int, width: int):
        self.k = k
        self.ids = np.zeros(0, dtype=np.int64)
        self.scores = np.zeros(0, dtype=np.float32)
        self.contributions = np.zeros((width, 0), dtype=np.float32)
        self.threshold = -np.inf  # a candidate must beat this to enter
        self.exact = 0  # candidates scored exactly so far

    def merge(self, ids: np.ndarray, scores: np.ndarray, contributions: np.ndarray) -> None:
        ids = np.concatenate([self.ids, ids])
        scores = np.concatenate([self.scores, scores.astype(np.float32, copy=False)])
        contributions = np.concatenate([self.contributions, contributions], axis=1)
        if len(scores) > self.k:
            keep = np.argpartition(-scores, self.k - 1)[: self.k]
            ids, scores, contributions = ids[keep], scores[keep], contributions[:, keep]
        self.ids, self.scores, self.contributions = ids, scores, contributions
        if len(scores) == self.k:
            self.threshold = float(scores.min())

    def result(self) -> TopK:
        order = np.lexsort((self.ids, -self.scores))  # best first; ties by the lower id
        return TopK(self.ids[order], self.scores[order], self.contributions[:, order].T.copy(), self.exact)


def _seen_mask(seen: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(m,) True where ``ids`` is in the sorted array ``seen``."""
    if not len(seen):
        return np.zeros(len(ids), dtype=bool)
    pos = np.minimum(np.searchsorted(seen, ids), len(seen) - 1)
    return seen[pos] == ids


SEEN_TABLE_MAX_ITEMS = 4 << 20  # up to this many table rows a request may mark the seen ids in a byte table
SEEN_TABLE_ROWS_PER_CANDIDATE = 16  # ... when it scores at least one candidate per this many rows


def uses_seen_table(table_rows: int, candidates: int | None = None) -> bool:
    """Whether a request over ``candidates`` of a ``table_rows``-row table checks seen ids in a byte table
    (:class:`SeenItems`); the cost model prices the same rule.

    Zeroing the table costs a byte per row, a lookup ~1 ns per candidate against ~10 ns for the binary
    search: it pays for a whole catalog or a long candidate list, not for a few hundred ANN candidates
    of a million-item catalog.

    >>> uses_seen_table(100_001), uses_seen_table(1_000_001, candidates=500)
    (True, False)
    """
    fits = table_rows <= SEEN_TABLE_MAX_ITEMS
    return fits and (candidates is None or table_rows <= SEEN_TABLE_ROWS_PER_CANDIDATE * candidates)


class SeenItems:
    """One user's seen ids as a request checks them: ``contains(ids)`` -> (m,) bool.

    Where :func:`uses_seen_table` says so, a byte per table row for the request (zeroed, the seen ids
    set): a lookup is one gather, ~4x faster than a binary search of the sorted ids (which ran at ~10 ns
    per candidate against a 372-item history); otherwise the binary search, so a request never writes
    more than 4 MB, nor a table much larger than its candidate list.

    >>> s = SeenItems(np.array([2, 5]), table_rows=8)
    >>> s.contains(np.array([1, 2, 5, 7])).tolist()
    [False, True, True, False]
    """

    def __init__(self, seen: np.ndarray, table_rows: int, candidates: int | None = None):
        self.seen = seen
        self.table = None
        if len(seen) and uses_seen_table(table_rows, candidates):
            self.table = np.zeros(table_rows, dtype=bool)  # (N+1,)
            self.table[seen[(seen >= 0) & (seen < table_rows)]] = True

    def __len__(self) -> int:
        return len(self.seen)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        if self.table is not None:
            return np.take(self.table, ids)
        return _seen_mask(self.seen, ids)


def top_k(
    queries: list[OnlineQuery],
    table: np.ndarray,
    k: int,
    *,
    ids: np.ndarray | range | None = None,
    exclude_seen: bool = True,
    block: int = DEFAULT_BLOCK,
    backend: str = "numpy",
) -> list[TopK]:
    """The exact top-k of each user in ``queries`` over the whole table (``ids`` None: items 1..N), a
    contiguous id range (``range(a, b)``: rows a..b-1, no copy) or the candidate ids ``ids`` (M,),
    reading the table once for all users (a batched request).

    Ties between equal scores are broken towards the lower item id. Fewer than k items come back only
    when fewer candidates are left after the seen items are excluded.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if ids is None:
        ids = range(1, table.shape[0])
    contiguous = isinstance(ids, range)
    if contiguous and (ids.step != 1 or ids.start < 1 or ids.stop > table.shape[0]):
        raise ValueError(f"an id range must be range(a, b) within 1..{table.shape[0] - 1}, not {ids}")
    first = ids.start if contiguous else 0
    n_rows = len(ids)
    if not contiguous and n_rows and (int(ids.min()) < 1 or int(ids.max()) >= table.shape[0]):
        raise ValueError(f"candidate ids must lie within 1..{table.shape[0] - 1}")
    offsets = np.cumsum([0] + [len(q.vectors) for q in queries])
    stacked = np.ascontiguousarray(np.concatenate([q.vectors for q in queries]), dtype=np.float32)
    running = [_Running(k, len(q.vectors)) for q in queries]
    seen = [SeenItems(q.seen if exclude_seen else q.seen[:0], table.shape[0], n_rows) for q in queries]
    b = max(1, min(block, n_rows))
    product = np.empty((len(stacked), b), dtype=np.float32)  # (ΣK', b), reused
    bound = np.empty(b, dtype=np.float32)
    gathered = None if contiguous else np.empty((b, table.shape[1]), dtype=np.float32)
    multiply = _multiplier(backend, stacked, product)
    for lo in range(0, n_rows, b):
        hi = min(lo + b, n_rows)
        m = hi - lo
        if contiguous:
            rows = table[first + lo : first + hi]  # (m, d), a view: the catalog streams once
            block_ids = None
        else:
            block_ids = ids[lo:hi]
            # ids were checked above: mode="clip" skips a bounds check per row (0.46 -> 0.29 ms for 10k)
            rows = np.take(table, block_ids, axis=0, out=gathered[:m], mode="clip")  # (m, d) in cache
        out = multiply(rows, m)  # (ΣK', m) segment scores of every user
        for query, run, user_seen, start, end in zip(
            queries, running, seen, offsets[:-1], offsets[1:], strict=True
        ):
            scores = out[start:end]  # (K', m)
            upper = scores[0] if end - start == 1 else np.max(scores, axis=0, out=bound[:m])
            passing = np.flatnonzero(upper > run.threshold)
            if not len(passing):
                continue
            cand = (passing + first + lo) if block_ids is None else block_ids[passing]
            cand = cand.astype(np.int64, copy=False)
            if query.kind != "dot" and run.threshold == -np.inf and len(passing) > SCOUT * k:
                # the first block (nothing to beat yet): score the 2k best bounds exactly first (the
                # unseen ones: the seen check runs on these 2k, not on the whole block); the k-th best
                # of their scores is a valid threshold that the rest of the block must then beat
                scout = np.argpartition(-upper[passing], 2 * k - 1)[: 2 * k]
                picked = scout
                if len(user_seen):
                    picked = scout[~user_seen.contains(cand[scout])]
                chosen = passing[picked]
                _, totals, contributions = exact_scores(query, np.take(scores, chosen, axis=1), rows, chosen)
                run.exact += len(chosen)
                run.merge(cand[picked], totals, contributions)
                rest = np.ones(len(passing), dtype=bool)
                rest[scout] = False
                rest &= upper[passing] > run.threshold
                passing, cand = passing[rest], cand[rest]
                if not len(passing):
                    continue
            if len(user_seen):
                keep = ~user_seen.contains(cand)  # on the columns that beat the threshold only
                passing, cand = passing[keep], cand[keep]
                if not len(passing):
                    continue
            kept, totals, contributions = exact_scores(
                query, np.take(scores, passing, axis=1), rows, passing, run.threshold
            )
            run.exact += len(passing)
            if len(kept):
                run.merge(cand[kept], totals, contributions)
    return [run.result() for run in running]


def _multiplier(backend: str, stacked: np.ndarray, product: np.ndarray):
    """``rows (m, d) -> stacked @ rows.T`` into the reused ``product`` buffer, in numpy or torch."""
    if backend == "numpy":

        def multiply(rows: np.ndarray, m: int) -> np.ndarray:
            return np.matmul(stacked, rows.T, out=product[:, :m])

        return multiply
    import torch

    left = torch.from_numpy(stacked)
    out = torch.from_numpy(product)

    def multiply_torch(rows: np.ndarray, m: int) -> np.ndarray:
        torch.mm(left, torch.from_numpy(rows).T, out=out[:, :m])
        return product[:, :m]

    return multiply_torch


_FASTEST: dict[tuple[int, int, int, bool], str] = {}
STREAM_MIN_BYTES = 64 << 20  # a streamed choice walks a table of this size or twice the last-level cache


def fastest_backend(
    rows: int, dim: int, *, streamed: bool = False, block: int = DEFAULT_BLOCK, rounds: int = 6
) -> str:
    """The faster of numpy and torch for the scorer's (rows, d) @ (d, block) products on this machine,
    measured once per shape and process (:func:`timing.time_in_rounds`, medians), with the thread
    settings in force.

    ``streamed``: the blocks come from a table larger than the last-level cache (a whole-catalog request
    on a large catalog), so the products are timed walking such a table block by block; otherwise on one
    block that stays in cache (a small catalog, or a request's own list gathered into a reused buffer).
    The two can disagree: on a 2-core AMD EPYC torch is the faster on a cached block and numpy the
    faster by 1.3x streaming a 1M x 64 table."""
    from msli_core.serving.timing import cache_size, time_in_rounds

    key = (rows, dim, block, streamed)
    if key not in _FASTEST:
        rng = np.random.default_rng(0)
        left = rng.standard_normal((rows, dim), dtype=np.float32)
        n = block
        if streamed:
            n = max(STREAM_MIN_BYTES, 2 * (cache_size(3) or 0)) // (4 * dim)
        table = np.full((n, dim), 0.5, dtype=np.float32)  # the values do not change the time
        product = np.empty((rows, block), dtype=np.float32)

        def walk(multiply) -> None:
            for lo in range(0, n - block + 1, block):
                multiply(table[lo : lo + block], block)

        calls = [lambda f=_multiplier(name, left, product): walk(f) for name in BACKENDS]
        timings = time_in_rounds(calls, budget_s=0.0, min_rounds=rounds)
        medians = {name: float(np.median(wall)) for name, (wall, _) in zip(BACKENDS, timings, strict=True)}
        _FASTEST[key] = min(BACKENDS, key=medians.__getitem__)
    return _FASTEST[key]
