"""Training (docs/design.md §2 "Training"): next-item prediction, early stopping on validation NDCG@10.

- MS-LI / two-tower: every position of every training sequence is a target, in one pass per batch.
  Each user's segments are encoded once by the causal segment encoder, which yields the vector of every
  prefix; the target at event ``t`` sees the K-1 closed segments before the open one (their full
  vectors) plus the open segment's prefix up to event ``t-1`` — exactly what inference sees. Loss:
  full-softmax cross-entropy over the catalog, or, for catalogs over
  :data:`SAMPLED_SOFTMAX_ABOVE` items, sampled softmax with logQ correction (Yi et al., RecSys 2019).
- Cross-encoder: a few random cut points per user and epoch; the next item against uniformly sampled
  negatives, softmax over [positive; negatives] (sampled negatives, as an early-interaction model must).
- Popularity and item-kNN are fitted on the training sequences.

All RNGs come from ``seed`` (python, numpy, torch), so the same seed gives the same metrics.
The losses are pure functions (:func:`full_softmax_loss`, :func:`sampled_softmax_loss`).
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msli_core.data.dataset import LeaveOneOutSplit, leave_one_out, pad_right_aligned
from msli_core.errors import MsliError
from msli_core.evaluate import evaluate
from msli_core.models.baselines import ItemKNN
from msli_core.models.layers import count_parameters
from msli_core.models.registry import KINDS, LATE_INTERACTION_KINDS, build_model
from msli_core.models.segmenter import segment_bounds
from msli_core.progress import ProgressCallback, ProgressEvent, no_progress

SAMPLED_SOFTMAX_ABOVE = 50_000  # catalogs larger than this train with sampled softmax + logQ


@dataclass
class TrainSettings:
    epochs: int = 12  # upper bound (early stopping may end sooner); MS-LI on sample_data: ~2-4 s an epoch
    # on 2 cores depending on their load, and its loss still falls at epoch 12
    lr: float = 5e-3  # AdamW learning rate (1e-2 diverged from the start on sample_data, 3e-3 learned slower)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    batch_size: int = 16  # users per step (up to positions_per_user targets each); 16, not 32: sample_data
    # has 300 users, and 19 steps an epoch learn faster than 10 at the same cost
    patience: int = 6  # epochs without a better validation NDCG@10 before stopping; validation NDCG@10
    # over sample_data's 300 users moves by ±0.02 between epochs while the loss still falls, and a
    # patience of 3-4 stopped on that noise (on a sample-like set, the two-tower model stopped at epoch 6
    # with its best at epoch 2)
    seed: int = 0  # fixes python, numpy and torch RNGs
    negatives: int = 15  # cross-encoder: sampled negatives per positive
    cuts_per_user: int = 8  # cross-encoder: target positions sampled per user and epoch
    sampled_negatives: int = 4096  # sampled softmax: shared negatives per step (large catalogs)
    cascade_top: int = 100  # cross-encoder test: re-rank this many of a first stage
    valid_users: int | None = None  # validate on the first this-many evaluated users (None = all)
    valid_cascade_top: int = 50  # cross-encoder validation: re-rank this many (cheaper than the test)
    max_train_positions: int = 200  # MS-LI: targets come from a user's last this-many events
    positions_per_user: int | None = 32  # MS-LI: targets sampled per user and epoch (None = all); the
    # (P, K, N) late-interaction tensors dominate a step, so sampling positions buys more epochs

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULTS: dict[str, dict] = {
    "msli": {},
    "two-tower": {},
    # the cross-encoder runs a transformer per (user, item) pair: fewer cut points and a validation
    # subset keep its training within minutes on 2 cores
    "cross-encoder": {
        "epochs": 4,
        "lr": 1e-3,
        "batch_size": 16,
        "patience": 2,
        "cuts_per_user": 2,
        "negatives": 7,
        "valid_users": 200,
    },
    "popularity": {"epochs": 0},
    "item-knn": {"epochs": 0},
}


class TrainingDiverged(MsliError):
    """Training hit a non-finite loss (or weights): it stops, and nothing is returned or saved."""

    def __init__(self, epoch: int, step: int, loss: float, lr: float, what: str = "loss") -> None:
        value = "NaN" if math.isnan(loss) else ("infinite" if math.isinf(loss) else f"{loss:g}")
        detail = f"loss is {value}" if what == "loss" else "the weights are no longer finite"
        super().__init__(
            f"training diverged at epoch {epoch}, step {step}: {detail}; lower --lr (it was {lr:g})"
        )
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
def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@dataclass
class _PositionBatch:
    segment_items: Tensor  # (B·M, S) every needed segment of the batch's users
    prefix_index: Tensor  # (P, K) row into the flattened (B·M·S) prefix vectors
    slot_mask: Tensor  # (P, K) bool
    targets: Tensor  # (P,)


def position_batch(
    sequences: list[np.ndarray],
    stamps: list[np.ndarray],
    *,
    segments: int,
    segment_len: int,
    segmenter: str,
    session_gap: float,
    max_positions: int,
    positions_per_user: int | None = None,
    rng: np.random.Generator | None = None,
) -> _PositionBatch:
    """Targets at every position of each sequence and, for each, where its K segment vectors live.

    The target at event ``t`` is predicted from history ``[0, t)``: its open segment is the one holding
    event ``t-1`` (prefix up to ``t-1``); the K-1 segments before it are closed (last prefix).
    """
    K, S = segments, segment_len
    per_user = []
    for seq, ts in zip(sequences, stamps, strict=True):
        T = len(seq)
        bounds = segment_bounds(T, S, segmenter=segmenter, timestamps=ts, session_gap=session_gap)  # (n, 2)
        seg_of = np.repeat(np.arange(len(bounds)), bounds[:, 1] - bounds[:, 0])  # (T,) segment of each event
        last = np.arange(max(0, T - 1 - max_positions), T - 1)  # last history event e of each target
        if positions_per_user is not None and len(last) > positions_per_user:
            pick = (rng or np.random.default_rng(0)).choice(len(last), positions_per_user, replace=False)
            last = last[np.sort(pick)]
        j_open = seg_of[last]  # (P_u,)
        j0 = max(0, int(j_open.min()) - K + 1) if len(last) else 0
        per_user.append((seq, bounds, last, j_open, j0))
    M = max((len(b) - j0 for _, b, _, _, j0 in per_user), default=1)
    items = np.zeros((len(sequences), M, S), dtype=np.int64)
    index, mask, targets = [], [], []
    slots_back = (K - 1 - np.arange(K))[None, :]  # (1, K): slot K-1 is the open segment
    for b, (seq, bounds, last, j_open, j0) in enumerate(per_user):
        for j in range(j0, len(bounds)):
            s, e = bounds[j]
            items[b, j - j0, : e - s] = seq[s:e]
        j_slots = j_open[:, None] - slots_back  # (P_u, K) segment index of each slot
        valid = j_slots >= 0
        j_safe = np.maximum(j_slots, j0)
        seg_lengths = bounds[:, 1] - bounds[:, 0]
        p_open = (last - bounds[j_open, 0])[:, None]  # (P_u, 1) prefix position inside the open segment
        p_slots = np.where(j_slots == j_open[:, None], p_open, seg_lengths[j_safe] - 1)  # (P_u, K)
        index.append(((b * M + (j_safe - j0)) * S + p_slots) * valid)
        mask.append(valid)
        targets.append(seq[last + 1])
    return _PositionBatch(
        torch.as_tensor(items.reshape(-1, S)),
        torch.as_tensor(np.concatenate(index)),
        torch.as_tensor(np.concatenate(mask)),
        torch.as_tensor(np.concatenate(targets)),
    )


def _late_interaction_loss(
    model, batch: _PositionBatch, *, sampled: int, rng, log_freq: Tensor | None
) -> Tensor:
    table = model.item_table()  # (N+1, d)
    prefix_vectors, _ = model.encode_prefixes(batch.segment_items, table)  # (B·M, S', d), S' <= S
    S, S_used = batch.segment_items.shape[1], prefix_vectors.shape[1]
    index = (batch.prefix_index // S) * S_used + batch.prefix_index % S  # re-stride S -> S'
    vectors = prefix_vectors.reshape(-1, table.shape[1])[index]  # (P, K, d)
    if log_freq is None:
        scores, _ = model.score(vectors, batch.slot_mask, table)  # (P, N+1)
        return full_softmax_loss(scores, batch.targets)
    # sampled softmax: candidates = the batch's targets ∪ popularity-sampled negatives, logQ-corrected
    probs = log_freq.exp().numpy().astype(np.float64)
    probs[0] = 0.0  # never sample the padding id
    negatives = rng.choice(len(probs), size=sampled, p=probs / probs.sum())
    candidates, inverse = np.unique(np.concatenate([batch.targets.numpy(), negatives]), return_inverse=True)
    cand = torch.as_tensor(candidates)
    target_columns = torch.as_tensor(inverse[: len(batch.targets)])
    expected = torch.clamp(log_freq[cand].exp() * sampled, min=1e-12)  # expected count in the sample
    scores, _ = model.score(vectors, batch.slot_mask, table[cand])  # (P, C)
    return sampled_softmax_loss(scores, target_columns, expected.log())


def _cross_encoder_loss(
    model, split: LeaveOneOutSplit, users: np.ndarray, settings: TrainSettings, rng
) -> Tensor:
    histories, positives = [], []
    for u in users:
        seq = split.train_sequence(int(u))
        if len(seq) < 2:
            continue
        cuts = rng.integers(1, len(seq), size=settings.cuts_per_user)
        for t in cuts:
            histories.append(seq[:t])
            positives.append(seq[t])
    if not histories:
        return torch.zeros((), requires_grad=True)
    hist = torch.as_tensor(pad_right_aligned(histories, model.config.max_len))  # (P, L)
    negatives = rng.integers(1, model.config.n_items + 1, size=(len(positives), settings.negatives))
    candidates = torch.as_tensor(
        np.concatenate([np.array(positives)[:, None], negatives], axis=1)
    )  # (P, 1+n)
    scores = model.score(hist, candidates)  # (P, 1+n)
    return F.cross_entropy(scores, torch.zeros(len(positives), dtype=torch.long))


def _valid_metrics(model, kind, data, split, first_stage, settings) -> dict:
    users = split.eval_users if settings.valid_users is None else split.eval_users[: settings.valid_users]
    if kind == "cross-encoder":
        top = settings.valid_cascade_top
        return evaluate(model, data, split, "valid", cascade_from=first_stage, cascade_top=top, users=users)
    return evaluate(model, data, split, "valid", users=users)


# ---- the training entry point -----------------------------------------------------------------------
def train(
    data,
    kind: str = "msli",
    *,
    epochs: int | None = None,
    seed: int = 0,
    lr: float | None = None,
    batch_size: int | None = None,
    patience: int | None = None,
    weight_decay: float | None = None,
    split: LeaveOneOutSplit | None = None,
    progress: ProgressCallback | None = None,
    cascade_from=None,
    evaluate_test: bool = True,
    settings_overrides: dict | None = None,
    **config,
) -> TrainResult:
    """Train a model of ``kind`` on ``data`` (InteractionData); ``config`` overrides model settings
    (``dim=``, ``segments=``, ``aggregation=``, ...). Returns the best model (by validation NDCG@10)
    with its test metrics. ``cascade_from`` (cross-encoder only): the first stage whose top-M the
    cross-encoder re-ranks for validation/test when full ranking is over budget (default: item-kNN).
    """
    if kind not in KINDS:
        raise MsliError(f"Unknown model kind {kind!r}; choose one of {', '.join(KINDS)}.")
    overrides = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "patience": patience}
    overrides["weight_decay"] = weight_decay
    overrides.update(settings_overrides or {})
    settings = TrainSettings(**{**DEFAULTS[kind], **{k: v for k, v in overrides.items() if v is not None}})
    settings.seed = seed
    if settings.epochs < 0 or settings.batch_size < 1 or not (math.isfinite(settings.lr) and settings.lr > 0):
        raise MsliError("--epochs must be >= 0, and the batch size and learning rate positive and finite.")
    if not math.isfinite(settings.weight_decay) or settings.weight_decay < 0:
        raise MsliError("--weight-decay must be a finite number >= 0.")
    progress = progress or no_progress
    rng = seed_everything(seed)
    split = split or leave_one_out(data)
    start = time.perf_counter()
    model = build_model(kind, data=data, **config)
    history: list[dict] = []
    best_valid: dict = {}
    best_epoch = 0
    epochs_run = 0
    first_stage = None
    if kind in ("popularity", "item-knn"):
        model.fit(split.train_sequences())
        progress(ProgressEvent("train", 1, 1, f"fitted {kind}"))
        best_valid = evaluate(model, data, split, "valid")
    else:
        if kind == "cross-encoder":
            first_stage = _cascade_first_stage(cascade_from, data, split)
        best_valid, best_epoch, epochs_run = _fit_neural(
            model, kind, data, split, settings, rng, progress, history, first_stage
        )
    seconds = time.perf_counter() - start
    model.eval()
    if evaluate_test:
        if kind == "cross-encoder":
            test = evaluate(
                model, data, split, "test", cascade_from=first_stage, cascade_top=settings.cascade_top
            )
        else:
            test = evaluate(model, data, split, "test")
    else:
        test = {}
    return TrainResult(
        model=model,
        kind=kind,
        metrics=test,
        valid_metrics=best_valid,
        history=history,
        seconds=round(seconds, 3),
        epochs=epochs_run,
        best_epoch=best_epoch,
        parameters=count_parameters(model),
        settings=settings.to_dict(),
        config=model.config.to_dict(),
    )


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


def _fit_neural(model, kind, data, split, settings, rng, progress, history, first_stage):
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    train_users = np.array([u for u in range(1, data.n_users + 1) if len(split.train_sequence(u)) >= 2])
    if len(train_users) == 0:
        raise MsliError(f"{data.source} has no user with 2 or more training events; use a larger dataset.")
    steps_per_epoch = int(np.ceil(len(train_users) / settings.batch_size))
    total = max(1, settings.epochs * steps_per_epoch)
    log_freq = None
    if kind in LATE_INTERACTION_KINDS and data.n_items > SAMPLED_SOFTMAX_ABOVE:
        counts = np.bincount(np.concatenate(split.train_sequences()), minlength=data.n_items + 1).astype(
            float
        )
        counts[0] = 0
        log_freq = torch.as_tensor(np.log(np.maximum(counts, 0.5) / counts.sum()), dtype=torch.float32)
    best = (-1.0, 0, None, {})  # (valid NDCG@10, epoch, state, metrics)
    fit_start = time.perf_counter()
    step = 0
    epochs_run = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = rng.permutation(train_users)
        losses = []
        for lo in range(0, len(order), settings.batch_size):
            users = order[lo : lo + settings.batch_size]
            if kind == "cross-encoder":
                loss = _cross_encoder_loss(model, split, users, settings, rng)
            else:
                c = model.config
                batch = position_batch(
                    [split.train_sequence(int(u)) for u in users],
                    [split.data.timestamps[int(u)][: len(split.train_sequence(int(u)))] for u in users],
                    segments=c.segments,
                    segment_len=c.S,
                    segmenter=c.segmenter,
                    session_gap=c.session_gap,
                    max_positions=settings.max_train_positions,
                    positions_per_user=settings.positions_per_user,
                    rng=rng,
                )
                loss = _late_interaction_loss(
                    model, batch, sampled=settings.sampled_negatives, rng=rng, log_freq=log_freq
                )
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    epoch, lo // settings.batch_size + 1, float(loss.detach()), settings.lr
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
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
        valid = _valid_metrics(model, kind, data, split, first_stage, settings)
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - fit_start}
        row.update({f"valid_{k}": v for k, v in valid.items() if isinstance(v, float)})
        history.append(row)
        improved = valid["NDCG@10"] > best[0]
        if improved:
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
        best = (0.0, 0, None, _valid_metrics(model, kind, data, split, first_stage, settings))
    model.eval()
    progress(ProgressEvent("train", total, total, f"done: best epoch {best[1]}", {"epoch": epochs_run}))
    return best[3], best[1], epochs_run
