"""Full-ranking leave-one-out evaluation (docs/design.md §3), batched and vectorised.

For each evaluated user: score every item (one call to the model's ``score_histories``), set the padding
column and the user's earlier items to ``-inf`` with one ``scatter_`` (no Python loop over items), then
take the target's rank and the top-k (gSASRec style). Ties count against the target: its 0-based rank
is the number of other items scoring at least as high, so a constant scorer earns nothing.

The cross-encoder scores every (user, item) pair with a full transformer; when ``users × items`` exceeds
:data:`CROSS_ENCODER_FULL_RANKING_PAIRS` full ranking is refused with a sentence, and the caller may ask
for a cascade instead: a late-interaction (or any) model's top-M re-ranked by the cross-encoder,
labelled ``"cascade"`` in the result. A target outside the top-M keeps its rank from the first stage.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor, nn

from msli_core import metrics
from msli_core.data.dataset import LeaveOneOutSplit, leave_one_out, pad_right_aligned
from msli_core.errors import MsliError
from msli_core.progress import ProgressCallback, ProgressEvent

# Pairs (users × catalog items) the cross-encoder may score in one full-ranking evaluation: about a
# minute on 2 CPU cores with the default 2-layer, d=64, L=50 cross-encoder.
CROSS_ENCODER_FULL_RANKING_PAIRS = 100_000
TOP_K = 20  # top-k kept per user: enough for NDCG@10, HR@10, Recall@20 and Coverage@10


def unwrap(model_or_loaded) -> tuple[nn.Module, str, str | None]:
    """(model, kind, fingerprint or None) of an ``nn.Module`` or a :class:`LoadedModel`."""
    if hasattr(model_or_loaded, "model") and hasattr(model_or_loaded, "kind"):
        return model_or_loaded.model, model_or_loaded.kind, model_or_loaded.fingerprint
    return model_or_loaded, getattr(model_or_loaded, "kind", type(model_or_loaded).__name__), None


def mask_seen(scores: Tensor, histories: list[np.ndarray]) -> Tensor:
    """In place: ``scores`` (B, N+1) gets ``-inf`` at column 0 (padding) and at every item of each history."""
    seen = torch.as_tensor(pad_right_aligned(histories, max(1, max((len(h) for h in histories), default=1))))
    scores.scatter_(1, seen.to(scores.device), float("-inf"))  # 0-padding lands on column 0, also masked
    scores[:, 0] = float("-inf")
    return scores


def worst_if_not_finite(scores: Tensor) -> Tensor:
    """(B, C) scores with NaN and +inf replaced by ``-inf``: a broken score ranks its item last.

    The one place non-finite scores are handled; ranks and top-k lists both go through it.

    >>> worst_if_not_finite(torch.tensor([[1.0, float("nan"), float("inf"), float("-inf")]])).tolist()
    [[1.0, -inf, -inf, -inf]]
    """
    return torch.where(torch.isnan(scores) | (scores == float("inf")), float("-inf"), scores)


def target_ranks(scores: Tensor, targets: Tensor) -> Tensor:
    """(B, C) scores, (B,) target columns -> (B,) 0-based ranks; ties rank before the target.

    A target whose score is NaN or infinite ranks last (C - 1): every other item ties or beats it.

    >>> target_ranks(torch.tensor([[0.1, 0.5, 0.5, 0.9]]), torch.tensor([1])).tolist()
    [2.0]
    >>> target_ranks(torch.tensor([[0.1, float("nan"), 0.5, 0.9]]), torch.tensor([1])).tolist()
    [3.0]
    """
    scores = worst_if_not_finite(scores)
    target_scores = scores.gather(1, targets.view(-1, 1))  # (B, 1)
    return (scores >= target_scores).sum(1).double() - 1.0


def _top_items(scores: Tensor, k: int) -> np.ndarray:
    """(B, k) best items; slots beyond a user's unseen items (score -inf, or not finite) are 0 (padding)."""
    values, indices = worst_if_not_finite(scores).topk(k, dim=1)
    return torch.where(torch.isfinite(values), indices, 0).numpy()


@torch.no_grad()
def rank_users(
    model: nn.Module,
    split: LeaveOneOutSplit,
    stage: str = "test",
    *,
    batch_size: int = 256,
    users: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Full ranking: (U,) target ranks and (U, TOP_K) top items of the evaluated ``users``."""
    users = split.eval_users if users is None else np.asarray(users)
    data = split.data
    was_training = model.training
    model.eval()
    ranks, tops = [], []
    try:
        for lo in range(0, len(users), batch_size):
            batch = users[lo : lo + batch_size]
            histories, stamps, targets = split.batch(batch, stage)
            targets = torch.as_tensor(targets)
            scores = model.score_histories(histories, stamps).float()  # (B, N+1)
            mask_seen(scores, histories)
            ranks.append(target_ranks(scores, targets).numpy())
            tops.append(_top_items(scores, min(TOP_K, data.n_items)))
            if progress:
                done = min(lo + batch_size, len(users))
                progress(ProgressEvent("evaluate", done, len(users), f"{done}/{len(users)} users"))
    finally:
        model.train(was_training)
    return np.concatenate(ranks), np.concatenate(tops)


@torch.no_grad()
def rank_users_cascade(
    reranker: nn.Module,
    first_stage: nn.Module,
    split: LeaveOneOutSplit,
    stage: str = "test",
    *,
    top_m: int = 100,
    batch_size: int = 16,
    users: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank ``first_stage``'s top-M with ``reranker.score(histories, candidates)`` (a cascade)."""
    users = split.eval_users if users is None else np.asarray(users)
    data = split.data
    top_m = min(top_m, data.n_items)
    ranks, tops = [], []
    modes = (first_stage.training, reranker.training)
    first_stage.eval()
    reranker.eval()
    try:
        for lo in range(0, len(users), batch_size):
            batch = users[lo : lo + batch_size]
            histories, stamps, targets = split.batch(batch, stage)
            targets = torch.as_tensor(targets)
            scores = mask_seen(first_stage.score_histories(histories, stamps).float(), histories)  # (B, N+1)
            scores = worst_if_not_finite(scores)
            base_ranks = target_ranks(scores, targets)  # (B,)
            first_values, candidates = scores.topk(top_m, dim=1)  # (B, M)
            hist = torch.as_tensor(split.padded_histories(stage, reranker.config.max_len, batch))  # (B, L)
            first_finite = torch.where(torch.isfinite(first_values), first_values, 0.0)
            rerank = worst_if_not_finite(reranker.score(hist, candidates, first_finite).float())  # (B, M)
            rerank = rerank.masked_fill(~torch.isfinite(first_values), float("-inf"))  # seen items stay last
            order = rerank.argsort(dim=1, descending=True, stable=True)  # (B, M)
            reranked = candidates.gather(1, order)  # (B, M)
            hit = reranked == targets.view(-1, 1)  # (B, M)
            new_rank = hit.float().argmax(1).double()
            ranks.append(torch.where(hit.any(1), new_rank, base_ranks).numpy())
            reranked_values = rerank.gather(1, order)
            tops.append(torch.where(torch.isfinite(reranked_values), reranked, 0)[:, :TOP_K].numpy())
            if progress:
                done = min(lo + batch_size, len(users))
                progress(ProgressEvent("evaluate", done, len(users), f"cascade {done}/{len(users)} users"))
    finally:
        first_stage.train(modes[0])
        reranker.train(modes[1])
    return np.concatenate(ranks), np.concatenate(tops)


def evaluate(
    model_or_loaded,
    data,
    split: LeaveOneOutSplit | None = None,
    stage: str = "test",
    *,
    batch_size: int = 256,
    cascade_from=None,
    cascade_top: int = 100,
    users: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    keep_ranks: bool = False,
) -> dict:
    """NDCG@10, HR@10, MRR, Recall@20, Coverage@10 and ``users`` by full ranking over all items.

    ``cascade_from`` (a model or LoadedModel) is used only for the cross-encoder: its top-``cascade_top``
    items are re-ranked, and the result says so in ``"evaluation"``. ``keep_ranks=True`` adds
    ``"ranks"``: each user's 0-based target rank, (U,) float in the order of ``users`` (default: the
    split's evaluation users), for paired comparisons (:func:`~msli_core.metrics.paired_bootstrap`).
    """
    model, kind, fingerprint = unwrap(model_or_loaded)
    if fingerprint is not None and fingerprint != data.fingerprint:
        from msli_core.models.registry import check_dataset

        check_dataset(fingerprint, data, getattr(model_or_loaded, "folder", "") or kind)
    split = split or leave_one_out(data)
    eval_users = split.eval_users if users is None else np.asarray(users)
    start = time.perf_counter()
    if kind == "cross-encoder":
        pairs = len(eval_users) * data.n_items
        if cascade_from is None:
            if pairs > CROSS_ENCODER_FULL_RANKING_PAIRS:
                raise MsliError(
                    f"Full ranking with the cross-encoder needs {pairs:,} transformer passes "
                    f"({len(eval_users)} users × {data.n_items} items), over the budget of "
                    f"{CROSS_ENCODER_FULL_RANKING_PAIRS:,}; evaluate it as a cascade that re-ranks a "
                    "late-interaction model's top-100 (--cascade-from DIR) instead."
                )
            ranks, tops = rank_users(model, split, stage, batch_size=max(1, 4096 // (data.n_items + 1) or 1),
                                     users=eval_users, progress=progress)  # fmt: skip
            label = "full ranking"
        else:
            first, first_kind, first_fp = unwrap(cascade_from)
            if first_fp is not None and first_fp != data.fingerprint:
                from msli_core.models.registry import check_dataset

                check_dataset(first_fp, data, getattr(cascade_from, "folder", "") or first_kind)
            ranks, tops = rank_users_cascade(
                model, first, split, stage, top_m=cascade_top, users=eval_users, progress=progress
            )
            label = (
                f"cascade: {first_kind} top-{min(cascade_top, data.n_items)} re-ranked by the cross-encoder"
            )
    else:
        ranks, tops = rank_users(
            model, split, stage, batch_size=batch_size, users=eval_users, progress=progress
        )
        label = "full ranking"
    result = metrics.summarize(ranks, tops, data.n_items)
    result.update(
        users=len(eval_users),
        stage=stage,
        evaluation=label,
        seconds=round(time.perf_counter() - start, 3),
    )
    if keep_ranks:
        result["ranks"] = np.asarray(ranks, dtype=np.float64)
    return result
