"""Multi-segment late interaction (MS-LI), read top to bottom: config → encoder → model.

Three stages (docs/design.md §2), each a method a serving engine can call on its own:

- offline  :meth:`MSLIModel.item_table`       item encoder → ``E`` (N+1, d), row 0 = padding;
- nearline :meth:`MSLIModel.open_vectors`     the shared causal encoder over the window (the last
  ``L_max`` events) → the open vector ``u_{K-1}``: its last state plus a recency path
  (``W_o h_t + Σ_{j<m} r_j e(x_{t-j})``, the newest ``m`` items straight to the score);
           :meth:`MSLIModel.encode_segments`  the same encoder over one closed segment on its own,
  attention-pooled → ``u_k``; computed once, when the segment closes, and cached for good;
- online   :meth:`MSLIModel.score`            late interaction of the K vectors with N candidates.

``K = 1`` is the two-tower model: the open vector alone, i.e. a causal transformer over the last
``L_max`` events (SASRec-style) with the same recency path. Every ``K`` sees those same last ``L_max``
events; ``K > 1`` adds K-1 closed segments as separate vectors — by default the ones before the window
(``closed_segments="older"``), so MS-LI reaches back ``(K-1)·S`` events further at no online cost beyond
K vectors, and older interests keep their own say in the score. Every score stays an exact sum of
per-slot contributions.

``recency_slot=True`` splits the open vector into two slots (O = 2 open slots): ``W_o h_t`` (slot K-2)
and the recency path over the newest ``m`` events (slot K-1), so the aggregation weighs the encoder
against the newest events per candidate; K still counts vectors, so K-2 closed slots remain.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msli_core import limits
from msli_core.limits import check_fraction, check_int
from msli_core.models.baselines import ItemKNNConfig, cooccurrence_embeddings
from msli_core.models.late_interaction import AGGREGATIONS, InteractionMLP, late_interaction
from msli_core.models.layers import Block, ItemEncoder, LowRankLinear, ceil_div, init_weights, item_features
from msli_core.models.segmenter import (
    CLOSED_SEGMENTS,
    SEGMENTERS,
    SegmentBatch,
    Segments,
    segment,
    segment_batch,
)

ITEM_INITS = ("cooccurrence", "random")
OPEN_SLOT_PRIOR = 2.0  # initial b_age of the open slot (the closed slots start at 0)


@dataclass
class MSLIConfig:
    n_items: int = 1000  # N, catalog size (ids 1..N; 0 = padding); set from the data when training
    n_genres: int = 20  # G, width of the genre multi-hot feature; set from the data when training
    dim: int = 64  # d, width of item and segment vectors: small enough for 2 CPU cores
    segments: int = 4  # K, slots per user: K-1 closed segments + the open window (K = 1: two-tower)
    segment_len: int | None = None  # S, events per closed segment; None -> ceil(max_len / segments)
    max_len: int = 200  # L_max, the window: the open slot reads the last L_max events (docs/design.md §3)
    layers: int = 2  # transformer blocks of the shared encoder (the "large model")
    heads: int = 2  # attention heads per block (dim must be a multiple)
    dropout: float = 0.3  # dropout in the encoder; small data overfits quickly (0.2 and 0.3 were tried
    # on ML-100K; 0.3 validated better)
    aggregation: str = "attention"  # late interaction: attention | max | mlp | sum (docs/design.md §2)
    segmenter: str = "fixed"  # fixed (S events from the first event) | session (gap-based)
    session_gap: float = 3600.0  # seconds of inactivity that start a new session (segmenter="session")
    mlp_hidden: int = 16  # hidden width of g in the mlp aggregation
    age_bias: bool = True  # learn b_age(k), a per-slot bias in the attention logits (recency prior)
    attention_rank: int | None = None  # r, the rank of the attention form W in q_k = W u_k: below d, W
    # is B A with A (r, d), B (d, r), and training's logits <A u, B^T e> cost r instead of d per
    # (position, item) pair (serving computes q_k = W u_k as before); r = d is a full W. None (the
    # default): d, resolved when the config is made, so a saved config always names its rank
    closed_segments: str = "older"  # which segments fill the closed slots: "older" = the K-1 before the
    # window (so K > 1 reaches back beyond the last L_max events), "recent" = the K-1 before the open
    # segment (they overlap the window). "older" measured better on ML-100K and on the sample data, in
    # quality and in explanation accuracy (README, "Quality")
    recent_items: int = ItemKNNConfig.history_items  # m, newest items added to the open vector with
    # learned weights r_j (0 = none). The path starts as item-kNN's vote (the item table from its
    # co-occurrence, see init_items_from_cooccurrence), so m and the starting weights are item-kNN's
    # own: its 5 newest items, r_j = 0.7^j (ItemKNNConfig.history_items and .decay). On ML-100K the path
    # was worth about +0.015 validation NDCG@10 to the two-tower model; m = 5 at 0.7^j against the
    # previous m = 3 at (1, .5, .5): README, "Quality"
    recency_slot: bool | None = None  # the recency path as its own slot: slot K-1 is Σ_j r_j e(x_{t-j})
    # over the newest m events, slot K-2 the encoder's share W_o h_t alone, and K-2 closed slots remain
    # (K still counts the user's vectors; needs K >= 2 and m >= 1). The attention aggregation then
    # weighs the encoder against the newest events per candidate instead of adding them. None (default):
    # on for K >= 2 with the attention aggregation and m >= 1, off otherwise (K = 1 is the one-vector
    # two-tower model; the other aggregations were not measured with it). README, "Quality"
    state_dropout: float = 0.0  # training only: the probability that a training row loses the
    # encoder's say, i.e. the share W_o h_t of its open vectors (kept rows scale it by 1/(1-p)) and its
    # closed slots, so a dropped row is the recency path alone in every model. An option, off by
    # default: 0.5 lifted MS-LI K=4 on ML-100K (0.1054 -> 0.1163) and the sample (0.2691 -> 0.2943)
    # but lowered both models on a 3,000-user draw and explanation accuracy below 2x chance on both
    # synthetic sets (README, "Quality", "Tried: state dropout")
    closed_gradient: bool = True  # train the encoder through the closed segments too. False: their
    # encoder pass runs without gradient in training (like Transformer-XL's cached segment; the pooling
    # p and W_s still learn from the closed slots): a worst-case step 1.03x a SASRec step instead of
    # 1.17x, for about 0.002 NDCG@10 less over 3 seeds on ML-100K and the sample (README, "Quality")
    item_init: str = "cooccurrence"  # how training starts the item id embeddings: "cooccurrence" (from
    # item-kNN's statistics of the training sequences, :meth:`MSLIModel.init_items_from_cooccurrence`)
    # or "random" (N(0, 0.02))
    item_init_scale: float = 3.0  # c in e_i = c·V_i·sqrt(λ): the recency path then starts at logits
    # c²·sim(x_t, c), about 1-3 for an item's strong neighbours (cosine 0.1-0.3): a softmax that is
    # neither flat nor saturated at the first step

    def __post_init__(self) -> None:
        if self.recency_slot is None:
            on = self.segments >= 2 and self.recent_items >= 1 and self.aggregation == "attention"
            self.recency_slot = on
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {self.aggregation!r}")
        if self.segmenter not in SEGMENTERS:
            raise ValueError(f"segmenter must be one of {SEGMENTERS}, not {self.segmenter!r}")
        if self.item_init not in ITEM_INITS:
            raise ValueError(f"item_init must be one of {ITEM_INITS}, not {self.item_init!r}")
        if not (math.isfinite(self.item_init_scale) and self.item_init_scale > 0):
            raise ValueError(f"item_init_scale must be a positive number, not {self.item_init_scale}")
        if self.closed_segments not in CLOSED_SEGMENTS:
            raise ValueError(
                f"closed_segments must be one of {CLOSED_SEGMENTS}, not {self.closed_segments!r}"
            )
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
        if self.attention_rank is None:
            self.attention_rank = self.dim
        check_int("attention_rank", self.attention_rank, 1, limits.MAX_DIM)
        if self.attention_rank > self.dim:
            raise ValueError(f"attention_rank ({self.attention_rank}) must be at most dim ({self.dim})")
        check_int("recent_items", self.recent_items, 0, limits.MAX_RECENT_ITEMS)
        check_fraction("dropout", self.dropout)
        check_fraction("state_dropout", self.state_dropout)
        if not (math.isfinite(self.session_gap) and self.session_gap > 0):
            raise ValueError(f"session_gap must be a positive number of seconds, not {self.session_gap}")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if self.recency_slot and (self.segments < 2 or self.recent_items < 1):
            raise ValueError(
                "recency_slot needs segments >= 2 (K = 1 is the one-vector two-tower model) and "
                f"recent_items >= 1, not segments={self.segments}, recent_items={self.recent_items}"
            )

    @property
    def open_slots(self) -> int:
        """O, slots computed from the window at request time: 2 with ``recency_slot`` (the encoder's
        state, then the newest events), else 1 (their sum)."""
        return 2 if self.recency_slot else 1

    def slot_role(self, k: int) -> str:
        """What slot ``k`` holds: "closed segment", "open window" (the encoder over the last ``L_max``
        events) or "newest events" (the recency path's own slot, ``recency_slot``)."""
        if k < self.closed_slots:
            return "closed segment"
        return "newest events" if self.recency_slot and k == self.segments - 1 else "open window"

    @property
    def closed_slots(self) -> int:
        """K - O, slots filled by closed segments (encoded once, cached)."""
        return self.segments - self.open_slots

    @property
    def S(self) -> int:
        """Closed-segment length actually used."""
        return self.segment_len or ceil_div(self.max_len, self.segments)

    @property
    def positions(self) -> int:
        """Rows of the position table: the window and a closed segment share it."""
        return max(self.max_len, self.S)

    def segment_options(self) -> dict:
        """The keyword arguments of :func:`~msli_core.models.segmenter.segment` that cut a history as
        this model does."""
        return {
            "segments": self.segments,
            "segment_len": self.S,
            "window_len": self.max_len,
            "segmenter": self.segmenter,
            "session_gap": self.session_gap,
            "closed": self.closed_segments,
            "newest_events": self.recent_items if self.recency_slot else 0,
        }

    def to_dict(self) -> dict:
        return asdict(self)


class SequenceEncoder(nn.Module):
    """The "large model": a causal pre-LN transformer over a left-aligned, right-padded sequence.

    The same weights read the window (positions 0..W-1) and each closed segment (positions 0..S-1).
    Causal attention with right padding: a real position never sees a padded one.
    """

    def __init__(self, config: MSLIConfig):
        super().__init__()
        self.positions = nn.Embedding(config.positions, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            [Block(config.dim, config.heads, config.dropout) for _ in range(config.layers)]
        )
        self.ln_f = nn.LayerNorm(config.dim)

    def forward(self, item_embeddings: Tensor) -> Tensor:
        """(B, T, d) embeddings -> (B, T, d) states h_t (each from positions 0..t)."""
        T = item_embeddings.shape[1]
        x = self.dropout(item_embeddings + self.positions.weight[:T])  # (B, T, d)
        for block in self.blocks:
            x = block(x, causal=True)
        return self.ln_f(x)


class ExplainedScores(NamedTuple):
    """What :meth:`MSLIModel.score_histories_explained` computed, so callers never encode twice."""

    scores: Tensor  # (B, N+1); column 0 is padding
    contributions: Tensor  # (B, K, N+1); sums over K to ``scores``
    batch: SegmentBatch  # the slots (items (B, K, S), window (B, W), mask (B, K), bounds)
    weights: Tensor  # (B, K, max(S, W)) per event of each slot: pooling weight (closed), recency weight
    # (the slot holding the recency path), 0 (the encoder's state alone, with ``recency_slot``)
    vectors: Tensor  # (B, K, d) slot vectors u_k
    table: Tensor  # (N+1, d) item table E


class MSLIModel(nn.Module):
    """MS-LI: item encoder + segmenter + shared encoder + late interaction (see module docstring)."""

    kind = "msli"

    def __init__(self, config: MSLIConfig):
        super().__init__()
        self.config = config
        K, d = config.segments, config.dim
        self.items = ItemEncoder(config.n_items, config.n_genres, d)
        self.encoder = SequenceEncoder(config)
        self.open_out = nn.Linear(d, d)  # W_o: last window state -> open vector
        self.pool = nn.Linear(d, 1, bias=False)  # attention-pooling logits <p, h_j> inside a closed segment
        self.segment_out = nn.Linear(d, d)  # W_s: pooled closed-segment state -> closed vector
        rank = config.attention_rank
        self.query = nn.Linear(d, d, bias=False) if rank >= d else LowRankLinear(d, rank)  # q_k = W u_k
        self.age_bias = nn.Parameter(torch.zeros(K)) if config.age_bias else None  # b_age(k), (K,)
        self.segment_weights = nn.Parameter(torch.ones(K))  # w_k for the "sum" aggregation, (K,)
        self.mlp = InteractionMLP(d, config.mlp_hidden) if config.aggregation == "mlp" else None
        self.apply(init_weights)
        O = config.open_slots
        if self.age_bias is not None and K > O:  # start close to the two-tower model (the open window
            # holds every recent event): a_open = e²/(e² + K-1) = 0.71 at K = 4; closed slots earn weight
            with torch.no_grad():
                self.age_bias[K - O :] = OPEN_SLOT_PRIOR
        m = config.recent_items  # r_j starts as item-kNN's vote weight decay^j (the newest item at 1)
        self.recent_weights = nn.Parameter(torch.tensor([ItemKNNConfig.decay**j for j in range(m)]))
        self.open_scale = 1.0 / self.initial_share()  # c, a constant (see initial_share)

    def initial_share(self) -> float:
        """Each open slot's attention weight at initialisation, with ``recency_slot`` and the attention
        aggregation (query logits start near 0, so the age biases set it): 1/2 at K = 2, e²/(2e² + 2) =
        0.44 at K = 4; else 1. The open slots' vectors are multiplied by ``open_scale = 1 / share``, so
        at the start ``Σ_open a_k s_k = s_enc + s_rec``, the two-tower model's sum, and the score keeps
        its scale; their attention queries leave the factor out (:meth:`open_queries`). On ML-100K (seed
        1, K = 2) validation NDCG@10 was 0.1162 without the factor (r_j started at 1/share instead),
        0.1249 with it in the queries too, and 0.1305 as here, which reproduces the research harness
        ``docs/research/issue-10/recency_slot.py`` to the last digit. From the config alone (a model
        being loaded is built on the meta device)."""
        c = self.config
        if not c.recency_slot or c.aggregation != "attention":
            return 1.0
        prior = math.exp(OPEN_SLOT_PRIOR) if c.age_bias and c.closed_slots else 1.0  # e^{b_open}, e^0 = 1
        return prior / (c.open_slots * prior + c.closed_slots)

    def recency_weights(self) -> Tensor:
        """(m,) the newest events' effective weights in their slot's vector, ``c·r_j`` (detached): what
        explanations report."""
        return self.recent_weights.detach() * self.open_scale

    def set_item_features(self, data) -> None:
        """Copy genre / year features of ``data`` (an InteractionData) into the item encoder buffers."""
        genres, years = item_features(data)
        self.items.set_features(genres, years)

    def init_items_from_cooccurrence(self, sequences: list[np.ndarray]) -> bool:
        """Start the item id embeddings from item-kNN's co-occurrence in the training ``sequences``
        (:func:`~msli_core.models.baselines.cooccurrence_embeddings`, times ``item_init_scale``), so the
        recency path starts as item-kNN's vote and the encoder learns what co-occurrence misses. Call it
        with training sequences only (no validation or test event). False (embeddings untouched) when
        the config says ``item_init="random"`` or there is too little co-occurrence to factor."""
        c = self.config
        if c.item_init != "cooccurrence":
            return False
        table = cooccurrence_embeddings(sequences, c.n_items, c.dim)  # (N+1, d) or None
        if table is None:
            return False
        with torch.no_grad():
            self.items.ids.weight.copy_(torch.as_tensor(table) * c.item_init_scale)
        return True

    # ---- offline -------------------------------------------------------------------------------
    def item_table(self) -> Tensor:
        """(N+1, d) item vectors E; row 0 (padding) is zero. Differentiable in training; in eval mode
        without grad (serving) built chunk by chunk into one tensor (:meth:`ItemEncoder.table`)."""
        if self.training or torch.is_grad_enabled():
            return self.items()
        return self.items.table()

    # ---- segmentation (numpy) ------------------------------------------------------------------
    def segment(self, history: np.ndarray, timestamps: np.ndarray | None = None) -> Segments:
        return segment(history, timestamps, **self.config.segment_options())

    def segment_batch(
        self, histories: list[np.ndarray], timestamps: list[np.ndarray] | None = None
    ) -> SegmentBatch:
        return segment_batch(histories, timestamps, **self.config.segment_options())

    # ---- nearline: the open slot ----------------------------------------------------------------
    def recent_path(self, window: Tensor, table: Tensor) -> Tensor:
        """``Σ_{j<m} r_j e(x_{t-j})`` at every position t of (B, T) ids -> (B, T, d) (0 where t-j < 0)."""
        embedded = table[window]  # (B, T, d)
        out = torch.zeros_like(embedded)
        for j in range(self.recent_weights.numel()):
            shifted = F.pad(embedded, (0, 0, j, 0))[:, : embedded.shape[1]]  # (B, T, d): item at t-j
            out = out + self.recent_weights[j] * shifted
        return out

    def state_dropout_rows(self, rows: int) -> Tensor | None:
        """(rows,) bool, True where a training row keeps the encoder's say (``state_dropout``); None in
        eval mode or when ``state_dropout`` is 0. The training loss passes it to :meth:`open_vectors` and
        empties the dropped rows' closed slots, so a dropped row is scored by the recency path alone."""
        p = self.config.state_dropout
        if not self.training or p == 0:
            return None
        return torch.rand(rows, device=self.open_out.weight.device) >= p  # (rows,) on the model's device

    def open_vectors(
        self, window: Tensor, table: Tensor | None = None, kept_rows: Tensor | None = None
    ) -> Tensor:
        """(B, T) window ids, left-aligned -> the O open slots' vectors after every prefix, (B, T, O, d).

        O = 1: ``W_o h_t + Σ_j r_j e(x_{t-j})``; O = 2 (``recency_slot``): ``c·W_o h_t``, then the
        recency path ``c·Σ_j r_j e(x_{t-j})`` as its own slot (``c = open_scale``,
        :meth:`initial_share`). Position t is the slots of a user whose window ends at event t (training
        predicts the next item at every position at once). Padded positions get
        finite values; callers ignore them. ``kept_rows`` (B,) bool, training only
        (:meth:`state_dropout_rows`): the rows that keep the encoder's share ``W_o h_t``, scaled by
        ``1/(1 - state_dropout)``; the other rows get a zero share (the recency path alone). None
        (inference) keeps every share, unscaled.
        """
        table = self.item_table() if table is None else table
        shares = self.open_out(self.encoder(table[window]))  # (B, T, d): W_o h_t
        if kept_rows is not None:
            scale = kept_rows.to(shares.dtype) / (1 - self.config.state_dropout)  # (B,)
            shares = shares * scale.view(-1, 1, 1)
        return self.open_slots_from(shares, self.recent_path(window, table))  # (B, T, O, d)

    def open_slots_from(self, shares: Tensor, recency: Tensor) -> Tensor:
        """(..., d) the encoder's share ``W_o h_t`` and the recency path -> (..., O, d) the open slots:
        their sum (O = 1), or both times ``c = open_scale`` (O = 2, ``recency_slot``). The one place the
        two parts become slots (training, :meth:`open_vector`, the serving engine's KV step)."""
        if self.config.recency_slot:
            return torch.stack([shares, recency], dim=-2) * self.open_scale  # (..., 2, d)
        return (shares + recency).unsqueeze(-2)  # (..., 1, d)

    def open_vector(self, window: Tensor, table: Tensor | None = None) -> Tensor:
        """(B, T) window ids -> (B, O, d) the open slots at each row's last real event (zeros if empty)."""
        vectors = self.open_vectors(window, table)  # (B, T, O, d)
        lengths = (window > 0).sum(1)  # (B,)
        last = (lengths - 1).clamp(min=0)
        out = vectors[torch.arange(window.shape[0], device=window.device), last]  # (B, O, d)
        return out * (lengths > 0).view(-1, 1, 1).to(out.dtype)

    # ---- nearline: closed segments --------------------------------------------------------------
    def encode_segments(self, segment_items: Tensor, table: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, K', S) closed-segment ids -> vectors u_k (B, K', d) and pooling weights (B, K', S).

        ``u = W_s Σ_j α_j h_j`` with ``α = softmax_j <p, h_j>`` over the segment's events, each segment
        encoded on its own (positions 0..S-1), so its vector never changes once it has closed.
        Empty segments get zero vectors and weights (a caller masks them anyway); they are not run
        through the transformer, except while exporting a graph.
        """
        table = self.item_table() if table is None else table
        B, K, S = segment_items.shape
        flat = segment_items.reshape(B * K, S)  # (B·K, S)
        lengths = (flat > 0).sum(1)  # (B·K,)
        exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        rows = None if exporting else (lengths > 0).nonzero().squeeze(1)  # (B'',) non-empty rows
        if rows is not None and rows.numel() == B * K:
            rows = None
        sub = flat if rows is None else flat[rows]  # (B'', S)
        if not exporting and sub.numel():
            sub = sub[:, : max(1, int((sub > 0).sum(1).max()))]  # drop all-padding trailing columns
        if self.training and not self.config.closed_gradient and torch.is_grad_enabled():
            with torch.no_grad():  # stop-gradient: forward only, a third of a trained pass
                states = self.encoder(table[sub])  # (B'', S', d)
        else:
            states = self.encoder(table[sub])  # (B'', S', d)
        valid = sub > 0
        logits = self.pool(states).squeeze(-1).masked_fill(~valid, torch.finfo(states.dtype).min)
        weights = torch.softmax(logits, dim=-1) * valid.any(1, keepdim=True)  # (B'', S')
        vectors = self.segment_out(torch.einsum("bs,bsd->bd", weights, states))  # (B'', d)
        vectors = vectors * valid.any(1, keepdim=True).to(vectors.dtype)
        full_weights = weights.new_zeros(sub.shape[0], S)
        full_weights[:, : weights.shape[1]] = weights
        if rows is not None:
            vectors = vectors.new_zeros(B * K, vectors.shape[1]).index_copy(0, rows, vectors)
            full_weights = full_weights.new_zeros(B * K, S).index_copy(0, rows, full_weights)
        return vectors.view(B, K, -1), full_weights.view(B, K, S)

    def slot_vectors(self, batch: SegmentBatch, table: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The K slot vectors of a batch: vectors (B, K, d), mask (B, K), weights (B, K, max(S, W)).

        Weights per event of each slot, over the events ``batch.start..batch.end`` of the slot: closed
        slots their attention-pooling weights; the slot holding the recency path (K-1) ``r_j`` on its
        newest events. With ``recency_slot`` the encoder's slot (K-2) has none: every event of the
        window reaches it through the encoder state. Without it the open slot's events are the window
        and its ``r_j`` sit on the newest ones (the rest reach the vector through the state).
        """
        device = table.device
        K, C = self.config.segments, self.config.closed_slots
        window = torch.as_tensor(batch.window, device=device)  # (B, W)
        B, W = window.shape
        open_vec = self.open_vector(window, table)  # (B, O, d)
        width = max(self.config.S, W)
        weights = open_vec.new_zeros(B, K, width)
        if C:
            closed = torch.as_tensor(batch.items[:, :C], device=device)  # (B, C, S)
            closed_vec, closed_w = self.encode_segments(closed, table)  # (B, C, d), (B, C, S)
            vectors = torch.cat([closed_vec, open_vec], dim=1)  # (B, K, d)
            weights[:, :C, : closed_w.shape[-1]] = closed_w
        else:
            vectors = open_vec  # (B, O, d)
        slot_length = torch.as_tensor(batch.end[:, K - 1] - batch.start[:, K - 1], device=device)  # (B,)
        effective = self.recency_weights()  # (m,) c·r_j
        for j in range(self.recent_weights.numel()):
            at = slot_length - 1 - j  # (B,) index of the j-th newest event in slot K-1's events
            ok = at >= 0
            weights[ok, K - 1, at[ok]] = effective[j]
        return vectors, torch.as_tensor(batch.mask, device=device), weights

    # ---- online --------------------------------------------------------------------------------
    def attention_queries(self, segment_vectors: Tensor) -> Tensor:
        """(..., K, d) slot vectors -> (..., K, d) queries ``q_k = W u_k``; an open slot's query reads its
        vector without the factor ``c = open_scale`` (``W u_k / c``, :meth:`open_queries`)."""
        if self.open_scale == 1.0:
            return self.query(segment_vectors)
        C = self.config.closed_slots
        closed, opened = segment_vectors[..., :C, :], segment_vectors[..., C:, :]
        return torch.cat([self.query(closed), self.open_queries(opened)], dim=-2)

    def open_queries(self, open_vectors: Tensor) -> Tensor:
        """(..., O, d) open slots' vectors -> their queries ``W u / c``: the attention weighs the open
        slots by their direction, as if unscaled (:meth:`initial_share`)."""
        return self.query(open_vectors / self.open_scale)

    def query_codes(self, vectors: Tensor) -> Tensor:
        """(..., d) slot vectors -> (..., r) ``A u``, with ``<W u, e> = <A u, k_e>`` for the keys of
        :meth:`attention_keys` (full rank: ``W u`` itself, r = d). Training's logits use the pair."""
        return self.query.down(vectors) if isinstance(self.query, LowRankLinear) else self.query(vectors)

    def attention_keys(self, item_vectors: Tensor) -> Tensor:
        """(N, d) item vectors -> (N, r) attention keys ``k_e = B^T e`` (full rank: the vectors)."""
        if isinstance(self.query, LowRankLinear):
            return item_vectors @ self.query.up.weight  # (N, d) (d, r)
        return item_vectors

    def open_query_codes(self, open_vectors: Tensor) -> Tensor:
        """:meth:`open_queries` as :meth:`query_codes`: (..., O, d) -> (..., O, r)."""
        return self.query_codes(open_vectors / self.open_scale)

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

    # ---- all stages at once (evaluation, explanations) ------------------------------------------
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
        table = self.item_table()  # (N+1, d)
        vectors, mask, weights = self.slot_vectors(batch, table)  # (B, K, d), (B, K), (B, K, W)
        scores, contributions = self.score(vectors, mask, table)  # (B, N+1), (B, K, N+1)
        return ExplainedScores(scores, contributions, batch, weights, vectors, table)
