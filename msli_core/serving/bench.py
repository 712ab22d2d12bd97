"""The latency harness behind ``msli bench`` (docs/design.md §4, §6): the serving ladder, side by side.

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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from msli_core import kinds
from msli_core.errors import MsliError
from msli_core.progress import ProgressCallback, ProgressEvent, no_progress
from msli_core.serving import calibrate, costmodel, timing
from msli_core.serving.timing import measure_bandwidth, summarize, thread_limits, time_calls, time_in_rounds

MODELS = kinds.LADDER  # the serving ladder: msli, two-tower, full-forward, cross-encoder
# full-forward is timed with the two-tower model's encoder (its rows need the two-tower model built)
BACKENDS = ("torch", "onnxruntime")
ROW_KEYS = (
    "model",
    "stage",
    "variant",
    "backend",
    "segments",
    "candidates",
    "history",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "qps",
    "cpu_p50_ms",
    "passes",
    "threads",
    "calls",
    "capped",
    "dim",
    "layers",
    "heads",
    "segment_len",
    "rows",
    "method",
    "shared",
    "estimated_ms",
    "note",
)
TOP_K = 10
# The cost model tends to underestimate the cross-encoder (large activations; see costmodel_error.json):
# a point is skipped when twice its predicted call time exceeds the budget.
CROSS_SAFETY = 2.0
PAIRED_MAX_N = 10_000  # MS-LI online calls kept for pairing with the cross-encoder up to this N


@dataclass
class BenchSettings:
    segments: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # K values for MS-LI
    candidates: tuple[int, ...] = (100, 1000, 10_000, 100_000)  # N values: an N-item catalog
    # M values: requests that bring a fresh list of M random candidate ids (timed where M < N)
    request_candidates: tuple[int, ...] = (1000, 10_000)
    history: tuple[int, ...] = (50, 200)  # L values
    backends: tuple[str, ...] = BACKENDS
    models: tuple[str, ...] = MODELS
    threads: int = 1  # torch intra-op threads = ORT intra-op threads = BLAS threads (one request per core)
    repeats: int = 200  # at most this many timed calls per point
    warmup: int = 3  # untimed calls first (caches, lazy init, ORT arena)
    budget_s: float = 0.15  # time budget per MS-LI point (after warm-up); keeps `make bench` < 5 min
    cross_budget_s: float = 2.0  # time budget per cross-encoder point
    dim: int = 64  # d
    layers: int = 2  # transformer layers (segment encoder and cross-encoder)
    heads: int = 2
    seed: int = 0
    model_dir: str | None = None  # time this trained model instead of fresh ones of the given shapes
    calibrate: bool = True  # run the cost-model micro-benchmarks in the same run (for its error report)
    # passes over the sweep: each figure of a row is the median of the passes' figures
    passes: int = 3
    # the teaching sweep: request latency against encoder size (layers, width), measured for these...
    encoder_sizes: tuple[tuple[int, int], ...] = ((1, 32), (2, 64), (4, 128), (4, 256))
    # ...and extrapolated by the cost model (calibrated on this machine) for these, clearly marked
    extrapolate_sizes: tuple[tuple[int, int], ...] = ((8, 512), (12, 768), (24, 1024), (32, 2048))

    def validate(self) -> None:
        checks = (
            ("--segments", self.segments, 1, 512),
            ("--candidates", self.candidates, 1, 10_000_000),
            ("--history", self.history, 1, 100_000),
            ("--request-candidates", self.request_candidates, 1, 10_000_000),
        )
        for flag, values, lo, hi in checks:
            if not values and flag != "--request-candidates":
                raise MsliError(f"{flag} needs at least one value, e.g. {flag} 8.")
            bad = [v for v in values if not isinstance(v, int) or not lo <= v <= hi]
            if bad:
                raise MsliError(f"{flag} values must be integers in {lo}..{hi}; {bad[0]!r} is not.")
        for flag, values, allowed in (
            ("--backend", self.backends, BACKENDS),
            ("--models", self.models, MODELS),
        ):
            bad = [v for v in values if v not in allowed]
            if not values or bad:
                raise MsliError(
                    f"{flag} takes a comma list of {', '.join(allowed)}; {bad[:1] or 'nothing'} is not one."
                )
        if self.threads < 1 or self.repeats < 1 or self.budget_s <= 0 or self.cross_budget_s <= 0:
            raise MsliError("--threads and --repeats must be at least 1, and --budget-s positive.")
        if not isinstance(self.passes, int) or not 1 <= self.passes <= 5:
            raise MsliError(f"--passes must be a whole number in 1..5, not {self.passes!r}.")


def estimate_bytes(settings: BenchSettings) -> int:
    """Rough peak memory of a sweep's largest point, in bytes (checked before a run starts).

    The model's item embedding and genre features ((N+1) x (d + 20)), the engine's one table copy and,
    with ONNX Runtime, the scorer's transposed copy plus the table baked into the two exported nearline
    graphs (their bytes and the sessions' copies); the ONNX scorer's scores and contributions (K+1) x N;
    the matmul floors' (2K x N) products; a full re-encode of the longest window (its activations and
    attention matrix per layer); plus the libraries themselves.
    """
    N = max(settings.candidates)
    K = max(settings.segments)
    L = max(settings.history)
    d = settings.dim
    table = (N + 1) * d * 4
    copies = 2 + 20 / d + (5 if "onnxruntime" in settings.backends else 0)
    scores = (K + 1) * N * 4 + 2 * 2 * K * N * 4
    layers = max(settings.layers, 1)
    encode = L * d * 4 * (12 * layers + 4) + settings.heads * L * L * 4 * 2
    runtime = 512 * 2**20
    wide = max((dim for _, dim in settings.encoder_sizes), default=0)  # the teaching sweep's widest models:
    teaching = 2 * (N + 1) * (2 * wide + 20) * 4  # two engines, each its model's embedding + its table
    return int(max(copies * table + scores, teaching) + encode + runtime)


@dataclass
class BenchResult:
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    error_report: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# timing


def environment(threads: int) -> dict[str, Any]:
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


def _row(**kw: Any) -> dict[str, Any]:
    row = {k: None for k in ROW_KEYS}
    row.update(kw)
    return row


class _Runner:
    def __init__(self, settings: BenchSettings, progress: ProgressCallback):
        self.s = settings
        self.progress = progress
        self.rows: list[dict[str, Any]] = []
        self.done = 0
        self.total = 1
        self.skipped: list[str] = []
        self.rng = np.random.default_rng(settings.seed)
        self.hardware: costmodel.Hardware | None = None  # the cost model's constants, set by run_bench
        self.loaded = None  # a trained model (LoadedModel) given by --model
        self.paired: dict[tuple[int, int, int], Callable[[], Any]] = {}  # (K, L, N) -> MS-LI online call
        self.floors: dict[tuple[int, int], tuple] = {}  # (K, N) -> rows, numpy, torch, bandwidth floors
        self.bandwidth = 1.0  # bytes/s of a streaming copy, measured at the start of the run
        self.peak_flops = 1.0  # FLOP/s of the best GEMM measured at the start of the run

    def tick(self, message: str) -> None:
        self.done += 1
        self.progress(ProgressEvent("bench", self.done, self.total, message))

    def cpu_list(self) -> list[int] | None:
        """A list to collect per-call CPU times in, or None when ``threads`` > 1 (work on other threads)."""
        return [] if self.s.threads == 1 else None

    def timed(self, fn: Callable[[], Any], budget: float | None = None) -> tuple[dict[str, float], int, bool]:
        cpu = self.cpu_list()
        times, capped = time_calls(
            fn, warmup=self.s.warmup, repeats=self.s.repeats, budget_s=budget or self.s.budget_s, cpu_ns=cpu
        )
        return summarize(times, cpu), len(times), capped

    def common(self, **kw: Any) -> dict[str, Any]:
        return {
            "threads": self.s.threads,
            "dim": self.s.dim,
            "layers": self.s.layers,
            "heads": self.s.heads,
            **kw,
        }

    # ---- MS-LI / two-tower -----------------------------------------------------------------------
    def late_interaction_models(self) -> list[tuple[str, int, int, Any]]:
        """(label, K, L, model) to time. A trained --model is timed at its own K for every L."""
        from msli_core.models.msli import MSLIConfig, MSLIModel

        s = self.s
        n_items = max(s.candidates)
        out = []
        if self.loaded is not None:
            return [(self.loaded.kind, self.loaded.config.segments, L, self.loaded.model) for L in s.history]
        wanted = set(s.models) | ({"two-tower"} if "full-forward" in s.models else set())
        labels = [m for m in kinds.LATE_INTERACTION if m in wanted]
        for label in labels:
            ks = s.segments if label == "msli" else (1,)
            for K in ks:
                for L in s.history:
                    config = MSLIConfig(
                        n_items=n_items,
                        n_genres=20,
                        dim=s.dim,
                        segments=K,
                        max_len=L,
                        layers=s.layers,
                        heads=s.heads,
                        dropout=0.0,
                    )
                    out.append((label, K, L, (MSLIModel, config)))
        return out

    def run_late_interaction(self, label: str, K: int, L: int, model_or_spec: Any) -> None:
        import torch

        from msli_core.serving.engine import InferenceEngine

        s = self.s
        if isinstance(model_or_spec, tuple):
            cls, config = model_or_spec
            torch.manual_seed(s.seed)
            model = cls(config).eval()
            model.kind = label
        else:
            model = model_or_spec.eval()
        S = model.config.S
        shape = self.common(model=label, segments=K, history=L, segment_len=S)
        n_items = model.config.n_items
        popularity = self.rng.random(n_items + 1)
        engine = InferenceEngine(model, popularity)
        engine.offline()
        # separate engines (sharing the one item table) so the timed calls do not disturb each other's cache
        seg_engine = InferenceEngine(model, popularity, nearline="segment")
        full_engine = InferenceEngine(model, popularity)
        for other in (seg_engine, full_engine):
            other.table_np, other.table = engine.table_np, engine.table
        # a full window plus K-1 complete closed segments: every slot is non-empty from the first call
        history = self.rng.integers(1, n_items + 1, size=L + (K - 1) * S)
        stream = iter(self.rng.integers(1, n_items + 1, size=20 * (s.repeats + s.warmup) + 10))
        for e in (engine, seg_engine, full_engine):
            e.load_history("u", history)

        with torch.inference_mode():
            if "torch" in s.backends:
                # interleaved, so that the machine's load at any moment falls on all three alike
                results = self.timed_together(
                    [
                        lambda: engine.observe("u", int(next(stream))),
                        lambda: seg_engine.observe("u", int(next(stream))),
                        lambda: full_engine.full_reencode("u"),
                    ]
                )
                self.add_nearline(
                    results,
                    ("incremental", "open_window", "full"),
                    ("kv_cache", "open_window", "all_slots"),
                    "torch",
                    shape,
                )
                self.tick(f"{label} K={K} L={L} nearline torch")
                for N in s.candidates:
                    if n_items < N:
                        continue
                    catalog = range(1, N + 1)  # an N-item catalog: the table's first N rows, no copy

                    def online(catalog=catalog):
                        return engine.recommend("u", catalog, top_k=TOP_K)

                    self.online_with_floors(online, "torch", K, N, shape, model, engine.table_np[1 : N + 1])
                    if label == "msli" and "cross-encoder" in s.models and N <= PAIRED_MAX_N:
                        self.paired[(K, L, N)] = online  # timed again beside the cross-encoder
                    self.request_candidates(engine, N, shape)
                    if label == "two-tower" and "full-forward" in s.models:
                        self.full_forward(full_engine, N, shape)

                    def e2e(catalog=catalog):
                        engine.observe("u", int(next(stream)))
                        return engine.recommend("u", catalog, top_k=TOP_K)

                    stats, calls, capped = self.timed(e2e)
                    self.add(
                        stats,
                        calls,
                        capped,
                        stage="end_to_end",
                        backend="torch",
                        candidates=N,
                        method="kv_cache",
                        **shape,
                    )
                    self.tick(f"{label} K={K} L={L} N={N} torch")
            if "onnxruntime" in s.backends:
                self.run_ort(label, K, L, model, engine, shape)

    def request_candidates(self, engine, N: int, shape: dict) -> None:
        """For each M < N of ``--request-candidates``: a request that brings its own list of M random ids
        (a fresh list each call, drawn from a pool of 16 so that no list is warm in the cache), timed in
        rounds with the same request over a cached M-item catalog (its first M rows)."""
        for M in self.s.request_candidates:
            if M >= N:
                continue
            pool = [self.rng.choice(np.arange(1, N + 1), size=M, replace=False) for _ in range(16)]
            lists = iter(pool * (4 * (self.s.repeats + self.s.warmup) + 8))
            same_size = range(1, M + 1)
            results = self.timed_together(
                [
                    lambda lists=lists: engine.recommend("u", next(lists), top_k=TOP_K),
                    lambda same_size=same_size: engine.recommend("u", same_size, top_k=TOP_K),
                ]
            )
            (fresh, calls, capped), (cached_stats, cached_calls, cached_capped) = results
            note = f"a fresh list of {M} random ids of an N={N} catalog per request (gathered rows)"
            self.add(fresh, calls, capped, stage="online", variant="request_candidates", backend="torch",
                     candidates=N, rows=M, note=note, **shape)  # fmt: skip
            self.add(cached_stats, cached_calls, cached_capped, stage="online", variant="cached_candidates",
                     backend="torch", candidates=N, rows=M,
                     note=f"the same request over a cached {M}-item table, timed in rounds with it",
                     **shape)  # fmt: skip

    def full_forward(self, engine, N: int, shape: dict) -> None:
        """The naive way to serve a sequential model: per request, the encoder over the whole history
        (the last L events), then the scores of N items and the top-10 (the two-tower model's encoder)."""
        catalog = range(1, N + 1)

        def call():
            engine.full_reencode("u")
            return engine.recommend("u", catalog, top_k=TOP_K)

        stats, calls, capped = self.timed(call)
        row = {**shape, "model": "full-forward", "segments": 1}
        note = "encoder over the last L events on every request, then score N items and top-10"
        for stage in ("online", "end_to_end"):
            self.add(stats, calls, capped, stage=stage, backend="torch", candidates=N, method="full_forward",
                     note=note, **row)  # fmt: skip

    def timed_together(self, fns: list[Callable[[], Any]]) -> list[tuple[dict[str, float], int, bool]]:
        """Time several calls in rounds of warm calls (:func:`timing.time_in_rounds`); each gets
        ``repeats`` calls or the budget."""
        timings = time_in_rounds(
            fns,
            budget_s=self.s.budget_s * len(fns),
            warmup=self.s.warmup,
            min_rounds=1,
            max_calls=self.s.repeats,
        )
        keep_cpu = self.s.threads == 1
        return [
            (summarize(np.asarray(wall), cpu if keep_cpu else None), len(wall), len(wall) < self.s.repeats)
            for wall, cpu in timings
        ]

    def online_with_floors(
        self, online: Callable[[], Any], backend: str, K: int, N: int, shape: dict, model, table: np.ndarray
    ) -> None:
        """Time the online call; the first time a (K, N) is seen, interleave it with its matmul floors.

        The floors multiply the online call's own item rows ``table`` (N, d) (row-major, the engine's
        memory): interleaved calls then share one working set, and a second table does not evict the
        first from the last-level cache between calls."""
        import torch

        s = self.s
        key = (K, N)
        if key in self.floors:
            stats, calls, capped = self.timed(online)
            self.add(stats, calls, capped, stage="online", backend=backend, candidates=N, **shape)
            return
        attention = model.config.aggregation in ("attention", "mlp") and K > 1
        rows = 2 * K if attention else K  # [u; q] stacked for attention, the K segment vectors otherwise
        left = self.rng.standard_normal((rows, s.dim), dtype=np.float32)  # (R, d)
        left_torch, table_torch = torch.from_numpy(left), torch.from_numpy(table)
        results = self.timed_together(
            [online, lambda: left @ table.T, lambda: torch.mm(left_torch, table_torch.T)]
        )
        (stats, calls, capped), numpy_floor, torch_floor = results
        self.add(stats, calls, capped, stage="online", backend=backend, candidates=N, **shape)
        self.floors[key] = (rows, numpy_floor, torch_floor)

    def emit_floors(self) -> None:
        """Floor rows for every (K, N) measured, repeated for each L (a floor does not depend on L): the
        bare matmuls (timed), memory = table bytes / bandwidth, compute = FLOPs / peak GEMM rate."""
        s = self.s

        def fixed(ms: float) -> tuple[dict[str, Any], int, bool]:
            return {"p50_ms": ms, "p95_ms": ms, "p99_ms": ms, "mean_ms": ms, "qps": 1e3 / ms}, 0, False

        for (K, N), (rows, numpy_floor, torch_floor) in sorted(self.floors.items()):
            memory = fixed(N * s.dim * 4 / self.bandwidth * 1e3)
            compute = fixed(2 * rows * s.dim * N / self.peak_flops * 1e3)
            for L in s.history:
                base = self.common(
                    model="msli" if "msli" in s.models or K > 1 else "two-tower",
                    stage="floor",
                    segments=K,
                    candidates=N,
                    history=L,
                    rows=rows,
                )
                gb_s, gflop_s = self.bandwidth / 1e9, self.peak_flops / 1e9
                floors = (
                    (numpy_floor, "matmul", "numpy", f"bare numpy ({rows}, d) @ (d, N), in rounds with it"),
                    (torch_floor, "matmul_torch", "torch", f"bare torch ({rows}, d) @ (d, N), in rounds"),
                    (memory, "bandwidth", "numpy", f"N·d·4 bytes / {gb_s:.1f} GB/s measured"),
                    (compute, "compute", "numpy", f"2·{rows}·d·N FLOPs / {gflop_s:.1f} GFLOP/s, best GEMM"),
                )
                for stats, variant, backend, note in floors:
                    self.add(*stats, variant=variant, backend=backend, note=note, **base)

    def run_ort(self, label: str, K: int, L: int, model, engine, shape: dict) -> None:
        from msli_core.serving import onnx_export as ox

        s = self.s
        scorer = ox.OrtScorer(ox.scorer_onnx(model), threads=s.threads)
        encoder = ox.OrtSegmentEncoder(ox.segment_encoder_onnx(model, engine.table), threads=s.threads)
        open_encoder = ox.OrtOpenEncoder(ox.open_encoder_onnx(model, engine.table), threads=s.threads)
        state = engine.users["u"]
        batch = model.segment_batch([np.asarray(state.history, dtype=np.int64)])
        window = batch.window.copy()  # (1, W): the user's open window, the last max_len events
        closed_items = batch.items[0, : K - 1][batch.mask[0, : K - 1]].copy()  # (K'', S) non-empty closed
        vectors = state.vectors.numpy()[None].copy()  # (1, K, d)
        mask = state.mask.numpy()[None].copy()  # (1, K)

        def full():
            open_vector = open_encoder.encode(window)
            return open_vector, encoder.encode(closed_items) if len(closed_items) else None

        results = self.timed_together([lambda: open_encoder.encode(window), full])
        self.add_nearline(
            results, ("incremental", "full"), ("open_window", "all_segments"), "onnxruntime", shape
        )
        self.tick(f"{label} K={K} L={L} nearline onnxruntime")
        for N in s.candidates:
            if model.config.n_items < N:
                continue
            # the exported scorer takes the table transposed, (d, N): its own copy, as ONNX Runtime holds it
            cand_np = np.ascontiguousarray(engine.table_np[1 : N + 1].T)
            ids_np = np.arange(1, N + 1)

            def online(cand_np=cand_np, ids_np=ids_np):
                scores, contributions = scorer.score(vectors, mask, cand_np)
                top = _top_k(scores[0], TOP_K)
                return ids_np[top], scores[0, top], contributions[0][:, top]

            self.online_with_floors(online, "onnxruntime", K, N, shape, model, engine.table_np[1 : N + 1])

            def e2e(online=online):
                vectors[0, -1] = open_encoder.encode(window)[0]  # the new event's open vector
                return online()

            stats, calls, capped = self.timed(e2e)
            self.add(
                stats,
                calls,
                capped,
                stage="end_to_end",
                backend="onnxruntime",
                candidates=N,
                method="open_window",
                **shape,
            )
            self.tick(f"{label} K={K} L={L} N={N} onnxruntime")

    # ---- offline ---------------------------------------------------------------------------------
    def run_offline(self) -> None:
        import torch

        from msli_core.models.layers import ItemEncoder

        s = self.s
        for N in s.candidates:
            torch.manual_seed(s.seed)
            encoder = ItemEncoder(N, 20, s.dim).eval()
            with torch.inference_mode():
                stats, calls, capped = self.timed(encoder.table)  # what the engine's offline() runs
            for label in [m for m in kinds.LATE_INTERACTION if m in s.models]:
                for K in s.segments if label == "msli" else (1,):
                    for L in s.history:
                        self.add(
                            stats,
                            calls,
                            capped,
                            **self.common(
                                model=label,
                                stage="offline",
                                backend="torch",
                                segments=K,
                                candidates=N,
                                history=L,
                                segment_len=math.ceil(L / K),
                                shared=True,
                                note="one item-table measurement per N, repeated for each K and L",
                            ),
                        )
            self.tick(f"offline N={N}")

    # ---- cross-encoder ---------------------------------------------------------------------------
    def run_cross_encoder(self) -> None:
        import torch

        from msli_core.models.cross_encoder import CrossEncoder, CrossEncoderConfig

        s = self.s
        if "onnxruntime" in s.backends:
            self.skipped.append("cross-encoder on onnxruntime: not exported; timed on torch only")
        n_items = max(s.candidates)
        for L in s.history:
            torch.manual_seed(s.seed)
            config = CrossEncoderConfig(
                n_items=n_items,
                n_genres=20,
                dim=s.dim,
                layers=s.layers,
                heads=s.heads,
                max_len=L,
                dropout=0.0,
            )
            model = CrossEncoder(config).eval()
            with torch.inference_mode():
                table = model.items()  # offline: (N+1, d), not part of a request
            history = torch.as_tensor(self.rng.integers(1, n_items + 1, size=(1, L)))
            for N in s.candidates:
                candidates = torch.as_tensor(
                    self.rng.choice(np.arange(1, n_items + 1), size=N, replace=False)
                )
                shape = self.common(model="cross-encoder", segments=1, candidates=N, history=L, segment_len=L)
                estimate = costmodel.predict(
                    costmodel.ModelShape(
                        kind="cross-encoder",
                        history=L,
                        segments=1,
                        dim=s.dim,
                        layers=s.layers,
                        heads=s.heads,
                        candidates=N,
                    ),
                    self.hardware,
                    "torch",
                ).seconds["online"]
                if CROSS_SAFETY * estimate > s.cross_budget_s:  # a call cannot be stopped midway
                    nan = summarize(np.zeros(0, dtype=np.int64))
                    note = (
                        f"skipped: one call is predicted to take {estimate:.1f} s; with a x{CROSS_SAFETY:g} "
                        f"margin that is over the {s.cross_budget_s:g} s budget per point"
                    )
                    for stage in ("online", "end_to_end"):
                        self.add(
                            nan,
                            0,
                            True,
                            stage=stage,
                            backend="torch",
                            estimated_ms=estimate * 1e3,
                            note=note,
                            **shape,
                        )
                    self.tick(f"cross-encoder N={N} L={L} skipped")
                    continue

                def call(candidates=candidates, history=history, table=table, model=model):
                    out = torch.empty(len(candidates))
                    step = model.config.pair_chunk
                    for lo in range(0, len(candidates), step):
                        chunk = candidates[lo : lo + step]
                        out[lo : lo + step] = model.pair_scores(history.expand(len(chunk), -1), chunk, table)
                    return torch.topk(out, min(TOP_K, len(out)))

                paired = sorted(
                    (k, fn) for (k, length, n), fn in self.paired.items() if length == L and n == N
                )
                with torch.inference_mode():
                    (times, cpu), capped, paired_times = self.time_cross(
                        call, estimate, [fn for _, fn in paired]
                    )
                stats = summarize(times, cpu)
                for (k, _), (ptimes, pcpu) in zip(paired, paired_times, strict=True):
                    self.add(summarize(ptimes, pcpu), len(ptimes), False, **self.common(
                        model="msli", stage="online", variant="paired", backend="torch", segments=k,
                        candidates=N, history=L, segment_len=math.ceil(L / k),
                        note="timed between the cross-encoder's calls at the same N and L"))  # fmt: skip
                for stage in ("online", "end_to_end"):
                    self.add(
                        stats,
                        len(times),
                        capped,
                        stage=stage,
                        backend="torch",
                        estimated_ms=estimate * 1e3,
                        note="end_to_end = online: no stage is shared between candidates"
                        if stage == "end_to_end"
                        else None,
                        **shape,
                    )
                self.tick(f"cross-encoder N={N} L={L}")

    def time_cross(
        self, call: Callable[[], Any], estimate: float, paired: list[Callable[[], Any]]
    ) -> tuple[tuple[np.ndarray, Any], bool, list[tuple[np.ndarray, Any]]]:
        """Cross-encoder calls until the budget is spent, each followed by 5 calls of every paired
        MS-LI online request at the same (N, L) (after one untimed call that re-warms the caches): both
        see the machine under the same load.

        Returns ``((wall_ns, cpu_ns), capped, [(wall_ns, cpu_ns) per paired call])``; ``cpu_ns`` is
        None when ``threads`` > 1."""
        s = self.s
        if estimate * 4 < s.cross_budget_s:
            call()  # warm-up only when it is cheap
        for fn in paired:
            for _ in range(s.warmup):
                fn()
        times: list[int] = []
        cpus: list[int] = []
        paired_times: list[list[int]] = [[] for _ in paired]
        paired_cpus: list[list[int]] = [[] for _ in paired]
        deadline = time.perf_counter_ns() + int(s.cross_budget_s * 1e9)
        cpu = time.thread_time_ns
        while len(times) < s.repeats:
            c0 = cpu()
            t0 = time.perf_counter_ns()
            call()
            t1 = time.perf_counter_ns()
            cpus.append(cpu() - c0)
            times.append(t1 - t0)
            for fn, out, cpu_out in zip(paired, paired_times, paired_cpus, strict=True):
                fn()  # untimed: re-warms the caches the cross-encoder's call just evicted
                for _ in range(5):
                    c2 = cpu()
                    t2 = time.perf_counter_ns()
                    fn()
                    out.append(time.perf_counter_ns() - t2)
                    cpu_out.append(cpu() - c2)
            if t1 >= deadline:
                break
        capped = len(times) < s.repeats
        keep = s.threads == 1
        return (
            (np.asarray(times, dtype=np.int64), cpus if keep else None),
            capped,
            [
                (np.asarray(t, dtype=np.int64), c if keep else None)
                for t, c in zip(paired_times, paired_cpus, strict=True)
            ],
        )

    # ---- the teaching sweep: latency against encoder size -----------------------------------------
    def encoder_size_sweep(self) -> None:
        """Online request latency of full-forward, MS-LI (K = 8 if swept, else the largest K) and
        two-tower against the encoder's size, at the sweep's largest N and L: measured for
        ``encoder_sizes``, then the cost model's prediction for ``extrapolate_sizes`` (rows with
        ``p50_ms`` NaN and ``estimated_ms``,
        ``method: "cost model"``). MS-LI and two-tower pay the encoder nearline, off the request path;
        full-forward pays it on every request."""
        import torch

        from msli_core.models.msli import MSLIConfig, MSLIModel
        from msli_core.serving.engine import InferenceEngine

        s = self.s
        # K = 8 when the sweep has it (a typical MS-LI), else its largest K
        N, L, K = max(s.candidates), max(s.history), 8 if 8 in s.segments else max(s.segments)
        catalog = range(1, N + 1)
        for layers, dim in s.encoder_sizes:
            heads = 2 if dim % 2 == 0 else 1
            shape = {"threads": s.threads, "dim": dim, "layers": layers, "heads": heads, "candidates": N,
                     "history": L, "variant": "encoder_size", "backend": "torch",
                     "stage": "online"}  # fmt: skip
            engines = {}
            for label, k in (("two-tower", 1), ("msli", K)):
                torch.manual_seed(s.seed)
                config = MSLIConfig(n_items=N, n_genres=20, dim=dim, segments=k, max_len=L, layers=layers,
                                    heads=heads, dropout=0.0)  # fmt: skip
                model = MSLIModel(config).eval()
                model.kind = label
                engines[label] = InferenceEngine(model)
            # a full window plus K-1 complete closed segments: MS-LI scores all K slots (the tower reads
            # the window only)
            history = self.rng.integers(1, N + 1, size=L + (K - 1) * engines["msli"].S)
            for engine in engines.values():
                engine.load_history("u", history)
            tower = engines["two-tower"]

            def full_forward(tower=tower):
                tower.full_reencode("u")
                return tower.recommend("u", catalog, top_k=TOP_K)

            with torch.inference_mode():
                results = self.timed_together(
                    [
                        full_forward,
                        lambda e=engines["msli"]: e.recommend("u", catalog, top_k=TOP_K),
                        lambda e=tower: e.recommend("u", catalog, top_k=TOP_K),
                    ]
                )
            for (stats, calls, capped), (label, k) in zip(
                results, (("full-forward", 1), ("msli", K), ("two-tower", 1)), strict=True
            ):
                self.add(stats, calls, capped, model=label, segments=k, method="measured", **shape)
            self.tick(f"encoder {layers}x{dim} measured")
        for layers, dim in s.extrapolate_sizes:
            for label, k in (("full-forward", 1), ("msli", K), ("two-tower", 1)):
                model_shape = costmodel.ModelShape(kind=label, history=L, segments=k, dim=dim, layers=layers,
                                                   heads=2, candidates=N)  # fmt: skip
                seconds = costmodel.predict(model_shape, self.hardware, "torch").seconds["online"]
                self.add(summarize(np.zeros(0, dtype=np.int64)), 0, False, model=label, segments=k,
                         stage="online", variant="encoder_size", backend="torch", threads=s.threads, dim=dim,
                         layers=layers, heads=2, candidates=N, history=L, method="cost model",
                         estimated_ms=seconds * 1e3,
                         note="not timed: the cost model's extrapolation from this machine's constants",
                         )  # fmt: skip
        self.tick("encoder sizes extrapolated")

    def add_nearline(
        self, results: list, variants: tuple[str, ...], methods: tuple[str, ...], backend: str, shape: dict
    ) -> None:
        """One nearline row per variant from :meth:`timed_together`'s results, in the same order."""
        for (stats, calls, capped), variant, method in zip(results, variants, methods, strict=True):
            self.add(stats, calls, capped, stage="nearline", variant=variant, backend=backend, method=method,
                     **shape)  # fmt: skip

    def add(self, stats: dict[str, float], calls: int, capped: bool, **kw: Any) -> None:
        self.rows.append(_row(**stats, calls=int(calls), capped=bool(capped), passes=1, **kw))


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first (argpartition, then sort the k)."""
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part])]


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
                                 heads=settings.heads, dropout=0.0)).eval()  # fmt: skip
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


def run_bench(settings: BenchSettings, progress: ProgressCallback | None = None) -> BenchResult:
    """Run the sweep; rows per docs/design.md §6 plus the run's settings and environment in ``meta``."""
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
            runner.hardware = calibrate.hardware_here(threads=settings.threads)
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
            "hardware": runner.hardware.as_dict(),
            "skipped": runner.skipped,
            "seconds": time.perf_counter() - started,
            "rows": len(runner.rows),
            "cost_model_error": {k: v for k, v in report.items() if k != "points"},
        }
    )
    progress(ProgressEvent("bench", runner.total, runner.total, f"{len(runner.rows)} rows"))
    return BenchResult(runner.rows, meta, report)


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


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


def _ratio(a: dict[str, Any], b: dict[str, Any], word: str = "") -> str:
    return f"{_ms(a['p50_ms'])} vs {_ms(b['p50_ms'])}: {a['p50_ms'] / b['p50_ms']:,.2f}×{word}"


def headline(rows: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> dict[str, str]:
    """The run's key comparisons as ``{label: text}``, each label stating its shapes, from the points
    this sweep measured (largest N, largest K, shortest L that it has); a comparison whose points are
    not in the sweep is left out rather than printed as NaN."""

    def pick(**kw: Any) -> dict[str, Any] | None:
        for r in rows:
            p50 = r.get("p50_ms")
            if (
                all(r.get(k) == v for k, v in kw.items())
                and p50 is not None
                and math.isfinite(p50)
                and p50 > 0
            ):
                return r
        return None

    out: dict[str, str] = {}
    online = [r for r in rows if r["stage"] == "online" and r["model"] == "msli" and r["backend"] == "torch"]
    online = [r for r in online if not r.get("variant") and r.get("p50_ms")]
    li = None
    if online:
        N = max(r["candidates"] for r in online)
        K = max(r["segments"] for r in online if r["candidates"] == N)
        L = min(r["history"] for r in online if r["candidates"] == N and r["segments"] == K)
        at = {"segments": K, "candidates": N, "history": L}
        li = pick(model="msli", stage="online", variant=None, backend="torch", **at)
        floor = pick(stage="floor", variant="matmul", **at)
        if li and floor:
            label = f"MS-LI online K={K} N={N:,} vs bare numpy ({floor['rows']}×d)·(d×N), d={li['dim']}"
            out[label] = _ratio(li, floor)
        for r in rows:
            if (
                r.get("variant") != "request_candidates"
                or r["model"] != "msli"
                or not pick(**at, rows=r["rows"])
            ):
                continue
            fresh = pick(model="msli", variant="request_candidates", rows=r["rows"], **at)
            cached = pick(model="msli", variant="cached_candidates", rows=r["rows"], **at)
            if fresh and cached:
                M = r["rows"]
                out[f"a fresh list of {M:,} ids of N={N:,} vs a cached {M:,}-item table, K={K}"] = _ratio(
                    fresh, cached
                )
        for model in ("two-tower", "full-forward"):
            other = pick(model=model, stage="online", variant=None, backend="torch", candidates=N, history=L)
            if other:
                out[f"{model} online N={N:,} L={L}"] = _ms(other["p50_ms"])
    ce = [r for r in rows if r["model"] == "cross-encoder" and r["stage"] == "online" and r.get("calls")]
    if ce:
        best = max(ce, key=lambda r: (r["candidates"], -r["history"]))
        at = {"candidates": best["candidates"], "history": best["history"]}
        K = max((r["segments"] for r in rows if r["model"] == "msli"), default=None)
        paired = pick(model="msli", stage="online", variant="paired", segments=K, **at)
        li = paired or pick(model="msli", stage="online", variant=None, backend="torch", segments=K, **at)
        if li:
            label = f"cross-encoder vs MS-LI K={K}, N={at['candidates']:,}, L={at['history']}"
            out[label] = _ratio(best, li, " slower")
    near = [r for r in rows if r["stage"] == "nearline" and r["model"] == "msli" and r["backend"] == "torch"]
    if near:
        at = {"segments": max(r["segments"] for r in near), "history": max(r["history"] for r in near)}
        inc = pick(model="msli", stage="nearline", variant="incremental", backend="torch", **at)
        full = pick(model="msli", stage="nearline", variant="full", backend="torch", **at)
        if inc and full:
            label = f"full re-encode vs nearline update, K={at['segments']}, L={at['history']}"
            out[label] = _ratio(full, inc)
    memory = (meta or {}).get("served_memory")
    if memory:
        grown, table = memory["resident_growth_bytes"] / 2**20, memory["table_bytes"] / 2**20
        label = f"resident memory of a served N={memory['items']:,} table, d={memory['dim']}"
        out[label] = f"{grown:.0f} MiB for a {table:.0f} MiB table: {memory['ratio']:.2f}×"
    return out
