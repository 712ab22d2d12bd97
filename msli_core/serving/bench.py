"""The latency harness behind ``msli bench`` (docs/design.md §4, §6).

For every point of the sweep it times one request at a time (batch 1): warm-up calls, then each call
with ``time.perf_counter_ns``, until ``repeats`` calls or the point's time budget is spent. Rows keep
p50/p95/p99 (ms), mean and QPS as numbers, the thread counts (torch and ONNX Runtime intra-op threads
are both set to ``threads``, numpy's BLAS through threadpoolctl) and the shapes.

The machine is shared, so with one thread each call is also timed on the calling thread's CPU clock
(``time.thread_time_ns``; torch, ONNX Runtime and BLAS all run on the calling thread then):
``cpu_p50_ms`` is the median time the core spent on a call, which leaves out the time another process
held the core. Every point is measured in ``passes`` passes (default 3, a minute or so apart; the
offline item table and the cross-encoder included) and ``cpu_p50_ms`` keeps the lowest of the passes'
medians (``passes`` column): a point that coincided with a burst of other work is measured again. The
cost model's error report compares against ``cpu_p50_ms``; the wall-clock p50/p95/p99 stay the first
pass's, so comparisons timed side by side (paired, floors) keep their pairing.

Stages and variants (the ``stage`` / ``variant`` keys):

- ``offline``: the item table of N items (one measurement per N; the row is repeated for each K and L
  so per-(K, N, L) charts can stack it — ``shared: true``);
- ``nearline`` ``incremental``: one new event. torch: the engine's update of the open window (a KV-cached
  step while the history fits in the window, a window pass once it slides) and, when a segment closes,
  its one-off encoding; onnxruntime: the exported open-window encoder over the window (no KV cache in
  the graph). ``open_window`` (torch): the window re-encoded whole. ``full``: every slot re-encoded;
- ``online``: score N candidates, top-10, with the top-10's per-segment contributions; variant
  ``paired``: the same MS-LI request timed again between the cross-encoder's calls at the same N and L
  (so the "how much faster" ratio compares calls made under the same machine load);
- ``end_to_end``: one event (incremental nearline) then one request (online);
- ``floor`` ``matmul``: a bare numpy ``(R, d) @ (d, N)`` product with ``R = 2K`` for the attention
  aggregation (the stacked ``[u; q]`` product MS-LI needs) and ``R = K`` otherwise (``rows`` key);
  ``matmul_torch``: the same product in torch, both over the online call's own candidate table;
  ``bandwidth``: ``N·d·4 bytes / measured bandwidth``.
  The matmul floors are timed in rounds with the first online call of each (K, N), and the nearline
  variants in rounds with each other (each round: one untimed re-warming call of each, then 5 timed
  ones), so a busy machine slows the compared calls alike while each timing is of a warm call; a
  floor row is repeated for each L (it does not depend on L).

The cross-encoder is timed at the same N and L in the same run, capped by ``cross_budget_s`` per point:
a point whose predicted single call (times ``CROSS_SAFETY``) exceeds the budget is skipped
(``capped: true``, ``calls: 0``, ``p50_ms`` NaN, the cost model's estimate in ``estimated_ms``);
otherwise calls stop when the budget is spent (``capped: true`` when fewer than ``repeats`` calls).
"""

from __future__ import annotations

import contextlib
import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from msli_core.errors import MsliError
from msli_core.progress import ProgressCallback, ProgressEvent, no_progress
from msli_core.serving import costmodel

MODELS = ("msli", "two-tower", "cross-encoder")
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
    candidates: tuple[int, ...] = (100, 1000, 10_000, 100_000)  # N values
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
    # passes over the MS-LI / two-tower points: each point's ``cpu_p50_ms`` is the lowest of its passes'
    # CPU medians (a point measured while another process hammered the machine is measured again later)
    passes: int = 3

    def validate(self) -> None:
        checks = (
            ("--segments", self.segments, 1, 512),
            ("--candidates", self.candidates, 1, 10_000_000),
            ("--history", self.history, 1, 100_000),
        )
        for flag, values, lo, hi in checks:
            if not values:
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

    The item table (N+1) x d float32 is held by torch, transposed for the scorer, and, with ONNX
    Runtime, baked into the exported catalog graph (its bytes and the session's copy); one request's
    scores and per-segment contributions (K+1) x N, with the outputs' and top-k's copies; the numpy
    floor's (2K x d)(d x N) product; a full re-encode of the longest history as one segment (its
    activations and attention matrix per layer); plus the libraries themselves.
    """
    N = max(settings.candidates)
    K = max(settings.segments)
    L = max(settings.history)
    d = settings.dim
    table = (N + 1) * d * 4
    copies = 2 + (3 if "onnxruntime" in settings.backends else 0)
    scores = 3 * (K + 1) * N * 4 + 2 * K * N * 4
    layers = max(settings.layers, 1)
    encode = L * d * 4 * (12 * layers + 4) + settings.heads * L * L * 4 * 2
    runtime = 512 * 2**20
    return int(copies * table + scores + encode + runtime)


@dataclass
class BenchResult:
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    error_report: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# timing


def time_calls(
    fn: Callable[[], Any],
    *,
    warmup: int,
    repeats: int,
    budget_s: float,
    min_calls: int = 3,
    cpu_ns: list[int] | None = None,
) -> tuple[np.ndarray, bool]:
    """Per-call nanoseconds of ``fn()`` after ``warmup`` calls; stops at ``repeats`` or the budget.

    Returns ``(times_ns, capped)``; ``capped`` is True when the budget stopped it before ``repeats``.
    When ``cpu_ns`` is a list, each call's CPU time of the calling thread is appended to it (see
    :func:`cpu_clock`).
    """
    for _ in range(warmup):
        fn()
    times: list[int] = []
    deadline = time.perf_counter_ns() + int(budget_s * 1e9)
    cpu = time.thread_time_ns
    while len(times) < repeats:
        c0 = cpu()
        t0 = time.perf_counter_ns()
        fn()
        t1 = time.perf_counter_ns()
        c1 = cpu()
        times.append(t1 - t0)
        if cpu_ns is not None:
            cpu_ns.append(c1 - c0)
        if t1 >= deadline and len(times) >= min_calls:
            break
    return np.asarray(times, dtype=np.int64), len(times) < repeats


def summarize(times_ns: np.ndarray, cpu_ns: Any = None) -> dict[str, float]:
    """p50/p95/p99/mean in ms and QPS (one worker: calls per second of busy time).

    With ``cpu_ns`` (per-call CPU time of the calling thread) also ``cpu_p50_ms``: the median time the
    core actually spent on a call, which leaves out the time another process held the core.
    """
    cpu = np.asarray(cpu_ns if cpu_ns is not None else [], dtype=np.float64) / 1e6
    cpu_p50 = float(np.median(cpu)) if len(cpu) else None
    if len(times_ns) == 0:
        return {
            "p50_ms": math.nan,
            "p95_ms": math.nan,
            "p99_ms": math.nan,
            "mean_ms": math.nan,
            "qps": math.nan,
            "cpu_p50_ms": None,
        }
    ms = np.asarray(times_ns).astype(np.float64) / 1e6
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    mean = float(ms.mean())
    return {
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": mean,
        "qps": 1e3 / mean,
        "cpu_p50_ms": cpu_p50,
    }


@contextlib.contextmanager
def thread_limits(threads: int) -> Iterator[dict[str, Any]]:
    """Fix torch intra-op threads and numpy's BLAS threads for the run; restore them afterwards."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield {"torch": torch.get_num_threads(), "onnxruntime_intra_op": threads, "blas": threads}
    finally:
        torch.set_num_threads(before)


def environment(threads: int) -> dict[str, Any]:
    import onnxruntime
    import torch

    return {
        "cpu": costmodel.cpu_model(),
        "cores": _cores(),
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


def _cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def measure_bandwidth(mib: int = 64, budget_s: float = 0.3) -> float:
    """Bytes/s of a streaming copy (read + write) of ``mib`` MiB, best of the timed calls."""
    src = np.ones(mib * 2**18, dtype=np.float32)
    dst = np.empty_like(src)
    times, _ = time_calls(lambda: np.copyto(dst, src), warmup=1, repeats=50, budget_s=budget_s)
    return 2 * src.nbytes / (float(times.min()) / 1e9)


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
        self.hardware = costmodel.load_hardware()
        self.loaded = None  # a trained model (LoadedModel) given by --model
        self.paired: dict[tuple[int, int, int], Callable[[], Any]] = {}  # (K, L, N) -> MS-LI online call
        self.floors: dict[tuple[int, int], tuple] = {}  # (K, N) -> rows, numpy, torch, bandwidth floors
        self.bandwidth = 1.0  # bytes/s of a streaming copy, measured at the start of the run

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
        labels = [m for m in ("msli", "two-tower") if m in s.models]
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
        popularity = self.rng.random(n_items + 1)  # a random order stands in for a retrieval stage
        engine = InferenceEngine(model, popularity)
        engine.offline()
        # separate engines (sharing the item table) so the timed calls do not disturb each other's cache
        seg_engine = InferenceEngine(model, popularity, nearline="segment")
        full_engine = InferenceEngine(model, popularity)
        for other in (seg_engine, full_engine):
            other.table, other.table_t = engine.table, engine.table_t
        history = self.rng.integers(1, n_items + 1, size=L)
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
                    _, cand_t = engine.candidate_table(N)  # cached per N, like a retrieval stage's output

                    def online(N=N):
                        return engine.recommend("u", N, top_k=TOP_K)

                    self.online_with_floors(online, "torch", K, N, shape, model, cand_t)
                    if label == "msli" and "cross-encoder" in s.models and N <= PAIRED_MAX_N:
                        self.paired[(K, L, N)] = online  # timed again beside the cross-encoder

                    def e2e(N=N):
                        engine.observe("u", int(next(stream)))
                        return engine.recommend("u", N, top_k=TOP_K)

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

    def timed_together(self, fns: list[Callable[[], Any]]) -> list[tuple[dict[str, float], int, bool]]:
        """Time several calls in rounds of warm calls (:func:`costmodel.time_in_rounds`); each gets
        ``repeats`` calls or the budget."""
        timings = costmodel.time_in_rounds(
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
        self, online: Callable[[], Any], backend: str, K: int, N: int, shape: dict, model, table=None
    ) -> None:
        """Time the online call; the first time a (K, N) is seen, interleave it with its matmul floors.

        The floors multiply the online call's own candidate table ``table`` (d, N) (the numpy floor a
        view of the same memory): interleaved calls then share one working set, and a second table
        does not evict the first from the last-level cache between calls."""
        import torch

        s = self.s
        key = (K, N)
        if key in self.floors:
            stats, calls, capped = self.timed(online)
            self.add(stats, calls, capped, stage="online", backend=backend, candidates=N, **shape)
            return
        attention = model.config.aggregation in ("attention", "mlp") and K > 1
        rows = 2 * K if attention else K  # [u; q] stacked for attention, the K segment vectors otherwise
        if table is None:
            table = torch.from_numpy(self.rng.standard_normal((s.dim, N), dtype=np.float32))
        table_torch = table.contiguous()  # (d, N)
        table_t = table_torch.numpy()  # the same memory
        left = self.rng.standard_normal((rows, s.dim), dtype=np.float32)  # (R, d)
        left_torch = torch.from_numpy(left)
        results = self.timed_together([online, lambda: left @ table_t, lambda: left_torch @ table_torch])
        (stats, calls, capped), numpy_floor, torch_floor = results
        self.add(stats, calls, capped, stage="online", backend=backend, candidates=N, **shape)
        bw_ms = N * s.dim * 4 / self.bandwidth * 1e3
        bandwidth_floor = (
            {
                "p50_ms": bw_ms,
                "p95_ms": bw_ms,
                "p99_ms": bw_ms,
                "mean_ms": bw_ms,
                "qps": 1e3 / bw_ms,
                "cpu_p50_ms": None,
            },
            0,
            False,
        )
        self.floors[key] = (rows, numpy_floor, torch_floor, bandwidth_floor)

    def emit_floors(self) -> None:
        """Floor rows for every (K, N) measured, repeated for each L (a floor does not depend on L)."""
        s = self.s
        for (K, N), (rows, numpy_floor, torch_floor, bandwidth_floor) in sorted(self.floors.items()):
            for L in s.history:
                base = self.common(
                    model="msli" if "msli" in s.models or K > 1 else "two-tower",
                    stage="floor",
                    segments=K,
                    candidates=N,
                    history=L,
                    rows=rows,
                )
                self.add(
                    *numpy_floor,
                    variant="matmul",
                    backend="numpy",
                    **base,
                    note=f"bare numpy ({rows}, d) @ (d, N), timed in rounds with the online call",
                )
                self.add(
                    *torch_floor,
                    variant="matmul_torch",
                    backend="torch",
                    **base,
                    note=f"bare torch ({rows}, d) @ (d, N), timed in rounds with the online call",
                )
                self.add(
                    *bandwidth_floor,
                    variant="bandwidth",
                    backend="numpy",
                    **base,
                    note=f"N·d·4 bytes / {self.bandwidth / 1e9:.1f} GB/s measured in this run",
                )

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
            ids, cand_t = engine.candidate_table(N)
            cand_np = cand_t.numpy()  # (d, N), shares memory
            ids_np = ids.numpy()

            def online(cand_np=cand_np, ids_np=ids_np):
                scores, contributions = scorer.score(vectors, mask, cand_np)
                top = _top_k(scores[0], TOP_K)
                return ids_np[top], scores[0, top], contributions[0][:, top]

            self.online_with_floors(online, "onnxruntime", K, N, shape, model, cand_t)

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
                stats, calls, capped = self.timed(encoder)
            for label in [m for m in ("msli", "two-tower") if m in s.models]:
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


ROW_ID = ("model", "stage", "variant", "backend", "segments", "candidates", "history")


def merge_passes(rows: list[dict[str, Any]], again: list[dict[str, Any]]) -> None:
    """Fold a later pass into ``rows`` in place: each row's ``cpu_p50_ms`` becomes the lowest of the
    passes' CPU medians and ``passes`` counts them; the wall-clock figures stay the first pass's, so the
    comparisons timed side by side (paired, floors) keep their pairing."""
    later = {tuple(r.get(k) for k in ROW_ID): r for r in again}
    for row in rows:
        other = later.get(tuple(row.get(k) for k in ROW_ID))
        if other is None or other.get("cpu_p50_ms") is None or row.get("cpu_p50_ms") is None:
            continue
        row["cpu_p50_ms"] = min(row["cpu_p50_ms"], other["cpu_p50_ms"])
        row["passes"] = int(row.get("passes") or 1) + 1


def plan_size(settings: BenchSettings) -> int:
    s = settings
    n_li = (len(s.segments) if "msli" in s.models else 0) + (1 if "two-tower" in s.models else 0)
    per_model = 0
    for backend in s.backends:
        per_model += 1 + len(s.candidates) if backend in BACKENDS else 0
    total = (n_li * len(s.history) * per_model + len(s.candidates)) * s.passes
    if "cross-encoder" in s.models:
        total += len(s.candidates) * len(s.history) * s.passes
    return total + (1 + s.passes if s.calibrate else 0)


def run_bench(settings: BenchSettings, progress: ProgressCallback | None = None) -> BenchResult:
    """Run the sweep; rows per docs/design.md §6 plus the run's settings and environment in ``meta``."""
    settings.validate()
    progress = progress or no_progress
    loaded = None
    if settings.model_dir:
        from msli_core.models.registry import load_model

        loaded = load_model(settings.model_dir)
        if loaded.kind not in ("msli", "two-tower"):
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
        if settings.calibrate:
            runner.hardware = costmodel.calibrate(threads=settings.threads, save=False)
            runner.tick("calibrated the cost model")
        bandwidth = runner.bandwidth = measure_bandwidth()
        runner.run_offline()
        for label, K, L, model in runner.late_interaction_models():
            runner.run_late_interaction(label, K, L, model)
        runner.emit_floors()
        if "cross-encoder" in settings.models:
            runner.run_cross_encoder()
        runner.paired.clear()  # the engines behind them hold item tables
        calibrations = [runner.hardware] if settings.calibrate else []
        for _ in range(settings.passes - 1):  # the same points again, minutes later
            if settings.calibrate:  # interleaved with the sweep, so the constants see its machine states
                calibrations.append(costmodel.calibrate(threads=settings.threads, save=False))
                runner.tick("calibrated the cost model between passes")
            again = _Runner(settings, progress)
            again.loaded, again.hardware, again.bandwidth = loaded, runner.hardware, runner.bandwidth
            again.total, again.done = runner.total, runner.done
            again.run_offline()
            for label, K, L, model in again.late_interaction_models():
                again.run_late_interaction(label, K, L, model)
            again.emit_floors()
            if "cross-encoder" in settings.models:  # the cross-encoder and its paired calls again too
                again.run_cross_encoder()
            again.paired.clear()
            runner.done = again.done
            merge_passes(runner.rows, again.rows)
        if settings.calibrate:  # again after the sweep: each constant is the median of the calibrations
            calibrations.append(costmodel.calibrate(threads=settings.threads, save=False))
            runner.hardware = costmodel.combine(calibrations, how="median")
            runner.tick("calibrated the cost model again")
    report = costmodel.error_report(runner.rows, runner.hardware)
    meta.update(
        {
            "settings": asdict(settings),
            "bandwidth_bytes_per_s": bandwidth,
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


def headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The four figures the issue asks for, from one run's rows (NaN where a point was not in the sweep)."""

    def pick(**kw: Any) -> float:
        for r in rows:
            if all(r.get(k) == v for k, v in kw.items()):
                return float(r["p50_ms"]) if r["p50_ms"] is not None else math.nan
        return math.nan

    li = pick(model="msli", stage="online", variant="paired", backend="torch", segments=8, candidates=1000,
              history=50)  # fmt: skip
    if math.isnan(li):
        li = pick(model="msli", stage="online", backend="torch", segments=8, candidates=1000, history=50)
    ce = pick(model="cross-encoder", stage="online", backend="torch", candidates=1000, history=50)
    # the floors of a (K, N) are timed in rounds with its first online call, the one at the smallest L
    first_l = min((r["history"] for r in rows if r["stage"] == "floor" and r["history"]), default=50)
    on = pick(model="msli", stage="online", backend="torch", segments=8, candidates=100_000, history=first_l)
    fl = pick(stage="floor", variant="matmul", segments=8, candidates=100_000, history=first_l)
    fl_t = pick(stage="floor", variant="matmul_torch", segments=8, candidates=100_000, history=first_l)
    inc = pick(
        model="msli", stage="nearline", variant="incremental", backend="torch", segments=8, history=200
    )
    full = pick(model="msli", stage="nearline", variant="full", backend="torch", segments=8, history=200)
    return {
        "online_msli_K8_N1000_L50_ms": li,
        "cross_encoder_N1000_L50_ms": ce,
        "cross_over_msli": ce / li,
        "online_msli_K8_N100000_ms": on,
        "floor_numpy_2K_N100000_ms": fl,
        "floor_torch_2K_N100000_ms": fl_t,
        "online_over_numpy_floor": on / fl,
        "online_over_torch_floor": on / fl_t,
        "nearline_incremental_K8_L200_ms": inc,
        "nearline_full_K8_L200_ms": full,
        "full_over_incremental": full / inc,
    }
