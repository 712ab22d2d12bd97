"""The early-interaction baseline: a transformer over ``[history ; candidate]`` per pair (docs/design.md §2).

Every (user, candidate) pair runs the whole encoder — ``O(N (L² d + L d²))`` per request — which is what
MS-LI avoids. Read top to bottom: config → co-occurrence statistics → model. Bidirectional attention
(with a key-padding mask), so no part of the history computation can be shared between candidates.

With ``cooccurrence`` (what :func:`msli_core.train.train` builds), every history token also carries its
co-occurrence with the candidate: item-kNN's statistic (two items within ``cooc_window`` events of each
other in a training sequence), fitted on the training sequences and stored per item as its
``cooc_neighbors`` most similar items. That is a pair feature only early interaction can use: it
depends on the (history item, candidate) pair, so no per-user vector can carry it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from msli_core import limits
from msli_core.data.dataset import pad_right_aligned
from msli_core.limits import check_fraction, check_int
from msli_core.models.layers import Block, ItemEncoder, init_weights, item_features


@dataclass
class CrossEncoderConfig:
    n_items: int = 1000  # N, catalog size (ids 1..N; 0 = padding)
    n_genres: int = 20  # G, width of the genre multi-hot feature
    dim: int = 64  # d, token width
    layers: int = 2  # transformer blocks over [history ; candidate]
    heads: int = 2  # attention heads (dim must be a multiple)
    max_len: int = 50  # L, history tokens per pair: the cost grows with N·L², so it is kept short
    dropout: float = 0.2  # dropout inside the transformer
    pair_chunk: int = 4096  # pairs encoded per forward chunk at inference (bounds memory)
    residual: bool = True  # as a re-ranker, add α × the first stage's score of the pair (α learned, from
    # 1; the transformer's head starts at 0, so training starts from the first stage's ranking)
    cooccurrence: bool = False  # give each history token its co-occurrence with the candidate (fitted
    # by fit_cooccurrence; train() turns it on; off keeps the plain pair model, as the latency bench times)
    cooc_window: int = 3  # two events at most this far apart co-occur (as item-kNN's window)
    cooc_neighbors: int = 100  # co-occurring items kept per item (memory (N+1) × this)

    def __post_init__(self) -> None:
        check_int("n_items", self.n_items, 1, limits.MAX_ITEMS)
        check_int("n_genres", self.n_genres, 1, limits.MAX_GENRES)
        check_int("dim", self.dim, 1, limits.MAX_DIM)
        check_int("layers", self.layers, 0, limits.MAX_LAYERS)
        check_int("heads", self.heads, 1, limits.MAX_HEADS)
        check_int("max_len", self.max_len, 1, limits.MAX_HISTORY)
        check_int("pair_chunk", self.pair_chunk, 1, limits.MAX_BATCH)
        check_int("cooc_window", self.cooc_window, 1, limits.MAX_HISTORY)
        check_int("cooc_neighbors", self.cooc_neighbors, 1, limits.MAX_NEIGHBORS)
        check_fraction("dropout", self.dropout)
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")

    def to_dict(self) -> dict:
        return asdict(self)


COOC_SIM_SCALE = 10.0  # cosine co-occurrence similarities are ~0.01-0.3; scaled to order 1 as inputs
VOTE_EVENTS, VOTE_DECAY = 5, 0.7  # the candidate token's item-kNN vote: newest 5 events, weights 0.7**j


def sequence_cooccurrence(
    sequence: np.ndarray, window: int, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """How often each item of ``left`` co-occurs with each item of ``right`` in one ``sequence``:
    (A, B) counts of position pairs ``p != q``, ``|p - q| <= window``, holding ``left[a]`` and
    ``right[b]`` (different items), as :meth:`CrossEncoder.fit_cooccurrence` counts them over all
    sequences. Training subtracts a user's own counts (``own_counts`` of :meth:`CrossEncoder.score`).

    >>> sequence_cooccurrence(np.array([1, 2, 3, 1]), 1, np.array([1, 2]), np.array([2, 3, 1])).tolist()
    [[1, 1, 0], [0, 1, 1]]
    """
    seq = np.asarray(sequence, dtype=np.int64)
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    if len(seq) < 2:
        return np.zeros((len(left), len(right)), dtype=np.float32)
    base = int(max(seq.max(), left.max(initial=0), right.max(initial=0))) + 1
    keys = [seq[:-o] * base + seq[o:] for o in range(1, window + 1) if len(seq) > o]
    keys += [seq[o:] * base + seq[:-o] for o in range(1, window + 1) if len(seq) > o]
    pairs = np.concatenate(keys)
    pairs = pairs[pairs // base != pairs % base]  # same item twice is not a co-occurrence
    unique, counts = np.unique(pairs, return_counts=True)
    query = left[:, None] * base + right[None, :]  # (A, B)
    at = np.clip(np.searchsorted(unique, query), 0, len(unique) - 1)
    return np.where(unique[at] == query, counts[at], 0).astype(np.float32)


class CrossEncoder(nn.Module):
    """``score(history, c) = w · LN(h_cand) [+ α · first(history, c)]`` where ``h`` is the transformer
    output over the pair's tokens and ``first`` the score of the first stage whose top-M it re-ranks.

    The first-stage term (``residual``) is how a production re-ranker uses its retrieval score as a
    feature: the cross-encoder learns a correction where early interaction helps. It is only added
    when first-stage scores are passed (a cascade); full ranking scores the transformer alone.
    """

    kind = "cross-encoder"

    def __init__(self, config: CrossEncoderConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.items = ItemEncoder(config.n_items, config.n_genres, d)
        self.positions = nn.Embedding(config.max_len + 1, d)  # history slots 0..L-1, candidate at L
        self.types = nn.Embedding(2, d)  # 0 = history token, 1 = candidate token
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(d, config.heads, config.dropout) for _ in range(config.layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, 1)
        self.apply(init_weights)
        self.first_stage_weight = nn.Parameter(torch.ones(()))  # α
        if config.residual:
            nn.init.zeros_(self.head.weight)
        if config.cooccurrence:
            n, k = config.n_items + 1, config.cooc_neighbors
            self.register_buffer("cooc_ids", torch.zeros(n, k, dtype=torch.long))  # (N+1, k) neighbours
            self.register_buffer("cooc_counts", torch.zeros(n, k))  # (N+1, k) their co-occurrence counts
            self.register_buffer("item_counts", torch.zeros(n))  # (N+1,) training count of each item
            # [scaled similarity, log(1 + count)] of a history token / the candidate's kNN vote and mean
            self.pair_features = nn.Linear(2, d)
            self.vote_features = nn.Linear(2, d)
            for layer in (self.pair_features, self.vote_features):
                init_weights(layer)

    def fit_cooccurrence(self, sequences: list[np.ndarray]) -> None:
        """Co-occurrence statistics of the training ``sequences`` (item-kNN's, :class:`ItemKNN`): each
        item's ``cooc_neighbors`` most similar items with their counts, and every item's count."""
        from msli_core.models.baselines import ItemKNN, ItemKNNConfig

        c = self.config
        knn = ItemKNN(ItemKNNConfig(n_items=c.n_items, neighbors=c.cooc_neighbors, window=c.cooc_window))
        knn.fit(sequences)
        norm = torch.sqrt(knn.counts.clamp(min=1.0))  # sim = count / sqrt(n_i n_j), so count = sim · ...
        counts = knn.neighbor_sims * norm[:, None] * norm[knn.neighbor_ids]
        self.cooc_ids.copy_(knn.neighbor_ids)
        self.cooc_counts.copy_(torch.round(counts) * (knn.neighbor_sims > 0))
        self.item_counts.copy_(knn.counts)

    def cooc_features(
        self, histories: Tensor, candidates: Tensor, own: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """(P, L) histories, (P,) candidates -> (P, L, 2) per-token and (P, 2) candidate-token features.

        A token's features are the similarity ``count / sqrt(n_h n_c)`` (× COOC_SIM_SCALE) and
        ``log(1 + count)`` of its item h with the candidate c (0 if c is not among h's neighbours, and
        for padding); the candidate's are item-kNN's vote (newest VOTE_EVENTS tokens, weights
        VOTE_DECAY**j) and the mean similarity over the L slots. ``own`` = ((P, L) pair counts, (P,)
        candidate counts) of the user's own training sequence, subtracted in training so that a
        training prefix sees what a test prefix sees: statistics without its own future.
        """
        hit = self.cooc_ids[histories] == candidates.view(-1, 1, 1)  # (P, L, k)
        counts = (self.cooc_counts[histories] * hit).sum(-1)  # (P, L)
        n_cand = self.item_counts[candidates]  # (P,)
        if own is not None:
            counts = (counts - own[0]).clamp(min=0.0)
            n_cand = (n_cand - own[1]).clamp(min=0.0)
        real = histories > 0
        sim = counts / torch.sqrt(self.item_counts[histories].clamp(min=1.0) * n_cand.clamp(min=1.0)[:, None])
        sim = sim * COOC_SIM_SCALE * real
        tokens = torch.stack([sim, torch.log1p(counts) * real], dim=-1)  # (P, L, 2)
        L = histories.shape[1]
        age = torch.arange(L - 1, -1, -1, device=histories.device)  # 0 = newest token
        weight = torch.where(age < VOTE_EVENTS, VOTE_DECAY**age, 0.0)  # (L,)
        vote = torch.stack([(sim * weight).sum(1), sim.sum(1) / self.config.max_len], dim=-1)  # (P, 2)
        return tokens, vote

    def set_item_features(self, data) -> None:
        genres, years = item_features(data)
        self.items.set_features(genres, years)

    def pair_scores(
        self, histories: Tensor, candidates: Tensor, table: Tensor, own: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """(P, L) right-aligned histories, (P,) candidates, (N+1, d) table -> (P,) scores, one per pair.
        ``own``: the user's own co-occurrence counts to leave out (training; see :meth:`cooc_features`)."""
        L = histories.shape[1]
        tokens = torch.cat([histories, candidates.unsqueeze(1)], dim=1)  # (P, L+1)
        x = table[tokens] + self.positions.weight[self.config.max_len - L :]  # (P, L+1, d)
        x = x + self.types.weight[(torch.arange(L + 1, device=tokens.device) == L).long()]
        if self.config.cooccurrence:
            pair, vote = self.cooc_features(histories, candidates, own)
            extra = torch.cat([self.pair_features(pair), self.vote_features(vote).unsqueeze(1)], dim=1)
            x = x + extra  # (P, L+1, d)
        key_mask = tokens > 0  # (P, L+1); the candidate token is always a real item
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, causal=False, key_mask=key_mask)
        return self.head(self.ln_f(x[:, -1])).squeeze(-1)  # (P,)

    def score(
        self,
        histories: Tensor,
        candidates: Tensor,
        first_scores: Tensor | None = None,
        own_counts: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """(B, L) right-aligned 0-padded histories, (B, N) candidate ids -> (B, N) scores; ``first_scores``
        (B, N), the first stage's scores of the same pairs, are added × α when ``config.residual``.
        ``own_counts`` (training only): ((B, N, L), (B, N)) co-occurrence counts of each pair in the
        user's own training sequence, left out of the statistics (see :meth:`cooc_features`).

        Each of the B·N pairs runs the full transformer; pairs are processed in chunks of
        ``config.pair_chunk`` so memory stays bounded. Histories longer than ``max_len`` keep their tail.
        """
        histories = histories[:, -self.config.max_len :]  # (B, L)
        B, L = histories.shape
        N = candidates.shape[1]
        table = self.items()  # (N_items+1, d)
        pair_hist = histories.unsqueeze(1).expand(B, N, L).reshape(B * N, L)  # (B·N, L)
        pair_cand = candidates.reshape(B * N)  # (B·N,)
        if own_counts is not None:
            own_counts = (own_counts[0][..., -L:].reshape(B * N, L), own_counts[1].reshape(B * N))
        out = torch.empty(B * N, dtype=table.dtype, device=table.device)
        step = max(1, self.config.pair_chunk)
        for lo in range(0, B * N, step):
            own = (
                None if own_counts is None else (own_counts[0][lo : lo + step], own_counts[1][lo : lo + step])
            )
            out[lo : lo + step] = self.pair_scores(
                pair_hist[lo : lo + step], pair_cand[lo : lo + step], table, own
            )
        out = out.view(B, N)
        if self.config.residual and first_scores is not None:
            out = out + self.first_stage_weight * first_scores
        return out

    def score_histories(
        self, histories: list[np.ndarray], timestamps: list[np.ndarray] | None = None
    ) -> Tensor:
        """Scores of every item id for B histories: (B, N+1); column 0 is padding (mask it)."""
        del timestamps  # the cross-encoder reads item order only
        device = self.head.weight.device
        hist = torch.as_tensor(pad_right_aligned(histories, self.config.max_len), device=device)  # (B, L)
        candidates = torch.arange(self.config.n_items + 1, device=device).expand(
            len(histories), -1
        )  # (B, N+1)
        return self.score(hist, candidates)
