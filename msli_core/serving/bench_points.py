"""How each point of a ``msli bench`` sweep is timed: the serving ladder's rungs (MS-LI and two-tower on
torch and ONNX Runtime, full-forward, the cross-encoder), their floors, per-request candidate lists and
the teaching sweep against encoder size. :func:`msli_core.serving.bench.run_bench` drives a
:class:`_Runner` per pass; the module docstring of :mod:`bench` describes every row."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from msli_core import kinds
from msli_core.progress import ProgressCallback, ProgressEvent
from msli_core.serving import costmodel
from msli_core.serving.bench_settings import (
    CROSS_SAFETY,
    LAB_RECENCY_SLOT,
    PAIRED_MAX_N,
    TOP_K,
    BenchSettings,
    _row,
)
from msli_core.serving.timing import summarize, time_calls, time_in_rounds


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
                        recency_slot=LAB_RECENCY_SLOT,
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

                    self.end_to_end(e2e, "torch", "kv_cache", N, shape)
                    self.tick(f"{label} K={K} L={L} N={N} torch")
            if "onnxruntime" in s.backends:
                self.run_ort(label, K, L, model, engine, shape)

    def end_to_end(self, call: Callable[[], Any], backend: str, method: str, N: int, shape: dict) -> None:
        """Time one event followed by one request (``call``) and add its ``end_to_end`` row."""
        stats, calls, capped = self.timed(call)
        self.add(stats, calls, capped, stage="end_to_end", backend=backend, candidates=N, method=method,
                 **shape)  # fmt: skip

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
                     candidates=N, rows=M, note=note,
                     exact_fraction=_exact_fraction(engine.recommend("u", pool[0], top_k=TOP_K), M),
                     **shape)  # fmt: skip
            self.add(cached_stats, cached_calls, cached_capped, stage="online", variant="cached_candidates",
                     backend="torch", candidates=N, rows=M,
                     note=f"the same request over a cached {M}-item table, timed in rounds with it",
                     exact_fraction=_exact_fraction(engine.recommend("u", same_size, top_k=TOP_K), M),
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
            self.add(stats, calls, capped, stage="online", backend=backend, candidates=N,
                     exact_fraction=_exact_fraction(online(), N), **shape)  # fmt: skip
            return
        attention = model.config.aggregation in ("attention", "mlp") and K > 1
        rows = 2 * K if attention else K  # [u; q] stacked for attention, the K segment vectors otherwise
        left = self.rng.standard_normal((rows, s.dim), dtype=np.float32)  # (R, d)
        left_torch, table_torch = torch.from_numpy(left), torch.from_numpy(table)
        results = self.timed_together(
            [online, lambda: left @ table.T, lambda: torch.mm(left_torch, table_torch.T)]
        )
        (stats, calls, capped), numpy_floor, torch_floor = results
        self.add(stats, calls, capped, stage="online", backend=backend, candidates=N,
                 exact_fraction=_exact_fraction(online(), N), **shape)  # fmt: skip
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
        C = model.config.closed_slots
        closed_items = batch.items[0, :C][batch.mask[0, :C]].copy()  # (K'', S) non-empty closed
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
                vectors[0, C:] = open_encoder.encode(window)[0]  # the new event's open vectors (O, d)
                return online()

            self.end_to_end(e2e, "onnxruntime", "open_window", N, shape)
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
        cheap = estimate * 4 < s.cross_budget_s  # warm the cross-encoder up only when it is cheap
        timings = time_in_rounds(
            [call, *paired],
            budget_s=s.cross_budget_s,
            warmup=[1 if cheap else 0] + [s.warmup] * len(paired),
            max_calls=s.repeats,
            timed=[1] + [5] * len(paired),
            rewarm=[False] + [True] * len(paired),  # a paired call re-warms what the cross-encoder evicted
        )
        keep = s.threads == 1
        (times, cpus), *rest = timings
        return (
            (np.asarray(times, dtype=np.int64), cpus if keep else None),
            len(times) < s.repeats,
            [(np.asarray(t, dtype=np.int64), c if keep else None) for t, c in rest],
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
                                    heads=heads, dropout=0.0, recency_slot=LAB_RECENCY_SLOT)  # fmt: skip
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


def _exact_fraction(answer: Any, candidates: int) -> float | None:
    """The share of the candidates the engine's bound let through to the exact score (None for an
    answer that is not an engine Recommendation, e.g. ONNX Runtime's tuple)."""
    exact = getattr(answer, "exact", None)
    return None if exact is None else exact / max(1, candidates)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first (argpartition, then sort the k)."""
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part])]


# ---- the ANN first stage ---------------------------------------------------------------------------
CLUSTERS = 1024  # mixture components of the clustered table
CLUSTER_NOISE = 0.5  # an item's offset from its centre, relative to the centres' spread (per coordinate)
INTERESTS = 5  # clusters a user's history is drawn from


def ann_table(engine, kind: str, seed: int) -> np.ndarray | None:
    """Give ``engine``'s item table (N+1, d) the structure the ANN points are measured on, in place (no
    second copy); returns each item's cluster (N,) for ``clustered``, None for ``gaussian``.

    - ``clustered`` (default): a mixture of :data:`CLUSTERS` Gaussians. Centres ~ N(0, I); an item is its
      centre (uniformly drawn) plus N(0, 0.5²·I) noise, the whole scaled so rows have the norm of the
      fresh model's own rows. A stand-in for a trained model's table, whose items group by topic; it is
      the case an ANN index is built for (recall at 1M: README).
    - ``gaussian``: the fresh model's own table: i.i.d. Gaussian rows, no structure at all, the worst case
      for any index (an IVF list is then an arbitrary slice of space).
    """
    if kind == "gaussian":
        return None
    table = engine.table_np
    n, d = table.shape[0] - 1, table.shape[1]
    rng = np.random.default_rng(seed)
    scale = float(np.linalg.norm(table[1 : min(n, 4096) + 1], axis=1).mean()) / math.sqrt(
        d * (1 + CLUSTER_NOISE**2)
    )
    centres = rng.standard_normal((CLUSTERS, d), dtype=np.float32)
    labels = rng.integers(0, CLUSTERS, size=n, dtype=np.int32)
    step = 1 << 16
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        noise = rng.standard_normal((hi - lo, d), dtype=np.float32)
        np.multiply(centres[labels[lo:hi]] + CLUSTER_NOISE * noise, scale, out=table[1 + lo : 1 + hi])
    return labels


def ann_history(rng: np.random.Generator, labels: np.ndarray | None, n_items: int, size: int) -> np.ndarray:
    """A user's history of ``size`` items: from :data:`INTERESTS` random clusters of a clustered table
    (a user with a few interests), uniform over the catalog otherwise."""
    if labels is None:
        return rng.integers(1, n_items + 1, size=size)
    chosen = rng.choice(CLUSTERS, size=INTERESTS, replace=False)
    pool = np.flatnonzero(np.isin(labels, chosen)) + 1
    return rng.choice(pool, size=size)


def ann_sweep(runner: _Runner) -> None:
    """ANN first stage against exhaustive scoring, at each N of ``ann_candidates`` (docs/design.md §4).

    One fresh MS-LI model (K = 8 when swept, else the largest K; the shortest L), its table given the
    structure of ``ann_table``, ``ann_users`` users with full slots. Per index kind the index is built
    once (its build time and bytes are recorded); per probes value the recall@10 of the ANN answer
    against the exhaustive answer (seen items excluded in both) is averaged over the users, and the
    mean number of candidates re-scored is kept (``retrieved``). Timing: the exhaustive request and
    every probes value in rounds (:func:`timing.time_in_rounds`), each call the next user's request;
    ``passes`` times (at least 3 rounds each: an exhaustive call at 10M takes seconds, so the time
    budget alone would leave one round), each figure the median of the passes'. One thread for torch,
    BLAS and faiss.
    Rows: ``variant`` ``ann_exhaustive`` (the whole catalog, exact) and ``ann`` (``method`` the index).
    """
    import itertools

    import torch

    from msli_core.models.msli import MSLIConfig, MSLIModel
    from msli_core.serving import retrieval
    from msli_core.serving.bench import merge_passes
    from msli_core.serving.engine import InferenceEngine

    s = runner.s
    K = 8 if 8 in s.segments else max(s.segments)
    L = min(s.history)
    for N in s.ann_candidates:
        torch.manual_seed(s.seed)
        config = MSLIConfig(n_items=N, n_genres=20, dim=s.dim, segments=K, max_len=L, layers=s.layers,
                            heads=s.heads, dropout=0.0, recency_slot=LAB_RECENCY_SLOT)  # fmt: skip
        model = MSLIModel(config).eval()
        model.kind = "msli"
        engine = InferenceEngine(model)
        engine.offline()
        labels = ann_table(engine, s.ann_table, s.seed)
        rng = np.random.default_rng(s.seed + 1)
        users = list(range(s.ann_users))
        with torch.inference_mode():
            for user in users:
                engine.load_history(user, ann_history(rng, labels, N, L + (K - 1) * engine.S))
            exact = {user: engine.recommend(user, None, top_k=TOP_K) for user in users}
        del labels
        exact_fraction = float(np.mean([r.exact for r in exact.values()])) / N
        shape = runner.common(model="msli", stage="online", backend="torch", segments=K, candidates=N,
                              history=L, segment_len=engine.S, table=s.ann_table)  # fmt: skip
        for kind in s.ann:
            index = retrieval.build_index(
                engine.table_np, retrieval.AnnSettings(kind=kind, neighbours=s.ann_neighbours, seed=s.seed)
            )
            runner.tick(f"{retrieval.LABELS[kind]} index over N={N:,} built in {index.build_seconds:.0f} s")
            recall, retrieved = {}, {}
            for p in s.ann_probes:
                index.probes = p
                with torch.inference_mode():
                    answers = {u: engine.recommend(u, retrieval=index, top_k=TOP_K) for u in users}
                recall[p] = float(
                    np.mean([len(set(answers[u].items) & set(exact[u].items)) / TOP_K for u in users])
                )
                retrieved[p] = float(np.mean([a.retrieved for a in answers.values()]))
            passes = []
            for _ in range(s.passes):
                cycle = itertools.cycle(users)

                def whole(cycle=cycle, engine=engine):
                    return engine.recommend(next(cycle), None, top_k=TOP_K)

                def ann(p, cycle=cycle, index=index, engine=engine):
                    index.probes = p
                    return engine.recommend(next(cycle), retrieval=index, top_k=TOP_K)

                calls = [whole] + [lambda p=p: ann(p) for p in s.ann_probes]
                n = len(calls)
                with torch.inference_mode():
                    # the exhaustive call streams the whole table (nothing to re-warm) and is slow: 2 per
                    # round; each ANN call re-warms what it evicted, then 5 timed
                    timings = time_in_rounds(calls, budget_s=s.budget_s * n, min_rounds=3,
                                             warmup=[1] + [s.warmup] * (n - 1), max_calls=s.repeats,
                                             timed=[2] + [5] * (n - 1),
                                             rewarm=[False] + [True] * (n - 1))  # fmt: skip
                keep = s.threads == 1
                rows = []
                (wall, cpu), *rest = timings
                rows.append(_row(**summarize(np.asarray(wall), cpu if keep else None), calls=len(wall),
                                 capped=len(wall) < s.repeats, passes=1, variant="ann_exhaustive",
                                 method="exhaustive", recall_at_10=1.0, exact_fraction=exact_fraction,
                                 note=f"the whole catalog scored exactly, on the same {s.ann_table} table",
                                 **shape))  # fmt: skip
                for p, (wall, cpu) in zip(s.ann_probes, rest, strict=True):
                    rows.append(_row(**summarize(np.asarray(wall), cpu if keep else None), calls=len(wall),
                                     capped=len(wall) < s.repeats, passes=1, variant="ann", method=kind,
                                     probes=p, lists=index.lists, neighbours=s.ann_neighbours,
                                     recall_at_10=recall[p], retrieved=retrieved[p], index_bytes=index.bytes,
                                     build_s=index.build_seconds,
                                     note=f"{index.describe()}; {K}+1 queries, the union re-scored exactly",
                                     **shape))  # fmt: skip
                passes.append(rows)
            runner.rows.extend(merge_passes(passes))
            runner.tick(f"{retrieval.LABELS[kind]} N={N:,}: probes {', '.join(map(str, s.ann_probes))}")
            del index
        del engine, model, exact
