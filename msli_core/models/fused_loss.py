"""Full-softmax cross-entropy of the attention aggregation at every position, without the (P, K, N) tensor.

In training, the closed slots of a user change only when the open segment changes, so every position
whose newest event lies in the same segment ("a group") shares them; only the open slot differs from
position to position. With ``l_k = <q_k, e> + b_k`` and ``s_k = <u_k, e>``, split the attention
aggregation ``y = Σ_k softmax_k(l_k) s_k`` into the open slot ``o`` and the closed set ``C``:

    L_C = logsumexp_{k∈C}(l_k - b_o)        (per group and item, shared by the group's positions)
    y_C = Σ_{k∈C} softmax_C(l_k) s_k        (the same)
    y   = y_C + σ(l_o - L_C) · (s_o - y_C)  (exact: σ(l_o - L_C) is the open slot's attention weight)

so a step needs (P, N) work plus (G, N) closed statistics, never (P, K, N). The logits are
``<q_k, k_e>`` against attention keys ``k_e``: the item vectors themselves for a full-rank attention
form W, or ``B^T e`` (r columns) for a rank-r one, ``W = B A`` (``MSLIConfig.attention_rank``), whose
queries ``A u_k`` are r-dimensional too. With O > 1 open slots per position (the model's
``recency_slot``: the encoder's state and the newest events), the same split holds with a softmax over
the O open logits and ``L_C``:

    y = w_C y_C + Σ_o w_o s_o,   (w_C, w_1..w_O) = softmax(L_C, l_1 + b_1, ..., l_O + b_O)

(``b_o`` relative to the reference bias that ``L_C`` subtracts). For O = 2 (the default) the same
softmax is computed as two nested gates, which need no exponentials beyond two sigmoids and a softplus:

    w = σ(Δ), Δ = l_1 + b_1 - l_2 - b_2;   A = l_2 + b_2 + softplus(Δ) = log(e^{l_1+b_1} + e^{l_2+b_2})
    o = w s_1 + (1 - w) s_2;               y = y_C + σ(A - L_C) · (o - y_C)

and where a group has no closed slot, ``w`` alone (``y = o``), whose Δ is one product ``<q_1 - q_2,
k_e>``. :class:`FusedAttentionCE` computes the mean cross-entropy of ``y`` against the targets and its
gradients in one tiled pass (cache-sized tiles of positions, never a whole (P, N) buffer);
``tests/test_models_fused_loss.py`` checks value and gradients against autograd through
:func:`~msli_core.models.late_interaction.late_interaction`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import Tensor

NEG = -1e9  # logit of an absent closed slot: exp(NEG - x) == 0 in float32, and NEG - NEG is 0, not NaN
EXP_FLOOR = -87.0  # every exp here reads max(x, EXP_FLOOR): below about -87.3, exp's result is subnormal or
# zero, and torch's CPU exp takes a slow path for such lanes, 10 to 30 times slower (measured on 521 k
# elements, one thread: 0.5 ms for inputs >= -87.3, 16 ms for -88 ... -100, 6 ms for -1e9). exp(-87) is
# 1.6e-38: the weights it stands in for are below float32's resolution of the sums they join (which hold
# a term of 1), and an absent slot's weight multiplies a zero mean, so the loss is unchanged to float32.


def floored_exp_(x: Tensor) -> Tensor:
    """``exp(max(x, EXP_FLOOR))`` in place (``x`` holds differences to a maximum: <= 0)."""
    return x.clamp_(min=EXP_FLOOR).exp_()


def closed_statistics(scores: Tensor, logits: Tensor, valid: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """``L_C`` and ``y_C`` of each group: (B, G, C, N) closed scores s_k and logits <q_k, e>, (B, G, C)
    valid, (C,) bias ``b_k - b_o`` -> (B, G, N) each. A group with no valid closed slot gets
    ``L_C = NEG`` and ``y_C = 0``. The softmax over slots is written out so that its exponentials
    stay above :data:`EXP_FLOOR` (an absent slot's weight is then zeroed by the mask, not by exp).
    """
    mask = valid.unsqueeze(-1)  # (B, G, C, 1)
    masked = (logits + bias.view(1, 1, -1, 1)).masked_fill(~mask, NEG)  # (B, G, C, N)
    top = masked.amax(dim=2, keepdim=True).detach()  # (B, G, 1, N); NEG where no slot is valid
    shares = (masked - top).clamp(min=EXP_FLOOR).exp() * mask  # (B, G, C, N) unnormalised weights
    total = shares.sum(2)  # (B, G, N); 0 where no slot is valid
    any_valid = valid.any(2).unsqueeze(-1)  # (B, G, 1)
    safe_total = torch.where(any_valid, total, torch.ones_like(total))  # no log(0), no 0/0
    log_z = torch.where(any_valid, safe_total.log() + top.squeeze(2), torch.full_like(total, NEG))
    mean = (shares * scores).sum(2) / safe_total  # (B, G, N); 0 where no slot is valid
    return log_z, mean


TILE_ELEMENTS = 1 << 18  # (positions × N) elements per tile and thread (a lane's tile, or a tile whose
# ops split across the threads): five float32 buffers of 1 MB each, which a core reuses from cache while
# a pass over whole (P, N) buffers went to memory; measured, not derived (2-core AMD EPYC, d = 64,
# N = 1,682, worst-case steps with lanes: 2^16 / 2^17 / 2^18 / 2^19 elements took 615 / 614 / 583 /
# 581 ms on 2 threads and 923 / 911 / 878 / 914 ms on one)
MIN_TILE_POSITIONS = 64  # ... but at least this many positions, so a large catalog's products stay
# matrix products (a tile of a few positions would read the whole (N, d) table for each of them)


def intra_op_threads() -> int:
    """Threads torch splits one op across (what a tile is sized for)."""
    return max(1, torch.get_num_threads())


PARALLEL_LANES = True  # several intra-op threads: run the tiles in that many lanes of one thread each


def parallel_lanes(threads: int) -> int:
    """Lanes the tiles run in: one per intra-op thread with :data:`PARALLEL_LANES`, else 1 (every op
    split across the threads). Each lane runs its tiles one after another with single-threaded ops, at
    the same time as the others: a tile's (positions, N) ops are too small to split well across threads
    (on 2 threads the fused loss ran 1.35-1.43x faster than on one; lanes: see RESULTS.md)."""
    return max(1, threads) if PARALLEL_LANES else 1


_POOL: tuple[ThreadPoolExecutor, int] | None = None  # the pool and its width
_POOL_LOCK = threading.Lock()


def lane_pool(lanes: int) -> ThreadPoolExecutor:
    """The threads the lanes run on, kept from call to call: a new thread's first ops pay for its
    thread-local set-up (a step with fresh threads each call was slower than without lanes, measured on
    ML-100K's short batches)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[1] < lanes:  # a wider pool; the old one ends its work first
            if _POOL is not None:
                _POOL[0].shutdown(wait=False)
            _POOL = (ThreadPoolExecutor(lanes, thread_name_prefix="msli-lane"), lanes)
        return _POOL[0]


@contextlib.contextmanager
def single_threaded_ops() -> Iterator[None]:
    """torch's ops on one thread in the calling thread while inside (the lanes are the parallelism),
    then as before. torch's thread count is the calling thread's own (OpenMP's per-thread setting):
    two app sessions training at once each set and restore their own."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tile_positions(n_columns: int, threads: int) -> int:
    """Positions per tile: :data:`TILE_ELEMENTS` elements per thread over ``n_columns`` items, at least
    :data:`MIN_TILE_POSITIONS`.

    >>> tile_positions(1682, 1), tile_positions(1682, 2), tile_positions(1_000_000, 4)
    (155, 311, 64)
    """
    return max(MIN_TILE_POSITIONS, TILE_ELEMENTS * max(1, threads) // max(1, n_columns))


class FusedAttentionCE(torch.autograd.Function):
    """Mean CE of the attention aggregation of O open slots per position and a group's closed set.

    One open slot: ``y = y_C + σ(<q_o, k> + b_o - L_C)(<u_o, e> - y_C)``; O open slots:
    ``y = w_C y_C + Σ_o w_o <u_o, e>`` with ``(w_C, w_o) = softmax(L_C, <q_o, k> + b_o)`` (module
    docstring). Shapes: ``open_vectors`` (B, G, S, O, d) u_o and ``open_queries`` (B, G, S, O, r) q_o of
    each position, grouped; ``items`` (N, d) the candidates' vectors e; ``keys`` (N, r) their attention
    keys k (``items`` itself when the attention form is full rank, r = d); ``log_z``/``closed_mean``
    (B, G, 1, N) from :func:`closed_statistics`; ``open_bias`` (O,) b_o; ``column_bias`` (N,) subtracted
    from every score before the softmax (sampled softmax's logQ), or None; ``targets`` (B, G, S) columns,
    -1 = no target; ``with_grad``: also compute the gradients (the loss is a scalar, so they are known in
    the forward).

    The (positions, N) work runs tile by tile (about :data:`TILE_ELEMENTS` elements per thread, at least
    :data:`MIN_TILE_POSITIONS` positions: several groups, or a slice of one group's positions): each
    tile's products, softmax and the gradient of the loss with respect to them are computed while the
    tile's buffers are in cache, and only the small gradients — of u, q, e, k, L_C, y_C and b — are kept
    for :meth:`backward`, which scales them by the incoming gradient. The same arithmetic as one pass over
    whole (P, N) buffers (sums over positions are added tile by tile), at well under its memory traffic:
    the (P, N) passes were bound by memory bandwidth. A tile takes two products forward, ``u E^T`` and
    ``q K^T``, and four backward. With two open slots, groups without a closed slot are put first, so
    their tiles hold no closed slot and take the gate on ``<q_1 - q_2, k>``: three products per position
    instead of four. Tiles without a target are skipped (their gradient is zero). On T > 1 threads the
    tiles run in T lanes (:func:`parallel_lanes`): tile i in lane i mod T, each lane a thread of
    :func:`lane_pool` with single-threaded ops and its own sums, which are added in lane order, so a
    step repeats bit for bit for a given thread count.
    """

    @staticmethod
    def forward(
        ctx, open_vectors, open_queries, items, keys, log_z, closed_mean, open_bias, column_bias, targets,
        with_grad,
    ):  # fmt: skip
        B, G, M, O, d = open_vectors.shape
        r, N, R = keys.shape[1], items.shape[0], B * G
        vectors = open_vectors.permute(3, 0, 1, 2, 4).reshape(O, R, M, d)  # (O, R, M, d) u_o
        queries = open_queries.permute(3, 0, 1, 2, 4).reshape(O, R, M, r)  # (O, R, M, r) q_o
        log_z, closed_mean = log_z.reshape(R, 1, N), closed_mean.reshape(R, 1, N)
        targets = targets.reshape(R, M)
        closed_free = (log_z == NEG).all(-1).view(R)  # (R,) groups without a closed slot
        order = None  # O = 2 and both kinds of group: closed-free groups first, so few tiles mix them
        if O == 2 and bool(closed_free.any()) and not bool(closed_free.all()):
            order = torch.argsort((~closed_free).to(torch.uint8), stable=True)  # (R,)
            vectors, queries, targets = vectors[:, order], queries[:, order], targets[order]
            log_z, closed_mean, closed_free = log_z[order], closed_mean[order], closed_free[order]
        valid = targets >= 0  # (R, M)
        count = valid.sum().clamp(min=1)
        items_t, keys_t = items.T, keys.T  # (d, N), (r, N)
        bias = open_bias.detach()  # (O,)
        shifted_log_z = log_z - bias[-1]  # (R, 1, N) L_C - b_O: what the last open slot's logit meets
        if with_grad:  # written tile by tile, each tile its own rows: shared by the lanes
            grad_vectors, grad_queries = torch.zeros_like(vectors), torch.zeros_like(queries)
        lanes = parallel_lanes(intra_op_threads())
        positions = tile_positions(N, 1 if lanes > 1 else intra_op_threads())  # per tile
        if positions >= M:  # whole groups, as many as fit
            per = positions // M
            tiles = [(slice(g0, g0 + per), slice(0, M)) for g0 in range(0, R, per)]
        else:  # one group at a time, its positions in equal slices
            per = -(-M // -(-M // positions))
            tiles = [(slice(g0, g0 + 1), slice(m0, m0 + per)) for g0 in range(R) for m0 in range(0, M, per)]
        lanes = max(1, min(lanes, len(tiles)))

        def sums() -> list[Tensor]:
            """A lane's own sums: the loss, then the gradients of e, k, L_C, y_C and b."""
            if not with_grad:
                return [vectors.new_zeros(())]
            like = (items, keys, log_z, closed_mean, open_bias)
            return [vectors.new_zeros(()), *(torch.zeros_like(t) for t in like)]

        def run(lane: list, lane_sums: list[Tensor]) -> None:
            """The tiles of one lane, in order, adding into ``lane_sums`` (in place)."""
            total, *grads = lane_sums
            if with_grad:
                grad_items, grad_keys, grad_log_z, grad_mean, grad_bias = grads
            for rows, places in lane:
                tile_valid = valid[rows, places]  # (g, m)
                if not bool(tile_valid.any()):
                    continue
                u, q = vectors[:, rows, places], queries[:, rows, places]  # (O, g, m, d), (O, g, m, r)
                mean = closed_mean[rows]  # (g, 1, N) y_C
                # two open slots and no closed one in the tile: the gate between them reads l_1 - l_2 alone
                pair = O == 2 and bool(closed_free[rows].all())
                buffers = 3 if O == 1 else 5 if O == 2 else 2 * O
                work = u.new_empty((buffers, *tile_valid.shape, N))  # products, then their gradients
                torch.matmul(u, items_t, out=work[:O])  # s_o = <u_o, e>
                if pair:
                    q = q[0] - q[1]  # (g, m, r)
                    torch.matmul(q, keys_t, out=work[2])  # l_1 - l_2
                else:
                    torch.matmul(q, keys_t, out=work[O : 2 * O])  # l_o = <q_o, k>
                if O == 1:  # work: s, l -> y, h, s - y_C
                    gate = work[1].sub_(shifted_log_z[rows]).sigmoid_()  # (g, m, N) h = σ(l + b - L_C)
                    gap = torch.sub(work[0], mean, out=work[2])  # (g, m, N) s - y_C
                    y = torch.addcmul(mean, gate, gap, out=work[0])  # (g, m, N) y_C + h (s - y_C)
                elif pair:  # work: s_1, s_2, l_1 - l_2 -> -, y, w, s_1 - s_2
                    gate = work[2].add_(bias[0] - bias[1]).sigmoid_()  # (g, m, N) w = σ(Δ)
                    gap = torch.sub(work[0], work[1], out=work[3])  # (g, m, N) s_1 - s_2
                    y = work[1].addcmul_(gate, gap)  # (g, m, N) s_2 + w (s_1 - s_2)
                elif O == 2:  # beside closed slots: two nested gates (module docstring)
                    # work: s_1, s_2, l_1, l_2 -> s_1 - s_2, o - y_C, w, h, y
                    # (g, m, N) Δ = l_1 + b_1 - l_2 - b_2
                    delta = work[2].sub_(work[3]).add_(bias[0] - bias[1])
                    lift = work[3].sub_(shifted_log_z[rows]).add_(F.softplus(delta))  # (g, m, N) A - L_C
                    gate = delta.sigmoid_()  # (g, m, N) w = σ(Δ), slot 1's share of the open weight
                    outer = lift.sigmoid_()  # (g, m, N) h = σ(A - L_C), the open slots' weight
                    gap = work[0].sub_(work[1])  # (g, m, N) s_1 - s_2
                    # (g, m, N) o - y_C, o = w s_1 + (1 - w) s_2
                    excess = work[1].addcmul_(gate, gap).sub_(mean)
                    y = torch.addcmul(mean, outer, excess, out=work[4])  # (g, m, N) y_C + h (o - y_C)
                else:  # O > 2: a softmax over the open logits and L_C
                    logits = work[O:].add_(bias.view(O, 1, 1, 1))  # (O, g, m, N) l_o + b_o
                    top = torch.maximum(logits.amax(0), log_z[rows])  # (g, m, N)
                    share = floored_exp_(logits.sub_(top))  # (O, g, m, N) w_o, unnormalised (in work[O:])
                    closed_share = floored_exp_(torch.sub(log_z[rows], top))  # (g, m, N) w_C, unnormalised
                    total_share = share.sum(0).add_(closed_share)  # (g, m, N)
                    share.div_(total_share)
                    closed_share.div_(total_share)
                    y_raw = (share * work[:O]).sum(0).addcmul_(closed_share, mean)  # (g, m, N) y
                    y = y_raw.clone()
                if column_bias is not None:
                    y.sub_(column_bias)
                safe = targets[rows, places].clamp(min=0).unsqueeze(-1)  # (g, m, 1)
                picked = y.gather(-1, safe)  # (g, m, 1) y of the target
                top_y = y.amax(-1, keepdim=True)  # (g, m, 1)
                norm = floored_exp_(y.sub_(top_y)).sum(-1, keepdim=True)  # (g, m, 1); y now exp(y - top)
                lse = norm.log().add_(top_y)  # (g, m, 1) logsumexp(y)
                total += ((lse - picked).squeeze(-1) * tile_valid).sum()
                if not with_grad:
                    continue
                weight = tile_valid.to(y.dtype).unsqueeze(-1) / count  # (g, m, 1)
                grad_y = y.mul_(weight / norm)  # softmax(y) · weight
                grad_y.scatter_add_(-1, safe, -weight)  # dL/dy = (softmax - onehot) · weight
                if O == 1:  # work: dL/dy, h, s - y_C -> dL/ds, -, dL/dl
                    grad_mean[rows] += grad_y.sum(1, keepdim=True)  # dy/dy_C = 1 - h, first the 1
                    grad_score = grad_y.mul_(gate)  # dL/ds = dL/dy h
                    grad_mean[rows] -= grad_score.sum(1, keepdim=True)  # ... then the -h
                    # dL/dl = dL/dy h (1 - h)(s - y_C) = t - t h with t = dL/ds (s - y_C)
                    grad_logit = gap.mul_(grad_score).addcmul_(gap, gate, value=-1)
                    grad_log_z[rows] -= grad_logit.sum(1, keepdim=True)
                    grad_bias += grad_logit.sum()  # dl/db = 1
                    score_grads, logit_grads = work[:1], work[2:3]
                elif pair:  # work: -, dL/dy, w, s_1 - s_2 -> dL/ds_1, dL/ds_2, -, dL/dΔ
                    grad_s1 = torch.mul(grad_y, gate, out=work[0])  # dL/ds_1 = dL/dy w
                    grad_y.sub_(grad_s1)  # dL/ds_2 = dL/dy (1 - w)
                    # dL/dΔ = dL/dy w (1 - w)(s_1 - s_2) = t - t w with t = dL/ds_1 (s_1 - s_2)
                    grad_delta = gap.mul_(grad_s1).addcmul_(gap, gate, value=-1)
                    pulled = grad_delta.sum()
                    grad_bias[0] += pulled
                    grad_bias[1] -= pulled
                    score_grads, logit_grads = work[:2], work[3:4]
                elif O == 2:  # the nested gates, backwards
                    # work: s_1 - s_2, o - y_C, w, h, dL/dy -> dL/dl_1, dL/dl_2, -, dL/ds_1, dL/ds_2
                    grad_mean[rows] += grad_y.sum(1, keepdim=True)  # dy/dy_C = 1 - h, first the 1
                    grad_open = grad_y.mul_(outer)  # dL/do = h dL/dy
                    grad_mean[rows] -= grad_open.sum(1, keepdim=True)  # ... then the -h
                    # dL/dA = dL/do (1 - h)(o - y_C) = t - t h with t = dL/do (o - y_C)
                    grad_lift = excess.mul_(grad_open).addcmul_(excess, outer, value=-1)
                    grad_log_z[rows] -= grad_lift.sum(1, keepdim=True)  # A - L_C
                    grad_s1 = torch.mul(grad_open, gate, out=work[3])  # dL/ds_1 = dL/do w
                    grad_s2 = grad_open.sub_(grad_s1)  # dL/ds_2 = dL/do (1 - w)
                    # dL/dΔ = dL/dA w + dL/do w (1 - w)(s_1 - s_2) = w (dL/dA + dL/ds_2 (s_1 - s_2))
                    grad_delta = torch.addcmul(grad_lift, gap, grad_s2, out=gap).mul_(gate)  # dL/dl_1
                    grad_lift.sub_(grad_delta)  # dL/dl_2 = dL/dA - dL/dΔ
                    grad_bias += work[:2].sum((1, 2, 3))  # dl_o/db_o = 1
                    score_grads, logit_grads = work[3:5], work[:2]
                else:  # softmax over slots: dy/dl_o = w_o (s_o - y), dy/dL_C = w_C (y_C - y), dy/dy_C = w_C
                    grad_closed = closed_share.mul_(grad_y)  # (g, m, N) dL/dy_C
                    grad_mean[rows] += grad_closed.sum(1, keepdim=True)
                    grad_log_z[rows] += grad_closed.mul_(mean - y_raw).sum(1, keepdim=True)
                    grad_scores = share.mul_(grad_y)  # (O, g, m, N) dL/ds_o = dL/dy w_o (in work[O:])
                    grad_logits = work[:O].sub_(y_raw).mul_(grad_scores)  # (O, g, m, N) dL/dl_o (in work[:O])
                    grad_bias += grad_logits.sum((1, 2, 3))
                    score_grads, logit_grads = grad_scores, grad_logits
                grad_vectors[:, rows, places] = torch.matmul(score_grads, items)  # (O, g, m, d)
                grad_items.addmm_(score_grads.reshape(-1, N).T, u.reshape(-1, d))
                pulled_queries = torch.matmul(logit_grads, keys)  # (O, g, m, r), or (1, ...) for q_1 - q_2
                grad_keys.addmm_(logit_grads.reshape(-1, N).T, q.reshape(-1, keys.shape[1]))
                if pair:  # dL/d(q_1 - q_2) reaches q_1 as it is and q_2 negated
                    grad_queries[0, rows, places] = pulled_queries[0]
                    grad_queries[1, rows, places] = -pulled_queries[0]
                else:
                    grad_queries[:, rows, places] = pulled_queries

        every = [sums() for _ in range(lanes)]
        if lanes == 1:
            run(tiles, every[0])
        else:  # tile i to lane i mod lanes, each lane a thread of its own, running one-threaded ops

            def lane_thread(lane: list, lane_sums: list[Tensor]) -> None:
                torch.set_num_threads(1)  # this lane's own ops on its own thread (a per-thread setting)
                with torch.no_grad():  # grad mode is per thread too: as in this forward
                    run(lane, lane_sums)

            with single_threaded_ops():
                list(lane_pool(lanes).map(lane_thread, [tiles[w::lanes] for w in range(lanes)], every))
        total, *grads = (torch.stack(parts).sum(0) for parts in zip(*every, strict=True))  # in lane order
        if with_grad:
            grad_items, grad_keys, grad_log_z, grad_mean, grad_bias = grads
            if order is not None:  # back to the callers' order of groups
                inverse = torch.empty_like(order)
                inverse[order] = torch.arange(R)
                grad_vectors, grad_queries = grad_vectors[:, inverse], grad_queries[:, inverse]
                grad_log_z, grad_mean = grad_log_z[inverse], grad_mean[inverse]
            ctx.save_for_backward(
                grad_vectors.permute(1, 2, 0, 3).reshape(B, G, M, O, d),
                grad_queries.permute(1, 2, 0, 3).reshape(B, G, M, O, r),
                grad_items, grad_keys, grad_log_z.view(B, G, 1, N), grad_mean.view(B, G, 1, N), grad_bias,
            )  # fmt: skip
        ctx.with_grad = with_grad
        return total / count

    @staticmethod
    def backward(ctx, grad_loss):
        if not ctx.with_grad:
            raise RuntimeError(
                "FusedAttentionCE ran without with_grad; call fused_attention_ce under grad mode"
            )
        return (*(g * grad_loss for g in ctx.saved_tensors), None, None, None)


def fused_attention_ce(
    open_vectors: Tensor,
    open_queries: Tensor,
    items: Tensor,
    log_z: Tensor,
    closed_mean: Tensor,
    targets: Tensor,
    column_bias: Tensor | None = None,
    open_bias: Tensor | None = None,
    keys: Tensor | None = None,
) -> Tensor:
    """:class:`FusedAttentionCE` (see its docstring for shapes). ``open_vectors``/``open_queries`` may be
    (B, G, S, d) / (B, G, S, r) for one open slot; ``column_bias`` None subtracts nothing, ``open_bias``
    (O,) defaults to zeros, ``keys`` (N, r) to ``items`` (the attention logits ``<q, e>``). The
    gradients are computed along with the loss when grad mode is on and an input requires them."""
    if open_vectors.dim() == 4:  # one open slot
        open_vectors, open_queries = open_vectors.unsqueeze(3), open_queries.unsqueeze(3)
    keys = items if keys is None else keys
    if open_bias is None:
        open_bias = items.new_zeros(open_vectors.shape[3])
    inputs = (open_vectors, open_queries, items, keys, log_z, closed_mean, open_bias)
    with_grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    return FusedAttentionCE.apply(*inputs, column_bias, targets, with_grad)
