"""Training throughput (``msli bench --training``): an MS-LI step beside a plain SASRec-style step.

Both steps train the same encoder (width, depth, heads, window length) on the same rows with
full-softmax cross-entropy at every position, then take one AdamW step:

- ``sasrec``: the baseline shape — a causal transformer over the row, the last state scored against the
  whole catalog at every position (MS-LI's model with K = 1 and no recency path is exactly this);
- ``two-tower``: K = 1 with the recency path (the project's two-tower model);
- ``msli K=k``: the project's default MS-LI training step (:func:`msli_core.train.late_interaction_loss`,
  the recency slot: two open slots per position): the window pass, the closed segments the row needs
  encoded on their own (the default ``closed_gradient=True``: the encoder's backward pass runs over them
  too), and the fused attention loss;
- ``msli K=k, closed segments without gradient``: the same with ``closed_gradient=False`` (the closed
  segments' encoder pass is forward only), the cheaper option;
- ``msli K=k, one open slot``: ``recency_slot=False`` (the previous default; one more closed segment);
- ``msli K=k, attention rank d/4``: the default with ``attention_rank = d/4`` (a low-rank attention form
  W, whose logits cost d/4 multiply-adds per pair instead of d; an option: it cost quality, README);
- ``msli K=k, histories within the window``: the default on rows of ``length + 1`` events, which have
  no closed segment (the common case: 84% of ML-100K's users), so the loss runs its two-open-slot gate
  on ``<q_1 - q_2, e>`` (three products per position instead of four).

Rows are synthetic (random item ids; the cost does not depend on the ids), ``rows`` per step, each
``length + 1`` events taken from the end of a history long enough that the row encodes its whole
budget of closed segments (:func:`msli_core.train.row_batch`) and its positions span the most groups
of closed slots: the costliest row there is (except in the last row of the plan). The models' steps
are timed interleaved (one step of each per round). Reported: the median over ``repeats`` rounds
(after ``warmup`` steps each) of step time and targets per second, and each step's ratio to
``sasrec``'s median time, all from one run.
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch

from msli_core.limits import max_threads


def _step_fn(model, batch, optimizer, loss_fn):
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()

    return step


def training_throughput(
    *,
    n_items: int = 1682,
    rows: int = 64,
    length: int = 200,
    dim: int = 64,
    layers: int = 2,
    heads: int = 2,
    segments: tuple[int, ...] = (4,),
    warmup: int = 2,
    repeats: int = 10,
    threads: int = 1,
    seed: int = 0,
) -> dict:
    """Time one training step of each model; returns ``{"rows": [...], "meta": {...}}``."""
    from msli_core.models.msli import MSLIConfig, MSLIModel
    from msli_core.train import late_interaction_loss, repeatable_kernels, row_batch

    torch.set_num_threads(min(threads, max_threads()))
    repeatable_kernels()  # the kernels training runs
    rng = np.random.default_rng(seed)
    m = MSLIConfig().recent_items  # the default recency path (newest events per position)
    rank = max(1, dim // 4)  # the low-rank option's row: W of rank d/4
    plan = [("sasrec", 1, 0, False, False, False, None), ("two-tower", 1, m, False, False, False, None)]
    for k in (k for k in segments if k > 1):
        plan += [  # the default first: the newest events as their own slot
            (f"msli K={k}", k, m, True, True, False, None),
            (f"msli K={k}, closed segments without gradient", k, m, False, True, False, None),
            (f"msli K={k}, one open slot (recency_slot=False)", k, m, True, False, False, None),
            (f"msli K={k}, attention rank {rank} (attention_rank={rank})", k, m, True, True, False, rank),
            (f"msli K={k}, histories within the window", k, m, True, True, True, None),
        ]
    steps, ranks = [], []
    for _label, K, recent, closed_gradient, recency_slot, within, attention_rank in plan:
        torch.manual_seed(seed)
        config = MSLIConfig(n_items=n_items, n_genres=1, dim=dim, segments=K, max_len=length, layers=layers,
                            heads=heads, recent_items=recent, closed_gradient=closed_gradient,
                            recency_slot=recency_slot, attention_rank=attention_rank)  # fmt: skip
        model = MSLIModel(config).train()
        ranks.append(config.attention_rank)
        # every position's inference window has its closed segments before it: the row encodes its budget;
        # "within the window": rows of length + 1 events, no closed segment (most rows of ML-100K)
        history = length + 1 if within else 2 * length + 1 + config.closed_slots * config.S
        seqs = [rng.integers(1, n_items + 1, size=history) for _ in range(rows)]
        stamps = [np.arange(history) for _ in range(rows)]
        ranges = [(history - length - 1, history)] * rows
        batch = row_batch(seqs, stamps, ranges, segments=config.closed_slots + 1, segment_len=config.S,
                          window_len=length, segmenter="fixed", session_gap=3600.0,
                          closed=config.closed_segments)  # fmt: skip
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        steps.append(_step_fn(model, batch, optimizer, late_interaction_loss))
        for _ in range(warmup):
            steps[-1]()
    # interleaved: round r times every model's step once, so load that comes and goes on a shared
    # machine lands on all of them alike and the ratios stay comparable
    times = [[] for _ in plan]
    for _ in range(repeats):
        for i, step in enumerate(steps):
            start = time.perf_counter()
            step()
            times[i].append(time.perf_counter() - start)
    results = []
    reference = float(np.median(times[0]))
    for (label, K, _, closed_gradient, recency_slot, _, _), rank, measured in zip(
        plan, ranks, times, strict=True
    ):
        seconds = float(np.median(measured))
        results.append(
            {
                "model": label,
                "segments": K,
                "segment_len": MSLIConfig(segments=K, max_len=length).S if K > 1 else None,
                "closed_gradient": closed_gradient,
                "recency_slot": recency_slot,
                "attention_rank": rank,
                "step_ms": round(seconds * 1e3, 2),
                "targets_per_s": round(rows * length / seconds, 1),
                "ratio_to_sasrec": round(seconds / reference, 3),
            }
        )
    meta = {
        "rows_per_step": rows,
        "length": length,
        "n_items": n_items,
        "dim": dim,
        "layers": layers,
        "heads": heads,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "warmup": warmup,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "note": "median step time (forward + backward + AdamW) over the timed steps of one run",
    }
    return {"rows": results, "meta": meta}


def epoch_throughput(
    data,
    *,
    segments: tuple[int, ...] = (4,),
    dim: int = 64,
    layers: int = 2,
    threads: int = 1,
    seed: int = 0,
) -> dict:
    """One epoch of ``data``'s real training steps (InteractionData: its leave-one-out training
    sequences, the training's own rows and length-bucketed batches, :func:`msli_core.train._row_steps`)
    run by each model on the same batches, interleaved step by step: ``sasrec`` (K = 1 without the
    recency path), ``two-tower`` and the default MS-LI of each K > 1. Each step is what ``msli train``
    runs: the loss over the batch in micro-batches, backward, gradient clipping, AdamW. Returns
    ``{"rows": [...], "meta": {...}}`` like :func:`training_throughput`, with epoch seconds."""
    from msli_core.data.dataset import leave_one_out
    from msli_core.models.msli import MSLIConfig
    from msli_core.models.registry import build_model
    from msli_core.train import TrainSettings, _late_interaction_step, _row_steps, repeatable_kernels

    torch.set_num_threads(min(threads, max_threads()))
    repeatable_kernels()
    split = leave_one_out(data)
    settings = TrainSettings(seed=seed)
    m = MSLIConfig().recent_items
    shape = {"dim": dim, "layers": layers}
    plan = [("sasrec", "two-tower", {"recent_items": 0}), ("two-tower", "two-tower", {"recent_items": m})]
    plan += [(f"msli K={k}", "msli", {"segments": k}) for k in segments if k > 1]
    models, optimizers = [], []
    for _label, kind, config in plan:
        torch.manual_seed(seed)
        model = build_model(kind, data=data, **shape, **config).train()
        models.append(model)
        optimizers.append(torch.optim.AdamW(model.parameters(), lr=1e-3))
    users = np.flatnonzero(split.train_lengths() >= 2)
    steps = _row_steps(models[0], split, settings, np.random.default_rng(seed), users)  # the same for all
    seconds = [0.0] * len(plan)
    for chunk in steps:
        for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            _late_interaction_step(model, split, chunk, settings, np.random.default_rng(seed), None)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            seconds[i] += time.perf_counter() - start
    targets = sum(r1 - r0 - 1 for chunk in steps for _, (r0, r1) in chunk)
    rows = []
    for (label, _kind, _config), model, spent in zip(plan, models, seconds, strict=True):
        rows.append(
            {
                "model": label,
                "segments": model.config.segments,
                "epoch_s": round(spent, 3),
                "targets_per_s": round(targets / spent, 1),
                "ratio_to_sasrec": round(spent / seconds[0], 3),
            }
        )
    meta = {
        "data": str(data.source),
        "users": len(users),
        "steps": len(steps),
        "targets": int(targets),
        "n_items": data.n_items,
        "dim": dim,
        "layers": layers,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "note": "one epoch of the data's training steps per model, the same batches, interleaved",
    }
    return {"rows": rows, "meta": meta}


def render(result: dict) -> str:
    """The table ``msli bench --training`` prints: of :func:`training_throughput` (step times) or of
    :func:`epoch_throughput` (epoch seconds)."""
    m = result["meta"]
    if "epoch_s" in result["rows"][0]:
        title = (
            f"One epoch of {m['data']}'s training steps: {m['targets']:,} targets in {m['steps']} steps, "
            f"N={m['n_items']}, d={m['dim']}, {m['layers']} layers, {m['threads']} thread(s)"
        )
        key, heading, digits = "epoch_s", "epoch s", 2
    else:
        title = (
            f"Training step: {m['rows_per_step']} rows × {m['length']} positions, N={m['n_items']}, "
            f"d={m['dim']}, {m['layers']} layers, {m['threads']} thread(s); median of {m['repeats']} steps"
        )
        key, heading, digits = "step_ms", "step ms", 1
    lines = [title, f"  {'model':<50} {heading:>9} {'targets/s':>11} {'× sasrec':>9}"]
    for r in result["rows"]:
        row = f"  {r['model']:<50} {r[key]:>9.{digits}f} {r['targets_per_s']:>11.0f}"
        lines.append(f"{row} {r['ratio_to_sasrec']:>9.2f}")
    return "\n".join(lines)
