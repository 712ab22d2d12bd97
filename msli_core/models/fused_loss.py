"""Full-softmax cross-entropy of the attention aggregation at every position, without the (P, K, N) tensor.

In training, the closed slots of a user change only when the open segment changes, so every position
whose newest event lies in the same segment ("a group") shares them; only the open slot differs from
position to position. With ``l_k = <q_k, e> + b_k`` and ``s_k = <u_k, e>``, split the attention
aggregation ``y = Σ_k softmax_k(l_k) s_k`` into the open slot ``o`` and the closed set ``C``:

    L_C = logsumexp_{k∈C}(l_k - b_o)        (per group and item, shared by the group's positions)
    y_C = Σ_{k∈C} softmax_C(l_k) s_k        (the same)
    y   = y_C + σ(l_o - L_C) · (s_o - y_C)  (exact: σ(l_o - L_C) is the open slot's attention weight)

so a step needs (P, N) buffers plus (G, N) closed statistics, never (P, K, N). :class:`FusedAttentionCE`
computes the mean cross-entropy of ``y`` against the targets and writes its own backward pass (three
(P, N) buffers, reused in place); ``tests/test_models_fused_loss.py`` checks value and gradients against
autograd through :func:`~msli_core.models.late_interaction.late_interaction`.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEG = -1e9  # logit of an absent closed slot: exp(NEG - x) == 0 in float32, and NEG - NEG is 0, not NaN


def closed_statistics(scores: Tensor, logits: Tensor, valid: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """``L_C`` and ``y_C`` of each group: (B, G, C, N) closed scores s_k and logits <q_k, e>, (B, G, C)
    valid, (C,) bias ``b_k - b_o`` -> (B, G, N) each. A group with no valid closed slot gets
    ``L_C = NEG`` and ``y_C = 0``.
    """
    masked = (logits + bias.view(1, 1, -1, 1)).masked_fill(~valid.unsqueeze(-1), NEG)  # (B, G, C, N)
    log_z = torch.logsumexp(masked, dim=2)  # (B, G, N)
    weights = torch.softmax(masked, dim=2) * valid.unsqueeze(-1)  # (B, G, C, N)
    mean = (weights * scores).sum(2)  # (B, G, N)
    any_valid = valid.any(2, keepdim=True)  # (B, G, 1)
    return torch.where(any_valid, log_z, torch.full_like(log_z, NEG)), mean


class FusedAttentionCE(torch.autograd.Function):
    """Mean CE of ``y = y_C + σ(<q_o, e> - L_C)(<u_o, e> - y_C)`` over valid targets.

    Shapes: ``open_vectors``/``open_queries`` (B, G, S, d) u_o and q_o of each position, grouped;
    ``items`` (N, d) the candidate table; ``log_z``/``closed_mean`` (B, G, 1, N) from
    :func:`closed_statistics`; ``column_bias`` (N,) subtracted from every score before the softmax
    (sampled softmax's logQ; zeros otherwise); ``targets`` (B, G, S) columns, -1 = no target.
    """

    @staticmethod
    def forward(ctx, open_vectors, open_queries, items, log_z, closed_mean, column_bias, targets):
        gate = torch.matmul(open_queries, items.T).sub_(log_z).sigmoid_()  # (B, G, S, N) σ(l_o - L_C)
        gap = torch.matmul(open_vectors, items.T).sub_(closed_mean)  # (B, G, S, N) s_o - y_C
        y = torch.addcmul(closed_mean, gate, gap).sub_(column_bias)  # (B, G, S, N)
        valid = targets >= 0
        safe = targets.clamp(min=0).unsqueeze(-1)  # (B, G, S, 1)
        count = valid.sum().clamp(min=1)
        lse = torch.logsumexp(y, dim=-1)  # (B, G, S)
        loss = ((lse - y.gather(-1, safe).squeeze(-1)) * valid).sum() / count
        probs = y.sub_(lse.unsqueeze(-1)).exp_()  # softmax(y), in place
        ctx.save_for_backward(open_vectors, open_queries, items, gate, gap, probs, safe, valid)
        ctx.count = count
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        open_vectors, open_queries, items, gate, gap, grad_y, safe, valid = ctx.saved_tensors
        weight = valid.to(grad_y.dtype).unsqueeze(-1)  # (B, G, S, 1)
        grad_y.scatter_add_(-1, safe, -weight)  # softmax - onehot
        grad_y.mul_(weight * (grad_loss / ctx.count))  # dL/dy, (B, G, S, N)
        grad_mean = grad_y.sum(2, keepdim=True)  # dy/dy_C = 1 - σ, first the 1
        grad_y.mul_(gate)  # dL/ds_o = dL/dy · σ
        grad_mean = grad_mean - grad_y.sum(2, keepdim=True)  # ... then the -σ
        gate.neg_().add_(1)  # 1 - σ
        gap.mul_(grad_y).mul_(gate)  # dL/dl_o = dL/dy · σ(1 - σ)(s_o - y_C) = dL/ds_o · (1 - σ) · gap
        grad_log_z = -gap.sum(2, keepdim=True)
        N, d = items.shape
        grad_open = torch.matmul(grad_y, items)
        grad_queries = torch.matmul(gap, items)
        grad_items = grad_y.reshape(-1, N).T @ open_vectors.reshape(-1, d)
        grad_items += gap.reshape(-1, N).T @ open_queries.reshape(-1, d)
        return grad_open, grad_queries, grad_items, grad_log_z, grad_mean, None, None


def fused_attention_ce(
    open_vectors: Tensor,
    open_queries: Tensor,
    items: Tensor,
    log_z: Tensor,
    closed_mean: Tensor,
    targets: Tensor,
    column_bias: Tensor | None = None,
) -> Tensor:
    """:class:`FusedAttentionCE` with ``column_bias`` defaulting to zeros (see its docstring for shapes)."""
    if column_bias is None:
        column_bias = items.new_zeros(items.shape[0])
    return FusedAttentionCE.apply(open_vectors, open_queries, items, log_z, closed_mean, column_bias, targets)
