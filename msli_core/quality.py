"""The quality table behind ``msli quality`` / ``make quality``: MS-LI for several K beside the baselines.

Rows: popularity, item-kNN, MS-LI for each K (K = 1 is the two-tower model: same code path), and the
cross-encoder once (by full ranking when within budget, else re-ranking MS-LI K=4's top-100, labelled
as a cascade). Every row is trained with the same seed and evaluated with the same protocol.

Beside the table, :func:`ladder_comparisons` gives the rungs of the quality ladder as *paired*
differences in NDCG@10 on the same test users, each with its 95% bootstrap interval
(:func:`~msli_core.metrics.paired_bootstrap`): every MS-LI K > 1 against the two-tower model, every
learned model against item-kNN, and the cross-encoder against the first stage it re-ranks. A verdict
says "higher" or "lower" only when the interval excludes 0; otherwise the test set cannot tell the two
apart ("tie"), which on a few hundred users is the usual case for differences of about 0.01; under
:data:`MIN_USERS_FOR_VERDICT` paired users there is no verdict ("too few users").

Before any training, :func:`closed_reach` counts what MS-LI's closed slots could add over the
two-tower model on the data: the users whose closed slots hold events the window does not, and (with a
ground truth) whether a held-out item's interest occurs only there.
"""

from __future__ import annotations

import csv
import io
import math
import platform

import numpy as np

from msli_core.models.segmenter import segment
from msli_core.progress import ProgressCallback, ProgressEvent

COLUMNS = (
    "label", "model", "segments", "segment_len", "aggregation", "NDCG@10", "HR@10", "MRR", "Recall@20",
    "Coverage@10", "train_seconds", "epochs", "parameters", "evaluation", "valid_NDCG@10",
    "reference_valid_NDCG@10", "explanation_accuracy",
    "explanation_chance", "explanation_users", "explanation_low", "explanation_high",
    "explanation_return_accuracy", "explanation_return_chance",
)  # fmt: skip
EXPLANATION_KEYS = COLUMNS[COLUMNS.index("explanation_accuracy") :]
COMPARISON_COLUMNS = ("model", "against", "difference", "low", "high", "users", "verdict")
TWO_TOWER = "MS-LI K=1 (two-tower)"
MIN_USERS_FOR_VERDICT = 20  # fewer paired users: no verdict (a percentile bootstrap is too narrow there)
REACH_COUNTS = ("with_closed", "interest_window", "interest_closed_only", "interest_neither", "noise")


def quality_table(
    data,
    *,
    segments: list[int] = (1, 2, 4, 8, 16),
    epochs: int | None = None,
    seed: int = 0,
    cross_encoder: bool = True,
    recency_slot: bool | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[dict], dict]:
    """Train and evaluate every row; returns (rows, metadata). ``recency_slot``: the MS-LI rows' setting
    for K >= 2 (None: the model's default); K = 1 is the two-tower model either way."""
    import torch

    from msli_core.data.dataset import leave_one_out
    from msli_core.explain import explanation_accuracy
    from msli_core.train import TrainSettings, train

    split = leave_one_out(data)
    option = {"recency_slot": recency_slot} if recency_slot is not None else {}
    reach = closed_reach(split, [K for K in segments if K > 1], option)
    plan: list[tuple[str, str, dict]] = [("popularity", "popularity", {}), ("item-kNN", "item-knn", {})]
    for K in segments:
        label = f"MS-LI K={K}" + (" (two-tower)" if K == 1 else "")
        plan.append((label, "msli", {"segments": K, **(option if K > 1 else {})}))
    if cross_encoder:
        plan.append(("cross-encoder", "cross-encoder", {}))
    rows, models = [], {}  # models: K -> (label, trained MS-LI model)
    ranks: dict[str, object] = {}  # label -> (U,) test ranks, users in split.eval_users order
    first_stage = None
    for n, (label, kind, config) in enumerate(plan):
        if progress:
            progress(ProgressEvent("quality", n, len(plan), f"training {label}"))
        cascade = None
        if kind == "cross-encoder":
            first_stage, cascade = models.get(4) or next(iter(models.values()), (None, None))
        inner = _relabel(progress, label, n, len(plan)) if progress else None
        settings = TrainSettings.for_kind(kind, epochs=epochs, seed=seed)
        result = train(data, kind, settings, config, split=split, cascade_from=cascade, progress=inner)
        if kind == "msli" and config["segments"] > 1 and not result.model.config.recency_slot:
            label += " (one open slot)"  # not the default; still "MS-LI K=...": the comparisons find it
        row = {
            "label": label,
            "model": kind,
            "segments": config.get("segments", ""),
            "segment_len": getattr(result.model.config, "S", ""),
            "aggregation": getattr(result.model.config, "aggregation", ""),
            **{k: result.metrics[k] for k in ("NDCG@10", "HR@10", "MRR", "Recall@20", "Coverage@10")},
            "train_seconds": result.seconds,
            "epochs": result.epochs,
            "parameters": result.parameters,
            "evaluation": result.metrics.get("evaluation", "full ranking"),
            "valid_NDCG@10": result.valid_metrics.get("NDCG@10", ""),
            "reference_valid_NDCG@10": _reference_valid(result.history),
            **dict.fromkeys(EXPLANATION_KEYS, ""),
        }
        ranks[label] = result.test_ranks
        if kind == "msli":
            models[config["segments"]] = (label, result.model)
            if data.truth is not None and config["segments"] > 1:
                acc = explanation_accuracy(result.model, data, split)
                row["explanation_accuracy"], row["explanation_chance"] = acc["accuracy"], acc["chance"]
                row["explanation_users"] = acc["users"]
                row["explanation_low"], row["explanation_high"] = acc["accuracy_interval"]
                row["explanation_return_accuracy"] = acc["return_accuracy"]
                row["explanation_return_chance"] = acc["return_chance"]
        rows.append(row)
    if progress:
        progress(ProgressEvent("quality", len(plan), len(plan), "done"))
    meta = {
        "data": str(data.source),
        "users": len(split.eval_users),
        "items": data.n_items,
        "seed": seed,
        "epochs": epochs,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "comparisons": ladder_comparisons(ranks, first_stage=first_stage),
        "reach": reach,
    }
    return rows, meta


def _reference_valid(history: list[dict]) -> float | str:
    """A re-ranker's epoch-0 validation NDCG@10 (its first stage's own ranking of the same candidates,
    the curve's reference line: :func:`msli_core.train.train`), or "" for a model without one."""
    first = history[0] if history else {}
    return first.get("valid_NDCG@10", "") if first.get("epoch") == 0 else ""


def reranker_sentence(rows: list[dict]) -> str | None:
    """Whether the cross-encoder row beat, on validation, the ranking of its first stage that it
    re-ranks; None without such a row. The first stage chose its own epoch on the same validation
    users, so its figure leans high: a re-ranker below it may still be above it on test, but one that
    never beats it there has not shown that it earns its cost.

    >>> row = {"model": "cross-encoder", "valid_NDCG@10": 0.31, "reference_valid_NDCG@10": 0.29}
    >>> reranker_sentence([row]).split(": ", 1)[1][:60]
    "the cross-encoder's best validation NDCG@10 (0.3100) is abov"
    """
    row = next((r for r in rows if r.get("model") == "cross-encoder"), None)
    if row is None or not isinstance(row.get("reference_valid_NDCG@10"), float):
        return None
    best, reference = row["valid_NDCG@10"], row["reference_valid_NDCG@10"]
    verdict = "is above" if best > reference else "is not above"
    sentence = (
        f"Re-ranker check: the cross-encoder's best validation NDCG@10 ({best:.4f}) {verdict} its first "
        f"stage's own ranking of the same candidates ({reference:.4f})"
    )
    if best > reference:
        return sentence + "."
    return sentence + (
        ": on this data the re-ranker has not shown that it earns its cost, so serve the first stage (the "
        "first stage chose its epoch on the same users, which favours it a little; compare the test rows "
        "above)."
    )


def closed_reach(split, segments: list[int], config: dict | None = None) -> list[dict]:
    """What MS-LI's closed slots *could* add over the two-tower model on this data, counted before training.

    Every K reads the same last ``L_max`` events in its open slot (the two-tower model is K = 1); K > 1
    adds closed slots, by default segments that start before that window. MS-LI can therefore use
    events the two-tower model never reads only for users whose closed slots hold events outside the
    window. One dict per K in ``segments``, the history cut as an :class:`MSLIConfig` with ``config``'s
    fields (e.g. a trained model's ``config.to_dict()``; the defaults where absent) and K segments cut it,
    counting the evaluated users (``users``) and, among them:

    - ``with_closed``: users whose test history has events in a closed slot and not in the window;
    - with a ground truth (synthetic data; else None), where the held-out item's generating *interest*
      occurs among those users' events: ``interest_window`` (in some event of the window),
      ``interest_closed_only`` (only in those older events: the items only MS-LI can see coming),
      ``interest_neither`` (in no event MS-LI reads), and ``noise`` (the item was noise).

    (Co-occurrence with the held-out item was tried as a truth-free version of the second count and
    dropped: over a 200-event window almost every item co-occurs with some event of it, another user's
    held-out item as often as the user's own.)

    A window of 4 events and one closed slot of 2 (the segment before the window): user 1's test
    history is 10..17, its window 14..17, its closed slot 12, 13, where alone the held-out item's
    interest 7 occurs; user 2's held-out item is noise; user 3's interest 6 is in its window; user 4
    fits in the window.

    >>> import pandas as pd
    >>> from msli_core.data.dataset import build_dataset, leave_one_out
    >>> sequences = {1: [*range(10, 19)], 2: [*range(20, 29)], 3: [*range(30, 39)], 4: [40, 41, 42, 43]}
    >>> interests = {1: [0, 0, 7, 7, 1, 1, 1, 1, 7], 2: [2] * 8 + [-1], 3: [5] * 4 + [6] * 5, 4: [8] * 4}
    >>> rows = [(u, i, t, float("nan")) for u, seq in sequences.items() for t, i in enumerate(seq)]
    >>> frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    >>> truth = pd.DataFrame({"phase": 0, "interest": [k for u in sequences for k in interests[u]]})
    >>> split = leave_one_out(build_dataset(frame, items_meta=None, format="x", source="x", truth=truth))
    >>> r = closed_reach(split, [3], {"max_len": 4, "segment_len": 2})[0]  # K=3: one closed slot
    >>> r["users"], r["with_closed"], r["interest_window"], r["interest_closed_only"], r["noise"]
    (4, 3, 1, 1, 1)
    """
    from msli_core.explain import event_truth
    from msli_core.models.msli import MSLIConfig

    data = split.data
    truth = event_truth(data)
    cuts = [MSLIConfig(**{**(config or {}), "n_items": data.n_items, "segments": K}).segment_options()
            for K in segments]  # fmt: skip
    counts = [dict.fromkeys(REACH_COUNTS, 0) for _ in segments]
    interest, _phase, offsets = truth if truth is not None else (None, None, None)
    for user in split.eval_users:
        history = split.history(user, "test")
        stamps = split.history_timestamps(user, "test")
        n = len(history)
        if interest is not None:
            events = interest[offsets[user] : offsets[user] + n]  # (n,) interest of each history event
            wanted = interest[offsets[user] + n]  # the held-out item's
        for cut, count in zip(cuts, counts, strict=True):
            in_window = np.zeros(n, dtype=bool)
            in_window[n - min(n, cut["window_len"]) :] = True  # (n,) events the open slot reads
            slots = segment(history, stamps, **cut)
            in_closed = np.zeros(n, dtype=bool)
            for k in np.flatnonzero(slots.mask[:-1]):
                in_closed[slots.start[k] : slots.end[k]] = True
            in_closed &= ~in_window  # (n,) events only a closed slot reads
            if not in_closed.any():
                continue
            count["with_closed"] += 1
            if interest is None:
                continue
            if wanted < 0:
                count["noise"] += 1
            elif (events[in_window] == wanted).any():
                count["interest_window"] += 1
            elif (events[in_closed] == wanted).any():
                count["interest_closed_only"] += 1
            else:
                count["interest_neither"] += 1
    found = []
    for cut, count in zip(cuts, counts, strict=True):
        if truth is None:
            count.update(dict.fromkeys(REACH_COUNTS[1:], None))
        found.append({"segments": cut["segments"], "segment_len": cut["segment_len"],
                      "window": cut["window_len"], "users": len(split.eval_users), **count})  # fmt: skip
    return found


def reach_sentence(r: dict) -> str:
    """One plain sentence for a :func:`closed_reach` result (``msli quality`` and the Train page show it)."""
    users, closed = r["users"], r["with_closed"]
    text = (
        f"MS-LI K={r['segments']}: {closed} of {users} test users ({_share(closed, users)}) have closed "
        f"slots holding events before the {r['window']}-event window, which the two-tower model does not read"
    )
    if not closed:
        return text + "; so no closed slot can add an event the two-tower model lacks here."
    if r.get("interest_window") is None:
        return text + "; for the others MS-LI reads no event the two-tower model does not."
    return text + (
        f"; by the ground truth, the held-out item's interest occurs only in those older events for "
        f"{r['interest_closed_only']} of them (in the window: {r['interest_window']}; in neither: "
        f"{r['interest_neither']}; noise: {r['noise']})."
    )


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def ladder_comparisons(ranks: dict, *, first_stage: str | None = None) -> list[dict]:
    """The ladder's rungs as paired NDCG@10 differences (see the module docstring), one dict per pair
    with :data:`COMPARISON_COLUMNS`. ``ranks``: row label -> (U,) test ranks of the same users in the
    same order (rows without ranks are skipped); ``first_stage``: the label of the model the
    cross-encoder re-ranked. Labels as :func:`quality_table` writes them.

    >>> import numpy as np
    >>> two_tower = msli = np.tile([0.0, 5.0, 50.0, 1.0], 10)  # 40 users
    >>> found = ladder_comparisons({"item-kNN": np.full(40, 50.0), TWO_TOWER: two_tower, "MS-LI K=4": msli})
    >>> for c in found:
    ...     print(c["model"], "|", c["against"], "|", c["verdict"])
    MS-LI K=4 | MS-LI K=1 (two-tower) | tie
    MS-LI K=1 (two-tower) | item-kNN | higher
    MS-LI K=4 | item-kNN | higher
    """
    pairs = [(label, TWO_TOWER) for label in ranks if label.startswith("MS-LI K=") and label != TWO_TOWER]
    pairs += [(label, "item-kNN") for label in ranks if label.startswith(("MS-LI", "cross-encoder"))]
    if first_stage is not None:
        pairs.append(("cross-encoder", first_stage))
    return [
        compare_ranks(model, ranks[model], against, ranks[against])
        for model, against in pairs
        if ranks.get(model) is not None and ranks.get(against) is not None
    ]


def compare_ranks(model: str, model_ranks, against: str, against_ranks) -> dict:
    """One paired comparison (:data:`COMPARISON_COLUMNS`): NDCG@10 of ``model`` minus ``against`` on the
    same users ((U,) test ranks each, same order), its 95% bootstrap interval and a verdict: "higher" or
    "lower" when the interval excludes 0, else "tie"; "too few users" under
    :data:`MIN_USERS_FOR_VERDICT` (one user who prefers A gives an interval of a single point).

    >>> c = compare_ranks("A", [0] * 25, "B", [20] * 25)  # A ranks every target first, B none in its top 10
    >>> c["difference"], c["low"], c["high"], c["users"], c["verdict"]
    (1.0, 1.0, 1.0, 25, 'higher')
    >>> compare_ranks("A", [0] * 3, "B", [20] * 3)["verdict"]
    'too few users'
    """
    from msli_core.metrics import ndcg_gains, paired_bootstrap

    a, b = ndcg_gains(model_ranks, 10), ndcg_gains(against_ranks, 10)
    difference, low, high = paired_bootstrap(a, b)
    users = int((~(np.isnan(a) | np.isnan(b))).sum())
    verdict = "higher" if low > 0 else "lower" if high < 0 else "tie"
    if users < MIN_USERS_FOR_VERDICT:  # a bootstrap of a handful of users is far too narrow
        verdict = "too few users"
    return dict(zip(COMPARISON_COLUMNS, (model, against, difference, low, high, users, verdict), strict=True))


def comparison_sentence(c: dict) -> str:
    """One plain sentence for a :func:`compare_ranks` result (the Train page shows it).

    >>> comparison_sentence({"model": "A", "against": "B", "difference": -0.004, "low": -0.02,
    ...                      "high": 0.011, "users": 300, "verdict": "tie"})[:96]
    'A − B: NDCG@10 −0.0040 (95% interval −0.0200 … +0.0110 over the same 300 test users). The interv'
    """

    def signed(x: float) -> str:
        return f"{x:+.4f}".replace("-", "−")

    if c["verdict"] == "too few users":
        return (
            f"{c['model']} − {c['against']}: only {c['users']} test user(s) ranked by both, too few for an "
            f"interval to mean anything (at least {MIN_USERS_FOR_VERDICT} are needed); read no verdict."
        )
    head = (
        f"{c['model']} − {c['against']}: NDCG@10 {signed(c['difference'])} (95% interval "
        f"{signed(c['low'])} … {signed(c['high'])} over the same {c['users']} test users). "
    )
    if c["verdict"] == "tie":
        return head + (
            "The interval holds 0: this test set cannot tell the two apart, so read neither as better "
            "(a larger log, or several training seeds, would be needed to show a difference this small)."
        )
    word = "above" if c["verdict"] == "higher" else "below"
    return head + (
        f"The interval excludes 0: {c['model']} is {word} {c['against']} by more than the spread of the "
        "test users explains (training noise across seeds comes on top; retrain with another seed to see it)."
    )


def _relabel(progress: ProgressCallback, label: str, row: int, rows: int) -> ProgressCallback:
    """Training events of one row, shown as progress of the whole table."""

    def forward(event: ProgressEvent) -> None:
        fraction = event.fraction or 0.0
        progress(ProgressEvent("quality", row + fraction, rows, f"{label}: {event.message}", event.metrics))

    return forward


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def to_csv(rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    """``rows`` as CSV with ``columns`` (the quality table's, or :data:`COMPARISON_COLUMNS`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k, "")) for k in columns})
    return buf.getvalue()


def _comparison_lines(comparisons: list[dict]) -> list[str]:
    from msli_core.metrics import BOOTSTRAP_RESAMPLES

    if not comparisons:
        return []
    users = comparisons[0]["users"]
    lines = [
        "",
        f"Paired differences in NDCG@10 on the same {users} test users, with 95% bootstrap intervals",
        f"(users resampled {BOOTSTRAP_RESAMPLES:,} times; 'tie': the interval includes 0, so this test set",
        "cannot tell the two apart; training noise across seeds comes on top):",
        "",
        "| model | against | difference | 95% interval | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in comparisons:
        cells = [c["model"], c["against"], f"{c['difference']:+.4f}", f"{c['low']:+.4f} … {c['high']:+.4f}"]
        lines.append("| " + " | ".join([*cells, c["verdict"]]) + " |")
    return lines


def _ratio_text(accuracy: float, chance: float) -> str:
    """``accuracy / chance`` for the quality table; "no answerable user" where there was none to count
    (NaN: e.g. a log whose histories all fit in the window has no second segment to pick from)."""
    if math.isnan(accuracy) or math.isnan(chance):
        return "no answerable user"
    return f"{accuracy:.3f} / {chance:.3f}"


def to_markdown(rows: list[dict], meta: dict) -> str:
    from msli_core.explain_view import interval_text

    head = [
        "model",
        "K",
        "S",
        "NDCG@10",
        "HR@10",
        "MRR",
        "train s",
        "epochs",
        "evaluation",
        "expl. acc / chance",
        "returns: acc / chance",
    ]
    lines = [
        "# Quality on " + meta["data"],
        "",
        f"Leave-one-out, full ranking over all {meta['items']} items (earlier items excluded), "
        f"{meta['users']} users; seed {meta['seed']}; torch {meta['torch']} on {meta['threads']} threads.",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    for r in rows:
        expl = returns = ""
        if r.get("explanation_accuracy") not in ("", None):
            expl = _ratio_text(r["explanation_accuracy"], r["explanation_chance"])
            if r.get("explanation_users"):
                interval = interval_text([r["explanation_low"], r["explanation_high"]])
                expl += f" ({interval}, {r['explanation_users']} users)"
            returns = _ratio_text(r["explanation_return_accuracy"], r["explanation_return_chance"])
        cells = [
            r["label"], _cell(r["segments"]), _cell(r["segment_len"]), _cell(r["NDCG@10"]), _cell(r["HR@10"]),
            _cell(r["MRR"]), f"{r['train_seconds']:.1f}", _cell(r["epochs"]), r["evaluation"], expl, returns,
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "K = 1 is the two-tower model (one segment vector, same code path). Explanation accuracy: how often",
        "the top-contributing segment of the held-out item has the interest that generated it, against the",
        "chance of picking a non-empty segment at random; returns: only held-out items whose interest is",
        "not the newest segment's; in brackets the accuracy's 95% Wilson interval and the users it was",
        "measured on (a few dozen users leave it wide: compare ratios to chance with it in mind). With the",
        "recency slot every user has two slots, the window and its newest events, which overlap and often",
        "share the target's interest, so chance is higher than with one open slot; explanation_accuracy's",
        "closed_accuracy counts the users with a closed segment only (msli_core.explain).",
        *(["", check] if (check := reranker_sentence(rows)) else []),
        *_comparison_lines(meta.get("comparisons", [])),
        *_reach_lines(meta.get("reach", [])),
    ]
    return "\n".join(lines) + "\n"


def _reach_lines(reach: list[dict]) -> list[str]:
    if not reach:
        return []
    lines = [
        "",
        "What the closed slots can add over the two-tower model, counted before training (closed_reach):",
        "the test users whose closed slots hold events before the window, and, with a ground truth, where",
        "the interest of their held-out item occurs:",
        "",
    ]
    return lines + [f"- {reach_sentence(r)}" for r in reach]


def write_quality(rows: list[dict], meta: dict, out) -> None:
    """Write quality.csv, comparisons.csv and quality.md into ``out`` (all or nothing)."""
    from msli_core.outputs import atomic_output_dir

    with atomic_output_dir(out, kind="quality") as tmp:
        (tmp / "quality.csv").write_text(to_csv(rows), encoding="utf-8")
        (tmp / "comparisons.csv").write_text(
            to_csv(meta.get("comparisons", []), COMPARISON_COLUMNS), encoding="utf-8"
        )
        (tmp / "quality.md").write_text(to_markdown(rows, meta), encoding="utf-8")
