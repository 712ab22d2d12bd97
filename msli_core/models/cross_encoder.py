"""The early-interaction baseline: a transformer over ``[history ; candidate]`` per pair (docs/design.md §2).

Every (user, candidate) pair runs the whole encoder — ``O(N (L² d + L d²))`` per request — which is what
MS-LI avoids. Read top to bottom: config → model. Bidirectional attention (with a key-padding mask), so
no part of the history computation can be shared between candidates.
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

    def __post_init__(self) -> None:
        check_int("n_items", self.n_items, 1, limits.MAX_ITEMS)
        check_int("n_genres", self.n_genres, 1, limits.MAX_GENRES)
        check_int("dim", self.dim, 1, limits.MAX_DIM)
        check_int("layers", self.layers, 0, limits.MAX_LAYERS)
        check_int("heads", self.heads, 1, limits.MAX_HEADS)
        check_int("max_len", self.max_len, 1, limits.MAX_HISTORY)
        check_int("pair_chunk", self.pair_chunk, 1, limits.MAX_BATCH)
        check_fraction("dropout", self.dropout)
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")

    def to_dict(self) -> dict:
        return asdict(self)


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

    def set_item_features(self, data) -> None:
        genres, years = item_features(data)
        self.items.set_features(genres, years)

    def pair_scores(self, histories: Tensor, candidates: Tensor, table: Tensor) -> Tensor:
        """(P, L) right-aligned histories, (P,) candidates, (N+1, d) table -> (P,) scores, one per pair."""
        L = histories.shape[1]
        tokens = torch.cat([histories, candidates.unsqueeze(1)], dim=1)  # (P, L+1)
        x = table[tokens] + self.positions.weight[self.config.max_len - L :]  # (P, L+1, d)
        x = x + self.types.weight[(torch.arange(L + 1, device=tokens.device) == L).long()]
        key_mask = tokens > 0  # (P, L+1); the candidate token is always a real item
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, causal=False, key_mask=key_mask)
        return self.head(self.ln_f(x[:, -1])).squeeze(-1)  # (P,)

    def score(self, histories: Tensor, candidates: Tensor, first_scores: Tensor | None = None) -> Tensor:
        """(B, L) right-aligned 0-padded histories, (B, N) candidate ids -> (B, N) scores; ``first_scores``
        (B, N), the first stage's scores of the same pairs, are added × α when ``config.residual``.

        Each of the B·N pairs runs the full transformer; pairs are processed in chunks of
        ``config.pair_chunk`` so memory stays bounded. Histories longer than ``max_len`` keep their tail.
        """
        histories = histories[:, -self.config.max_len :]  # (B, L)
        B, L = histories.shape
        N = candidates.shape[1]
        table = self.items()  # (N_items+1, d)
        pair_hist = histories.unsqueeze(1).expand(B, N, L).reshape(B * N, L)  # (B·N, L)
        pair_cand = candidates.reshape(B * N)  # (B·N,)
        out = torch.empty(B * N, dtype=table.dtype, device=table.device)
        step = max(1, self.config.pair_chunk)
        for lo in range(0, B * N, step):
            out[lo : lo + step] = self.pair_scores(
                pair_hist[lo : lo + step], pair_cand[lo : lo + step], table
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
