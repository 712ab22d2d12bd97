"""Late interaction of K segment vectors with N item vectors: the online stage of MS-LI (docs/design.md §2).

One pure function, :func:`late_interaction`, serves training, evaluation, explanations and the latency
lab. It returns the score of every candidate *and* each segment's exact share of it, so that
``scores == contributions.sum(1)`` holds by construction (up to float rounding).

Cost: one pass over the item table for all K segments — a single ``(B·K, d) @ (d, N)`` product (or
``(B·2K, d) @ (d, N)`` when the attention queries are stacked under the segment vectors) — then cheap
element-wise work on a ``(B, K, N)`` tensor whose last axis (N) is contiguous, so the softmax / max over
the narrow K axis walks long rows.

Masking: an empty segment is masked with ``finfo.min`` before any softmax or max (never by multiplying
by 0, which would let an empty slot beat real negative scores) and contributes exactly 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AGGREGATIONS = ("attention", "max", "mlp", "sum")


class InteractionMLP(nn.Module):
    """``g(x) = w2 · relu(W1 x + b1) + b2`` for ``x = u ⊙ e`` (the seed's sub-layer → top layer).

    Applied to the element-wise product of a segment vector and an item vector, ``g`` is evaluated
    without materialising the ``(B, K, N, d)`` product: ``W1 (u ⊙ e) = (W1 diag(u)) e``, so the first
    layer for all candidates is one ``(B·K·h, d) @ (d, N)`` product (exact, not an approximation).
    """

    def __init__(self, dim: int, hidden: int = 16):
        super().__init__()
        self.first = nn.Linear(dim, hidden)  # W1 (h, d), b1 (h,)
        self.second = nn.Linear(hidden, 1)  # w2 (1, h), b2 (1,)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., d) -> (...)``: g applied to explicit products (used by tests as the reference)."""
        return self.second(F.relu(self.first(x))).squeeze(-1)

    def interact(self, segment_vectors: Tensor, item_vectors: Tensor) -> Tensor:
        """``g(u_k ⊙ e_c)`` for every segment and item: (B, K, d), (N, d) -> (B, K, N)."""
        B, K, d = segment_vectors.shape
        h = self.first.out_features
        mixed = self.first.weight.unsqueeze(0).unsqueeze(0) * segment_vectors.unsqueeze(2)  # (B, K, h, d)
        hidden = (mixed.reshape(B * K * h, d) @ item_vectors.T).view(B, K, h, -1)  # (B, K, h, N)
        hidden = F.relu(hidden + self.first.bias.view(1, 1, h, 1))
        out = torch.einsum("bkhn,h->bkn", hidden, self.second.weight[0])  # (B, K, N)
        return out + self.second.bias


def late_interaction(
    segment_vectors: Tensor,
    segment_mask: Tensor,
    item_vectors: Tensor,
    *,
    aggregation: str,
    attention_queries: Tensor | None = None,
    age_bias: Tensor | None = None,
    mlp: InteractionMLP | nn.Module | None = None,
    segment_weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Score N candidates against K segment vectors; return ``(scores, contributions)``.

    Shapes: ``segment_vectors`` (B, K, d) = u_k; ``segment_mask`` (B, K) bool, True = non-empty;
    ``item_vectors`` (N, d) = e_c; ``attention_queries`` (B, K, d) = q_k = W u_k; ``age_bias`` (K,) =
    b_age(k) (slot K-1 is the newest segment); ``segment_weights`` (K,) = w_k for ``sum``.
    Returns ``scores`` (B, N) and ``contributions`` (B, K, N) with ``scores = contributions.sum(1)``.

    With ``s_k(c) = <u_k, e_c>`` and ``a_k(c) = softmax_k(<q_k, e_c> + b_age(k))`` over non-empty k:

    - ``attention``: ``c_k = a_k s_k`` (needs ``attention_queries``);
    - ``max``: ``c_k = s_k`` for the winning (first maximal) non-empty segment, 0 elsewhere (MaxSim);
    - ``mlp``: ``c_k = a_k g(u_k ⊙ e_c)`` (needs ``attention_queries`` and ``mlp``);
    - ``sum``: ``c_k = w_k s_k``, i.e. one user vector ``Σ_k w_k u_k`` (needs ``segment_weights``).

    A user with no non-empty segment gets score 0 and zero contributions for every aggregation.

    Example (B=1, K=2, d=2, N=2; s_0 = (1, 0), s_1 = (0, 2); equal logits so a_k = 1/2):

    >>> u = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> m = torch.tensor([[True, True]])
    >>> e = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> y, c = late_interaction(u, m, e, aggregation="attention", attention_queries=torch.zeros(1, 2, 2))
    >>> y.tolist(), c.tolist()
    ([[0.5, 1.0]], [[[0.5, 0.0], [0.0, 1.0]]])
    >>> y, c = late_interaction(u, m, e, aggregation="max")
    >>> y.tolist(), c.tolist()
    ([[1.0, 2.0]], [[[1.0, 0.0], [0.0, 2.0]]])
    >>> y, c = late_interaction(u, torch.tensor([[False, True]]), e, aggregation="max")
    >>> y.tolist()  # the empty first segment never wins, even against a score of 0
    [[0.0, 2.0]]
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
    B, K, d = segment_vectors.shape
    logits = None
    if aggregation in ("attention", "mlp"):
        if attention_queries is None:
            raise ValueError(f"aggregation {aggregation!r} needs attention_queries (B, K, d)")
        stacked = torch.cat([segment_vectors, attention_queries], dim=1)  # (B, 2K, d): [u; q]
        products = (stacked.reshape(B * 2 * K, d) @ item_vectors.T).view(B, 2 * K, -1)  # (B, 2K, N)
        segment_scores, logits = products.split(K, dim=1)  # (B, K, N) each (split: a cheap backward)
    else:
        segment_scores = (segment_vectors.reshape(B * K, d) @ item_vectors.T).view(B, K, -1)  # (B, K, N)
    values = None
    if aggregation == "mlp":
        if mlp is None:
            raise ValueError(
                "aggregation 'mlp' needs mlp (an InteractionMLP or a callable (..., d) -> (...))"
            )
        if isinstance(mlp, InteractionMLP):
            values = mlp.interact(segment_vectors, item_vectors)  # (B, K, N)
        else:  # a generic g: materialise u_k ⊙ e_c, (B, K, N, d); only for small shapes
            values = mlp(segment_vectors.unsqueeze(2) * item_vectors.view(1, 1, -1, d))
    return aggregate(
        segment_scores,
        segment_mask,
        aggregation=aggregation,
        logits=logits,
        age_bias=age_bias,
        values=values,
        segment_weights=segment_weights,
    )


def aggregate(
    segment_scores: Tensor,
    segment_mask: Tensor,
    *,
    aggregation: str,
    logits: Tensor | None = None,
    age_bias: Tensor | None = None,
    values: Tensor | None = None,
    segment_weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The aggregation step alone: ``(scores (B, N), contributions (B, K, N))`` from per-segment terms.

    ``segment_scores`` (B, K, N) = s_k(c); ``logits`` (B, K, N) = <q_k, e_c> (attention, mlp);
    ``values`` (B, K, N) = g(u_k ⊙ e_c) (mlp); the rest as in :func:`late_interaction`. The one place
    the aggregations are written: the training model (through :func:`late_interaction`), the serving
    engine (on the candidates that pass its bound) and the exported ONNX scorer all call it.

    >>> s, both = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]), torch.tensor([[True, True]])
    >>> y, c = aggregate(s, both, aggregation="attention", logits=torch.zeros(1, 2, 2))
    >>> y.tolist(), c.tolist()
    ([[0.5, 1.0]], [[[0.5, 0.0], [0.0, 1.0]]])
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
    K = segment_scores.shape[1]
    mask = segment_mask.to(torch.bool)  # (B, K)
    any_valid = mask.any(dim=1, keepdim=True)  # (B, 1)
    mask3 = mask.unsqueeze(-1)  # (B, K, 1)
    if aggregation == "sum":
        if segment_weights is None:
            raise ValueError("aggregation 'sum' needs segment_weights (K,)")
        weights = segment_weights.view(1, K, 1) * mask3  # (B, K, 1); a plain sum, so 0 is a true zero
        contributions = weights * segment_scores  # (B, K, N)
        return contributions.sum(1), contributions
    if aggregation == "max":
        floor = torch.finfo(segment_scores.dtype).min
        masked = segment_scores.masked_fill(~mask3, floor)  # (B, K, N)
        winner = masked.argmax(dim=1, keepdim=True)  # (B, 1, N): first maximal segment
        contributions = torch.zeros_like(segment_scores).scatter(1, winner, masked.gather(1, winner))
        contributions = contributions * any_valid.unsqueeze(-1)  # no segment at all -> score 0
        return contributions.sum(1), contributions
    # attention / mlp: a_k(c) = softmax over non-empty k of <q_k, e_c> + b_age(k)
    if logits is None:
        raise ValueError(f"aggregation {aggregation!r} needs the attention logits (B, K, N)")
    if age_bias is not None:
        logits = logits + age_bias.view(1, K, 1)
    logits = logits.masked_fill(~mask3, torch.finfo(logits.dtype).min)
    attention = torch.softmax(logits, dim=1)  # (B, K, N)
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or not bool(any_valid.all()):
        attention = attention * any_valid.unsqueeze(-1)  # a user with no segment: uniform -> zero
    if aggregation == "mlp":
        if values is None:
            raise ValueError("aggregation 'mlp' needs values g(u_k ⊙ e_c) (B, K, N)")
    else:
        values = segment_scores
    contributions = attention * values  # (B, K, N)
    return contributions.sum(1), contributions
