"""Training (docs/design.md §2 "Training"): next-item prediction, early stopping on validation NDCG@10.

- MS-LI / two-tower: every position of every training row is a target (SASRec-style, Kang & McAuley
  2018, with full-softmax cross-entropy as in Klenitskiy & Vasilev, RecSys 2023). A row is
  ``L_max + 1`` consecutive events of a user (:func:`training_rows`); one causal pass over it gives the
  open vector after every prefix, and each closed segment the row's targets need is encoded once, on its
  own, as at inference (:func:`row_batch`). The attention aggregation's loss is fused
  (:mod:`msli_core.models.fused_loss`): exact, without the (positions × K × N) tensor. Loss:
  full-softmax cross-entropy over the catalog, or, for catalogs over :data:`SAMPLED_SOFTMAX_ABOVE`
  items, sampled softmax with logQ correction (Yi et al., RecSys 2019).
- Cross-encoder: a few cut points per user and epoch among its newest training positions; the next
  item against sampled negatives, softmax over [positive; negatives] (sampled negatives, as an
  early-interaction model must): hard ones from its first stage's top-M and uniform ones. Its
  co-occurrence features leave the user's own sequence out, so a training prefix sees the statistics
  a test prefix sees (:meth:`~msli_core.models.cross_encoder.CrossEncoder.cooc_features`).
- Popularity and item-kNN are fitted on the training sequences.
- Data-parallel (``distributed=``, ``msli train --ddp`` under torchrun; MS-LI and two-tower): P
  processes run the single-process step plan, each on its share of every step's rows, under DDP, with
  the loss normalised so one DDP step is the single-process step (:func:`_fit_neural`,
  :mod:`msli_core.distributed`).

All RNGs come from ``seed`` (python, numpy, torch) and torch runs its deterministic kernels
(:func:`repeatable_kernels`), so the same seed and thread count give the same weights and metrics.
The losses are pure functions (:func:`full_softmax_loss`, :func:`sampled_softmax_loss`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msli_core import distributed as msli_dist  # (``train``'s keyword ``distributed`` would shadow the name)
from msli_core.data.audience import label, words
from msli_core.data.dataset import LeaveOneOutSplit, leave_one_out, pad_right_aligned
from msli_core.errors import MsliError
from msli_core.evaluate import evaluate, mask_seen, worst_if_not_finite
from msli_core.models.baselines import ItemKNN
from msli_core.models.fused_loss import NEG, closed_statistics, fused_attention_ce
from msli_core.models.layers import count_parameters
from msli_core.models.registry import KINDS, LATE_INTERACTION_KINDS, build_model
from msli_core.models.segmenter import newest_closed, segment_bounds
from msli_core.progress import ProgressCallback, ProgressEvent, no_progress

SAMPLED_SOFTMAX_ABOVE = 50_000  # catalogs larger than this train with sampled softmax + logQ


@dataclass
class TrainSettings:
    epochs: int = 20  # upper bound; early stopping usually ends sooner (ML-100K: best epoch 9-14)
    lr: float = 4e-3  # AdamW learning rate, constant after a one-epoch warm-up (2e-3 learned slower on
    # ML-100K; a linear decay to 0 over 10 epochs under-trained)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    batch_size: int | None = None  # training rows per step; None = auto: ceil(rows / 20) clipped to
    # 8..64, so a small log still gets 20 steps an epoch (sample_data: 16, ML-100K: 64)
    patience: int = 5  # epochs without a better validation NDCG@10 before stopping
    seed: int = 0  # fixes python, numpy and torch RNGs
    rows_per_user: int = 3  # MS-LI / two-tower: training rows of L_max + 1 events per user, newest
    # first (a user with 1,000 events trains on its last ~600)
    negatives: int = 15  # cross-encoder: uniform negatives per positive
    hard_negatives: int = 8  # cross-encoder with a first stage: negatives from its top-cascade_top
    cuts_per_user: int = 8  # cross-encoder: target positions sampled per user and epoch
    cut_span: int | None = None  # cross-encoder: ... among the user's newest this-many training
    # positions (None = anywhere); the newest are the closest to the test prefixes
    head_lr_scale: float = 1.0  # cross-encoder: learning rate × this for its output head
    sampled_negatives: int = 4096  # sampled softmax: shared negatives per step (large catalogs)
    cascade_top: int = 100  # cross-encoder test: re-rank this many of a first stage
    valid_users: int | None = None  # validate on the first this-many evaluated users (None = all)
    valid_cascade_top: int = 50  # cross-encoder validation: re-rank this many (cheaper than the test)

    @classmethod
    def for_kind(cls, kind: str, **overrides) -> TrainSettings:
        """The settings ``train`` uses for ``kind``: the field defaults, then ``DEFAULTS[kind]``, then
        ``overrides``; an override of None keeps the default (so a CLI flag left out can pass None).

        >>> s = TrainSettings.for_kind("cross-encoder", epochs=3, lr=None, seed=7)
        >>> s.epochs, s.lr, s.seed, TrainSettings.for_kind("msli").lr
        (3, 0.001, 7, 0.004)
        """
        if kind not in KINDS:
            raise MsliError(f"Unknown model kind {kind!r}; choose one of {', '.join(KINDS)}.")
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**DEFAULTS[kind], **given})

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """Refuse values training cannot use, with one sentence naming the flag."""
        if self.epochs < 0 or (self.batch_size or 1) < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            raise MsliError(
                "--epochs must be >= 0, and the batch size and learning rate positive and finite."
            )
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise MsliError("--weight-decay must be a finite number >= 0.")


DEFAULTS: dict[str, dict] = {
    "msli": {},
    "two-tower": {},
    # the cross-encoder runs a transformer per (user, item) pair: few cut points per user and epoch,
    # 20-event pairs and a small candidate set keep its training within minutes on 2 cores
    # (ML-100K, re-ranking MS-LI K=4's top-100: docs/research/issue-10/RESULTS.md, "cross-encoder 2")
    "cross-encoder": {
        "epochs": 8,
        "lr": 1e-3,
        "batch_size": 8,
        "patience": 2,
        "cuts_per_user": 3,
        "cut_span": 20,
        "head_lr_scale": 10.0,
        "negatives": 8,
        "hard_negatives": 16,
        "valid_cascade_top": 100,
    },
    "popularity": {"epochs": 0},
    "item-knn": {"epochs": 0},
}

CROSS_ENCODER_CONFIG = {"cooccurrence": True, "max_len": 20}  # what train() builds unless told otherwise:
# the pair features on, and the newest 20 events per pair (the co-occurrence signal is in the newest few)
ALPHA_GRID = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5)  # first-stage weights tried before epoch 1

LOSS_ELEMENTS = 1 << 25  # a step's (positions × candidates) buffers are split into micro-batches above
# this (33.5 M floats, 134 MB each; the fused loss keeps three), so memory stays bounded for any catalog


class TrainingDiverged(MsliError):
    """Training hit a non-finite loss (or weights): it stops, and nothing is returned or saved."""

    def __init__(self, epoch: int, step: int, loss: float, lr: float, what: str = "loss") -> None:
        value = "NaN" if math.isnan(loss) else ("infinite" if math.isinf(loss) else f"{loss:g}")
        detail = f"loss is {value}" if what == "loss" else "the weights are no longer finite"
        fix = words(  # the app's Train page has a Seed box and no learning-rate control
            cli=f"train again with another seed or a lower learning rate (msli train --lr; it was {lr:g})",
            app=f"train again with another value in the Train page's {label('seed')} box",
        )
        super().__init__(f"training diverged at epoch {epoch}, step {step}: {detail}; {fix}")
        self.epoch, self.step = epoch, step


@dataclass
class TrainResult:
    model: nn.Module
    kind: str
    metrics: dict  # test metrics of the restored best model (full ranking, or a labelled cascade)
    valid_metrics: dict  # validation metrics of the best epoch
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, loss, valid_NDCG@10, ...
    seconds: float = 0.0  # training time (fitting + per-epoch validation), excluding the final test
    epochs: int = 0  # epochs run
    best_epoch: int = 0
    parameters: int = 0
    settings: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    test_ranks: np.ndarray | None = None  # (U,) each evaluation user's test rank (None: not evaluated)


# ---- losses (pure) ---------------------------------------------------------------------------------
def full_softmax_loss(scores: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of (P, N+1) scores against (P,) target ids; column 0 (padding) is excluded.

    >>> round(full_softmax_loss(torch.tensor([[9.0, 0.0, 0.0]]), torch.tensor([1])).item(), 4)  # log 2
    0.6931
    """
    scores = scores.clone()
    scores[:, 0] = float("-inf")
    return F.cross_entropy(scores, targets)


def sampled_softmax_loss(scores: Tensor, target_columns: Tensor, log_q: Tensor) -> Tensor:
    """Sampled softmax with logQ correction: CE of ``scores - log_q`` (P, C) against (P,) columns.

    ``log_q`` (C,) is the log of each candidate column's expected count in the sample, so frequent
    items are not over-penalised as negatives (Bengio & Senécal; Yi et al., RecSys 2019).

    >>> round(sampled_softmax_loss(torch.tensor([[1.0, 1.0]]), torch.tensor([0]), torch.zeros(2)).item(), 4)
    0.6931
    """
    return F.cross_entropy(scores - log_q.view(1, -1), target_columns)


# ---- helpers ----------------------------------------------------------------------------------------
def repeatable_kernels() -> None:
    """Make torch pick its deterministic kernels, process-wide (``warn_only``: an op without one warns
    instead of failing). On CPU with 2+ threads the backward of gathering item rows (``table[ids]``, an
    accumulating ``index_put_``) otherwise adds in thread order: two runs with the same seed differed in
    the last bits after one epoch, and early stopping turned that into another best epoch (``make
    quality``'s cross-encoder, seed 0, 2 threads: 0.3066 or 0.3178 from run to run). With it, runs with
    the same seed and thread count repeat bit for bit.

    Deterministic mode also fills every new tensor with NaN by default (a debugging aid that exposes
    reads of uninitialised memory; it changes no result of code that does not read them). That fill
    is switched off: it wrote every buffer twice, about 15% of an MS-LI training step on 2 threads
    (``msli bench --training``)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch (and :func:`repeatable_kernels`); the numpy Generator of ``seed``."""
    repeatable_kernels()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def training_rows(sequence: np.ndarray, window: int, rows: int) -> list[tuple[int, int]]:
    """``[r0, r1)`` event ranges of one training sequence: its last ``window + 1`` events, then earlier
    chunks of ``window + 1`` that overlap the next one by one event (so each target is trained once),
    newest first, at most ``rows`` of them. A row of T+1 events gives T (history, next item) targets.

    >>> training_rows(np.arange(10), 4, 3)
    [(5, 10), (1, 6), (0, 2)]
    """
    out, end = [], len(sequence)
    while end >= 2 and len(out) < rows:
        start = max(0, end - window - 1)
        out.append((start, end))
        end = start + 1 if start > 0 else 0
    return out


@dataclass
class RowBatch:
    """One training step: B rows, every position of each a target (see :func:`row_batch`)."""

    window: Tensor  # (B, T) int64 inputs x_0..x_{T-1} of each row, left-aligned, 0-padded
    targets: Tensor  # (B, T) int64 next item of each position, 0 = no target
    closed_items: Tensor | None  # (B, Gc, S) the closed segments any position of the row needs
    closed_index: Tensor | None  # (B, G, K-1) row of closed_items in slot k of group g (-1 = empty)
    group_position: Tensor | None  # (B, T) flat g·M + place of each position on the (G, M) grid (G·M = none)
    groups: int = 1  # G, grid rows per batch row: its groups of positions sharing closed slots, in chunks
    group_len: int = 1  # M, the most positions one grid row holds (at most S)


def row_batch(
    sequences: list[np.ndarray],
    stamps: list[np.ndarray],
    ranges: list[tuple[int, int]],
    *,
    segments: int,
    segment_len: int,
    window_len: int,
    segmenter: str,
    session_gap: float,
    closed: str,
) -> RowBatch:
    """Rows ``[r0, r1)`` of the given sequences, with each position's closed slots.

    Position p of a row holds history event ``t = r0 + p`` and predicts ``t + 1``; its open vector is
    the encoder state over the row's events ``r0..t`` (exactly the inference window when
    ``t - r0 + 1 = min(t + 1, L_max)``: the whole row for a user with at most ``L_max + 1`` events, and
    the last position of every row). Its closed slots are the K-1 segments up to its *newest closed*
    one (``closed="recent"``: the segment before the one holding t; otherwise the one inference picks
    for the window it reads at event t, the last ``window_len`` events ``max(0, t - window_len + 1)..t``
    (:func:`~msli_core.models.segmenter.newest_closed`), or, while that one is still the open segment
    at event t, the one before it: no position ever sees an event after its own in a closed slot).
    So a closed slot is as old, relative to its position, as inference makes it, even at a row's first
    positions, whose open vector reads only the row's events (a closed slot picked for a window that
    starts at ``r0`` would sit right before those few events there, and teach the attention to trust
    closed slots that at inference are always at least ``window_len`` events old). A row of
    ``closed="older"`` encodes at most the K-1 segments of its last position (its *budget*, as many as
    a step with one closed set per row): an earlier position's slots that would hold an older segment
    are left empty, as they are at inference for a user with fewer segments before the window; the
    slots it keeps are the ones inference fills with the same segments. (Encoding every segment the
    row's positions need, up to ``K - 1 + window_len / S``, made the worst-case step of ``msli bench
    --training --threads 2`` 1.92x a SASRec step against 1.61x with the budget, at the same tiling.)

    Positions with the same newest closed segment share their closed slots and form a *group*; group g
    of a row is the positions whose newest closed segment is ``c0 + g`` (``c0``: the row's first
    position's). Each segment the row's groups need is stored once, in ``closed_items``, oldest
    first from segment ``c0 - (K-2)``, so slot s (oldest first) of group g is row ``g + s``. The loss
    lays the positions out on a (G, M) grid, a grid row per group × place in it, and ``group_position``
    is each position's flat index ``g·M + place`` into it (``G·M`` for a padded position). A group of
    more than S positions (the positions before a row's first closed segment, up to ``window_len`` of
    them) takes several grid rows of at most S, with the same closed slots, so ``M <= S``: on ML-100K a
    batch mixing such rows with rows of groups of S had laid every row out on a grid of 5 × 200 places
    for its 200 positions.

    Items 1..9 at events 0..8, segments of 2 events (0-1, 2-3, 4-5, 6-7, 8), K = 3, one row of events
    3..8: positions p = 0..4 (events 3..7) have newest closed segments 0, 1, 1, 2, 2, so c0 = 0, G = 3
    groups of at most M = 2 positions, and ``closed_items`` holds segments -1 (none), 0, 1, 2:

    >>> b = row_batch([np.arange(1, 10)], [np.arange(9.0)], [(3, 9)], segments=3, segment_len=2,
    ...               window_len=5, segmenter="fixed", session_gap=1.0, closed="recent")
    >>> b.window.tolist(), b.targets.tolist()
    ([[4, 5, 6, 7, 8]], [[5, 6, 7, 8, 9]])
    >>> b.closed_items.tolist()
    [[[0, 0], [1, 2], [3, 4], [5, 6]]]
    >>> b.closed_index.tolist()  # group 0's older slot would be segment -1: empty
    [[[-1, 1], [1, 2], [2, 3]]]
    >>> b.group_position.tolist(), b.groups, b.group_len  # (g, place): (0,0) (1,0) (1,1) (2,0) (2,1)
    ([[0, 2, 3, 4, 5]], 3, 2)
    """
    K, S = segments, segment_len
    B = len(ranges)
    T = max(r1 - r0 - 1 for r0, r1 in ranges)
    window = np.zeros((B, T), dtype=np.int64)
    targets = np.zeros((B, T), dtype=np.int64)
    for b, (seq, (r0, r1)) in enumerate(zip(sequences, ranges, strict=True)):
        window[b, : r1 - r0 - 1] = seq[r0 : r1 - 1]
        targets[b, : r1 - r0 - 1] = seq[r0 + 1 : r1]
    if K == 1:
        return RowBatch(torch.as_tensor(window), torch.as_tensor(targets), None, None, None)

    # per row b (T_b = r1 - r0 - 1 positions): its segments, each position's group and place in it
    rows = []
    for seq, ts, (r0, r1) in zip(sequences, stamps, ranges, strict=True):
        bounds = segment_bounds(len(seq), S, segmenter=segmenter, timestamps=ts, session_gap=session_gap)
        t = np.arange(r0, r1 - 1)  # (T_b,) history end of each position
        segment_of_event = np.repeat(np.arange(len(bounds)), bounds[:, 1] - bounds[:, 0])  # (n,)
        newest = segment_of_event[t] - 1  # (T_b,) the segment before the one holding event t
        if closed != "recent":  # the one inference picks for the window it reads at event t, ...
            older = newest_closed(bounds, np.maximum(0, t - window_len + 1), closed)  # (T_b,)
            # ... capped at the one before the segment holding t (still open at event t; a row can
            # start inside a segment that runs past its first positions, which would hold their targets)
            newest = np.minimum(newest, older)  # (T_b,) non-decreasing, steps of 0 or 1
        c0 = int(newest[0])
        group = newest - c0  # (T_b,) 0, 0, 1, 1, 1, 2, ...
        group_start = np.searchsorted(newest, newest, side="left")  # (T_b,) first position of its group
        place = np.arange(len(t)) - group_start  # (T_b,) 0, 1, 0, 1, 2, 0, ...
        # a group longer than S (the positions before a row's first closed segment: up to window_len
        # of them) is cut into chunks of S positions that share its closed slots, so no row's grid is
        # mostly padding beside another row's groups of S
        sizes = np.bincount(group)  # (groups,) positions per group, each >= 1
        chunks = -(-sizes // S)  # (groups,)
        chunk = (np.cumsum(chunks) - chunks)[group] + place // S  # (T_b,) the chunk each position is in
        chunk_group = np.repeat(np.arange(len(sizes)), chunks)  # (chunks,) the group of each chunk
        # "older": the row's budget, the K-1 segments of its last position (see above); "recent": all
        oldest = max(0, int(newest[-1]) - (K - 2)) if closed != "recent" else 0
        rows.append((seq, bounds, c0, chunk, place % S, chunk_group, oldest))
    G = max(len(chunk_group) for *_, chunk_group, _ in rows)  # grid rows: chunks of the row with the most
    M = max(int(place.max()) + 1 for _, _, _, _, place, _, _ in rows)  # positions of the largest chunk
    Gc = max(int(chunk_group[-1]) for *_, chunk_group, _ in rows) + K - 1  # segments c0-(K-2) onwards:
    # the K-1 slots of each of a row's consecutive groups

    closed_items = np.zeros((B, Gc, S), dtype=np.int64)
    closed_index = np.full((B, G, K - 1), -1, dtype=np.int64)
    group_position = np.full((B, T), G * M, dtype=np.int64)
    s = np.arange(K - 1)[None, :]  # (1, K-1) slot, oldest first
    for b, (seq, bounds, c0, chunk, place, chunk_group, oldest) in enumerate(rows):
        first_segment = c0 - (K - 2)  # the segment in closed_items[b, 0]
        for c in range(Gc):
            segment = first_segment + c
            if oldest <= segment < len(bounds):  # older ones stay empty: the encoder skips them
                s0, e0 = bounds[segment]
                closed_items[b, c, : e0 - s0] = seq[s0:e0]
        g = chunk_group[:, None]  # (chunks, 1) the group of each of the row's chunks
        present = first_segment + g + s >= oldest  # (chunks, K-1) slot s's segment is in the budget
        closed_index[b, : len(g)] = np.where(present, g + s, -1)  # g + s = that segment - first_segment
        group_position[b, : len(chunk)] = chunk * M + place  # (T_b,) flat index into the (G, M) grid
    return RowBatch(
        torch.as_tensor(window),
        torch.as_tensor(targets),
        torch.as_tensor(closed_items),
        torch.as_tensor(closed_index),
        torch.as_tensor(group_position),
        G,
        M,
    )


def late_interaction_loss(
    model,
    batch: RowBatch,
    *,
    candidates: Tensor | None = None,
    log_q: Tensor | None = None,
    reference: bool = False,
) -> Tensor:
    """Mean next-item cross-entropy over every target of ``batch`` (full softmax over items 1..N, or over
    ``candidates`` with ``log_q`` subtracted: sampled softmax). Scores are the model's late interaction:
    the fused form for ``attention`` (exact, :mod:`msli_core.models.fused_loss`), the reference
    :func:`late_interaction` on (P, K, N) tensors for the other aggregations, or for every aggregation
    with ``reference=True`` (tests compare the two; at most :data:`REFERENCE_LOSS_POSITIONS` targets)."""
    table = model.item_table()  # (N+1, d)
    columns = torch.arange(1, table.shape[0]) if candidates is None else candidates  # (C,)
    items = table[columns]  # (C, d)
    bias = items.new_zeros(len(columns)) if log_q is None else log_q  # (C,)
    # target id -> column (-1 = none or not a candidate)
    lookup = torch.full((table.shape[0],), -1, dtype=torch.long)
    lookup[columns] = torch.arange(len(columns))
    target_cols = torch.where(batch.targets > 0, lookup[batch.targets], -1)  # (B, T)
    kept = model.state_dropout_rows(batch.window.shape[0])  # (B,) bool, or None (no state dropout)
    open_vecs = model.open_vectors(batch.window, table, kept)  # (B, T, O, d)
    B, T, O, d = open_vecs.shape
    C = model.config.closed_slots
    valid = None if C == 0 or batch.closed_index is None else batch.closed_index >= 0  # (B, G, C)
    if valid is not None and kept is not None:  # a row that lost the encoder's say loses its closed slots
        valid = valid & kept.view(-1, 1, 1)
    if valid is not None and not bool(valid.any()):  # every user's history fits in the window
        valid = None
    if valid is None and O == 1:  # K = 1, or no position with a closed slot: y = s_open
        scores = (open_vecs[:, :, 0] @ items.T - bias).reshape(B * T, -1)  # (B·T, C)
        return F.cross_entropy(scores, target_cols.reshape(-1), ignore_index=-1)
    closed = None
    if valid is not None:
        closed_vecs, _ = model.encode_segments(batch.closed_items, table)  # (B, Gc, d)
        index = batch.closed_index.clamp(min=0)  # (B, G, C)
        closed = closed_vecs[torch.arange(B).view(B, 1, 1), index]  # (B, G, C, d)
    if reference or model.config.aggregation != "attention":
        return _reference_loss(model, open_vecs, closed, valid, batch, items, bias, target_cols)
    keys = model.attention_keys(items)  # (C, r)
    if valid is None:  # open slots only: one group per row, every position in it
        G, M = 1, T
        grouped, grouped_targets = open_vecs.unsqueeze(1), target_cols.view(B, 1, T)  # (B, 1, T, O, d)
        log_z = items.new_full((B, 1, 1, items.shape[0]), NEG)  # (B, 1, 1, C): no closed slot
        mean = items.new_zeros(B, 1, 1, items.shape[0])
    else:
        G, M = batch.groups, batch.group_len
        flat = open_vecs.reshape(B, T, O * d)
        grouped = flat.new_zeros(B, G * M + 1, O * d)  # the last row collects positions without a group
        grouped = grouped.scatter(1, batch.group_position.unsqueeze(-1).expand(B, T, O * d), flat)
        grouped = grouped[:, : G * M].reshape(B, G, M, O, d)  # (B, G, M, O, d)
        grouped_targets = torch.full((B, G * M + 1), -1, dtype=torch.long)
        grouped_targets = grouped_targets.scatter(1, batch.group_position, target_cols)[:, : G * M]
        closed_bias = _slot_biases(model)[0]  # (C,)
        closed_logits = model.query_codes(closed) @ keys.T  # (B, G, C, N): <q_k, e> = <W u_k, e>
        log_z, mean = closed_statistics(closed @ items.T, closed_logits, valid, closed_bias)  # (B, G, N) each
        log_z, mean = log_z.unsqueeze(2), mean.unsqueeze(2)  # (B, G, 1, C)
    return fused_attention_ce(
        grouped,
        model.open_query_codes(grouped),
        items,
        log_z,
        mean,
        grouped_targets.view(B, G, M),
        log_q,
        _slot_biases(model)[1],
        keys,
    )


def _slot_biases(model) -> tuple[Tensor, Tensor]:
    """The age biases relative to the last slot's, as the fused loss takes them: closed (C,), open (O,)."""
    c = model.config
    age = model.age_bias if model.age_bias is not None else model.recent_weights.new_zeros(c.segments)
    relative = age - age[-1]  # (K,)
    return relative[: c.closed_slots], relative[c.closed_slots :]


REFERENCE_LOSS_POSITIONS = 1024  # non-attention aggregations: targets per step (their (P, K, N) tensor)


def _reference_loss(model, open_vecs, closed, valid, batch, items, bias, target_cols) -> Tensor:
    """Loss of any aggregation through :func:`late_interaction` on (P, K, N) tensors (the max / mlp / sum
    aggregations; tests compare it with the fused one): open slots (B, T, O, d), closed slots (B, G, C, d)
    and ``valid`` (B, G, C), or None without closed slots; at most :data:`REFERENCE_LOSS_POSITIONS`
    targets per step (evenly spaced) bound their memory."""
    b, p = (target_cols >= 0).nonzero(as_tuple=True)  # (P,) positions with a target
    if len(b) > REFERENCE_LOSS_POSITIONS:
        keep = torch.linspace(0, len(b) - 1, REFERENCE_LOSS_POSITIONS).long()
        b, p = b[keep], p[keep]
    vectors = open_vecs[b, p]  # (P, O, d)
    mask = torch.ones(vectors.shape[:2], dtype=torch.bool)  # (P, O)
    if closed is not None:
        G, M = batch.groups, batch.group_len
        g = (batch.group_position[b, p] // M).clamp(max=G - 1)  # (P,)
        vectors = torch.cat([closed[b, g], vectors], dim=1)  # (P, K, d)
        mask = torch.cat([valid[b, g], mask], dim=1)  # (P, K)
    scores, _ = model.score(vectors, mask, items)  # (P, C)
    return F.cross_entropy(scores - bias, target_cols[b, p])


def _cross_encoder_examples(
    model, split: LeaveOneOutSplit, users: np.ndarray, settings: TrainSettings, rng, first_stage=None
):
    """Cut points of ``users`` (``cuts_per_user`` each, among the newest ``cut_span`` training positions)
    and their candidates: (P, L) histories, (P, C) candidates with the positive in column 0, (P, C)
    first-stage scores (None without a first stage), (P, C) mask of candidates to leave out of the
    softmax (items the prefix has seen), and the users' own co-occurrence counts (None without
    ``cooccurrence``); None when no user has a cut point.

    With a first stage (the model whose top-M the cross-encoder re-ranks), trained as that re-ranker:
    ``hard_negatives`` of each cut are drawn from the first stage's top-``cascade_top`` for the same
    prefix (seen items and the positive excluded), beside ``negatives`` uniform ones, and the first
    stage's scores of the pairs are passed as the residual feature.
    """
    histories, stamps, positives, owners = [], [], [], []
    for u in users:
        seq = split.train_sequence(int(u))
        if len(seq) < 2:
            continue
        lo = 1 if settings.cut_span is None else max(1, len(seq) - settings.cut_span)
        cuts = rng.choice(
            np.arange(lo, len(seq)), size=min(settings.cuts_per_user, len(seq) - lo), replace=False
        )
        ts = split.data.timestamps[int(u)]
        for t in cuts:
            histories.append(seq[:t])
            stamps.append(ts[:t])
            positives.append(seq[t])
            owners.append(seq)
    if not histories:
        return None
    hist = torch.as_tensor(pad_right_aligned(histories, model.config.max_len))  # (P, L)
    n_items = model.config.n_items
    positive = torch.as_tensor(np.array(positives))[:, None]  # (P, 1)
    uniform = torch.as_tensor(rng.integers(1, n_items + 1, size=(len(positives), settings.negatives)))
    first_scores = None
    if first_stage is None:
        candidates = torch.cat([positive, uniform], dim=1)  # (P, 1+n)
        leave_out = candidates.new_zeros(candidates.shape, dtype=torch.bool)
    else:
        with torch.no_grad():
            was_training = first_stage.training
            first_stage.eval()
            scores = first_stage.score_histories(histories, stamps).float()  # (P, N+1)
            first_stage.train(was_training)
        scores = mask_seen(worst_if_not_finite(scores), histories)
        pool = scores.scatter(1, positive, float("-inf")).topk(min(settings.cascade_top, n_items), 1).indices
        pick = torch.as_tensor(rng.integers(0, pool.shape[1], size=(len(positives), settings.hard_negatives)))
        hard = pool.gather(1, pick)  # (P, h) from the first stage's top-M
        candidates = torch.cat([positive, hard, uniform], dim=1)  # (P, 1+h+n)
        first_scores = scores.gather(1, candidates)
        leave_out = ~torch.isfinite(first_scores)  # seen items: never candidates at test time
        leave_out[:, 0] = False
        first_scores = torch.where(torch.isfinite(first_scores), first_scores, 0.0)
    own = None
    if getattr(model.config, "cooccurrence", False):
        from msli_core.models.cross_encoder import sequence_cooccurrence

        w = model.config.cooc_window
        pairs = [
            sequence_cooccurrence(seq, w, c, h)
            for seq, c, h in zip(owners, candidates.numpy(), hist.numpy(), strict=True)
        ]
        counts = [
            np.bincount(seq, minlength=n_items + 1)[c]
            for seq, c in zip(owners, candidates.numpy(), strict=True)
        ]
        own = (torch.as_tensor(np.stack(pairs)), torch.as_tensor(np.stack(counts), dtype=torch.float32))
    return hist, candidates, first_scores, leave_out, own


def _cross_encoder_loss(
    model, split: LeaveOneOutSplit, users: np.ndarray, settings: TrainSettings, rng, first_stage=None
) -> Tensor:
    """Softmax CE of the positive against its negatives (see :func:`_cross_encoder_examples`)."""
    examples = _cross_encoder_examples(model, split, users, settings, rng, first_stage)
    if examples is None:
        return torch.zeros((), requires_grad=True)
    hist, candidates, first_scores, leave_out, own = examples
    out = model.score(hist, candidates, first_scores, own).masked_fill(leave_out, float("-inf"))  # (P, C)
    return F.cross_entropy(out, torch.zeros(len(hist), dtype=torch.long))


def _fit_first_stage_weight(model, split, users, settings, rng, first_stage) -> float:
    """Set the re-ranker's α (its weight on the first stage's scores) to the :data:`ALPHA_GRID` value with
    the lowest training loss of α × first-stage score alone, on one sample of training candidate sets.

    The first stage's scores are sharper on training prefixes than a softmax over hard negatives
    wants (ML-100K, MS-LI K=4: α = 0.5, not 1); starting there, the head's correction is not drowned by them.
    """
    with torch.no_grad():
        examples = _cross_encoder_examples(model, split, users, settings, rng, first_stage)
        if examples is None:
            return float(model.first_stage_weight)
        _, _, first_scores, leave_out, _ = examples
        target = torch.zeros(len(first_scores), dtype=torch.long)
        losses = [
            float(F.cross_entropy((a * first_scores).masked_fill(leave_out, float("-inf")), target))
            for a in ALPHA_GRID
        ]
        alpha = ALPHA_GRID[int(np.argmin(losses))]
        model.first_stage_weight.fill_(alpha)
    return alpha


def _valid_metrics(model, kind, data, split, first_stage, settings, world=None) -> dict:
    users = split.eval_users if settings.valid_users is None else split.eval_users[: settings.valid_users]
    if world is not None:
        return msli_dist.evaluate_sharded(model, data, split, "valid", users, world)
    if kind == "cross-encoder":
        top = settings.valid_cascade_top
        return evaluate(model, data, split, "valid", cascade_from=first_stage, cascade_top=top, users=users)
    return evaluate(model, data, split, "valid", users=users)


# ---- the training entry point -----------------------------------------------------------------------
def train(
    data,
    kind: str = "msli",
    settings: TrainSettings | None = None,
    config: dict | None = None,
    *,
    split: LeaveOneOutSplit | None = None,
    progress: ProgressCallback | None = None,
    cascade_from=None,
    evaluate_test: bool = True,
    distributed: msli_dist.World | None = None,
) -> TrainResult:
    """Train a model of ``kind`` on ``data`` (InteractionData); returns the best model (by validation
    NDCG@10) with its test metrics.

    ``settings``: how to train (epochs, lr, seed, ...), used as given; None means
    ``TrainSettings.for_kind(kind)``, and ``TrainSettings.for_kind(kind, epochs=..., ...)`` is how to
    change a few fields and keep the kind's defaults (:data:`DEFAULTS`) for the rest. ``config``: model
    settings over the kind's defaults (``dim=``, ``segments=``, ``aggregation=``, ...; the cross-encoder
    starts from :data:`CROSS_ENCODER_CONFIG`). ``split``: the leave-one-out split (default: computed from
    ``data``). ``cascade_from`` (cross-encoder only): the first stage whose top-M the cross-encoder
    re-ranks for validation/test when full ranking is over budget (default: item-kNN).
    ``evaluate_test=False`` skips the test evaluation (``metrics`` is then empty).

    ``distributed`` (msli and two-tower; :mod:`msli_core.distributed`): this process is one of P started
    by torchrun, in a joined process group. Every rank builds the same model and the same epoch plans
    from ``seed``, trains on its share of each step's rows under DDP, validates its share of the users
    and takes the shared early-stopping decision (see :func:`_fit_neural`); only rank 0 evaluates the
    test (the other ranks return empty ``metrics``), and the caller lets only rank 0 save.
    """
    world = distributed
    if kind not in KINDS:
        raise MsliError(f"Unknown model kind {kind!r}; choose one of {', '.join(KINDS)}.")
    if world is not None:
        msli_dist.check_kind(kind)
    if settings is None:
        settings = TrainSettings.for_kind(kind)
    settings.check()
    progress = progress or no_progress
    rng = seed_everything(settings.seed)
    split = split or leave_one_out(data)
    start = time.perf_counter()
    config = {**(CROSS_ENCODER_CONFIG if kind == "cross-encoder" else {}), **(config or {})}
    model = build_model(kind, data=data, **config)
    first_stage = None
    if kind in ("popularity", "item-knn"):
        model.fit(split.train_sequences())
        progress(ProgressEvent("train", 1, 1, f"fitted {kind}"))
        fit = _Fit(valid_metrics=evaluate(model, data, split, "valid"))
    else:
        if kind == "cross-encoder":
            first_stage = _cascade_first_stage(cascade_from, data, split)
            _start_from_first_stage_items(model, first_stage)
            if model.config.cooccurrence:
                model.fit_cooccurrence(split.train_sequences())
        else:  # msli, two-tower: the item table starts from item-kNN's co-occurrence (MSLIConfig.item_init)
            model.init_items_from_cooccurrence(split.train_sequences())
        fit = _fit_neural(
            model,
            kind=kind,
            data=data,
            split=split,
            settings=settings,
            rng=rng,
            progress=progress,
            first_stage=first_stage,
            world=world,
        )
    seconds = time.perf_counter() - start
    model.eval()
    test = {}
    evaluate_test = evaluate_test and (world is None or world.is_main)
    if evaluate_test and kind == "cross-encoder":
        test = evaluate(
            model, data, split, "test", cascade_from=first_stage, cascade_top=settings.cascade_top,
            keep_ranks=True,
        )  # fmt: skip
    elif evaluate_test:
        test = evaluate(model, data, split, "test", keep_ranks=True)
    test_ranks = test.pop("ranks", None)
    return TrainResult(
        model=model,
        kind=kind,
        metrics=test,
        valid_metrics=fit.valid_metrics,
        history=fit.history,
        seconds=round(seconds, 3),
        epochs=fit.epochs,
        best_epoch=fit.best_epoch,
        parameters=count_parameters(model),
        settings=settings.to_dict(),
        config=model.config.to_dict(),
        test_ranks=test_ranks,
    )


def _start_from_first_stage_items(model, first_stage) -> None:
    """A re-ranker starts from its first stage's item encoder when they have the same shape (the item
    vectors the first stage learned with full softmax are the best start the pairs can have)."""
    items = getattr(first_stage, "items", None)
    if items is None or not hasattr(model, "items"):
        return
    mine, theirs = model.items.state_dict(), items.state_dict()
    if mine.keys() == theirs.keys() and all(mine[k].shape == theirs[k].shape for k in mine):
        model.items.load_state_dict(theirs)


def _cascade_first_stage(cascade_from, data, split) -> nn.Module | None:
    """The cross-encoder's first stage when full ranking is over budget (None = full ranking)."""
    from msli_core.evaluate import CROSS_ENCODER_FULL_RANKING_PAIRS, unwrap

    if cascade_from is not None:
        return unwrap(cascade_from)[0]
    if len(split.eval_users) * data.n_items <= CROSS_ENCODER_FULL_RANKING_PAIRS:
        return None
    knn = build_model("item-knn", data=data)
    assert isinstance(knn, ItemKNN)
    return knn.fit(split.train_sequences())


def _sampled_candidates(targets: Tensor, log_freq: Tensor, sampled: int, rng) -> tuple[Tensor, Tensor]:
    """Sampled softmax's candidates: the step's targets ∪ popularity-sampled negatives, and logQ (C,)."""
    probs = log_freq.exp().numpy().astype(np.float64)
    probs[0] = 0.0  # never sample the padding id
    negatives = rng.choice(len(probs), size=sampled, p=probs / probs.sum())
    present = targets[targets > 0].numpy()
    candidates = torch.as_tensor(np.unique(np.concatenate([present, negatives])))
    expected = torch.clamp(log_freq[candidates].exp() * sampled, min=1e-12)  # expected count in the sample
    return candidates, expected.log()


def _row_steps(model, split, settings, rng, users: np.ndarray):
    """One epoch of late-interaction steps: (batch of row ranges, their users), length-bucketed.

    Rows of similar length share a batch (lengths jittered by ×0.8-1.25 so batches differ per epoch),
    and the batches run in random order.
    """
    c = model.config
    rows = [
        (int(u), r)
        for u in users
        for r in training_rows(split.train_sequence(int(u)), c.max_len, settings.rows_per_user)
    ]
    size = settings.batch_size or int(np.clip(math.ceil(len(rows) / 20), 8, 64))
    lengths = np.array([r1 - r0 for _, (r0, r1) in rows]) * rng.uniform(0.8, 1.25, len(rows))
    order = np.argsort(lengths, kind="stable")
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    return [[rows[i] for i in batches[j]] for j in rng.permutation(len(batches))]


def _late_interaction_step(
    model, split, chunk, settings, rng, log_freq, *, ddp=None, targets_total: int | None = None,
    scale: float = 1.0,
) -> float:  # fmt: skip
    """Forward and backward of one step (split into micro-batches of at most LOSS_ELEMENTS); its loss.

    The loss is the mean over the step's targets: each micro-batch's mean CE is weighted by its share
    of ``targets_total`` (default: the targets of ``chunk``). Under DDP (``ddp``: the wrapped
    :class:`~msli_core.distributed.StepLoss`), ``chunk`` is this rank's share of the step,
    ``targets_total`` the whole step's targets and ``scale`` P (or 0 for a padding row): DDP averages
    the P ranks' gradients, so P × (this rank's targets' CE sum / the step's targets), averaged, is the
    single-process gradient of the whole step; gradients are reduced on the last micro-batch only
    (``no_sync`` before it), and a non-finite loss still runs its backward so no rank skips the
    reduction the others wait in. Returns this rank's part of the mean (not scaled).
    """
    c = model.config
    seqs = [split.train_sequence(u) for u, _ in chunk]
    stamps = [split.data.timestamps[u][: len(q)] for (u, _), q in zip(chunk, seqs, strict=True)]
    ranges = [r for _, r in chunk]
    catalog = settings.sampled_negatives if log_freq is not None else c.n_items
    longest = max(r1 - r0 for r0, r1 in ranges)
    per_part = max(1, LOSS_ELEMENTS // (longest * catalog))
    if targets_total is None:
        targets_total = sum(r1 - r0 - 1 for r0, r1 in ranges)
    total = 0.0
    starts = range(0, len(chunk), per_part)
    for lo in starts:
        part = slice(lo, lo + per_part)
        batch = row_batch(
            seqs[part],
            stamps[part],
            ranges[part],
            segments=c.closed_slots + 1,  # the builder's K: the closed slots and one for the window
            segment_len=c.S,
            window_len=c.max_len,
            segmenter=c.segmenter,
            session_gap=c.session_gap,
            closed=c.closed_segments,
        )
        candidates = log_q = None
        if log_freq is not None:
            candidates, log_q = _sampled_candidates(batch.targets, log_freq, settings.sampled_negatives, rng)
        share = sum(r1 - r0 - 1 for r0, r1 in ranges[part]) / targets_total
        if ddp is None:
            loss = late_interaction_loss(model, batch, candidates=candidates, log_q=log_q) * share
            if not torch.isfinite(loss):
                return float(loss.detach())
            loss.backward()
        else:
            last = lo == starts[-1]
            with contextlib.nullcontext() if last else ddp.no_sync():
                loss = ddp(batch, candidates=candidates, log_q=log_q) * share
                (loss * scale).backward()
        total += float(loss.detach())
    return total


def _distributed_step(ddp, model, split, chunk, settings, rng, log_freq, world) -> float:
    """One DDP step: this rank's rows ``rank::P`` of the global step ``chunk`` (the same list on every
    rank), forward and backward with gradients reduced; the whole step's mean loss (summed over ranks,
    so every rank sees the same value and agrees on divergence).

    A step with fewer rows than processes leaves a rank without rows: it runs the step's first row with
    weight 0 (its gradient is zero, but it joins the reduction), so every rank runs the same number of
    steps and no collective waits for a rank that has nothing to do.
    """
    mine = chunk[world.rank :: world.size]
    weight = 1.0
    if not mine:
        mine, weight = chunk[:1], 0.0
    targets_total = sum(r1 - r0 - 1 for _, (r0, r1) in chunk)
    with msli_dist.collective(world, "training"):  # the backward reduces the gradients
        local = _late_interaction_step(
            model, split, mine, settings, rng, log_freq, ddp=ddp, targets_total=targets_total,
            scale=weight * world.size,
        )  # fmt: skip
    return msli_dist.all_sum(world, local if weight else 0.0, "training")


@dataclass
class _Fit:
    """What fitting gives back: the best epoch's validation metrics, that epoch (0 = no epoch was run),
    the epochs run, and one history row per epoch (see :func:`_history_row`; a re-ranker's row 0 is its
    first stage alone)."""

    valid_metrics: dict
    best_epoch: int = 0
    epochs: int = 0
    history: list[dict] = field(default_factory=list)


def _history_row(epoch: int, loss: float, seconds: float, valid: dict) -> dict:
    """One epoch of ``TrainResult.history``: epoch, mean training loss, seconds since fitting began, and
    the validation metrics as ``valid_<name>``."""
    row = {"epoch": epoch, "loss": loss, "seconds": seconds}
    row.update({f"valid_{k}": v for k, v in valid.items() if isinstance(v, float)})
    return row


def _optimizer(model, kind: str, settings: TrainSettings) -> torch.optim.AdamW:
    """AdamW over every parameter; a cross-encoder's output head in its own group at ``head_lr_scale``
    × the learning rate (each group's ``scale`` multiplies the scheduled rate)."""
    head = list(model.head.parameters()) if kind == "cross-encoder" else []
    rest = [p for p in model.parameters() if all(p is not h for h in head)]
    groups = [{"params": rest, "scale": 1.0}] + (
        [{"params": head, "scale": settings.head_lr_scale}] if head else []
    )
    return torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)


def _log_item_frequencies(data, split) -> Tensor:
    """(N+1,) log of each item's share of the training events (padding and unseen items count 0.5):
    the sampling distribution of sampled softmax."""
    counts = np.bincount(np.concatenate(split.train_sequences()), minlength=data.n_items + 1).astype(float)
    counts[0] = 0
    return torch.as_tensor(np.log(np.maximum(counts, 0.5) / counts.sum()), dtype=torch.float32)


def _fit_neural(
    model,
    *,
    kind: str,
    data,
    split: LeaveOneOutSplit,
    settings: TrainSettings,
    rng: np.random.Generator,
    progress: ProgressCallback,
    first_stage: nn.Module | None,
    world: msli_dist.World | None = None,
) -> _Fit:
    """Fit a neural model in place (AdamW, linear warm-up over the first epoch, gradient clipping at 1),
    validate after every epoch, stop after ``patience`` epochs without a better validation NDCG@10, and
    restore the best epoch's weights.

    With ``world`` (P processes, late-interaction kinds only): the model's loss is wrapped in DDP, which
    starts every rank from rank 0's weights. ``rng`` is the shared stream: every rank draws the same
    epoch plan from it (:func:`_row_steps`: the single-process run's steps, in its order), and each
    trains on rows ``rank::P`` of each step (:func:`_distributed_step`), so the step count is the same on
    every rank and one DDP step is the single-process step over the same rows. What each rank draws
    for itself (sampled-softmax negatives; dropout masks, torch's RNG) comes from streams seeded by
    (seed, rank), so the shared stream stays in step; rank 0 keeps the single-process torch stream.
    Validation is sharded by user and gathered (:func:`msli_core.distributed.evaluate_sharded`), so
    every rank sees the same NDCG@10, keeps the same best epoch and stops at the same epoch; the
    weights are identical on every rank after each step (same reduced gradients, same clipping, same
    AdamW update), hence so is the best state.
    """
    optimizer = _optimizer(model, kind, settings)
    train_users = np.flatnonzero(split.train_lengths() >= 2)  # (U',) ids with 2+ training events
    if len(train_users) == 0:
        raise MsliError(f"{data.source} has no user with 2 or more training events; use a larger dataset.")
    late = kind in LATE_INTERACTION_KINDS
    if late:
        steps_per_epoch = len(_row_steps(model, split, settings, np.random.default_rng(0), train_users))
    else:
        steps_per_epoch = int(np.ceil(len(train_users) / (settings.batch_size or 16)))
    total = max(1, settings.epochs * steps_per_epoch)
    log_freq = _log_item_frequencies(data, split) if late and data.n_items > SAMPLED_SOFTMAX_ABOVE else None
    ddp, own_rng = None, rng
    if world is not None:
        ddp = msli_dist.wrap(model, late_interaction_loss, world)
        own_rng = np.random.default_rng([settings.seed, world.rank])
        if world.rank:
            torch.manual_seed(int(np.random.SeedSequence([settings.seed, world.rank]).generate_state(1)[0]))
    history: list[dict] = []
    best = (-1.0, 0, None, {})  # (valid NDCG@10, epoch, state, metrics)
    fit_start = time.perf_counter()
    if kind == "cross-encoder" and first_stage is not None and model.config.residual and settings.epochs:
        _fit_first_stage_weight(model, split, train_users, settings, rng, first_stage)
        # epoch 0 is the first stage's own ranking (the head starts at 0, α > 0): recorded as the
        # curve's reference, never kept as the result. The first stage picked its epoch by this same
        # validation NDCG@10, so its figure is the best of many noisy ones and biased upward; a
        # re-ranker had to beat it to be kept, and fell back to the first stage in runs where it was
        # far better on test (ML-100K seed 1: docs/research/issue-10/RESULTS.md, "first-stage fallback")
        model.eval()
        valid = _valid_metrics(model, kind, data, split, first_stage, settings)
        history.append(_history_row(0, float("nan"), time.perf_counter() - fit_start, valid))
    step = 0
    epochs_run = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        if late:
            work = _row_steps(model, split, settings, rng, train_users)
        else:
            order = rng.permutation(train_users)
            size = settings.batch_size or 16
            work = [order[lo : lo + size] for lo in range(0, len(order), size)]
        losses = []
        for i, chunk in enumerate(work):
            for group in optimizer.param_groups:  # linear warm-up over the first epoch, then constant
                group["lr"] = settings.lr * group["scale"] * min(1.0, (step + 1) / max(1, steps_per_epoch))
            optimizer.zero_grad(set_to_none=True)
            if ddp is not None:
                loss_value = _distributed_step(ddp, model, split, chunk, settings, own_rng, log_freq, world)
            elif late:
                loss_value = _late_interaction_step(model, split, chunk, settings, rng, log_freq)
            else:
                loss = _cross_encoder_loss(model, split, chunk, settings, rng, first_stage)
                loss_value = float(loss.detach())
                if math.isfinite(loss_value):
                    loss.backward()
            if not math.isfinite(loss_value):
                raise TrainingDiverged(epoch, i + 1, loss_value, settings.lr)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            losses.append(loss_value)
            progress(
                ProgressEvent(
                    "train",
                    step,
                    total,
                    f"epoch {epoch}/{settings.epochs} loss {losses[-1]:.3f}",
                    {"epoch": epoch, "step": step, "loss": losses[-1]},
                )
            )
        epochs_run = epoch
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingDiverged(epoch, steps_per_epoch, float("nan"), settings.lr, what="weights")
        valid = _valid_metrics(model, kind, data, split, first_stage, settings, world)
        row = _history_row(epoch, float(np.mean(losses)), time.perf_counter() - fit_start, valid)
        history.append(row)
        if valid["NDCG@10"] > best[0]:
            best = (valid["NDCG@10"], epoch, copy.deepcopy(model.state_dict()), valid)
        progress(
            ProgressEvent(
                "train",
                step,
                total,
                f"epoch {epoch}/{settings.epochs} loss {row['loss']:.3f} "
                f"valid NDCG@10 {valid['NDCG@10']:.4f}",
                {
                    "epoch": epoch,
                    "train_loss": row["loss"],
                    **{k: v for k, v in row.items() if k.startswith("valid_")},
                },
            )
        )
        if epoch - best[1] >= settings.patience:
            break
    if best[2] is not None:
        model.load_state_dict(best[2])
    else:  # zero epochs: report the untrained model
        best = (0.0, 0, None, _valid_metrics(model, kind, data, split, first_stage, settings, world))
    model.eval()
    progress(ProgressEvent("train", total, total, f"done: best epoch {best[1]}", {"epoch": epochs_run}))
    return _Fit(valid_metrics=best[3], best_epoch=best[1], epochs=epochs_run, history=history)
