"""The latency harness behind ``msli bench`` (docs/design.md §4, §6): the serving ladder, side by side.

This module runs a sweep (:func:`run_bench`: passes, calibrations, their merge) and writes it; what a
sweep is lives in :mod:`bench_settings`, how each point is timed in :mod:`bench_points`, and the
headline comparisons in :mod:`report`.

For every point of the sweep it times one request at a time (batch 1): warm-up calls, then each call
with ``time.perf_counter_ns``, until ``repeats`` calls or the point's time budget is spent. The whole
sweep runs ``passes`` times (default 3); each row's p50/p95/p99, mean and QPS are the **median over the
passes** of that pass's figures (wall clock). With one thread each call is also timed on the calling
thread's CPU clock (``cpu_p50_ms``, a diagnostic only: it leaves out the time another process held the
core). Rows keep the thread counts (torch and ONNX Runtime intra-op threads are both set to ``threads``,
numpy's BLAS through threadpoolctl) and the shapes.

The ladder (``model`` key), all at the same encoder width and depth:

- ``two-tower``: one vector per user (MS-LI with K = 1), KV-cached nearline;
- ``full-forward``: the naive way to serve a sequential model: on every request the encoder runs over the
  whole history (the last L events), then N items are scored and the top-10 kept;
- ``msli``: K segment vectors, one per K of the sweep;
- ``cross-encoder``: a transformer pass per (user, candidate) pair;
- ``floor`` rows: the bare numpy and torch ``(R, d) @ (d, N)`` products over the same rows
  (``matmul``, ``matmul_torch``; ``R = 2K`` for attention: the stacked ``[u; q]`` product the reference
  computes), memory = ``N·d·4`` bytes / measured bandwidth (``bandwidth``) and compute = ``2·R·d·N``
  FLOPs / the best GEMM rate measured in the run (``compute``).

Stages and variants (the ``stage`` / ``variant`` keys):

- ``offline``: the item table of N items (one measurement per N; the row is repeated for each K and L
  so per-(K, N, L) charts can stack it — ``shared: true``);
- ``nearline`` ``incremental``: one new event. torch: the engine's update of the open window (a KV-cached
  step while the history fits in the window, a window pass once it slides) and, when a segment closes,
  its one-off encoding; onnxruntime: the exported open-window encoder over the window (no KV cache in
  the graph). ``open_window`` (torch): the window re-encoded whole. ``full``: every slot re-encoded;
- ``online``: score an N-item catalog (the table's first N rows), top-10, with the top-10's
  per-segment contributions; variant ``request_candidates``: the request brings a fresh list of M
  random ids of the N-item catalog (``rows`` = M; its rows are gathered), timed in rounds with variant
  ``cached_candidates``, the same request over a cached M-item table; variant ``paired``: the MS-LI
  request timed again between the cross-encoder's calls at the same N and L;
- ``end_to_end``: one event (incremental nearline) then one request (online).

Calls that are compared (the nearline variants, an online call and its matmul floors, fresh vs cached
candidates) are timed in rounds of warm calls (:func:`timing.time_in_rounds`), so a busy machine slows
them alike. ``meta.json`` also records ``served_memory``: what serving the largest catalog adds to the
resident memory, against the table's bytes.

The cross-encoder is timed at the same N and L in the same run, capped by ``cross_budget_s`` per point:
a point whose predicted single call (times ``CROSS_SAFETY``) exceeds the budget is skipped
(``capped: true``, ``calls: 0``, ``p50_ms`` NaN, the cost model's estimate in ``estimated_ms``);
otherwise calls stop when the budget is spent (``capped: true`` when fewer than ``repeats`` calls).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from msli_core import kinds
from msli_core.errors import MsliError
from msli_core.progress import ProgressCallback, ProgressEvent, no_progress
from msli_core.serving import calibrate, costmodel, timing
from msli_core.serving.bench_points import _Runner, ann_sweep
from msli_core.serving.bench_settings import (  # noqa: F401 - the bench's public names, re-exported
    BACKENDS,
    CROSS_SAFETY,
    LAB_RECENCY_SLOT,
    MODELS,
    PAIRED_MAX_N,
    ROW_KEYS,
    TOP_K,
    BenchResult,
    BenchSettings,
    estimate_bytes,
)
from msli_core.serving.report import headline  # noqa: F401 - the CLI's and the page's headline
from msli_core.serving.timing import measure_bandwidth, thread_limits


def environment(threads: int) -> dict[str, Any]:
    import faiss
    import onnxruntime
    import torch

    return {
        "cpu": timing.cpu_model(),
        "cores": timing.cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
            "faiss": faiss.__version__,
        },
        "threads": {
            "torch": threads,
            "onnxruntime_intra_op": threads,
            "onnxruntime_inter_op": 1,
            "blas": threads,
        },
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ---------------------------------------------------------------------------------------------------
# the sweep


ROW_ID = (
    "model",
    "stage",
    "variant",
    "backend",
    "segments",
    "candidates",
    "history",
    "rows",
    "dim",
    "layers",
    "probes",
)
PASS_KEYS = ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "qps", "cpu_p50_ms")


def merge_passes(passes: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per point from several passes over the same sweep: each figure (p50/p95/p99, mean, QPS,
    CPU p50) is the median of the passes' figures (a pass that coincided with a burst of other work
    neither wins nor loses), ``passes`` counts them. The first pass's rows give the order.

    >>> a = [{"model": "m", "p50_ms": 1.0, "cpu_p50_ms": None}]
    >>> b = [{"model": "m", "p50_ms": 5.0, "cpu_p50_ms": None}]
    >>> c = [{"model": "m", "p50_ms": 2.0, "cpu_p50_ms": None}]
    >>> [(r["p50_ms"], r["passes"]) for r in merge_passes([a, b, c])]
    [(2.0, 3)]
    """
    index = [{tuple(r.get(k) for k in ROW_ID): r for r in rows} for rows in passes]
    merged = []
    for row in passes[0]:
        key = tuple(row.get(k) for k in ROW_ID)
        same = [found for found in (i.get(key) for i in index) if found is not None]
        out = dict(row, passes=len(same))
        for name in PASS_KEYS:
            values = [r[name] for r in same if r.get(name) is not None and math.isfinite(r[name])]
            if values:
                out[name] = float(np.median(values))
        merged.append(out)
    return merged


def plan_size(settings: BenchSettings) -> int:
    s = settings
    n_li = (len(s.segments) if "msli" in s.models else 0) + (1 if "two-tower" in s.models else 0)
    per_model = 0
    for backend in s.backends:
        per_model += 1 + len(s.candidates) if backend in BACKENDS else 0
    total = (n_li * len(s.history) * per_model + len(s.candidates)) * s.passes
    if "cross-encoder" in s.models:
        total += len(s.candidates) * len(s.history) * s.passes
    total += len(s.encoder_sizes) + (1 if s.encoder_sizes or s.extrapolate_sizes else 0)
    total += 2 * len(s.ann) * len(s.ann_candidates)  # per index and N: the build, then the probes
    return total + (1 + s.passes if s.calibrate else 0)


def _resident_bytes() -> int | None:
    """This process's resident memory (Linux /proc/self/statm), or None elsewhere."""
    import os

    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def served_memory(settings: BenchSettings) -> dict[str, Any] | None:
    """What serving the largest catalog of the sweep adds to resident memory: the model is built first,
    then ``offline()`` makes the item table and one whole-catalog request runs; the growth is compared
    with the table's bytes, (N+1)·d·4 (target: one copy, ≤ 1.3×)."""
    import gc

    import torch

    from msli_core.models.msli import MSLIConfig, MSLIModel
    from msli_core.serving.engine import InferenceEngine

    N, K, d = max(settings.candidates), max(settings.segments), settings.dim
    torch.manual_seed(settings.seed)
    model = MSLIModel(MSLIConfig(n_items=N, n_genres=20, dim=d, segments=K, layers=settings.layers,
                                 heads=settings.heads, dropout=0.0,
                                 recency_slot=LAB_RECENCY_SLOT)).eval()  # fmt: skip
    model.kind = "msli"
    engine = InferenceEngine(model)
    full = model.config.max_len + (K - 1) * model.config.S  # every slot non-empty, as the timed requests
    engine.load_history("u", np.random.default_rng(settings.seed).integers(1, N + 1, size=full))
    engine.table = engine.table_np = None
    gc.collect()
    before = _resident_bytes()
    engine.offline()
    engine.recommend("u", None, top_k=TOP_K)
    after = _resident_bytes()
    if before is None or after is None:
        return None
    table = (N + 1) * d * 4
    growth = after - before
    return {"items": N, "dim": d, "segments": K, "table_bytes": table, "resident_growth_bytes": growth,
            "ratio": growth / table}  # fmt: skip


def run_bench(
    settings: BenchSettings,
    progress: ProgressCallback | None = None,
    note: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run the sweep; rows per docs/design.md §6 plus the run's settings and environment in ``meta``.

    Without ``settings.calibrate`` the cost model's constants are this machine's stored calibration
    (:func:`calibrate.hardware_here`), measured first when there is none or msli's own file there cannot
    be used: that measurement reports to ``progress``, and the sentence saying an older or damaged file
    is measured again and replaced goes to ``note`` (``msli bench`` prints it as ``msli: note: ...``;
    without one it is the first progress message)."""
    settings.validate()
    progress = progress or no_progress
    loaded = None
    if settings.model_dir:
        from msli_core.models.registry import load_model

        loaded = load_model(settings.model_dir)
        if not kinds.is_late_interaction(loaded.kind):
            raise MsliError(
                f"--model {settings.model_dir} holds a {loaded.kind} model; bench times trained MS-LI or "
                "two-tower models (add --models cross-encoder to time one of the same shapes beside it)."
            )
        if max(settings.candidates) > loaded.config.n_items:
            raise MsliError(
                f"--candidates {max(settings.candidates)} exceeds the {loaded.config.n_items} items of "
                f"--model {settings.model_dir}; pass smaller --candidates."
            )
        kept = tuple(m for m in settings.models if m == "cross-encoder")
        settings = replace(
            settings,
            segments=(loaded.config.segments,),
            models=(loaded.kind, *kept),
            encoder_sizes=(),  # the teaching sweep builds fresh models of other sizes: not for --model
            extrapolate_sizes=(),
            dim=loaded.config.dim,
            layers=loaded.config.layers,
            heads=loaded.config.heads,
        )
    runner = _Runner(settings, progress)
    runner.loaded = loaded
    runner.total = plan_size(settings)
    started = time.perf_counter()
    with thread_limits(settings.threads) as threads:
        meta = environment(settings.threads)
        meta["threads_effective"] = threads
        if settings.calibrate:  # this run's own constants, measured beside the sweep
            runner.hardware = calibrate.calibrate(threads=settings.threads, save=False)
            runner.tick("calibrated the cost model")
        else:  # the stored calibration of this machine (measured and stored on first use)
            runner.hardware = calibrate.hardware_here(threads=settings.threads, progress=progress, note=note)
        bandwidth = runner.bandwidth = measure_bandwidth()
        runner.peak_flops = timing.peak_gemm_flops()
        memory = served_memory(settings) if loaded is None else None
        runner.run_offline()
        for label, K, L, model in runner.late_interaction_models():
            runner.run_late_interaction(label, K, L, model)
        runner.emit_floors()
        if "cross-encoder" in settings.models:
            runner.run_cross_encoder()
        runner.paired.clear()  # the engines behind them hold item tables
        if settings.encoder_sizes or settings.extrapolate_sizes:
            runner.encoder_size_sweep()  # one pass: it is a teaching chart, not a comparison of K
        calibrations = [runner.hardware] if settings.calibrate else []
        passes = [runner.rows]
        for _ in range(settings.passes - 1):  # the same points again, minutes later
            if settings.calibrate:  # interleaved with the sweep, so the constants see its machine states
                calibrations.append(calibrate.calibrate(threads=settings.threads, save=False))
                runner.tick("calibrated the cost model between passes")
            again = _Runner(settings, progress)
            again.loaded, again.hardware, again.bandwidth = loaded, runner.hardware, runner.bandwidth
            again.peak_flops = runner.peak_flops
            again.total, again.done = runner.total, runner.done
            again.run_offline()
            for label, K, L, model in again.late_interaction_models():
                again.run_late_interaction(label, K, L, model)
            again.emit_floors()
            if "cross-encoder" in settings.models:  # the cross-encoder and its paired calls again too
                again.run_cross_encoder()
            again.paired.clear()
            runner.done = again.done
            passes.append(again.rows)
        runner.rows = merge_passes(passes)
        if settings.ann and loaded is None:  # its own passes over each point (an index is built once)
            ann_sweep(runner)
        if settings.calibrate:  # again after the sweep: each constant is the median of the calibrations
            calibrations.append(calibrate.calibrate(threads=settings.threads, save=False))
            runner.hardware = costmodel.combine(calibrations)
            runner.tick("calibrated the cost model again")
    report = costmodel.error_report(runner.rows, runner.hardware)
    meta.update(
        {
            "settings": asdict(settings),
            "bandwidth_bytes_per_s": bandwidth,
            "peak_gemm_flops": runner.peak_flops,
            "served_memory": memory,
            "ann": _ann_meta(settings) if settings.ann and loaded is None else None,
            "hardware": runner.hardware.as_dict(),
            "skipped": runner.skipped,
            "seconds": time.perf_counter() - started,
            "rows": len(runner.rows),
            "cost_model_error": {k: v for k, v in report.items() if k != "points"},
        }
    )
    progress(ProgressEvent("bench", runner.total, runner.total, f"{len(runner.rows)} rows"))
    return BenchResult(runner.rows, meta, report)


def _ann_meta(settings: BenchSettings) -> dict[str, Any]:
    """What the ANN rows were measured on: the generated table, the index settings, the threads."""
    import os

    from msli_core.serving import bench_points, retrieval

    table = (
        f"a mixture of {bench_points.CLUSTERS:,} Gaussians (centres N(0, I), items centre + "
        f"N(0, {bench_points.CLUSTER_NOISE:g}²·I), scaled to the fresh model's row norm); each user's "
        f"history from {bench_points.INTERESTS} random clusters"
        if settings.ann_table == "clustered"
        else "the fresh model's own table: i.i.d. Gaussian rows, no structure (the worst case for an index)"
    )
    return {
        "table": settings.ann_table,
        "table_description": table,
        "kinds": list(settings.ann),
        "lists": "round(4·sqrt(N))",
        "train_rows_per_list": retrieval.TRAIN_PER_LIST,
        "neighbours": settings.ann_neighbours,
        "pooled_query": True,
        "users": settings.ann_users,
        "build_threads": os.cpu_count(),
        "search_threads": 1,
        "memory": "faiss IVF-Flat and HNSW-Flat keep their own copy of the vectors: a served catalog with an "
        "index holds the table twice (index_bytes on each row)",
    }


def write_outputs(result: BenchResult, out_dir) -> dict[str, str]:
    """``bench.csv``, ``bench.json``, ``meta.json``, ``costmodel_error.json`` in ``out_dir``, atomically."""
    import json

    import pandas as pd

    from msli_core.jsonable import to_jsonable
    from msli_core.outputs import atomic_output_dir

    with atomic_output_dir(out_dir, kind="bench") as tmp:
        pd.DataFrame(result.rows, columns=list(ROW_KEYS)).to_csv(tmp / "bench.csv", index=False)
        (tmp / "bench.json").write_text(json.dumps(to_jsonable(result.rows), indent=1, allow_nan=False))
        (tmp / "meta.json").write_text(json.dumps(to_jsonable(result.meta), indent=2, allow_nan=False))
        (tmp / "costmodel_error.json").write_text(
            json.dumps(to_jsonable(result.error_report), indent=1, allow_nan=False)
        )
    return {
        name: str(out_dir / name) for name in ("bench.csv", "bench.json", "meta.json", "costmodel_error.json")
    }
