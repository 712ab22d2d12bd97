"""Staged inference for MS-LI (docs/design.md §2): offline item table, nearline segment cache, online scoring.

The three stages are separate calls on one :class:`InferenceEngine`:

- ``offline()``  encodes the item table once, ``E`` (N+1, d), one row-major copy;
- ``observe(user, item, timestamp)`` is the nearline update. The open slot (the window of the last
  ``L_max`` events) changes on every event: while the history fits in the window, only the new position
  goes through the encoder, from the cached keys/values of the earlier ones (a KV cache, as in
  autoregressive decoding); once the window slides, each event re-encodes it (one batched pass over
  ``L_max`` positions, nearline, off the request path). A closed segment is encoded once, when it
  closes, and its vector is kept. ``full_reencode(user)`` encodes every slot from scratch with
  :meth:`MSLIModel.slot_vectors` (for comparison; same vectors);
- ``recommend(user, candidates, top_k)`` (and ``recommend_many`` for a batch of users) is the online
  stage: the block-wise scorer of :mod:`msli_core.serving.scoring` walks the whole catalog (or gathers a
  request's candidate rows block by block), bounds each candidate's score by its best segment and
  finishes the exact late interaction only for those that can still enter the top-k; the top-k comes
  back with each segment's exact contribution (``score == Σ_k contribution_k``; parity-tested against
  :func:`late_interaction`).

A user with no history gets the most popular candidates (``fallback == "popularity"``).

For catalogs too large to score whole, ``recommend(user, retrieval=index)`` puts an approximate first
stage in front (:mod:`msli_core.serving.retrieval`): a faiss index finds each segment's nearest items,
and the union is re-scored exactly by the same scorer (its per-request candidate path), so the returned
scores and contributions are late interaction's on those candidates. Without ``retrieval`` nothing
changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from msli_core import kinds
from msli_core.errors import MsliError
from msli_core.models.late_interaction import late_interaction
from msli_core.models.segmenter import closed_bounds, newest_closed, segment_bounds
from msli_core.serving import scoring, timing


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
    vectors: Tensor | None = None  # (K, d) slot vectors u_k; the last O are the open slots
    queries: Tensor | None = None  # (K, d) q_k = W u_k, precomputed for the online stage
    online: scoring.OnlineQuery | None = None  # the fast path's operands (None: mlp / sum aggregations)
    mask: Tensor | None = None  # (K,) bool, True = non-empty slot
    bounds: list[tuple[int, int]] = field(default_factory=list)  # per slot [start, end) ((0, 0) = empty)
    pooling: list[Tensor | None] = field(default_factory=list)  # per slot weights over its events
    closed: dict[tuple[int, int], tuple[Tensor, Tensor]] = field(default_factory=dict)  # [start, end) ->
    # (vector (d,), pooling weights) of each closed segment in a slot, encoded once
    open: _OpenWindow | None = None
    seen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (S,) sorted distinct ids

    def add_seen(self, item: int) -> None:
        """Record one item, keeping ``seen`` sorted (O(S) per event, nearline; a request never sorts)."""
        at = int(np.searchsorted(self.seen, item))
        if at == len(self.seen) or self.seen[at] != item:
            self.seen = np.insert(self.seen, at, item)

    def reset_seen(self, items: list[int]) -> None:
        self.seen = np.unique(np.asarray(items, dtype=np.int64))


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
    exact: int = 0  # candidates that passed the bound and were scored exactly (0: reference path)
    retrieved: int = 0  # candidates an ANN first stage returned for re-scoring (0: no first stage)


class InferenceEngine:
    """Offline / nearline / online serving of an :class:`~msli_core.models.msli.MSLIModel` (torch eager).

    ``popularity`` (N+1,) is the cold-start ranking (e.g. training counts per item); zeros if omitted.
    ``backend`` is the library of the online product (``numpy``, ``torch``, or ``auto``: the faster of
    the two on this machine, measured once per shape); ``block`` the items scored per block.
    ``nearline="kv"`` (default) updates the open segment one position at a time from its KV cache;
    ``nearline="segment"`` re-encodes the whole open segment on each event (no KV cache). Both give the
    vectors of :meth:`full_reencode`.
    """

    def __init__(
        self,
        model,
        popularity: np.ndarray | None = None,
        *,
        nearline: str = "kv",
        backend: str = "auto",
        block: int = scoring.DEFAULT_BLOCK,
    ):
        if not kinds.is_late_interaction(getattr(model, "kind", None)):
            raise MsliError(
                f"The inference engine serves MS-LI / two-tower models, not "
                f"{getattr(model, 'kind', model)!r}; score a cross-encoder with its own score()."
            )
        if nearline not in ("kv", "segment"):
            raise ValueError(f"nearline must be 'kv' or 'segment', not {nearline!r}")
        if backend not in ("auto", *scoring.BACKENDS):
            raise ValueError(f"backend must be 'auto' or one of {scoring.BACKENDS}, not {backend!r}")
        self.backend = backend  # the online product's library; "auto": the faster here, measured once
        self.block = int(block)  # items per block of the online scorer
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
        self.table_np: np.ndarray | None = None  # (N+1, d) float32 row-major: the one copy of the table
        self.table: Tensor | None = None  # the same memory as a tensor (the nearline encoder reads it)
        self._popular_ids: dict[int, np.ndarray] = {}  # n -> the n most popular ids
        self._weight_cache = None

    # ---- offline ------------------------------------------------------------------------------
    @torch.inference_mode()
    def offline(self) -> Tensor:
        """Encode the item table once: (N+1, d), row 0 = padding. Call again when the catalog changes.

        One copy is kept, row-major: the online stage streams it (whole catalog) or gathers the rows of
        a request's candidates, and the nearline encoder looks items up in it."""
        self.table = None
        self.table_np = None  # drop the old table before the new one is made (one copy at a time)
        table = self.model.item_table().detach().contiguous()  # (N+1, d)
        self.table_np = table.numpy()
        self.table = torch.from_numpy(self.table_np)  # shares memory
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
            for k in range(self.config.closed_slots)
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
        O = self.config.open_slots  # slots K-O..K-1: the window (and the newest events)
        closed = self._closed_bounds(state)  # up to K-O [start, end), oldest first
        vectors = torch.zeros(K, self.config.dim)
        mask = torch.zeros(K, dtype=torch.bool)
        bounds = [(0, 0)] * K
        pooling: list[Tensor | None] = [None] * K
        kept = {}
        for row, span in enumerate(closed):
            if span not in state.closed:  # it has just closed (or entered the slots): encode it once
                state.closed[span] = self._encode_closed(state, span)
            slot = K - O - len(closed) + row
            vectors[slot], pooling[slot] = state.closed[span]
            mask[slot], bounds[slot] = True, span
            kept[span] = state.closed[span]
        state.closed = kept
        if self.nearline_mode == "kv" and n <= L:
            vectors[K - O :] = self._kv_step(state, item)
        else:  # the window slid (or no KV cache): one pass over the last L_max events
            state.open = None
            window = torch.as_tensor(state.history[-L:]).unsqueeze(0)  # (1, W)
            vectors[K - O :] = self.model.open_vector(window, self.table)[0]  # (O, d)
        mask[K - O :], bounds[K - O] = True, (max(0, n - L), n)
        if O == 2:  # the newest events' slot, apart from the window's
            bounds[K - 1] = (n - min(n, self.config.recent_items, L), n)
            pooling[K - 2] = torch.zeros(min(n, L))  # the encoder's state: no per-event weight
        pooling[K - 1] = self._recent_weights(bounds[K - 1][1] - bounds[K - 1][0])
        state.pooling = pooling
        self._set_slots(state, vectors, mask, bounds)
        state.add_seen(item)
        return state.vectors

    def _closed_bounds(self, state: UserState) -> list[tuple[int, int]]:
        """[start, end) of the closed segments in the slots, oldest first, as the model's segmenter cuts."""
        n, S, c = len(state.history), self.S, self.config
        if self.config.closed_slots == 0:
            return []
        window_start = n - min(n, c.max_len)
        bounds = segment_bounds(
            n, S, segmenter=c.segmenter, timestamps=np.asarray(state.timestamps), session_gap=c.session_gap
        )
        newest = newest_closed(bounds, window_start, c.closed_segments)
        slots = self.config.closed_slots + 1  # closed_bounds' K: the closed slots and one open one
        return [(int(a), int(b)) for a, b in closed_bounds(bounds, slots, newest)]

    def _encode_closed(self, state: UserState, span: tuple[int, int]) -> tuple[Tensor, Tensor]:
        start, end = span
        items = torch.zeros(1, 1, self.S, dtype=torch.long)
        items[0, 0, : end - start] = torch.as_tensor(state.history[start:end])
        vector, weights = self.model.encode_segments(items, self.table)  # (1, 1, d), (1, 1, S)
        return vector[0, 0].clone(), weights[0, 0, : end - start].clone()

    def _recent_weights(self, length: int) -> Tensor:
        """Per-event weights of the slot holding the recency path (K-1): r_j on its newest events, over
        its ``length`` events (as ``slot_vectors`` reports)."""
        weights = torch.zeros(length)
        r = self.model.recency_weights()  # (m,) c·r_j
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
        """Nearline work for the online stage: the non-empty slots' u_k (and q_k, b_age(k)) as numpy rows.

        One non-empty slot is scored as a dot product (a_k = 1, whatever the aggregation, except mlp);
        ``sum`` and ``mlp`` keep no fast path (the reference function scores them)."""
        agg = self.config.aggregation
        valid = state.mask
        slots = valid.nonzero()[:, 0].numpy()  # (K',)
        u = state.vectors[valid].numpy().astype(np.float32)  # (K', d)
        if agg == "mlp" or (agg == "sum" and len(slots) > 1):
            state.online = None
        elif len(slots) == 1:
            if agg == "sum":  # c_k = w_k s_k
                u = u * self.model.segment_weights.detach()[valid].numpy()[:, None]
            state.online = scoring.OnlineQuery("dot", u, None, None, slots, state.seen)
        elif agg == "max":
            state.online = scoring.OnlineQuery("max", u, None, None, slots, state.seen)
        else:  # attention
            age = self.model.age_bias
            bias = None if age is None else age.detach()[valid].numpy().astype(np.float32)  # (K',)
            q = state.queries[valid].numpy().astype(np.float32)  # (K', d)
            state.online = scoring.OnlineQuery("attention", u, q, bias, slots, state.seen)

    def _kv_step(self, state: UserState, item: int) -> Tensor:
        """The open slots (O, d) after appending ``item``, through the encoder from the cached keys/values.

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
        share = F.linear(F.layer_norm(x, (d,), *ln_f), *out)  # (d,): W_o h_t + b
        recency = torch.zeros_like(share)  # (d,): the recency path Σ_j r_j e(x_{t-j})
        for j in range(min(recent.numel(), t + 1)):
            recency = recency + recent[j] * self.table[state.history[t - j]]
        return self.model.open_slots_from(share, recency)  # (O, d)

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
    def candidate_ids(self, candidates: int | range | np.ndarray | None) -> np.ndarray | range | None:
        """The candidate ids of a request: None = the whole catalog (items 1..N, no copy); ``range(a, b)``
        = the items a..b-1 (a contiguous slice of the table, no copy: a smaller catalog); an int n = the
        n most popular items (a stand-in for a retrieval stage; cached per n); an array = those ids."""
        n_items = self.config.n_items
        if candidates is None:
            return None
        if isinstance(candidates, range):
            if (
                candidates.step != 1
                or len(candidates) < 1
                or candidates.start < 1
                or candidates.stop > n_items + 1
            ):
                raise MsliError(f"A candidate range must be range(a, b) with 1 <= a < b <= {n_items + 1}.")
            return candidates
        if isinstance(candidates, (int, np.integer)):
            n = int(candidates)
            if n < 1 or n > n_items:
                raise MsliError(f"Candidate count {n} must be in 1..{n_items} (the catalog size).")
            if n not in self._popular_ids:
                order = np.argsort(-self.popularity.numpy()[1:], kind="stable")[:n] + 1  # (n,)
                self._popular_ids[n] = order.astype(np.int64)
            return self._popular_ids[n]
        ids = np.asarray(candidates, dtype=np.int64).ravel()
        if ids.size == 0 or int(ids.min()) < 1 or int(ids.max()) > n_items:
            raise MsliError(f"Candidate ids must be non-empty and within 1..{n_items}.")
        return ids

    @torch.inference_mode()
    def reference_scores(self, user, candidates: int | np.ndarray | None = None) -> np.ndarray:
        """Every candidate's score by the reference :func:`late_interaction` (no top-k, no seen items
        removed): (n,), or (N+1,) for the whole catalog with the padding column 0 at -inf. For checks."""
        state = self.users[user]
        table = self._require_table()
        ids = self.candidate_ids(candidates)
        rows = table if ids is None else table[torch.as_tensor(np.asarray(ids))]
        scores, _ = self._reference(state, rows)
        out = scores.numpy().copy()
        if ids is None:
            out[0] = -np.inf
        return out

    def _reference(self, state: UserState, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(n,) scores and (K, n) contributions of ``rows`` (n, d) by the reference late interaction."""
        exact, shares = late_interaction(  # (1, n), (1, K, n)
            state.vectors[None],
            state.mask[None],
            rows,
            aggregation=self.config.aggregation,
            attention_queries=None if state.queries is None else state.queries[None],
            age_bias=self.model.age_bias,
            mlp=self.model.mlp,
            segment_weights=self.model.segment_weights,
        )
        return exact[0], shares[0]

    def recommend(
        self,
        user,
        candidates: int | np.ndarray | None = None,
        top_k: int = 10,
        exclude_seen: bool = True,
        retrieval=None,
    ) -> Recommendation:
        """Online stage: the exact top-k of ``candidates`` (:meth:`candidate_ids`) with per-segment
        contributions (``scores == contributions.sum(1)``). ``retrieval`` (an
        :class:`~msli_core.serving.retrieval.AnnIndex` over this engine's table) replaces the whole
        catalog by its first stage's candidates."""
        return self.recommend_many([user], candidates, top_k, exclude_seen, retrieval=retrieval)[0]

    @torch.inference_mode()
    def recommend_many(
        self,
        users: list,
        candidates: int | np.ndarray | None = None,
        top_k: int = 10,
        exclude_seen: bool = True,
        retrieval=None,
    ) -> list[Recommendation]:
        """A batched online request: the top-k of each user, the table read once for all of them.

        Attention, max and one-segment users go through the block-wise scorer
        (:func:`~msli_core.serving.scoring.top_k`: exact top-k, no K×N intermediates); the ``mlp`` and
        ``sum`` aggregations through the reference function over the candidates' rows. With
        ``retrieval`` each user's candidates are its own first-stage union (:meth:`_retrieve`).
        """
        if top_k < 1:
            raise MsliError(f"top_k must be at least 1, not {top_k}.")
        self._require_table()
        if retrieval is not None:
            return self._retrieve(users, candidates, top_k, exclude_seen, retrieval)
        ids = self.candidate_ids(candidates)
        out: list[Recommendation | None] = [None] * len(users)
        fast: list[tuple[int, UserState]] = []
        for i, user in enumerate(users):
            state = self.users.get(user)
            if state is None or state.mask is None or not bool(state.mask.any()):
                out[i] = self._popular(user, ids, top_k)
            elif state.online is not None:
                state.online.seen = state.seen  # the sorted ids as of the latest event
                fast.append((i, state))
            else:
                out[i] = self._reference_top_k(user, state, ids, top_k, exclude_seen)
        if fast:
            backend = self.backend
            if backend == "auto":
                # a whole range larger than the last-level cache streams from memory; a request's
                # own list is gathered block by block into a buffer that stays in cache
                rows = self.table_np.shape[0] - 1 if ids is None else len(ids)
                contiguous = ids is None or isinstance(ids, range)
                streamed = contiguous and rows * self.table_np.shape[1] * 4 > timing.cache_size(3)
                backend = scoring.fastest_backend(self.K, self.config.dim, streamed=streamed)
            results = scoring.top_k(
                [state.online for _, state in fast],
                self.table_np,
                top_k,
                ids=ids,
                exclude_seen=exclude_seen,
                block=self.block,
                backend=backend,
            )
            for (i, state), best in zip(fast, results, strict=True):
                contributions = np.zeros((len(best.ids), self.K), dtype=np.float32)  # (k, K)
                contributions[:, state.online.slots] = best.contributions
                out[i] = self._recommendation(users[i], state, best.ids, best.scores, contributions)
                out[i].exact = best.exact
        return out  # type: ignore[return-value]

    def _retrieve(
        self, users: list, candidates, top_k: int, exclude_seen: bool, index
    ) -> list[Recommendation]:
        """Each user's top-k among its ANN candidates: the index's union of per-segment neighbours (seen
        items dropped when ``exclude_seen``), re-scored exactly by :meth:`recommend_many` on that list.
        A user with no history gets the popularity fallback over the whole catalog."""
        if candidates is not None:
            raise MsliError(
                "Pass either candidates or retrieval, not both: the first stage picks the candidates."
            )
        if index.n_items != self.table_np.shape[0] - 1 or index.dim != self.table_np.shape[1]:
            raise MsliError(
                f"The ANN index covers {index.n_items:,} items of width {index.dim}, but the engine's table "
                f"has {self.table_np.shape[0] - 1:,} of width {self.table_np.shape[1]}; rebuild the index "
                "after offline()."
            )
        out = []
        for user in users:
            state = self.users.get(user)
            if state is None or state.mask is None or not bool(state.mask.any()):
                out.append(self._popular(user, None, top_k))
                continue
            if state.online is None:
                raise MsliError(
                    f"ANN retrieval needs the attention, max or one-segment scoring; this model's "
                    f"{self.config.aggregation!r} aggregation has no inner-product bound, so score the "
                    "whole catalog."
                )
            ids = index.candidates(state.online, state.seen if exclude_seen else None)
            if not len(ids):  # nothing unseen was found: an empty answer, as scoring an empty list gives
                rec = self._recommendation(user, state, np.zeros(0, dtype=np.int64), np.zeros(0),
                                           np.zeros((0, self.K), dtype=np.float32))  # fmt: skip
            else:
                rec = self.recommend_many([user], ids, top_k, exclude_seen)[0]
            rec.retrieved = len(ids)
            out.append(rec)
        return out

    def _reference_top_k(self, user, state: UserState, ids, top_k: int, exclude_seen: bool) -> Recommendation:
        """Top-k by the reference function over all candidate rows (aggregations without a fast path)."""
        table = self._require_table()
        cand = np.arange(1, table.shape[0]) if ids is None else np.asarray(ids)
        scores, _ = self._reference(state, table[torch.as_tensor(cand)])
        scores = scores.numpy()
        if exclude_seen and len(state.seen):
            scores = np.where(scoring._seen_mask(state.seen, cand), -np.inf, scores)
        k = min(top_k, int(np.isfinite(scores).sum()))
        best = np.lexsort((cand, -scores))[:k]
        top_ids = cand[best]
        exact, shares = self._reference(state, table[torch.as_tensor(top_ids)])
        return self._recommendation(user, state, top_ids, exact.numpy(), shares.T.numpy())

    def _recommendation(self, user, state: UserState, ids, scores, contributions) -> Recommendation:
        return Recommendation(
            user=user,
            items=np.asarray(ids, dtype=np.int64),
            scores=np.asarray(scores, dtype=np.float32),
            contributions=np.asarray(contributions, dtype=np.float32),
            segment_bounds=list(state.bounds),
            segment_mask=state.mask.numpy().copy(),
        )

    def _popular(self, user, ids: np.ndarray | range | None, top_k: int) -> Recommendation:
        pop = self.popularity.numpy()
        cand = np.arange(1, len(pop)) if ids is None else np.asarray(ids)
        values = pop[cand]
        k = min(top_k, int(np.isfinite(values).sum()))
        best = np.lexsort((cand, -values))[:k]
        return Recommendation(
            user=user,
            items=cand[best].astype(np.int64),
            scores=values[best].astype(np.float32),
            contributions=np.zeros((k, self.K), dtype=np.float32),
            segment_bounds=[(0, 0)] * self.K,
            segment_mask=np.zeros(self.K, dtype=bool),
            fallback="popularity",
        )
