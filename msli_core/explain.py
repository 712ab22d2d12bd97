"""Exact per-segment explanations of MS-LI recommendations (docs/design.md §2 "Contributions").

For a user and their top-n items, each score is the sum of K segment contributions ``c_k`` (by
construction of :func:`~msli_core.models.late_interaction.late_interaction`, not post hoc). Inside a
closed segment, the attention-pooling weights (summing to 1) say which items formed its vector; the open
window's vector is the encoder's last state plus ``Σ_j r_j e(x_{t-j})``, and its weights are those
direct recency weights ``r_j`` of its newest items (every other event of the window reaches the vector
through the encoder state, which has no per-event weight). A model with ``recency_slot`` keeps the two
apart: the window's slot is the encoder's state alone (no per-event weight) and the "newest events" slot
is ``Σ_j r_j e(x_{t-j})`` over the newest m events, with those weights. A deletion check removes the
top-contributing segment (and, for comparison, a random other non-empty one) and re-scores: a faithful
attribution makes the first drop larger. On synthetic data the ground truth says which interest
generated each event, so the top segment can be checked against the truth (:func:`explanation_accuracy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from msli_core.data.audience import words
from msli_core.data.dataset import LeaveOneOutSplit, leave_one_out
from msli_core.errors import MsliError
from msli_core.evaluate import mask_seen, target_ranks, unwrap
from msli_core.metrics import wilson_interval
from msli_core.models.registry import LATE_INTERACTION_KINDS, check_dataset


@dataclass
class Explanation:
    user: str  # original user id
    kind: str  # msli or two-tower
    aggregation: str
    history_length: int  # events the recommendations are based on
    segments: list[dict]  # one per non-empty slot, oldest first
    recommendations: list[dict]  # top-n, best first
    deletion: dict  # summary of the deletion check over the recommendations
    held_out: dict | None = None  # with stage="test"/"valid": the held-out item's explanation
    segment_vectors: list[list[float]] = field(default_factory=list)  # (K, d) u_k of every slot
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready, keys of docs/design.md §6 (``user``, ``segments``, ``recommendations``) and more."""
        return {
            "user": self.user,
            "model": self.kind,
            "aggregation": self.aggregation,
            "history_length": self.history_length,
            "segments": self.segments,
            "recommendations": self.recommendations,
            "deletion": self.deletion,
            "held_out": self.held_out,
            "segment_vectors": self.segment_vectors,
            "notes": self.notes,
        }


def _late_interaction_model(loaded, data):
    model, kind, fingerprint = unwrap(loaded)
    if kind not in LATE_INTERACTION_KINDS:
        raise MsliError(
            f"Explanations need a late-interaction model (msli or two-tower), not a {kind} model; "
            "train one with `msli train --model msli`."
        )
    if fingerprint is not None:
        check_dataset(fingerprint, data, getattr(loaded, "folder", "") or kind)
    return model, kind


def event_truth(data) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(interest per row, phase per row, row offset per user) of synthetic data, else None."""
    if data.truth is None:
        return None
    lengths = np.array([len(s) for s in data.sequences], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return (
        data.truth["interest"].to_numpy(np.int64),
        data.truth["phase"].to_numpy(np.int64),
        offsets,
    )


def dominant_interest(interests: np.ndarray) -> int:
    """The most frequent non-noise interest (ties: the smallest id); -1 when all are noise.

    >>> dominant_interest(np.array([3, -1, 5, 5, 3, 5]))
    5
    """
    real = interests[interests >= 0]
    if len(real) == 0:
        return -1
    values, counts = np.unique(real, return_counts=True)
    return int(values[np.argmax(counts)])


@torch.no_grad()
def _rescore_without(model, vectors, mask, item_vectors, drop: int) -> torch.Tensor:
    m = mask.clone()
    m[0, drop] = False
    return model.score(vectors, m, item_vectors)[0][0]  # (n,)


def explain(
    loaded_model, data, user_original_id, top_n: int = 10, *, stage: str | None = None, seed: int = 0
) -> Explanation:
    """Explain the top-``top_n`` recommendations for a user (id as written in the data file).

    ``stage=None`` explains recommendations after the user's whole history; ``"test"`` (or ``"valid"``)
    uses the history before the held-out item and adds that item's own explanation (``held_out``).
    """
    model, kind = _late_interaction_model(loaded_model, data)
    if top_n < 1:
        raise MsliError(f"--top must be at least 1, not {top_n}.")
    user = data.internal_user(user_original_id)
    sequence, stamps = data.sequences[user], data.timestamps[user]
    if stage is not None:
        split = leave_one_out(data)
        if user not in set(split.eval_users.tolist()):
            instead = words(cli="--stage all", app="“Recommend”: after the whole history")
            raise MsliError(
                f"User {user_original_id!r} has fewer than 3 events, so has no held-out item to explain; "
                f"explain it after the whole history instead ({instead}), or pick a user with 3 or more "
                "events."
            )
        history, history_ts = split.history(user, stage), split.history_timestamps(user, stage)
    else:
        history, history_ts = sequence, stamps
    if len(history) == 0:
        raise MsliError(f"User {user_original_id!r} has no history to explain.")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            explained = model.score_histories_explained([history], [history_ts])
            scores, contributions, batch, weights = explained[:4]
            masked = mask_seen(scores.clone(), [history])  # (1, N+1)
            n = min(top_n, int(torch.isfinite(masked).sum()))
            top = masked.topk(n, dim=1).indices[0]  # (n,)
            table, vectors = explained.table, explained.vectors  # (N+1, d), (1, K, d)
            segment_scores = vectors[0] @ table[top].T  # (K, n): s_k(c) = <u_k, e_c>
            mask = torch.as_tensor(batch.mask)  # (1, K)
            rec_vectors = table[top]  # (n, d)
            base = scores[0, top]  # (n,)
            contrib = contributions[0][:, top]  # (K, n)
            valid_slots = np.flatnonzero(batch.mask[0])
            rng = np.random.default_rng(seed)
            drops = _deletion(model, vectors, mask, rec_vectors, base, contrib, valid_slots, rng)
            target_info = None
            if stage is not None:
                target = split.target(user, stage)
                target_info = _held_out(
                    model, data, user, target, masked, scores, contributions, batch, len(history)
                )
    finally:
        model.train(was_training)
    truth = event_truth(data)
    segments = _segment_dicts(data, user, history, history_ts, batch, weights[0], truth, model.config)
    titles = data.items["title"].to_numpy()
    recommendations = []
    for r, item in enumerate(top.tolist()):
        c = contrib[:, r].tolist()
        top_slot = int(valid_slots[np.argmax(np.asarray(c)[valid_slots])]) if len(valid_slots) else -1
        recommendations.append(
            {
                "item": str(data.item_ids[item]),
                "title": str(titles[item]),
                "score": float(base[r]),
                "contributions": c,
                "segment_scores": segment_scores[:, r].tolist(),  # s_k(c) = <u_k, e_c> per slot
                "top_segment": top_slot,
                "deletion": drops["per_item"][r],
                "genres": str(data.items["genres"].iat[item]),
            }
        )
    notes = []
    if model.config.aggregation == "attention":
        notes.append(
            "attention: deleting a segment re-normalises the other segments' weights, so a score drop need "
            "not equal the deleted contribution"
        )
    return Explanation(
        user=str(data.user_ids[user]),
        kind=kind,
        aggregation=model.config.aggregation,
        history_length=len(history),
        segments=segments,
        recommendations=recommendations,
        deletion=drops["summary"],
        held_out=target_info,
        segment_vectors=vectors[0].tolist(),
        notes=notes,
    )


def _deletion(model, vectors, mask, rec_vectors, base, contrib, valid_slots, rng) -> dict:
    """Score drop when the top segment is removed vs when a random other non-empty segment is removed."""
    per_item = []
    if len(valid_slots) < 2:
        per_item = [
            {"top_segment": None, "drop_top": None, "random_segment": None, "drop_random": None}
        ] * len(base)
        return {
            "per_item": per_item,
            "summary": {"applicable": False, "reason": "fewer than 2 non-empty segments"},
        }
    without = {int(k): _rescore_without(model, vectors, mask, rec_vectors, int(k)) for k in valid_slots}
    for r in range(len(base)):
        c = contrib[:, r].numpy()
        top = int(valid_slots[np.argmax(c[valid_slots])])
        others = [int(k) for k in valid_slots if k != top]
        rand = int(rng.choice(others))
        per_item.append(
            {
                "top_segment": top,
                "drop_top": float(base[r] - without[top][r]),
                "random_segment": rand,
                "drop_random": float(base[r] - without[rand][r]),
            }
        )
    top_drops = np.array([p["drop_top"] for p in per_item])
    rand_drops = np.array([p["drop_random"] for p in per_item])
    summary = {
        "applicable": True,
        "mean_drop_top": float(top_drops.mean()),
        "mean_drop_random": float(rand_drops.mean()),
        "top_larger_fraction": float((top_drops > rand_drops).mean()),
    }
    return {"per_item": per_item, "summary": summary}


def _segment_dicts(data, user, history, history_ts, batch, weights, truth, config) -> list[dict]:
    titles = data.items["title"].to_numpy()
    out = []
    for k in np.flatnonzero(batch.mask[0]):
        s, e = int(batch.start[0, k]), int(batch.end[0, k])
        items = history[s:e]
        seg = {
            "index": int(k),
            "role": config.slot_role(int(k)),  # closed segment | open window | newest events
            "start": s,
            "end": e,
            "items": [str(data.item_ids[i]) for i in items],
            "titles": [str(titles[i]) for i in items],
            "weights": [float(w) for w in weights[k, : e - s]],
            "time_start": pd.to_datetime(int(history_ts[s]), unit="s").isoformat(),
            "time_end": pd.to_datetime(int(history_ts[e - 1]), unit="s").isoformat(),
        }
        if truth is not None:
            interest, phase, offsets = truth
            rows = slice(offsets[user] + s, offsets[user] + e)
            seg["true_interests"] = interest[rows].tolist()
            seg["true_phases"] = phase[rows].tolist()
            seg["dominant_interest"] = dominant_interest(interest[rows])
        out.append(seg)
    return out


def _held_out(model, data, user, target, masked, scores, contributions, batch, cut) -> dict:
    del model
    rank = float(target_ranks(masked, torch.tensor([target]))[0])
    c = contributions[0][:, target].numpy()
    valid = np.flatnonzero(batch.mask[0])
    top = int(valid[np.argmax(c[valid])]) if len(valid) else -1
    info = {
        "item": str(data.item_ids[target]),
        "title": str(data.items["title"].iat[target]),
        "rank": rank,
        "score": float(scores[0, target]),
        "contributions": c.tolist(),
        "top_segment": top,
    }
    truth = event_truth(data)
    if truth is not None:
        interest, phase, offsets = truth
        info["true_interest"] = int(interest[offsets[user] + cut])
        info["true_phase"] = int(phase[offsets[user] + cut])
    return info


@torch.no_grad()
def explanation_accuracy(
    loaded_model, data, split: LeaveOneOutSplit | None = None, stage: str = "test"
) -> dict:
    """How often the top-contributing segment of the held-out item holds the interest that generated it.

    Definitions (synthetic data only; ``data.truth`` gives each event's interest, -1 = noise):

    - a segment's *interest* is its dominant interest: the most frequent non-noise interest of its events;
    - a user is *answerable* when the held-out item is not noise, the user has at least two non-empty
      slots (with one, that slot takes the whole score and there is no choice to explain: such users are
      counted in ``skipped_one_slot``, e.g. every user whose history fits in the window when
      ``closed_segments="older"``), and at least one non-empty segment's interest equals the held-out
      item's interest (otherwise no choice of segment could be right);
    - ``accuracy``: over answerable users, the fraction whose top-contributing segment
      (``argmax_k c_k(target)`` over non-empty segments) has the target's interest;
    - ``chance``: over the same users, the mean of (matching non-empty segments / non-empty segments) —
      the expected accuracy of picking a non-empty segment uniformly at random;
    - ``newest_segment``: the accuracy of always picking the open (newest) segment, a recency baseline;
    - ``ratio`` = accuracy / chance.

    A stricter variant asks for one segment: the *source* segment is the non-empty segment holding the
    most events of the held-out item's interest (ties: the newest). ``strict_accuracy`` is the fraction
    of users (non-noise target, some segment holding its interest) whose top segment is the source;
    ``strict_chance`` = mean of 1 / (non-empty segments), a uniformly random pick; ``strict_ratio``.
    Within one interest phase several segments share the interest, which keeps ``chance`` high for
    small K (a ratio of 2 needs ``chance <= 0.5``); the strict variant has exactly one right answer.

    ``closed_accuracy`` / ``closed_chance`` (``closed_users``): the same restricted to users with a
    non-empty closed segment. Without a recency slot these are the users counted above (a user without
    one has the window alone); with one, every user has two slots (the window and its newest events,
    which overlap: both often hold the target's interest, which raises ``chance``), so this is the
    population to compare with a model without it.

    ``return_accuracy`` / ``return_chance``: the same as ``accuracy`` / ``chance`` restricted to users
    whose newest segment does NOT have the target's interest (returns to an older interest), where
    recency alone is wrong and the explanation has to find an older segment.

    ``accuracy_interval``, ``strict_interval``, ``return_interval``, ``closed_interval``: the 95% Wilson
    interval of each accuracy (:func:`~msli_core.metrics.wilson_interval`; ``users``, ``strict_users``,
    ``return_users``, ``closed_users`` are its trials). On the bundled sample data a model without the
    recency slot has a few dozen answerable users, so the interval is wide (27 of 29: 0.78–0.98); chance
    is an average over the same users, not a draw, so ``accuracy_interval / chance`` bounds ``ratio``.
    """
    model, _kind = _late_interaction_model(loaded_model, data)
    truth = event_truth(data)
    if truth is None:
        use = words(
            cli="use synthetic data (msli data synth) or sample_data/",
            app="load the bundled sample or generated data (the Data page's “Bundled sample” or “Generate "
            "synthetic” source)",
        )
        raise MsliError(
            f"{data.source} has no ground truth, so explanation accuracy cannot be measured; {use}."
        )
    interest, _phase, offsets = truth
    split = split or leave_one_out(data)
    was_training = model.training
    model.eval()
    hits, chance, newest, counted, skipped_noise, skipped_unanswerable = [], [], [], 0, 0, 0
    skipped_one_slot = 0
    strict_hits, strict_chance, return_hits, return_chance = [], [], [], []
    closed_hits, closed_chance = [], []
    closed_slots = model.config.closed_slots
    users = split.eval_users
    try:
        for lo in range(0, len(users), 256):
            batch_users = users[lo : lo + 256]
            histories, stamps, targets = split.batch(batch_users, stage)
            explained = model.score_histories_explained(histories, stamps)
            contributions, segs = explained.contributions, explained.batch
            target_c = contributions[
                torch.arange(len(batch_users)), :, torch.as_tensor(targets)
            ].numpy()  # (B, K)
            for b, u in enumerate(batch_users):
                cut = len(histories[b])
                target_interest = int(interest[offsets[u] + cut])
                if target_interest < 0:
                    skipped_noise += 1
                    continue
                valid = np.flatnonzero(segs.mask[b])
                if len(valid) < 2:  # one slot takes the whole score: there is nothing to choose between
                    skipped_one_slot += 1
                    continue
                top = int(np.argmax(target_c[b, valid]))
                holds = np.array(
                    [
                        int(
                            (
                                interest[offsets[u] + segs.start[b, k] : offsets[u] + segs.end[b, k]]
                                == target_interest
                            ).sum()
                        )
                        for k in valid
                    ]
                )
                if holds.max() > 0:
                    source = len(holds) - 1 - int(np.argmax(holds[::-1]))  # most events; ties: the newest
                    strict_hits.append(top == source)
                    strict_chance.append(1.0 / len(valid))
                seg_interest = np.array(
                    [
                        dominant_interest(
                            interest[offsets[u] + segs.start[b, k] : offsets[u] + segs.end[b, k]]
                        )
                        for k in valid
                    ]
                )
                matches = seg_interest == target_interest
                if not matches.any():
                    skipped_unanswerable += 1
                    continue
                counted += 1
                hits.append(bool(matches[top]))
                chance.append(float(matches.mean()))
                if segs.mask[b, :closed_slots].any():
                    closed_hits.append(bool(matches[top]))
                    closed_chance.append(float(matches.mean()))
                newest.append(bool(matches[-1]))
                if not matches[-1]:  # a return to an older interest: the newest segment is wrong
                    return_hits.append(bool(matches[top]))
                    return_chance.append(float(matches.mean()))
    finally:
        model.train(was_training)

    def interval(outcomes: list[bool]) -> list[float]:
        return list(wilson_interval(int(np.sum(outcomes)), len(outcomes)))

    accuracy = float(np.mean(hits)) if hits else float("nan")
    chance_level = float(np.mean(chance)) if chance else float("nan")
    return {
        "accuracy": accuracy,
        "chance": chance_level,
        "ratio": accuracy / chance_level if chance and chance_level > 0 else float("nan"),
        "accuracy_interval": interval(hits),
        "strict_interval": interval(strict_hits),
        "return_interval": interval(return_hits),
        "closed_interval": interval(closed_hits),
        "newest_segment": float(np.mean(newest)) if newest else float("nan"),
        "strict_accuracy": float(np.mean(strict_hits)) if strict_hits else float("nan"),
        "strict_chance": float(np.mean(strict_chance)) if strict_chance else float("nan"),
        "strict_ratio": float(np.mean(strict_hits) / np.mean(strict_chance)) if strict_hits else float("nan"),
        "strict_users": len(strict_hits),
        "return_accuracy": float(np.mean(return_hits)) if return_hits else float("nan"),
        "return_chance": float(np.mean(return_chance)) if return_chance else float("nan"),
        "return_users": len(return_hits),
        "closed_accuracy": float(np.mean(closed_hits)) if closed_hits else float("nan"),
        "closed_chance": float(np.mean(closed_chance)) if closed_chance else float("nan"),
        "closed_users": len(closed_hits),
        "users": counted,
        "skipped_noise": skipped_noise,
        "skipped_unanswerable": skipped_unanswerable,
        "skipped_one_slot": skipped_one_slot,
        "stage": stage,
    }
