"""What a ``msli bench`` sweep is: its settings (:class:`BenchSettings`), the columns of its rows, the
memory its largest point needs, and its result. Shared by the harness (:mod:`bench`) and the code that
times each point (:mod:`bench_points`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from msli_core import kinds
from msli_core.errors import MsliError

MODELS = kinds.LADDER  # the serving ladder: msli, two-tower, full-forward, cross-encoder
# full-forward is timed with the two-tower model's encoder (its rows need the two-tower model built)
BACKENDS = ("torch", "onnxruntime")
LAB_RECENCY_SLOT = False  # the latency lab's synthetic MS-LI models keep one open slot, the form the
# cost model describes (K-1 closed segments). A model with the recency slot (the trained default) has
# the same K vectors online and the same window pass nearline, with one closed segment fewer to encode;
# `msli bench --model DIR` times a trained model as it is.
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
    "exact_fraction",
    "probes",
    "lists",
    "neighbours",
    "recall_at_10",
    "retrieved",
    "index_bytes",
    "build_s",
    "table",
    "note",
)
ANN_TABLES = ("clustered", "gaussian")  # the generated item table of the ANN points (bench_points.ann_table)
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
    # the ANN first stage (serving/retrieval.py), at K = 8 (else the largest K) and the shortest L: index
    # kinds ("ivf", "hnsw"; () = none), the catalogs it is timed at beside exhaustive scoring of the same
    # generated table, the probes swept (IVF nprobe / HNSW efSearch), k' per query, the table's structure
    ann: tuple[str, ...] = ()  # `msli bench` (and `make bench`) defaults to ("ivf",) at N = 100,000
    ann_candidates: tuple[int, ...] = (100_000,)
    ann_probes: tuple[int, ...] = (8, 16, 32, 64)
    ann_neighbours: int = 32
    ann_table: str = "clustered"
    ann_users: int = 16  # users whose recall@10 is averaged (and whose requests the timing cycles through)

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
        from msli_core.serving import retrieval

        bad_ann = [a for a in self.ann if a not in retrieval.INDEX_KINDS]
        if bad_ann:
            raise MsliError(f"--ann takes a comma list of ivf, hnsw or none; {bad_ann[0]!r} is not one.")
        if self.ann:
            if self.ann_table not in ANN_TABLES:
                raise MsliError(
                    f"--ann-table takes {' or '.join(ANN_TABLES)}; {self.ann_table!r} is not one."
                )
            for flag, values, hi in (
                ("--ann-candidates", self.ann_candidates, retrieval.MAX_ITEMS),
                ("--ann-probes", self.ann_probes, retrieval.MAX_PROBES),
            ):
                bad = [v for v in values if not isinstance(v, int) or not 1 <= v <= hi]
                if not values or bad:
                    raise MsliError(
                        f"{flag} values must be whole numbers in 1..{hi:,}; "
                        f"{bad[0] if bad else 'nothing'!r} is not."
                    )
            if not TOP_K <= self.ann_neighbours <= retrieval.MAX_NEIGHBOURS:
                raise MsliError(
                    f"--ann-neighbours must be in {TOP_K}..{retrieval.MAX_NEIGHBOURS:,} (at least the "
                    f"top-{TOP_K}); {self.ann_neighbours} is not."
                )
            small = [n for n in self.ann_candidates if n < 64 * TOP_K]
            if small:
                raise MsliError(
                    f"--ann-candidates {small[0]} is too small for an index; pass at least {64 * TOP_K}."
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
    ann = 0
    if settings.ann:  # its own model (embedding, genre features) and table at its largest N, plus the index
        from msli_core.serving import retrieval

        n = max(settings.ann_candidates)
        ann = (n + 1) * (2 * d + 20 + 3) * 4 + max(retrieval.index_bytes(kind, n, d) for kind in settings.ann)
    return int(max(copies * table + scores, teaching, ann) + encode + runtime)


@dataclass
class BenchResult:
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    error_report: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# timing


def _row(**kw: Any) -> dict[str, Any]:
    row = {k: None for k in ROW_KEYS}
    row.update(kw)
    return row
