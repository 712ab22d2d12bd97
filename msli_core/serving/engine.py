"""Staged inference for MS-LI (docs/design.md §2): offline item table, nearline segment cache, online scoring.

The three stages are separate calls on one :class:`InferenceEngine`:

- ``offline()``  encodes the item table once, ``E`` (N+1, d), and keeps it transposed, ``Eᵀ`` (d, N+1),
  so the online product ``(2K, d) @ (d, N)`` streams a contiguous table;
- ``observe(user, item, timestamp)`` is the nearline update. The open slot (the window of the last
  ``L_max`` events) changes on every event: while the history fits in the window, only the new position
  goes through the encoder, from the cached keys/values of the earlier ones (a KV cache, as in
  autoregressive decoding); once the window slides, each event re-encodes it (one batched pass over
  ``L_max`` positions, nearline, off the request path). A closed segment is encoded once, when it
  closes, and its vector is kept. ``full_reencode(user)`` encodes every slot from scratch with
  :meth:`MSLIModel.slot_vectors` (for comparison; same vectors);
- ``recommend(user, candidates, top_k)`` is the online stage: one pass over the candidate table for all
  K segments (the fast path below), top-k, then the exact per-segment contributions of the top-k items
  from :func:`late_interaction` (so ``score == Σ_k contribution_k`` holds for what is returned).

A user with no history gets the most popular candidates (``fallback == "popularity"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from msli_core.errors import MsliError
from msli_core.models.late_interaction import late_interaction
from msli_core.models.segmenter import closed_bounds, newest_closed, segment_bounds


@dataclass
class _OpenWindow:
    """The KV cache of the open window while the history fits in it: per block keys/values."""

    length: int  # positions encoded so far (the window starts at event 0 while this cache is used)
    kv: list[Tensor]  # per block (2, heads, L_max, head_dim): keys [0] and values [1]; [:, :, :length] set


@dataclass
class UserState:
    """One user's nearline cache."""

    history: list[int] = field(default_factory=list)  # item ids, chronological
    timestamps: list[int] = field(default_factory=list)
    vectors: Tensor | None = None  # (K, d) segment vectors u_k, slot K-1 = open segment
    queries: Tensor | None = None  # (K, d) q_k = W u_k, precomputed for the online stage
    stacked: Tensor | None = None  # (2K', d) [u; q] of the K' non-empty slots ((1, d) when K' = 1)
    bias: Tensor | None = None  # (K', 1) b_age of the non-empty slots, or None
    mask: Tensor | None = None  # (K,) bool, True = non-empty slot
    bounds: list[tuple[int, int]] = field(default_factory=list)  # per slot [start, end) ((0, 0) = empty)
    pooling: list[Tensor | None] = field(default_factory=list)  # per slot weights over its events
    closed: dict[tuple[int, int], tuple[Tensor, Tensor]] = field(default_factory=dict)  # [start, end) ->
    # (vector (d,), pooling weights) of each closed segment in a slot, encoded once
    open: _OpenWindow | None = None
    seen_set: set[int] = field(default_factory=set)  # item ids seen, for exclude_seen
    seen_ids: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))  # (capacity,)
    n_seen: int = 0  # seen_ids[:n_seen] holds seen_set's ids in first-seen order

    @property
    def seen(self) -> Tensor:
        """(n_seen,) int64 ids of the items seen (a view of the buffer; no rebuild per request)."""
        return self.seen_ids[: self.n_seen]

    def add_seen(self, item: int) -> None:
        """Record one item in O(1) amortised: the buffer doubles when full, so an update followed by a
        request never rebuilds an O(history) tensor."""
        if item in self.seen_set:
            return
        self.seen_set.add(item)
        if self.n_seen == self.seen_ids.numel():
            grown = torch.empty(max(16, 2 * self.n_seen), dtype=torch.long)
            grown[: self.n_seen] = self.seen_ids[: self.n_seen]
            self.seen_ids = grown
        self.seen_ids[self.n_seen] = item
        self.n_seen += 1

    def reset_seen(self, items: list[int]) -> None:
        unique = list(dict.fromkeys(items))  # first-seen order
        self.seen_set = set(unique)
        self.seen_ids = torch.tensor(unique, dtype=torch.long)
        self.n_seen = len(unique)


@dataclass
class Recommendation:
    """Top-k of one request. ``contributions[i, k]`` is segment k's share of ``scores[i]``."""

    user: object
    items: np.ndarray  # (k,) int64 internal item ids, best first
    scores: np.ndarray  # (k,) float32
    contributions: np.ndarray  # (k, K) float32; rows sum to scores (zeros for the popularity fallback)
    segment_bounds: list[tuple[int, int]]  # per slot [start, end) event indices ((0, 0) = empty slot)
    segment_mask: np.ndarray  # (K,) bool
    fallback: str | None = None  # "popularity" when the user had no history


class InferenceEngine:
    """Offline / nearline / online serving of an :class:`~msli_core.models.msli.MSLIModel` (torch eager).

    ``popularity`` (N+1,) is the cold-start ranking (e.g. training counts per item); zeros if omitted.
    ``nearline="kv"`` (default) updates the open segment one position at a time from its KV cache;
    ``nearline="segment"`` re-encodes the whole open segment on each event (no KV cache). Both give the
    vectors of :meth:`full_reencode`.
    """

    def __init__(self, model, popularity: np.ndarray | None = None, *, nearline: str = "kv"):
        if getattr(model, "kind", None) not in ("msli", "two-tower"):
            raise MsliError(
                f"The inference engine serves MS-LI / two-tower models, not "
                f"{getattr(model, 'kind', model)!r}; score a cross-encoder with its own score()."
            )
        if nearline not in ("kv", "segment"):
            raise ValueError(f"nearline must be 'kv' or 'segment', not {nearline!r}")
        self.model = model.eval()
        self.config = model.config
        self.K = self.config.segments
        self.S = self.config.S
        self.nearline_mode = nearline
        n = self.config.n_items + 1
        pop = (
            np.zeros(n, dtype=np.float64) if popularity is None else np.asarray(popularity, dtype=np.float64)
        )
        if pop.shape != (n,):
            raise ValueError(f"popularity must have shape ({n},), not {pop.shape}")
        pop = pop.copy()
        pop[0] = -np.inf  # padding is never recommended
        self.popularity = torch.as_tensor(pop, dtype=torch.float32)  # (N+1,)
        self.users: dict[object, UserState] = {}
        self.table: Tensor | None = None  # (N+1, d)
        self.table_t: Tensor | None = None  # (d, N+1) contiguous
        self._candidate_cache: dict[int, tuple[Tensor, Tensor]] = {}  # n -> (ids (n,), table (d, n))
        self._weight_cache = None
        self._candidate_position: dict[int, Tensor] = {}  # n -> (N+1,) column of each item, -1 = absent

    # ---- offline ------------------------------------------------------------------------------
    @torch.inference_mode()
    def offline(self) -> Tensor:
        """Encode the item table once: (N+1, d), row 0 = padding. Call again when the catalog changes."""
        self.table = self.model.item_table().contiguous()  # (N+1, d)
        self.table_t = self.table.T.contiguous()  # (d, N+1)
        self._candidate_cache.clear()
        self._candidate_position.clear()
        self._weight_cache = None
        return self.table

    def _require_table(self) -> Tensor:
        if self.table is None:
            self.offline()
        return self.table

    # ---- nearline -----------------------------------------------------------------------------
    def load_history(self, user, items, timestamps=None) -> UserState:
        """Replace ``user``'s history and encode all its segments (a full re-encode)."""
        items = [int(i) for i in np.asarray(items, dtype=np.int64).ravel()]
        if any(i < 1 or i > self.config.n_items for i in items):
            raise MsliError(f"History of user {user!r} has item ids outside 1..{self.config.n_items}.")
        ts = (
            list(range(len(items)))
            if timestamps is None
            else [int(t) for t in np.asarray(timestamps).ravel()]
        )
        if len(ts) != len(items):
            raise MsliError(
                f"User {user!r}: {len(items)} items but {len(ts)} timestamps; pass one per event."
            )
        state = UserState(history=items, timestamps=ts)
        self.users[user] = state
        self.full_reencode(user)
        return state

    @torch.inference_mode()
    def full_reencode(self, user) -> Tensor:
        """Encode all K slots of ``user`` from scratch, as the model does in training; (K, d) vectors."""
        table = self._require_table()
        state = self.users.setdefault(user, UserState())
        batch = self.model.segment_batch(
            [np.asarray(state.history, dtype=np.int64)], [np.asarray(state.timestamps, dtype=np.int64)]
        )
        vectors, mask, weights = self.model.slot_vectors(batch, table)  # (1, K, d), (1, K), (1, K, W)
        bounds = [(int(s), int(e)) for s, e in zip(batch.start[0], batch.end[0], strict=True)]
        state.pooling = [weights[0, k, : e - s].clone() if batch.mask[0, k] else None for k, (s, e) in
                         enumerate(bounds)]  # fmt: skip
        state.closed = {
            bounds[k]: (vectors[0, k].clone(), state.pooling[k])
            for k in range(self.K - 1)
            if batch.mask[0, k]
        }
        self._set_slots(state, vectors[0], mask[0], bounds)
        state.open = None  # rebuilt lazily on the next observe()
        state.reset_seen(state.history)
        return state.vectors

    @torch.inference_mode()
    def observe(self, user, item: int, timestamp: int | None = None) -> Tensor:
        """Nearline update: append one event; the open window is re-encoded (a KV step while the history
        fits in it) and a segment that has just closed is encoded once. Returns the (K, d) vectors."""
        item = int(item)
        if item < 1 or item > self.config.n_items:
            raise MsliError(f"Item id {item} is outside 1..{self.config.n_items}; pass an internal item id.")
        self._require_table()
        state = self.users.setdefault(user, UserState())
        ts = timestamp if timestamp is not None else (state.timestamps[-1] + 1 if state.timestamps else 0)
        state.history.append(item)
        state.timestamps.append(int(ts))
        n, K, L = len(state.history), self.K, self.config.max_len
        closed = self._closed_bounds(state)  # up to K-1 [start, end), oldest first
        vectors = torch.zeros(K, self.config.dim)
        mask = torch.zeros(K, dtype=torch.bool)
        bounds = [(0, 0)] * K
        pooling: list[Tensor | None] = [None] * K
        kept = {}
        for row, span in enumerate(closed):
            if span not in state.closed:  # it has just closed (or entered the slots): encode it once
                state.closed[span] = self._encode_closed(state, span)
            slot = K - 1 - len(closed) + row
            vectors[slot], pooling[slot] = state.closed[span]
            mask[slot], bounds[slot] = True, span
            kept[span] = state.closed[span]
        state.closed = kept
        if self.nearline_mode == "kv" and n <= L:
            vectors[K - 1] = self._kv_step(state, item)
        else:  # the window slid (or no KV cache): one pass over the last L_max events
            state.open = None
            window = torch.as_tensor(state.history[-L:]).unsqueeze(0)  # (1, W)
            vectors[K - 1] = self.model.open_vector(window, self.table)[0]
        mask[K - 1], bounds[K - 1] = True, (max(0, n - L), n)
        pooling[K - 1] = self._recent_weights(min(n, L))
        state.pooling = pooling
        self._set_slots(state, vectors, mask, bounds)
        state.add_seen(item)
        return state.vectors

    def _closed_bounds(self, state: UserState) -> list[tuple[int, int]]:
        """[start, end) of the closed segments in the slots, oldest first, as the model's segmenter cuts."""
        n, S, c = len(state.history), self.S, self.config
        if self.K == 1:
            return []
        window_start = n - min(n, c.max_len)
        if c.segmenter == "fixed":  # O(K): fixed segments anchored at event 0
            newest = (n - 1) // S - 1 if c.closed_segments == "recent" else -(-window_start // S) - 1
            return [(j * S, min(j * S + S, n)) for j in range(max(0, newest - self.K + 2), newest + 1)]
        bounds = segment_bounds(
            n, S, segmenter=c.segmenter, timestamps=np.asarray(state.timestamps), session_gap=c.session_gap
        )
        newest = newest_closed(bounds, window_start, c.closed_segments)
        return [(int(a), int(b)) for a, b in closed_bounds(bounds, self.K, newest)]

    def _encode_closed(self, state: UserState, span: tuple[int, int]) -> tuple[Tensor, Tensor]:
        start, end = span
        items = torch.zeros(1, 1, self.S, dtype=torch.long)
        items[0, 0, : end - start] = torch.as_tensor(state.history[start:end])
        vector, weights = self.model.encode_segments(items, self.table)  # (1, 1, d), (1, 1, S)
        return vector[0, 0].clone(), weights[0, 0, : end - start].clone()

    def _recent_weights(self, length: int) -> Tensor:
        """The open slot's per-event weights: r_j on its newest events (as ``slot_vectors`` reports)."""
        weights = torch.zeros(length)
        r = self.model.recent_weights.detach()
        m = min(length, r.numel())
        if m:
            weights[length - m :] = r[:m].flip(0)
        return weights

    def _set_slots(self, state: UserState, vectors: Tensor, mask: Tensor, bounds) -> None:
        state.vectors = vectors.clone()  # (K, d)
        state.mask = mask.clone()  # (K,)
        state.bounds = list(bounds)
        state.queries = self._queries(state.vectors)
        self._prepare_online(state)

    def _queries(self, vectors: Tensor) -> Tensor | None:
        if self.config.aggregation in ("attention", "mlp"):
            return self.model.attention_queries(vectors)  # (K, d)
        return None

    def _prepare_online(self, state: UserState) -> None:
        """Nearline work for the online stage: stack [u; q] of the non-empty slots, pick their biases."""
        if self.config.aggregation != "attention" or state.mask is None:
            return
        valid = state.mask
        u = state.vectors[valid]  # (K', d)
        if u.shape[0] == 1:
            state.stacked, state.bias = u.clone(), None
            return
        state.stacked = torch.cat([u, state.queries[valid]])  # (2K', d)
        age = self.model.age_bias
        state.bias = None if age is None else age[valid].unsqueeze(1).clone()  # (K', 1)

    def _kv_step(self, state: UserState, item: int) -> Tensor:
        """The open vector after appending ``item``, through the encoder from the cached keys/values.

        Same math as ``open_vector`` over the whole window restricted to the newest position t (causal
        attention over positions 0..t), at O(t·d + d²) per block instead of O(t²d + t d²); valid while
        the window starts at event 0 (history length <= L_max).
        """
        t = len(state.history) - 1
        if state.open is None or state.open.length != t:
            state.open = self._rebuild_open(state, t)
        op = state.open
        d = self.config.dim
        positions, blocks, final = self._weights
        x = self.table[item] + positions[t]  # (d,)
        for b, (nh, ln1, qkv, proj, ln2, fc, fc2) in enumerate(blocks):
            a = F.layer_norm(x, (d,), *ln1)
            qkv3 = F.linear(a, *qkv).view(3, nh, 1, d // nh)  # q, k, v of the new position
            cache = op.kv[b]  # (2, nh, L, hs)
            cache[:, :, t : t + 1] = qkv3[1:]
            y = F.scaled_dot_product_attention(
                qkv3[:1], cache[:1, :, : t + 1], cache[1:, :, : t + 1]
            )  # (1, nh, 1, hs): the newest position attends to 0..t
            x = x + F.linear(y.view(d), *proj)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (d,), *ln2), *fc)), *fc2)
        ln_f, out, recent = final
        op.length = t + 1
        vector = F.linear(F.layer_norm(x, (d,), *ln_f), *out)  # (d,): W_o h_t + b
        for j in range(min(recent.numel(), t + 1)):  # the recency path: Σ_j r_j e(x_{t-j})
            vector = vector + recent[j] * self.table[state.history[t - j]]
        return vector

    @property
    def _weights(self):
        """The encoder's tensors, looked up once (module attribute access costs ~1 µs each)."""
        if self._weight_cache is None:
            enc = self.model.encoder

            def norm(ln):
                return (ln.weight, ln.bias, ln.eps)

            blocks = [
                (
                    blk.attn.heads,
                    norm(blk.ln_1),
                    (blk.attn.qkv.weight, blk.attn.qkv.bias),
                    (blk.attn.proj.weight, blk.attn.proj.bias),
                    norm(blk.ln_2),
                    (blk.mlp.fc.weight, blk.mlp.fc.bias),
                    (blk.mlp.proj.weight, blk.mlp.proj.bias),
                )
                for blk in enc.blocks
            ]
            out = self.model.open_out
            final = (norm(enc.ln_f), (out.weight, out.bias), self.model.recent_weights.detach())
            self._weight_cache = (enc.positions.weight, blocks, final)
        return self._weight_cache

    def _rebuild_open(self, state: UserState, length: int) -> _OpenWindow:
        """A fresh KV cache of the window's first ``length`` positions, from one batched encoder pass."""
        enc = self.model.encoder
        d, L = self.config.dim, self.config.max_len
        nh = enc.blocks[0].attn.heads if len(enc.blocks) else 1
        op = _OpenWindow(length=length, kv=[torch.zeros(2, nh, L, d // nh) for _ in enc.blocks])
        if length:
            x = self.table[torch.as_tensor(state.history[:length])] + enc.positions.weight[:length]  # (t, d)
            x = x.unsqueeze(0)  # (1, t, d)
            for b, blk in enumerate(enc.blocks):
                a = blk.ln_1(x)
                _, k, v = blk.attn.qkv(a).split(d, dim=2)  # (1, t, d) each
                op.kv[b][0, :, :length] = k[0].view(length, nh, d // nh).transpose(0, 1)
                op.kv[b][1, :, :length] = v[0].view(length, nh, d // nh).transpose(0, 1)
                x = blk(x, causal=True)
        return op

    # ---- online -------------------------------------------------------------------------------
    def candidate_table(self, candidates: int | np.ndarray | None) -> tuple[Tensor, Tensor]:
        """Candidate ids (n,) and their transposed vectors (d, n), contiguous.

        ``None``: the whole catalog (items 1..N); an int n: the n most popular items (a stand-in for a
        retrieval stage; cached per n); an array: those item ids.
        """
        table_t = self.table_t if self.table_t is not None else (self.offline(), self.table_t)[1]
        if candidates is None:
            return torch.arange(table_t.shape[1]), table_t  # column 0 (padding) is masked later
        if isinstance(candidates, (int, np.integer)):
            n = int(candidates)
            if n < 1 or n > self.config.n_items:
                raise MsliError(
                    f"Candidate count {n} must be in 1..{self.config.n_items} (the catalog size)."
                )
            if n not in self._candidate_cache:
                order = torch.argsort(self.popularity, descending=True, stable=True)[:n]  # (n,)
                position = torch.full((table_t.shape[1],), -1, dtype=torch.long)  # item id -> column
                position[order] = torch.arange(n)
                self._candidate_cache[n] = (order, table_t[:, order].contiguous())
                self._candidate_position[n] = position
            return self._candidate_cache[n]
        ids = torch.as_tensor(np.asarray(candidates, dtype=np.int64).ravel())
        if ids.numel() == 0 or int(ids.min()) < 1 or int(ids.max()) > self.config.n_items:
            raise MsliError(f"Candidate ids must be non-empty and within 1..{self.config.n_items}.")
        return ids, table_t[:, ids].contiguous()

    @torch.inference_mode()
    def score_candidates(self, user, cand_t: Tensor) -> Tensor:
        """Fast online path: scores (n,) of ``user`` for candidate vectors ``cand_t`` (d, n)."""
        return self._score(self.users[user], cand_t)[0]

    def _score(self, state: UserState, cand_t: Tensor) -> tuple[Tensor, tuple | None]:
        """Scores (n,) and what the top-k's exact contributions are read from.

        The same math as :func:`late_interaction` (parity-tested): empty slots are dropped rather than
        masked (an exact equivalent), ``[u; q]`` is stacked at nearline time so the table is read once
        per request, and the softmax over the narrow K axis is done in place on (K', n) rows whose long
        axis is contiguous. For attention it returns ``("attention", w, z)`` with ``w_k = e_k · s_k``
        (K', n) and ``z = Σ_k e_k`` (n,), so ``c_k = w_k / z`` for any column; ``("single", None, None)``
        when one segment takes all; None when the reference function must give the contributions.
        """
        agg = self.config.aggregation
        if agg == "attention":
            stacked, bias = state.stacked, state.bias  # (2K', d) or (1, d); (K', 1) or None
            if stacked.shape[0] == 1:
                return (stacked @ cand_t)[0], ("single", None, None)  # one segment: weight 1, y = s_0
            k = stacked.shape[0] // 2
            products = stacked @ cand_t  # (2K', n): one pass over the table
            scores, logits = products[:k], products[k:]  # (K', n) each
            if bias is not None:
                logits.add_(bias)
            logits.sub_(logits.amax(0)).exp_()  # unnormalised a_k = e_k, (K', n)
            z = logits.sum(0)  # (n,)
            weighted = logits.mul_(scores)  # w_k = e_k s_k, (K', n)
            return weighted.sum(0).div_(z), ("attention", weighted, z)
        valid = state.mask  # (K,)
        u = state.vectors[valid]  # (K', d)
        if agg == "max":
            return (u @ cand_t).amax(0), None
        if agg == "sum":
            user_vector = self.model.segment_weights[valid] @ u  # (d,): Σ_k w_k u_k, a two-tower vector
            return user_vector @ cand_t, None
        # mlp: no fast path; the reference function over the candidate vectors
        scores, _ = self.model.score(state.vectors[None], state.mask[None], cand_t.T)
        return scores[0], None

    @torch.inference_mode()
    def recommend(
        self,
        user,
        candidates: int | np.ndarray | None = None,
        top_k: int = 10,
        exclude_seen: bool = True,
    ) -> Recommendation:
        """Online stage: top-k of ``candidates`` (:meth:`candidate_table`) with per-segment contributions."""
        if top_k < 1:
            raise MsliError(f"top_k must be at least 1, not {top_k}.")
        ids, cand_t = self.candidate_table(candidates)
        state = self.users.get(user)
        if state is None or state.mask is None or not bool(state.mask.any()):
            return self._popular(user, ids, top_k)
        scores, parts = self._score(state, cand_t)  # (n,), a fresh tensor
        available = scores.shape[0]
        whole_catalog = candidates is None
        if whole_catalog:
            scores[0] = -math.inf  # padding
            available -= 1
        if exclude_seen and state.n_seen:
            if whole_catalog:  # ids == arange: index directly
                columns = state.seen
            elif isinstance(candidates, (int, np.integer)):  # O(seen) through the cached column map
                columns = self._candidate_position[int(candidates)][state.seen]
                columns = columns[columns >= 0]
            else:
                columns = torch.isin(ids, state.seen).nonzero()[:, 0]
            scores[columns] = -math.inf
            available -= columns.numel()  # distinct columns: seen ids are unique, the column map injective
        k = min(top_k, available)
        if k <= 0:
            return self._popular(user, ids[:0], top_k)
        top_scores, best = torch.topk(scores, k)  # (k,), (k,)
        top_ids = ids[best]
        mask_np = state.mask.numpy()
        contributions = np.zeros((k, self.K), dtype=np.float32)  # (k, K); empty slots contribute 0
        if parts is not None and parts[0] == "attention":
            _, weighted, z = parts
            contributions[:, mask_np] = (weighted[:, best] / z[best]).T.numpy()  # c_k = e_k s_k / Σ e
        elif parts is not None:  # a single non-empty segment takes the whole score
            contributions[:, mask_np] = top_scores.numpy()[:, None]
        else:
            exact, shares = late_interaction(  # (1, k), (1, K, k): exact shares of the winners
                state.vectors[None],
                state.mask[None],
                self.table[top_ids],
                aggregation=self.config.aggregation,
                attention_queries=None if state.queries is None else state.queries[None],
                age_bias=self.model.age_bias,
                mlp=self.model.mlp,
                segment_weights=self.model.segment_weights,
            )
            top_scores, contributions = exact[0], shares[0].T.numpy()
        return Recommendation(
            user=user,
            items=top_ids.numpy(),
            scores=top_scores.numpy(),
            contributions=contributions,
            segment_bounds=list(state.bounds),
            segment_mask=mask_np.copy(),
        )

    def _popular(self, user, ids: Tensor, top_k: int) -> Recommendation:
        pop = self.popularity[ids].clone()
        k = min(top_k, int(torch.isfinite(pop).sum()))
        best = torch.topk(pop, k).indices if k else torch.zeros(0, dtype=torch.long)
        return Recommendation(
            user=user,
            items=ids[best].numpy().astype(np.int64),
            scores=pop[best].numpy().astype(np.float32),
            contributions=np.zeros((k, self.K), dtype=np.float32),
            segment_bounds=[(0, 0)] * self.K,
            segment_mask=np.zeros(self.K, dtype=bool),
            fallback="popularity",
        )
