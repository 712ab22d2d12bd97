"""What the Explain page shows, computed from one explanation (``msli_core.explain.explain(...).to_dict()``).

Each function turns the explanation into one table or one figure's inputs: segment labels, the timeline's
events, the recommendation table, the contribution matrix, the ground-truth sentence, the accuracy
variants, the within-segment weights, the deletion rows, the PCA map's vectors (the only torch call) and
one recommendation's path from history to score. Nothing here imports streamlit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from msli_core.viz import segment_label

# How each aggregation turns a segment score s_k into its contribution c_k, in words.
HOW_WEIGHED = {
    "attention": "the attention aggregation weighs it by a_k (a softmax over segments, per item) "
    "into c_k = a_k·s_k",
    "sum": "the sum aggregation weighs it by a learned per-segment weight a_k into c_k = a_k·s_k",
    "max": "the max aggregation gives the whole score to the segment with the largest s_k "
    "(a_k = 1, others 0)",
    "mlp": "the mlp aggregation passes u_k ⊙ e_c through a small network and weighs the result into c_k "
    "(so c_k is not a multiple of s_k and a_k is not shown)",
}


MAX_USERS_IN_PICKER = 20_000  # above this many users the Explain page takes a typed id, not a list


def has_truth(ex: dict) -> bool:
    """The explanation carries synthetic ground truth (the true phase of every event)."""
    return bool(ex["segments"]) and "true_phases" in ex["segments"][0]


def segment_labels(ex: dict) -> dict[int, str]:
    """A label per segment index: its events, "open window" for the open one ("newest events" for the
    recency slot of a model that has one), and on synthetic data the true phase most of its events come
    from.

    >>> segment_labels({"segments": [{"index": 0, "role": "open window", "start": 0, "end": 9},
    ...                              {"index": 1, "role": "newest events", "start": 6, "end": 9}]})
    {0: 'open window (events 0–8)', 1: 'newest events (events 6–8)'}
    """
    labels = {
        s["index"]: (
            f"{s['role']} (events {s['start']}–{s['end'] - 1})"
            if s.get("role") in ("open window", "newest events")
            else segment_label(s["index"], s["start"], s["end"])
        )
        for s in ex["segments"]
    }
    if has_truth(ex):
        labels = {
            s["index"]: f"{labels[s['index']]} · phase {np.bincount(s['true_phases']).argmax()}"
            for s in ex["segments"]
        }
    return labels


def timeline(data, ex: dict) -> tuple[pd.DataFrame, dict | None]:
    """``viz.history_timeline``'s events (position, timestamp, title, segment; -1 for unused events) and
    the held-out target (timestamp, title) when there is one."""
    user = data.internal_user(ex["user"])
    length = ex["history_length"]
    segment_of = np.full(length, -1)
    for s in ex["segments"]:
        segment_of[s["start"] : s["end"]] = s["index"]
    titles = data.items["title"].to_numpy()
    events = pd.DataFrame(
        {
            "position": np.arange(length),
            "timestamp": data.timestamps[user][:length],
            "title": titles[data.sequences[user][:length]],
            "segment": segment_of,
        }
    )
    held = ex.get("held_out")
    target = {"timestamp": int(data.timestamps[user][length]), "title": held["title"]} if held else None
    return events, target


def recommendation_table(ex: dict, labels: dict[int, str]) -> pd.DataFrame:
    """Rank, title, genres, score, top segment and whether it is the held-out item."""
    recs, held = ex["recommendations"], ex.get("held_out")
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(recs) + 1),
            "title": [r["title"] for r in recs],
            "genres": [r["genres"] for r in recs],
            "score": [r["score"] for r in recs],
            "top segment": [labels.get(r["top_segment"], "–") for r in recs],
            "held-out item": ["✓" if held and r["item"] == held["item"] else "" for r in recs],
        }
    )


def heatmap_inputs(ex: dict, labels: dict[int, str]) -> tuple[np.ndarray, list, list, list]:
    """``viz.contribution_heatmap``'s arguments: contributions (K', n) oldest segment first, the scores,
    the titles and the row labels."""
    recs = ex["recommendations"]
    order = [s["index"] for s in ex["segments"]]
    contributions = np.array([[r["contributions"][k] for r in recs] for k in order])  # (K', n)
    return contributions, [r["score"] for r in recs], [r["title"] for r in recs], [labels[k] for k in order]


def ground_truth_text(ex: dict, labels: dict[int, str]) -> str | None:
    """Where the held-out item ranks and which segment gives it most; on synthetic data, whether that
    segment holds the interest that truly generated it. None without a held-out item."""
    held = ex.get("held_out")
    if not held:
        return None
    top_seg = next((s for s in ex["segments"] if s["index"] == held["top_segment"]), None)
    lines = [
        f"The held-out item **{held['title']}** is ranked **{held['rank'] + 1:.0f}**; its largest "
        f"contribution comes from **{labels.get(held['top_segment'], 'no segment')}**."
    ]
    if "true_phase" in held and top_seg is not None:
        match = top_seg["dominant_interest"] == held["true_interest"] and held["true_interest"] >= 0
        lines.append(
            f"Ground truth: it was generated by interest **{held['true_interest']}** in phase "
            f"**{held['true_phase']}** of this user; the top segment's dominant interest is "
            f"**{top_seg['dominant_interest']}** (its events come from phases "
            f"{sorted(set(top_seg['true_phases']))}) → "
            + ("**the explanation points at the right part of the history.**" if match else "not a match.")
            + (" (Interest −1 is noise: no segment can be right.)" if held["true_interest"] < 0 else "")
        )
    return "\n\n".join(lines)


def interval_text(interval) -> str:
    """``[lo, hi]`` -> "0.78–0.98"; "" when absent or undefined (no users).

    >>> interval_text([0.7803, 0.9809]), interval_text([float("nan"), float("nan")]), interval_text(None)
    ('0.78–0.98', '', '')
    """
    if not interval or any(x != x for x in interval):
        return ""
    return f"{interval[0]:.2f}–{interval[1]:.2f}"


def accuracy_variants(accuracy: dict) -> pd.DataFrame:
    """``explain.explanation_accuracy``'s three variants side by side, with accuracy over chance and the
    95% interval of each accuracy (a few dozen users leave it wide)."""
    rows = [
        {
            "variant": variant,
            "top segment right": accuracy.get(f"{prefix}accuracy", float("nan")),
            "chance": accuracy.get(f"{prefix}chance", float("nan")),
            "users": accuracy.get(f"{prefix}users") if prefix else accuracy["users"],
            "95% interval": interval_text(accuracy.get(f"{prefix or 'accuracy_'}interval")),
        }
        for variant, prefix in (
            ("any segment of the item's interest counts", ""),
            ("strict: only the segment holding most of it", "strict_"),
            ("returns only: the newest segment is wrong", "return_"),
            ("users with a closed segment", "closed_"),
        )
    ]
    variants = pd.DataFrame(rows)
    variants["× chance"] = variants["top segment right"] / variants["chance"]
    return variants


def accuracy_note(accuracy: dict) -> str:
    """Which users ``explanation_accuracy`` left out and what its variants mean."""
    return (
        f"Left out: {accuracy['skipped_noise']} users whose held-out item is noise and "
        f"{accuracy['skipped_unanswerable']} whose segments hold none of its interest, and "
        f"{accuracy.get('skipped_one_slot', 0)} with a single non-empty slot (nothing to choose "
        "between). The strict variant has exactly one right segment; the returns-only one keeps users "
        "whose held-out item comes back to an older interest, where recency alone is wrong."
    )


def segment_weights(ex: dict, labels: dict[int, str]) -> list[dict]:
    """``viz.within_segment_weights``'s input: index, label, titles and pooling weights per segment."""
    return [
        {"index": s["index"], "label": labels[s["index"]], "titles": s["titles"], "weights": s["weights"]}
        for s in ex["segments"]
    ]


def deletion_rows(ex: dict) -> list[dict]:
    """``viz.deletion_check``'s input: each recommendation's score, without its top segment and without a
    random other one."""
    return [
        {
            "title": r["title"],
            "score": r["score"],
            "without_top": r["score"] - r["deletion"]["drop_top"],
            "without_random": r["score"] - r["deletion"]["drop_random"],
        }
        for r in ex["recommendations"]
    ]


def item_map_inputs(model, data, ex: dict, labels: dict[int, str]) -> dict:
    """``viz.item_map``'s arguments: the item table E (N+1, d) from the model's offline stage, the segment
    vectors u_k (K', d) the explanation computed, oldest first, their labels, the recommended item ids
    and the user's history."""
    import torch

    with torch.inference_mode():
        table = model.item_table()  # (N+1, d)
    order = [s["index"] for s in ex["segments"]]
    vectors = np.asarray(ex["segment_vectors"], dtype=np.float32)
    user = data.internal_user(ex["user"])
    return dict(
        item_vectors=table.numpy(),
        titles=data.items["title"].tolist(),
        segment_vectors=vectors[order],
        segment_labels=[labels[k] for k in order],
        recommended=[data.item_index[str(r["item"])] for r in ex["recommendations"]],
        history=data.sequences[user][: ex["history_length"]],
    )


def score_path(ex: dict, rank: int) -> pd.DataFrame:
    """For one recommendation, the path history items → segment vector → contribution → score, per
    segment: its three heaviest items, s_k = <u_k, e_c>, the weight a_k = c_k / s_k the aggregation gave
    it (attention, sum; for max the winner takes s_k), c_k, and its share of the score."""
    rec = ex["recommendations"][rank]
    rows = []
    for seg in ex["segments"]:
        k = seg["index"]
        s_k = float(rec["segment_scores"][k])  # <u_k, e_c>, computed by the core
        c_k = float(rec["contributions"][k])
        heavy = np.argsort(-np.asarray(seg["weights"]))[:3]
        weighs = ex["aggregation"] in ("attention", "sum", "max")
        a_k = c_k / s_k if weighs and abs(s_k) > 1e-12 else float("nan")
        rows.append(
            {
                "segment": k,
                "events": f"{seg['start']}–{seg['end'] - 1}",
                "heaviest items (pooling weight)": "; ".join(
                    f"{seg['titles'][i]} ({seg['weights'][i]:.2f})" for i in heavy
                ),
                "s_k = ⟨u_k, e_c⟩": s_k,
                "a_k": a_k,
                "c_k": c_k,
                "share of score": c_k / rec["score"] if rec["score"] else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def score_story(ex: dict, rank: int, path: pd.DataFrame) -> str:
    """One recommendation's score told in a paragraph: pooling, dot products, the aggregation, the sum and
    the segment that gives the most."""
    rec = ex["recommendations"][rank]
    terms = " ".join(f"{'+' if c >= 0 else '−'} {abs(c):.4f}" for c in path["c_k"])
    lead = path.loc[path["c_k"].idxmax()]
    heaviest = str(lead["heaviest items (pooling weight)"]).split(";")[0]
    return (
        f"**{rec['title']}**: each segment's items are pooled into a vector u_k (weights in brackets); the "
        f"item's vector e_c meets each u_k in a dot product s_k; {HOW_WEIGHED.get(ex['aggregation'], '')}. "
        f"Score = {terms.lstrip('+ ')} = **{path['c_k'].sum():.4f}** "
        f"(the model's score: {rec['score']:.4f}). "
        f"Segment {int(lead['segment'])} (events {lead['events']}) gives the most, "
        f"{lead['share of score']:.0%} of the score{_through(ex, int(lead['segment']), heaviest)}."
    )


def _through(ex: dict, index: int, heaviest: str) -> str:
    """How the leading segment's vector was formed, without over-claiming: a closed segment's pooling
    weights are compared with 1/n (equal weights); the open window is the encoder's state plus its newest
    events' recency weights (or the state alone, when the model gives the newest events their own slot).

    >>> ex = {"segments": [{"index": 0, "role": "closed segment", "weights": [0.02] * 50}]}
    >>> _through(ex, 0, "A (0.02)")
    '; its 50 events weigh about equally (each near 1/50 = 0.02): no single item stands out'
    >>> ex = {"segments": [{"index": 0, "role": "closed segment", "weights": [0.5] + [0.01] * 49}]}
    >>> _through(ex, 0, "A (0.50)")
    ', mostly through A (0.50), against 1/50 = 0.02 for equal weights'
    """
    seg = next((g for g in ex["segments"] if g["index"] == index), None)
    if seg is None:
        return ""
    if seg.get("role") == "newest events":
        return f": the recency path, its newest events' item vectors with learned weights ({heaviest})"
    if seg.get("role") == "open window":
        if not any(seg.get("weights") or []):  # a model with a recency slot: the state alone
            return ": the encoder's state over the window (no single event has a weight of its own)"
        return (
            f": the encoder's state over the window, plus the recency path on its newest events ({heaviest})"
        )
    weights = np.asarray(seg.get("weights") or [], dtype=float)
    if not len(weights):
        return ""
    n = len(weights)
    equal = 1.0 / n
    if weights.max() < 2 * equal:
        return (
            f"; its {n} events weigh about equally (each near 1/{n} = {equal:.2f}): no single item stands out"
        )
    return f", mostly through {heaviest}, against 1/{n} = {equal:.2f} for equal weights"


def test_ranks(model, data) -> np.ndarray:
    """(U+1,) 0-based rank of each user's held-out test item under ``model`` (full ranking, seen items
    masked, the protocol of evaluate); NaN for users too short to evaluate (and for padding row 0). One
    batched pass over the users: it feeds the Explain page's hit/miss picker."""
    from msli_core.data.dataset import leave_one_out
    from msli_core.evaluate import rank_users

    split = leave_one_out(data)
    ranks, _ = rank_users(getattr(model, "model", model), split, "test")
    out = np.full(data.n_users + 1, np.nan)
    out[split.eval_users] = ranks
    return out


def user_label(uid, events: int, rank: float, k: int = 10) -> str:
    """The picker's line for a user: events, and whether the held-out item made the top k.

    >>> user_label("42", 120, 3.0)
    'user 42 · 120 events · hit (held-out item #4)'
    >>> user_label("7", 5, 212.0), user_label("9", 2, float("nan"))
    ('user 7 · 5 events · miss (held-out item #213)', 'user 9 · 2 events')
    """
    base = f"user {uid} · {events} events"
    if not np.isfinite(rank):
        return base
    return f"{base} · {'hit' if rank < k else 'miss'} (held-out item #{int(rank) + 1})"


def picker_users(
    ranks: np.ndarray, lengths: np.ndarray, hits_only: bool, k: int = 10
) -> tuple[np.ndarray, int]:
    """The users the Explain picker lists (internal ids 1..U; only those whose held-out item is in the
    top k when ``hits_only`` and there is any) and the index of the default one: the longest history
    among the hits, else the longest (a long history fills the most slots: the richest picture).

    >>> ranks = np.array([np.nan, 3.0, 50.0, 0.0])  # (U+1,): users 1 and 3 are hits
    >>> lengths = np.array([10, 90, 40])  # (U,) events of users 1..3
    >>> users, default = picker_users(ranks, lengths, hits_only=False)
    >>> users.tolist(), int(users[default])
    ([1, 2, 3], 3)
    >>> users, default = picker_users(ranks, lengths, hits_only=True)
    >>> users.tolist(), int(users[default])
    ([1, 3], 3)
    """
    users = np.arange(1, len(lengths) + 1)
    hits = ranks[1:] < k
    if hits_only and hits.any():
        users = users[hits]
    hit = ranks[users] < k
    return users, int(np.argmax(lengths[users - 1] + (1 << 30) * hit))
