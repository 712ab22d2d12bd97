"""Two simple baselines beside every figure (docs/design.md §2): popularity and sequential item-kNN.

Both have the neural models' interface — ``score_histories(histories, timestamps) -> (B, N+1)`` — and
keep their fitted state in buffers, so they save and load as ``config.json`` + ``model.safetensors``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from msli_core import limits
from msli_core.limits import check_fraction, check_int


@dataclass
class PopularityConfig:
    n_items: int = 1000  # N, catalog size

    def __post_init__(self) -> None:
        check_int("n_items", self.n_items, 1, limits.MAX_ITEMS)

    def to_dict(self) -> dict:
        return asdict(self)


class Popularity(nn.Module):
    """Score = log(1 + number of training interactions with the item), the same for every user."""

    kind = "popularity"

    def __init__(self, config: PopularityConfig):
        super().__init__()
        self.config = config
        self.register_buffer("counts", torch.zeros(config.n_items + 1))  # (N+1,)

    def fit(self, sequences: list[np.ndarray]) -> Popularity:
        all_items = np.concatenate(sequences) if sequences else np.zeros(0, np.int64)
        counts = np.bincount(all_items, minlength=self.config.n_items + 1)[: self.config.n_items + 1]
        counts[0] = 0
        self.counts.copy_(torch.as_tensor(counts, dtype=torch.float32))
        return self

    def score_histories(
        self, histories: list[np.ndarray], timestamps: list[np.ndarray] | None = None
    ) -> Tensor:
        del timestamps
        return torch.log1p(self.counts).expand(len(histories), -1).clone()  # (B, N+1)


@dataclass
class ItemKNNConfig:
    n_items: int = 1000  # N, catalog size
    neighbors: int = 100  # similar items kept per item (memory N·neighbors, not N²)
    window: int = 3  # two events at most this far apart in a sequence co-occur (sequential kNN)
    history_items: int = 5  # the user's last few items that vote
    decay: float = 0.7  # vote weight of the j-th most recent item: decay**j (recency, Ludewig & Jannach)

    def __post_init__(self) -> None:
        check_int("n_items", self.n_items, 1, limits.MAX_ITEMS)
        check_int("neighbors", self.neighbors, 1, limits.MAX_NEIGHBORS)
        check_int("window", self.window, 1, limits.MAX_HISTORY)
        check_int("history_items", self.history_items, 1, limits.MAX_HISTORY)
        check_fraction("decay", self.decay, closed=True)

    def to_dict(self) -> dict:
        return asdict(self)


COOCCURRENCE_CHUNK = 1 << 24  # pairs counted per chunk (16.8M: about 200 MB of temporaries)


def cooccurrence_counts(sequences: list[np.ndarray], n: int, window: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Item-kNN's statistics of ``sequences`` over ids ``0..n-1``: ``C`` (n, n) CSR, ``C_ij`` = how often
    i and j (different items) occur within ``window`` events of each other (both orders, so symmetric),
    and each item's count (n,).

    >>> co, counts = cooccurrence_counts([np.array([1, 2, 3, 1])], 4, 1)
    >>> co.toarray().astype(int).tolist()
    [[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 1, 0]]
    >>> counts.tolist()
    [0.0, 2.0, 1.0, 1.0]
    """
    co = sp.csr_matrix((n, n), dtype=np.float32)
    rows, cols, pending = [], [], 0
    for at, seq in enumerate(sequences):
        for offset in range(1, window + 1):
            if len(seq) > offset:
                rows += [seq[:-offset], seq[offset:]]
                cols += [seq[offset:], seq[:-offset]]
                pending += 2 * (len(seq) - offset)
        if rows and (pending >= COOCCURRENCE_CHUNK or at == len(sequences) - 1):
            # pairs are summed chunk by chunk: memory follows the distinct pairs, not the events
            r, c = np.concatenate(rows).astype(np.int32), np.concatenate(cols).astype(np.int32)
            keep = r != c
            part = sp.coo_matrix((np.ones(int(keep.sum()), np.float32), (r[keep], c[keep])), shape=(n, n))
            co = co + part.tocsr()
            rows, cols, pending = [], [], 0
    co = co.tocsr()
    co.sum_duplicates()
    counts = (
        np.bincount(np.concatenate(sequences), minlength=n)[:n].astype(np.float64)
        if sequences
        else np.zeros(n)
    )
    return co, counts


DENSE_EIGEN_ITEMS = 6000  # up to this many items the eigenpairs come from a dense solver (~0.3 GB, seconds)


def cooccurrence_embeddings(
    sequences: list[np.ndarray], n_items: int, dim: int, *, window: int = 3, neighbors: int = 100
) -> np.ndarray | None:
    """Item vectors whose dot products approximate item-kNN's similarity: (N+1, dim), row 0 zero.

    ``S`` is item-kNN's cosine co-occurrence (:class:`ItemKNN`: each item's ``neighbors`` most similar,
    made symmetric); its ``dim`` largest eigenpairs give ``E = V·sqrt(λ)``, so ``<e_i, e_j> ≈ S_ij``
    (the best rank-``dim`` fit of the positive part, Eckart-Young). A model whose item embeddings start
    here starts with item-kNN's signal in its recency path (``Σ r_j <e(x_{t-j}), e_c>`` ≈ kNN's vote).
    None when there is too little to factor (fewer than ``dim + 2`` items, or no co-occurrence).
    Deterministic up to :data:`DENSE_EIGEN_ITEMS` items (a dense solver); above, Lanczos from a fixed
    start vector, repeatable up to rounding.
    """
    from scipy.sparse.linalg import ArpackError, eigsh

    n = n_items + 1
    knn = ItemKNN(ItemKNNConfig(n_items=n_items, neighbors=min(neighbors, n_items), window=window))
    knn.fit(sequences)
    ids, sims = knn.neighbor_ids.numpy(), knn.neighbor_sims.numpy()  # (n, k) each
    keep = sims.ravel() > 0
    if n < dim + 2 or keep.sum() == 0:
        return None
    rows = np.repeat(np.arange(n), ids.shape[1])[keep]
    a = sp.csr_matrix((sims.ravel()[keep].astype(np.float64), (rows, ids.ravel()[keep])), shape=(n, n))
    sym = (a + a.T) * 0.5  # (n, n)
    if n <= DENSE_EIGEN_ITEMS:  # LAPACK: deterministic, so a seeded training run repeats exactly
        values, vectors = np.linalg.eigh(sym.toarray())  # ascending
        values, vectors = values[-dim:], vectors[:, -dim:]
    else:
        try:
            values, vectors = eigsh(sym, k=dim, which="LA", v0=np.ones(n) / np.sqrt(n))  # (dim,), (n, dim)
        except ArpackError:  # no convergence: keep the random start
            return None
    # one sign per eigenvector (its largest entry positive), so the table does not flip between runs
    signs = np.sign(vectors[np.abs(vectors).argmax(0), np.arange(vectors.shape[1])])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    table = (vectors * np.sqrt(np.maximum(values, 0.0))).astype(np.float32)
    table[0] = 0.0
    return table


class ItemKNN(nn.Module):
    """Sequential item-kNN: cosine similarity of co-occurrence within a window, recency-weighted votes.

    ``sim(i, j) = C_ij / sqrt(n_i n_j)`` with ``C_ij`` the number of times i and j occur within
    ``window`` events of each other in a training sequence (both orders) and ``n_i`` item i's count.
    ``score(c) = Σ_j decay^j sim(h_{L-1-j}, c)`` over the last ``history_items`` items, plus
    ``1e-6 · log(1 + count(c))`` so that items no neighbour votes for fall back to popularity order.
    """

    kind = "item-knn"

    def __init__(self, config: ItemKNNConfig):
        super().__init__()
        self.config = config
        n, k = config.n_items + 1, config.neighbors
        self.register_buffer("neighbor_ids", torch.zeros(n, k, dtype=torch.long))  # (N+1, k)
        self.register_buffer("neighbor_sims", torch.zeros(n, k))  # (N+1, k)
        self.register_buffer("counts", torch.zeros(n))  # (N+1,) training counts, for tie-breaking

    def fit(self, sequences: list[np.ndarray]) -> ItemKNN:
        n, k = self.config.n_items + 1, self.config.neighbors
        co, counts = cooccurrence_counts(sequences, n, self.config.window)
        norm = np.sqrt(np.maximum(counts, 1.0))
        ids = np.zeros((n, k), dtype=np.int64)
        sims = np.zeros((n, k), dtype=np.float32)
        for i in range(1, n):
            lo, hi = co.indptr[i], co.indptr[i + 1]
            if lo == hi:
                continue
            js, vals = co.indices[lo:hi], co.data[lo:hi] / (norm[i] * norm[co.indices[lo:hi]])
            top = np.argsort(-vals, kind="stable")[:k]
            ids[i, : len(top)], sims[i, : len(top)] = js[top], vals[top]
        self.neighbor_ids.copy_(torch.as_tensor(ids))
        self.neighbor_sims.copy_(torch.as_tensor(sims))
        self.counts.copy_(torch.as_tensor(counts, dtype=torch.float32))
        return self

    def score_histories(
        self, histories: list[np.ndarray], timestamps: list[np.ndarray] | None = None
    ) -> Tensor:
        del timestamps
        m, n = self.config.history_items, self.config.n_items + 1
        last = np.zeros((len(histories), m), dtype=np.int64)  # (B, m), most recent first, 0-padded
        for b, h in enumerate(histories):
            tail = h[-m:][::-1]
            last[b, : len(tail)] = tail
        last_t = torch.as_tensor(last, device=self.neighbor_ids.device)
        votes = self.config.decay ** torch.arange(m, dtype=torch.float32, device=last_t.device)  # (m,)
        ids = self.neighbor_ids[last_t]  # (B, m, k)
        sims = self.neighbor_sims[last_t] * votes.view(1, m, 1) * (last_t > 0).unsqueeze(-1)  # (B, m, k)
        scores = (1e-6 * torch.log1p(self.counts)).expand(len(histories), n).clone()  # (B, N+1) tie-break
        return scores.scatter_add_(1, ids.reshape(len(histories), -1), sims.reshape(len(histories), -1))
