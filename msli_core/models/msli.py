"""Multi-segment late interaction (MS-LI), read top to bottom: config → segment encoder → model.

Three stages (docs/design.md §2), each a method a serving engine can call on its own:

- offline  :meth:`MSLIModel.item_table`      item encoder → ``E`` (N+1, d), row 0 = padding;
- nearline :meth:`MSLIModel.encode_segments` transformer over each segment → ``u_k`` (d), attention-pooled;
- online   :meth:`MSLIModel.score`           late interaction of the K cached ``u_k`` with N candidates.

``K = 1`` is a two-tower model (same code path). The segment encoder is causal inside a segment, so one
pass over a segment yields the vector of every prefix: training predicts the next item at every
position at once, and the vector of a closed segment is simply the vector of its last prefix.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from msli_core import limits
from msli_core.limits import check_fraction, check_int
from msli_core.models.late_interaction import AGGREGATIONS, InteractionMLP, late_interaction
from msli_core.models.layers import Block, ItemEncoder, ceil_div, init_weights, item_features
from msli_core.models.segmenter import SEGMENTERS, SegmentBatch, Segments, segment, segment_batch


@dataclass
class MSLIConfig:
    n_items: int = 1000  # N, catalog size (ids 1..N; 0 = padding); set from the data when training
    n_genres: int = 20  # G, width of the genre multi-hot feature; set from the data when training
    dim: int = 64  # d, width of item and segment vectors: small enough for 2 CPU cores
    segments: int = 4  # K, segments kept per user (K = 1: two-tower)
    segment_len: int | None = None  # S, events per segment; None -> ceil(max_len / segments)
    max_len: int = 200  # L_max, history cap (docs/design.md §3); with S given, K·S events are seen at most
    layers: int = 2  # transformer blocks of the segment encoder (the "large model")
    heads: int = 2  # attention heads per block (dim must be a multiple)
    dropout: float = 0.2  # dropout in the segment encoder; small data overfits quickly
    aggregation: str = "attention"  # late interaction: attention | max | mlp | sum (docs/design.md §2)
    segmenter: str = "fixed"  # fixed (S events from the first event) | session (gap-based)
    session_gap: float = 3600.0  # seconds of inactivity that start a new session (segmenter="session")
    mlp_hidden: int = 16  # hidden width of g in the mlp aggregation
    age_bias: bool = True  # learn b_age(k), a per-slot bias in the attention logits (recency prior)

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {self.aggregation!r}")
        if self.segmenter not in SEGMENTERS:
            raise ValueError(f"segmenter must be one of {SEGMENTERS}, not {self.segmenter!r}")
        check_int("n_items", self.n_items, 1, limits.MAX_ITEMS)
        check_int("n_genres", self.n_genres, 1, limits.MAX_GENRES)
        check_int("dim", self.dim, 1, limits.MAX_DIM)
        check_int("segments", self.segments, 1, limits.MAX_SEGMENTS)
        if self.segment_len is not None:
            check_int("segment_len", self.segment_len, 1, limits.MAX_SEGMENT_LEN)
        check_int("max_len", self.max_len, 1, limits.MAX_HISTORY)
        check_int("layers", self.layers, 0, limits.MAX_LAYERS)
        check_int("heads", self.heads, 1, limits.MAX_HEADS)
        check_int("mlp_hidden", self.mlp_hidden, 1, limits.MAX_DIM)
        check_fraction("dropout", self.dropout)
        if not (math.isfinite(self.session_gap) and self.session_gap > 0):
            raise ValueError(f"session_gap must be a positive number of seconds, not {self.session_gap}")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")

    @property
    def S(self) -> int:
        """Segment length actually used."""
        return self.segment_len or ceil_div(self.max_len, self.segments)

    def to_dict(self) -> dict:
        return asdict(self)


class SegmentEncoder(nn.Module):
    """Nearline: a causal transformer over each segment independently, then causal attention pooling.

    For a segment ``x_0..x_{S-1}`` it returns, for every prefix ``t``, ``u(t) = W_out Σ_{j<=t} w_tj h_j``
    with ``w_t = softmax_{j<=t}(<p, h_j>)`` (weights kept for explanations).
    """

    def __init__(self, config: MSLIConfig):
        super().__init__()
        self.positions = nn.Embedding(config.S, config.dim)  # position inside a segment
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            [Block(config.dim, config.heads, config.dropout) for _ in range(config.layers)]
        )
        self.ln_f = nn.LayerNorm(config.dim)
        self.pool = nn.Linear(config.dim, 1, bias=False)  # attention-pooling logits <p, h_j>
        self.out = nn.Linear(config.dim, config.dim)

    def forward(self, item_embeddings: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """(B', S, d) embeddings, (B', S) bool -> prefix vectors (B', S, d), prefix weights (B', S, S)."""
        S = item_embeddings.shape[1]
        x = self.dropout(item_embeddings + self.positions.weight[:S])  # (B', S, d)
        for block in self.blocks:
            x = block(x, causal=True)  # right padding: a real position never sees a padded one
        h = self.ln_f(x)  # (B', S, d)
        logits = self.pool(h).squeeze(-1).masked_fill(~valid, torch.finfo(h.dtype).min)  # (B', S)
        causal = torch.ones(S, S, dtype=torch.bool, device=h.device).tril()  # (S, S), [t, j] = j <= t
        prefix_logits = logits.unsqueeze(1).masked_fill(~causal, torch.finfo(h.dtype).min)  # (B', S, S)
        weights = torch.softmax(prefix_logits, dim=-1)  # (B', S, S): row t pools positions 0..t
        pooled = weights @ h  # (B', S, d)
        return self.out(pooled), weights


class ExplainedScores(NamedTuple):
    """What :meth:`MSLIModel.score_histories_explained` computed, so callers never encode twice."""

    scores: Tensor  # (B, N+1); column 0 is padding
    contributions: Tensor  # (B, K, N+1); sums over K to ``scores``
    batch: SegmentBatch  # the segments (items (B, K, S), mask (B, K), bounds)
    weights: Tensor  # (B, K, S) attention-pooling weights inside each segment
    vectors: Tensor  # (B, K, d) segment vectors u_k
    table: Tensor  # (N+1, d) item table E


class MSLIModel(nn.Module):
    """MS-LI: item encoder + segmenter + segment encoder + late interaction (see module docstring)."""

    kind = "msli"

    def __init__(self, config: MSLIConfig):
        super().__init__()
        self.config = config
        K, d = config.segments, config.dim
        self.items = ItemEncoder(config.n_items, config.n_genres, d)
        self.encoder = SegmentEncoder(config)
        self.query = nn.Linear(d, d, bias=False)  # q_k = W u_k, precomputed per user
        self.age_bias = nn.Parameter(torch.zeros(K)) if config.age_bias else None  # b_age(k), (K,)
        self.segment_weights = nn.Parameter(torch.ones(K))  # w_k for the "sum" aggregation, (K,)
        self.mlp = InteractionMLP(d, config.mlp_hidden) if config.aggregation == "mlp" else None
        self.apply(init_weights)

    def set_item_features(self, data) -> None:
        """Copy genre / year features of ``data`` (an InteractionData) into the item encoder buffers."""
        genres, years = item_features(data)
        self.items.set_features(genres, years)

    # ---- offline -------------------------------------------------------------------------------
    def item_table(self) -> Tensor:
        """(N+1, d) item vectors E; row 0 (padding) is zero."""
        return self.items()

    # ---- segmentation (numpy) ------------------------------------------------------------------
    def segment(self, history: np.ndarray, timestamps: np.ndarray | None = None) -> Segments:
        c = self.config
        return segment(
            history,
            timestamps,
            segments=c.segments,
            segment_len=c.S,
            segmenter=c.segmenter,
            session_gap=c.session_gap,
        )

    def segment_batch(
        self, histories: list[np.ndarray], timestamps: list[np.ndarray] | None = None
    ) -> SegmentBatch:
        c = self.config
        return segment_batch(
            histories,
            timestamps,
            segments=c.segments,
            segment_len=c.S,
            segmenter=c.segmenter,
            session_gap=c.session_gap,
        )

    # ---- nearline ------------------------------------------------------------------------------
    def encode_prefixes(self, segment_items: Tensor, table: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B', S) item ids of B' segments -> vectors of every prefix (B', S', d) and weights (B', S', S').

        Trailing columns that are padding in every row are dropped first (S' = the longest segment,
        at least 1): with right padding and causal attention this changes no real prefix's vector.
        All-padding rows (empty slots) are not run through the transformer: their vectors and weights
        are zero (a caller masks them anyway). Both shortcuts are skipped while exporting a graph.
        """
        table = self.item_table() if table is None else table
        if segment_items.numel() == 0 or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return self.encoder(table[segment_items], segment_items > 0)
        lengths = (segment_items > 0).sum(1)  # (B',)
        longest = max(1, int(lengths.max()))
        segment_items = segment_items[:, :longest]  # (B', S')
        filled = lengths > 0
        if bool(filled.all()) or not bool(filled.any()):
            return self.encoder(table[segment_items], segment_items > 0)
        rows = filled.nonzero().squeeze(1)  # (B'',) non-empty rows
        sub = segment_items[rows]  # (B'', S')
        vectors, weights = self.encoder(table[sub], sub > 0)  # (B'', S', d), (B'', S', S')
        Bp = segment_items.shape[0]
        out_v = vectors.new_zeros(Bp, *vectors.shape[1:]).index_copy(0, rows, vectors)  # (B', S', d)
        out_w = weights.new_zeros(Bp, *weights.shape[1:]).index_copy(0, rows, weights)  # (B', S', S')
        return out_v, out_w

    def encode_segments(self, segment_items: Tensor, table: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, K, S) item ids -> segment vectors u_k (B, K, d) and pooling weights (B, K, S).

        Works for any B and K (K = 1 re-encodes just the open segment). An empty segment gets a
        finite vector; the caller's ``segment_mask`` keeps it out of the score.
        """
        B, K, S = segment_items.shape
        flat = segment_items.reshape(B * K, S)  # (B·K, S)
        prefix_vectors, prefix_weights = self.encode_prefixes(flat, table)  # (B·K, S', d), (B·K, S', S')
        last = ((flat > 0).sum(1) - 1).clamp(min=0)  # (B·K,) index of the last real event
        rows = torch.arange(B * K, device=flat.device)
        vectors = prefix_vectors[rows, last].view(B, K, -1)  # (B, K, d)
        weights = torch.zeros(B * K, S, dtype=vectors.dtype, device=vectors.device)  # (B·K, S)
        weights[:, : prefix_weights.shape[-1]] = prefix_weights[rows, last]
        return vectors, weights.view(B, K, S)

    # ---- online --------------------------------------------------------------------------------
    def attention_queries(self, segment_vectors: Tensor) -> Tensor:
        return self.query(segment_vectors)  # (B, K, d)

    def score(
        self, segment_vectors: Tensor, segment_mask: Tensor, item_vectors: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(B, K, d), (B, K) bool, (N, d) -> scores (B, N), contributions (B, K, N); Σ_k c_k = score."""
        c = self.config
        queries = self.attention_queries(segment_vectors) if c.aggregation in ("attention", "mlp") else None
        return late_interaction(
            segment_vectors,
            segment_mask,
            item_vectors,
            aggregation=c.aggregation,
            attention_queries=queries,
            age_bias=self.age_bias,
            mlp=self.mlp,
            segment_weights=self.segment_weights,
        )

    # ---- all stages at once (training, evaluation, explanations) --------------------------------
    def score_histories(
        self, histories: list[np.ndarray], timestamps: list[np.ndarray] | None = None
    ) -> Tensor:
        """Scores of every item id for B histories: (B, N+1); column 0 is padding (mask it)."""
        return self.score_histories_explained(histories, timestamps).scores

    def score_histories_explained(
        self, histories: list[np.ndarray], timestamps: list[np.ndarray] | None = None
    ) -> ExplainedScores:
        """All three stages over B histories, keeping every intermediate an explanation needs."""
        batch = self.segment_batch(histories, timestamps)
        device = self.age_bias.device if self.age_bias is not None else self.segment_weights.device
        table = self.item_table()  # (N+1, d)
        items = torch.as_tensor(batch.items, device=device)  # (B, K, S)
        vectors, weights = self.encode_segments(items, table)  # (B, K, d), (B, K, S)
        mask = torch.as_tensor(batch.mask, device=device)  # (B, K)
        scores, contributions = self.score(vectors, mask, table)  # (B, N+1), (B, K, N+1)
        return ExplainedScores(scores, contributions, batch, weights, vectors, table)
