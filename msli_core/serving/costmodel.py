"""A roofline cost model of the three stages (docs/design.md §4): FLOPs and bytes per stage, then seconds.

Every stage is a short list of *phases* (a matmul, an attention block, an element-wise pass, a top-k);
each phase is timed as a roofline plus what rooflines leave out, and a stage is the sum of its phases::

    t_phase = max(F / flops, B / bw(B)) + P · W / bw(B) + Σ[a > C]·a / fault_bw + ops · overhead[path]

(a top-k phase counts the scores it scans as ``F``, at ``select_rate`` instead of ``flops``; torch's fused
attention core at ``attention_flops`` plus ``attention_row_s`` per query row and head: narrow heads and
short rows keep it far below a dense matmul's rate)

- ``F`` FLOPs (a multiply-add is 2), ``B`` bytes moved (reads + writes, weights included), ``ops``
  operator calls, all counted from the code (see the constants below); ``W`` the wide operand of a
  skinny product with two or more rows (the (d, N) item table), ``a`` the size of each freshly
  allocated output block. torch's linear layers (addmm) first copy the bias into the output and then
  read and rewrite it in the GEMM: two more passes over every dense output, counted in ``B``.
- ``flops``: FLOP/s a dense float matmul sustains. ``bw(B)``: the streaming bandwidth of a working set
  of ``B`` bytes, three tiers: ``cache_bandwidth`` up to ``cache_bytes`` (the L2), ``llc_bandwidth`` up to
  ``llc_bytes`` (the share of the last-level cache one core gets), ``bandwidth`` (memory) beyond. An
  element-wise phase (layer norms, GELU, softmax, embedding sums) streams at
  ``min(bw(B), elementwise_bandwidth)``: those passes are compute-bound well below the streaming rate.
- ``P`` (``skinny_passes``, per backend): extra passes over ``W`` a BLAS makes to pack the table of a
  ``(R >= 2, d) @ (d, N)`` product (numpy's OpenBLAS and ONNX Runtime's MLAS about one, torch ~0); a
  table that fits in the L2 is packed from it at no visible cost (measured: 0 at N = 1000, d = 64).
- ``fault_bw``: first-touching fresh pages. An output block larger than ``C`` = 32 MiB (glibc's
  largest mmap threshold on 64-bit: such blocks are mapped fresh on every allocation and unmapped on
  free, smaller ones are recycled from the heap) costs page faults and zeroing on top of its write,
  on torch and numpy; ONNX Runtime's CPU arena recycles its buffers, so its outputs never fault.
- ``overhead[path]``: seconds per operator call: numpy calls, ONNX Runtime node dispatches, torch bare
  calls ("torch": the online request's bookkeeping), torch calls inside ``nn.Module`` code
  ("torch_module"), inside the engine's KV-cached update ("torch_kv", with its Python glue) and in
  an update followed by a request ("torch_e2e": each path runs after the other evicted its caches),
  each split into the calls of a block's KV-cached step ("torch_kv_layer", "torch_e2e_layer": exact
  GELU, fused attention and linears, each far dearer per call than the views and copies around them)
  and the rest; "numpy_gemm" for a numpy matrix product (a BLAS call: dearer than other numpy calls).

Constants and how :func:`calibrate` measures them on the machine at hand (one thread: every call timed
on the thread's CPU clock, so time other processes hold the core is left out; the median of each):

- ``flops``, ``bandwidth``, ``overhead`` (the three headline constants): least-squares fit on log-time
  (:func:`fit`) of :func:`micro_benchmarks`: square and activation-shaped torch matmuls, copies of 64
  and 256 MiB, tiny calls (a one-token transformer block, bare tensor ops, numpy calls, 1- and
  64-node ONNX Runtime chains, the exported scorer and segment encoder of a toy model (a request, and
  an update followed by a request), a (2, 8) @ (8, 16) numpy and torch product, the engine's observe,
  recommend and the two alternating on toy models with d = 8 and one or two layers, timed in rounds:
  their difference is one block's step);
- the refinements, each from the micro-benchmark that isolates it (:func:`refinement_benchmarks`):
  copies at working sets of half the L2 and 4-64 MiB (cache tiers), a (2, 64) @ (64, 65536) product
  against a (1, 64) one per backend (packing passes), layer norm + GELU + softmax over a 2 MiB tensor
  (element-wise rate), filling a fresh vs an existing 64 MiB tensor (page-fault rate), top-10 of 2^18
  scores with torch.topk and np.argpartition (selection rate), fused attention over 256 sequences of
  32 tokens (attention rate).

Hardware the user types in (or a preset) may give only the three headline constants; the others then
follow from them with the documented ``DEFAULT_*`` ratios (and no cache tiers), so predictions still
extrapolate to other machines and to models of billions of parameters. Nothing is fitted on the bench
sweep's points: the sweep is the held-out check (:func:`error_report`, against each point's CPU-time
median, see :func:`measured_ms`). Summing per-phase rooflines (rather than one roofline per stage) keeps
a compute-bound matmul and a memory-bound softmax in the same stage from hiding each other.

Transformer layer of width d, ``h`` heads and FFN width ``f·d`` over T tokens: projections
``2·T·d·(3d + d) + 2·T·d·f·d·2 = (8 + 4f)·T·d²``, attention ``2·T²·d`` for ``Q·Kᵀ`` plus ``2·T²·d`` for
``A·V``, i.e. ``4·T²·d`` (independent of h). Shapes use the project's letters: L history, K segments,
S segment length, d width, N candidates.

Pure functions; nothing here imports torch except the calibration.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from msli_core.errors import MsliError
from msli_core.outputs import atomic_write_text
from msli_core.serving.timing import cache_size, cpu_model, time_in_rounds

MODEL_KINDS = ("msli", "two-tower", "cross-encoder")
BACKENDS = ("torch", "onnxruntime", "numpy")
# Overhead keys: a backend's own, plus "torch_module" for aten calls made inside nn.Module code (the
# models' forward passes pay Module.__call__ and hook dispatch on top of each op, ~2-3x a bare call).
# "torch_kv" for the engine's KV-cached update (observe), whose Python glue between its aten calls costs
# more per call than the online path's; "torch_e2e" for an update followed by a request, where each
# path runs after the other has evicted its caches (measured: the pair costs more than its halves).
# "torch_kv_layer" / "torch_e2e_layer": the same two paths' calls inside a transformer block's KV-cached
# step, measured as the difference of toy engines with one and two layers: a block step is mostly
# heavy kernels (exact GELU ~17 us, scaled_dot_product_attention ~13 us, linears ~8 us per call here)
# while the bookkeeping around it is cheap views, so one per-call average over both would undercount
# each extra layer. "numpy_gemm": a numpy matrix product (BLAS sgemm setup, ~2.5x a plain numpy call);
# "torch_gemm": a bare torch matrix product (cheaper than the average torch call of a request).
# "onnxruntime_scorer": a call of the online request on ONNX Runtime (the exported scorer's nodes, its
# session run, the numpy top-k after it: real kernels, dearer than the Add chain's nodes);
# "onnxruntime_e2e": a call of an update (the segment encoder session) followed by a request.
OVERHEAD_KEYS = (
    *BACKENDS, "torch_module", "torch_kv", "torch_e2e", "torch_kv_layer", "torch_e2e_layer", "numpy_gemm",
    "onnxruntime_scorer", "onnxruntime_e2e", "torch_gemm",
)  # fmt: skip
TORCH_KV_RATIO = 1.6  # torch_kv / torch where only "torch" is known (measured here: 1.5-1.8)
NUMPY_GEMM_RATIO = 2.5  # numpy_gemm / numpy where only "numpy" is known (measured here: 2.3-3.2)
# An overhead key that a hardware description lacks (older files, presets, typed-in hardware): the key
# it derives from and the ratio to it; a key without a derivation falls back to "torch".
OVERHEAD_FALLBACKS: dict[str, tuple[str, float]] = {
    "torch_module": ("torch", 2.0),  # Module.__call__ and hook dispatch on top of each call
    "torch_kv": ("torch", TORCH_KV_RATIO),
    "torch_e2e": ("torch_kv", 1.0),  # an update's per-call cost for the pair
    "torch_kv_layer": ("torch_kv", 1.0),  # no per-layer split
    "torch_e2e_layer": ("torch_e2e", 1.0),
    "torch_gemm": ("torch", 1.0),
    "onnxruntime_scorer": ("onnxruntime", 1.0),
    "onnxruntime_e2e": ("onnxruntime", 1.0),
    "numpy_gemm": ("numpy", NUMPY_GEMM_RATIO),
}
STAGES = ("offline", "nearline", "nearline_full", "online", "end_to_end")
CALIBRATION_FILE = "hardware.json"  # under platformdirs.user_cache_dir("msli-lab")

# Operator calls per phase; each pays the backend's per-call overhead once. torch: aten kernels
# counted with torch.profiler on the eager code paths (msli_core/models, msli_core/serving/engine.py),
# view-like calls (select, slice, view, transpose, ...) left out as nearly free: a transformer block
# (layers.Block) makes 12, MSLIModel.encode_segments 52 with 2 blocks, the engine's observe() 35,
# full_reencode() 60 (K = 1) to 70 (K = 8), recommend() 13 (K = 1) to 24 (K = 8). onnxruntime: nodes of
# the exported graphs (onnx_export.py) as the sessions run them, after ORT_ENABLE_ALL's fusions (the
# segment encoder 182 + 115 per block exported, 93 + 54 per block run; the scorer 36 exported, 20 run),
# plus one session run, counted as SESSION_NODES node dispatches.
OPS_PER_LAYER = 12  # torch, one transformer block: 4 matmuls, 7 element-wise, 1 attention
OPS_EMBED = 3  # torch: gather, position add, dropout
OPS_POOL = 25  # torch: final norm, pooling softmax over prefixes, output linear, last-prefix pick
OPS_FULL_BOOKKEEPING = 6  # torch full_reencode(): segmenting, copies, queries (+ 1.5 per segment)
OPS_OPEN_BOOKKEEPING = 7  # torch observe(): cache slot copies, queries, [u; q] rows
OPS_KV_LAYER = 11  # torch, one KV-cached block step
OPS_KV_POOL = 6  # torch, running pooling + output linear
OPS_ONLINE = {"attention": 8, "mlp": 12, "max": 1, "sum": 2, "dot": 0}  # torch, the aggregation itself
OPS_TOPK = 13  # torch recommend(): seen masking, top-k, the top-k's contributions, result arrays
ORT_NODES_LAYER = 54
ORT_NODES_OUTSIDE_LAYERS = 93
ORT_NODES_SCORER = 20
SESSION_NODES = 8  # one InferenceSession.run ≈ this many node dispatches
ORT_SOFTMAX_PASSES = 8  # the exported attention: scale, causal mask, max, subtract, exp, sum, divide
NUMPY_TOPK_CALLS = 5  # argpartition, argsort, three gathers after the ORT scorer
ELEMENTWISE_PASSES = 26  # element-wise reads+writes of (T, d) per block: norms, bias, gelu on 4d, residuals
# Default ratios for hardware that gives only the three headline constants (user-entered, presets):
# one extra pass over a skinny product's table (packing), normalisation/activation passes at half the
# streaming bandwidth, first-touch of fresh pages at a fifth of it; no cache tiers (all data from
# memory). Measured on the 2-core development VM: 0-1.1 passes, 0.5 and 0.2.
DEFAULT_SKINNY_PASSES = 1.0
DEFAULT_ELEMENTWISE_RATIO = 0.5
DEFAULT_FAULT_RATIO = 0.2
DEFAULT_SELECT_RATIO = 1 / 40  # top-k scans elements/s = bandwidth (bytes/s) / 40 (~3 ns at 12 GB/s)
DEFAULT_ATTENTION_RATIO = 0.15  # fused attention at head width 32 / dense matmul FLOP/s (measured: 0.14)
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX (64-bit): bigger blocks fault anew


# ---------------------------------------------------------------------------------------------------
# Hardware


@dataclass(frozen=True)
class Hardware:
    """The three constants of the cost model, and where they came from."""

    name: str  # shown in the app's preset list
    flops: float  # FLOP/s a dense float matmul sustains
    bandwidth: float  # bytes/s a streaming read+write sustains
    overhead_s: dict[str, float]  # seconds per operator call, per backend ("torch", "onnxruntime", "numpy")
    source: str  # "measured ..." | "user-entered" | "assumption: ..."
    details: dict[str, Any] = field(default_factory=dict)  # cpu, threads, versions, raw samples
    # Refinements (None / 0: derived from the three headline constants with the DEFAULT_* ratios below).
    # Cache tiers: a phase whose working set (its bytes) fits in ``cache_bytes`` (the L2) streams at
    # ``cache_bandwidth``; one that fits in ``llc_bytes`` (the share of the last-level cache one core
    # gets) at ``llc_bandwidth``; anything larger at ``bandwidth``.
    cache_bandwidth: float | None = None
    cache_bytes: float = 0.0
    llc_bandwidth: float | None = None
    llc_bytes: float = 0.0
    # Extra passes over the wide operand of a skinny product (R >= 2 rows times a (d, N) table), per
    # backend: a BLAS that packs the table first (numpy's OpenBLAS) reads and writes it once more.
    skinny_passes: dict[str, float] = field(default_factory=dict)
    # bytes/s of normalisation / activation passes (layer norm, GELU, softmax) over cached data: they
    # are compute-bound well below the streaming bandwidth.
    elementwise_bandwidth: float | None = None
    # bytes/s of first-touching freshly allocated output pages (page faults + zeroing): output blocks
    # above MMAP_THRESHOLD_BYTES come back from the allocator as new pages on every call.
    fault_bandwidth: float | None = None
    # elements/s a top-k selection scans (torch.topk, np.argpartition): branchy, far below streaming
    select_rate: float | None = None
    # FLOP/s of torch's fused attention (scaled_dot_product_attention) at a small head width: it works
    # in (T, T) tiles of narrow heads and reaches a fraction of a dense matmul's rate
    attention_flops: float | None = None
    # seconds per query row and head of the fused attention on top of its FLOPs (the online softmax's
    # per-row bookkeeping): why short sequences run at a lower FLOP rate than long ones
    attention_row_s: float = 0.0

    def bandwidth_for(self, nbytes: float) -> float:
        if self.cache_bandwidth and nbytes <= self.cache_bytes:
            return max(self.cache_bandwidth, self.bandwidth)
        if self.llc_bandwidth and nbytes <= self.llc_bytes:
            return max(self.llc_bandwidth, self.bandwidth)
        return self.bandwidth

    def packing(self, backend: str) -> float:
        """Extra passes over a skinny product's table on ``backend`` (else ``DEFAULT_SKINNY_PASSES``)."""
        return self.skinny_passes.get(backend, DEFAULT_SKINNY_PASSES)

    def elementwise(self) -> float:
        return self.elementwise_bandwidth or DEFAULT_ELEMENTWISE_RATIO * self.bandwidth

    def faults(self) -> float:
        return self.fault_bandwidth or DEFAULT_FAULT_RATIO * self.bandwidth

    def selection(self) -> float:
        return self.select_rate or DEFAULT_SELECT_RATIO * self.bandwidth

    def attention(self) -> float:
        return self.attention_flops or DEFAULT_ATTENTION_RATIO * self.flops

    def overhead(self, backend: str) -> float:
        if backend in self.overhead_s:
            return self.overhead_s[backend]
        base, ratio = OVERHEAD_FALLBACKS.get(backend, ("", 1.0))
        if base in self.overhead_s or base in OVERHEAD_FALLBACKS:
            return ratio * self.overhead(base)
        return self.overhead_s.get("torch", next(iter(self.overhead_s.values())))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "The hardware description") -> Hardware:
        """Hardware from a calibration JSON object; every constant must be a finite number of the right
        sign, else :class:`MsliError` naming ``origin`` (the file) and the field."""
        if not isinstance(data, dict):
            raise MsliError(
                f"{origin} holds {type(data).__name__}, not a JSON object with name, flops, bandwidth "
                "and overhead_s; re-run `msli costmodel calibrate`."
            )
        for key in ("name", "flops", "bandwidth", "overhead_s"):
            if key not in data:
                raise MsliError(
                    f"{origin} lacks the field {key!r}; it needs name, flops, bandwidth and overhead_s "
                    "(re-run `msli costmodel calibrate`)."
                )
        overhead = data["overhead_s"]
        if _is_number(overhead):
            overhead = {"torch": overhead}
        if not isinstance(overhead, dict) or not overhead:
            raise MsliError(
                f"{origin}: overhead_s is {overhead!r}; it must be seconds per call, one number or an "
                'object like {"torch": 3e-6} (re-run `msli costmodel calibrate`).'
            )
        for key in ("skinny_passes", "details"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise MsliError(f"{origin}: {key} is {data[key]!r}; it must be a JSON object.")

        def number(field_name: str, value: Any, *, positive: bool) -> float:
            if not _is_number(value) or not math.isfinite(value) or value < 0 or (positive and value == 0):
                need = "a finite number above 0" if positive else "a finite number of at least 0"
                raise MsliError(
                    f"{origin}: {field_name} is {value!r}; it must be {need} "
                    "(re-run `msli costmodel calibrate`)."
                )
            return float(value)

        def optional(field_name: str) -> float | None:  # absent, null or 0: derived from the headline three
            value = data.get(field_name)
            if value is None or (_is_number(value) and value == 0):
                return None
            return number(field_name, value, positive=True)

        return cls(
            name=str(data["name"]),
            flops=number("flops", data["flops"], positive=True),
            bandwidth=number("bandwidth", data["bandwidth"], positive=True),
            overhead_s={str(k): number(f"overhead_s.{k}", v, positive=False) for k, v in overhead.items()},
            source=str(data.get("source", "file")),
            details=dict(data.get("details") or {}),
            cache_bandwidth=optional("cache_bandwidth"),
            cache_bytes=number("cache_bytes", data.get("cache_bytes") or 0.0, positive=False),
            llc_bandwidth=optional("llc_bandwidth"),
            llc_bytes=number("llc_bytes", data.get("llc_bytes") or 0.0, positive=False),
            skinny_passes={
                str(k): number(f"skinny_passes.{k}", v, positive=False)
                for k, v in (data.get("skinny_passes") or {}).items()
            },
            elementwise_bandwidth=optional("elementwise_bandwidth"),
            fault_bandwidth=optional("fault_bandwidth"),
            select_rate=optional("select_rate"),
            attention_flops=optional("attention_flops"),
            attention_row_s=number("attention_row_s", data.get("attention_row_s") or 0.0, positive=False),
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def custom_hardware(
    flops: float, bandwidth: float, overhead_s: float, name: str = "user-entered"
) -> Hardware:
    """Hardware the user types in: FLOP/s, bytes/s, seconds per operator call (all backends)."""
    for label, value in (("flops", flops), ("bandwidth", bandwidth), ("overhead_s", overhead_s)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise MsliError(f"Hardware {label} must be a positive number, not {value!r}; enter a value > 0.")
    return Hardware(
        name=name,
        flops=float(flops),
        bandwidth=float(bandwidth),
        overhead_s={b: float(overhead_s) for b in OVERHEAD_KEYS},
        source="user-entered",
    )


# Named presets: round numbers, clearly assumptions, for "what if I ran this elsewhere".
PRESETS: dict[str, Hardware] = {
    "laptop CPU": Hardware(
        "laptop CPU",
        flops=2.0e11,
        bandwidth=4.0e10,
        overhead_s={"torch": 5e-6, "torch_module": 1.2e-5, "onnxruntime": 1e-6, "numpy": 1e-6},
        source="assumption: 8 cores with AVX2 at ~60% of peak, dual-channel DDR5",
    ),
    "server CPU": Hardware(
        "server CPU",
        flops=2.0e12,
        bandwidth=2.0e11,
        overhead_s={"torch": 4e-6, "torch_module": 1e-5, "onnxruntime": 8e-7, "numpy": 1e-6},
        source="assumption: 32 cores with AVX-512 at ~50% of peak, 8 DDR5 channels",
    ),
    "datacenter GPU": Hardware(
        "datacenter GPU",
        flops=4.0e14,
        bandwidth=3.0e12,
        overhead_s={"torch": 1e-5, "torch_module": 1.5e-5, "onnxruntime": 8e-6, "numpy": 1e-5},
        source="assumption: H100-class, bf16 tensor cores at ~40% of peak, HBM3, eager kernel launches",
        # cuBLAS does not pack a skinny operand, and torch's caching allocator reuses device memory
        skinny_passes={"torch": 0.0, "onnxruntime": 0.0, "numpy": 0.0},
        fault_bandwidth=1e18,
    ),
}

# Used when this machine was never calibrated: a small 2-core cloud VM, measured on the project's
# development machine (Intel Xeon, 2 vCPUs, torch 2.13, onnxruntime 1.32; the median of the four
# calibrations of a `make bench` run, rounded); an assumption anywhere else.
FALLBACK = Hardware(
    "fallback (2-core cloud VM)",
    flops=1.5e11,
    bandwidth=1.2e10,
    overhead_s={
        "torch": 3.3e-6,
        "torch_module": 9e-6,
        "torch_kv": 4.9e-6,
        "torch_kv_layer": 5.9e-6,
        "torch_e2e": 5.2e-6,
        "torch_e2e_layer": 6.1e-6,
        "torch_gemm": 1.8e-6,
        "onnxruntime": 5.5e-7,
        "onnxruntime_scorer": 1e-6,
        "onnxruntime_e2e": 6.5e-7,
        "numpy": 1.1e-6,
        "numpy_gemm": 1.3e-6,
    },
    source="assumption: bundled preset; run `msli costmodel calibrate` to measure this machine",
    cache_bandwidth=4.4e10,
    cache_bytes=2 * 2**20,
    llc_bandwidth=2.4e10,
    llc_bytes=56 * 2**20,
    skinny_passes={"numpy": 1.07, "onnxruntime": 0.84, "torch": 0.08},
    elementwise_bandwidth=9.8e9,
    fault_bandwidth=3e9,  # 4 KiB pages; when transparent huge pages back a block, faults are nearly free
    select_rate=3.6e8,
    attention_flops=9.7e10,
    attention_row_s=4.6e-8,
)


MAX_CALIBRATION_BYTES = 16 * 2**20  # a calibration file is a few KB; anything this large is not one


def calibration_path() -> Path:
    """Where :func:`calibrate` stores this machine's constants (``MSLI_CACHE_DIR`` overrides)."""
    override = os.environ.get("MSLI_CACHE_DIR")
    if override:
        return Path(override) / CALIBRATION_FILE
    import platformdirs

    return Path(platformdirs.user_cache_dir("msli-lab")) / CALIBRATION_FILE


def load_hardware(path: str | os.PathLike | None = None) -> Hardware:
    """This machine's measured constants if :func:`calibrate` ran, else :data:`FALLBACK`."""
    explicit = path is not None
    target = Path(path) if explicit else calibration_path()
    if not target.exists():
        if explicit:
            raise MsliError(f"{target} does not exist; run `msli costmodel calibrate --out {target}` first.")
        return FALLBACK
    if not target.is_file():
        raise MsliError(
            f"{target} is not a file; pass a calibration .json file written by `msli costmodel calibrate`."
        )
    try:
        if target.stat().st_size > MAX_CALIBRATION_BYTES:
            raise MsliError(
                f"{target} is larger than {MAX_CALIBRATION_BYTES // 2**20} MiB, which no calibration file "
                "is; run `msli costmodel calibrate` again."
            )
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise MsliError(f"{target} is not a readable hardware JSON file ({err}); calibrate again.") from err
    return Hardware.from_dict(data, origin=str(target))


def save_hardware(hardware: Hardware, path: str | os.PathLike | None = None) -> Path:
    target = Path(path) if path is not None else calibration_path()
    atomic_write_text(target, json.dumps(hardware.as_dict(), indent=2))
    return target


def hardware_presets(measured: Hardware | None = None) -> dict[str, Hardware]:
    """The presets the what-if page lists: this machine (measured, or the fallback) first."""
    here = measured if measured is not None else load_hardware()
    return {"this machine": here, **PRESETS}


# ---------------------------------------------------------------------------------------------------
# Model shapes, FLOPs and bytes


@dataclass(frozen=True)
class ModelShape:
    """The sizes the cost depends on. Weights do not matter; only shapes do."""

    kind: str = "msli"  # "msli" | "two-tower" | "cross-encoder"
    history: int = 200  # L: events in the user's history (capped at L_max)
    segments: int = 8  # K (two-tower: 1)
    segment_len: int | None = None  # S; default ceil(L / K)
    dim: int = 64  # d
    layers: int = 2  # transformer layers of the segment encoder / cross-encoder
    heads: int = 2  # attention heads (FLOPs do not depend on it; kept for the parameter count)
    candidates: int = 1000  # N scored per request
    ffn_mult: int = 4  # FFN width = ffn_mult · d
    dtype_bytes: int = 4  # 4 float32, 2 bf16/fp16, 1 int8
    aggregation: str = "attention"  # online aggregation of MS-LI
    catalog: int | None = None  # items encoded offline; default = candidates

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise MsliError(f"Model kind {self.kind!r} is unknown; use one of {', '.join(MODEL_KINDS)}.")
        for name in ("history", "segments", "dim", "layers", "heads", "candidates", "dtype_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise MsliError(f"Model shape {name} must be a positive integer, not {value!r}.")

    @property
    def k(self) -> int:
        return 1 if self.kind == "two-tower" else self.segments

    @property
    def s(self) -> int:
        """Segment length S: events per segment."""
        if self.segment_len:
            return self.segment_len
        return math.ceil(self.history / self.k)

    @property
    def n_items(self) -> int:
        return self.catalog or self.candidates

    def parameters(self) -> int:
        """Parameters of the encoder (layers, no embeddings): ``layers · (4 + 2f) · d²`` + biases."""
        d, f = self.dim, self.ffn_mult
        per_layer = (4 + 2 * f) * d * d + (4 + f + 1) * d + 4 * d
        return self.layers * per_layer


@dataclass(frozen=True)
class Phase:
    name: str
    flops: float  # FLOPs (multiply-add = 2)
    bytes: float  # bytes moved to/from memory
    ops: int  # operator calls (each pays the backend's overhead once)
    module: bool = False  # torch: the calls run inside nn.Module forward code ("torch_module" overhead)
    # "gemm" | "elementwise" | "select" | "attention": the bytes of an element-wise phase stream at
    # min(bandwidth, Hardware.elementwise()) (normalisation and activations are compute-bound); a
    # "select" phase (top-k) counts its scanned elements as FLOPs, at Hardware.selection() per second;
    # an "attention" phase (torch's fused attention) computes at Hardware.attention()
    kind: str = "gemm"
    fresh: tuple[float, ...] = ()  # bytes of each freshly allocated output (blocks > 32 MiB fault pages)
    wide_bytes: float = 0.0  # the table of a skinny product with >= 2 rows (packed: Hardware.packing passes)
    # torch: "kv" the engine's KV-cached update ("torch_kv"), "kv_layer" a block's step in it
    # ("torch_kv_layer"), "e2e" / "e2e_layer" the same in an update + request; numpy: "gemm" a product
    path: str = ""
    working_set: float = 0.0  # bytes one of its calls touches, for the cache tier (0: all of ``bytes``)
    attention_rows: float = 0.0  # an "attention" phase: query rows × heads (each pays attention_row_s)

    @property
    def fresh_bytes(self) -> float:
        return float(sum(self.fresh))


def encoder_phases(
    tokens_per_seq: int, seqs: int, shape: ModelShape, prefix: str = "", backend: str = "torch"
) -> list[Phase]:
    """A transformer over ``seqs`` sequences of ``T`` tokens each: embed, ``layers`` blocks, pool.

    Each block is three phases run one after another: the dense matmuls (compute: ``(8 + 4f)·T·d²``
    per sequence; bytes: weights + matmul inputs/outputs), the element-wise work around them (layer
    norms, bias adds, GELU on the 4d hidden, residuals: ``ELEMENTWISE_PASSES`` passes over (T, d)) and
    the attention core (``4·T²·d`` FLOPs; ``h·T²`` scores written, normalised and read).
    """
    T, B, d, f, b = tokens_per_seq, seqs, shape.dim, shape.ffn_mult, shape.dtype_bytes
    ort = backend == "onnxruntime"
    weights = (4 + 2 * f) * d * d * b  # read once per layer
    dense_flops = (8 + 4 * f) * B * T * d * d
    matmul_bytes = (8 + 2 * f) * B * T * d * b  # inputs and outputs of qkv, proj, fc, fc2
    if not ort:  # torch's addmm first copies the bias into the output, then the GEMM reads and rewrites it
        matmul_bytes += 2 * (5 + f) * B * T * d * b  # outputs: qkv 3d, proj d, fc f·d, fc2 d
    elementwise_bytes = ELEMENTWISE_PASSES * B * T * d * b
    attn_flops = 4 * B * T * T * d
    attn_bytes = 4 * B * shape.heads * T * T * b + 4 * B * T * d * b
    outside = ORT_NODES_OUTSIDE_LAYERS + SESSION_NODES if ort else OPS_EMBED + OPS_POOL
    unit = B * T * d * b  # one (B·T, d) activation
    phases = [
        Phase(prefix + "embed", 2 * B * T * d, 3 * unit, outside // 2, True, "elementwise", (unit, unit))
    ]
    for i in range(shape.layers):
        dense_ops, attn_ops = (8, 5) if ort else (4, 1)
        rest = (ORT_NODES_LAYER if ort else OPS_PER_LAYER) - dense_ops - attn_ops
        fresh_dense = (3 * unit, unit, f * unit, unit)  # qkv, projection, fc, fc2
        fresh_ew = (unit, unit, f * unit, unit, unit)  # layer norms 2, GELU, residuals 2
        name = f"{prefix}layer{i}"
        phases += [
            Phase(f"{name}.dense", dense_flops, weights + matmul_bytes, dense_ops, True, "gemm", fresh_dense),
            Phase(f"{name}.elementwise", 0, elementwise_bytes, rest, True, "elementwise", fresh_ew),
            Phase(
                f"{name}.attention",
                attn_flops,
                attn_bytes,
                attn_ops,
                True,
                "gemm" if ort else "attention",
                (unit,),
                attention_rows=0.0 if ort else B * shape.heads * T,
            ),
        ]
        if ort:  # the exported graph spells attention out: scale, mask, softmax over (h, T, T) scores
            scores = B * shape.heads * T * T * 4
            phases.append(
                Phase(f"{name}.softmax", 0, ORT_SOFTMAX_PASSES * scores, 0, True, "elementwise", (scores,))
            )
    pool_flops = 4 * B * T * T + 4 * B * T * d + 2 * B * d * d  # prefix pooling weights, pooled sum, out
    pool_bytes = 4 * unit + B * T * T * b
    phases.append(
        Phase(
            prefix + "pool", pool_flops, pool_bytes, outside - outside // 2, True, "elementwise", (unit, unit)
        )
    )
    return phases


def kv_step_phases(shape: ModelShape) -> list[Phase]:
    """One new event through the open segment's KV cache (torch engine): one token per block.

    The new position attends to at most S cached positions (on average S/2).
    """
    d, f, b, S = shape.dim, shape.ffn_mult, shape.dtype_bytes, shape.s
    weights = (4 + 2 * f) * d * d * b
    t = max(1, S // 2)
    phases = [Phase("observe", 0, 0, OPS_OPEN_BOOKKEEPING, path="kv")]
    for i in range(shape.layers):
        flops, nbytes = (8 + 4 * f) * d * d + 4 * t * d, weights + 4 * t * d * b
        phases.append(Phase(f"kv{i}", flops, nbytes, OPS_KV_LAYER, path="kv_layer"))
    phases.append(Phase("kv.pool", 2 * d * d + 4 * t * d, d * d * b + 2 * t * d * b, OPS_KV_POOL, path="kv"))
    return phases


def item_table_phases(shape: ModelShape) -> list[Phase]:
    """Offline: id + genre + year features → one projection per item, (N, d)."""
    N, d, b = shape.n_items, shape.dim, shape.dtype_bytes
    G = 20  # genre features (multi-hot)
    # reads: id table, genre features; writes: projection, year gather; 2 adds and the padding mask,
    # each reading two (N, d) tensors and writing one: 11 passes over (N, d)
    # five (N, d) outputs are allocated: projection, year gather, two sums, the masked table
    # each call touches at most three (N, d) tensors (an add: two read, one written)
    nbytes = 11 * N * d * b + N * G * 4
    # five calls: two through submodules (the genre Linear, the year Embedding: "torch_module"), three
    # bare tensor ops in ItemEncoder.forward (two adds, the padding mask)
    flops = 2 * N * G * d + 4 * N * d
    return [
        Phase("item_encoder", flops, nbytes, 2, True, "gemm", (N * d * b,) * 5, working_set=3 * N * d * b),
        Phase("item_encoder.bare_ops", 0, 0, 3),
    ]


def online_phases(shape: ModelShape, backend: str = "torch") -> list[Phase]:
    """Per request: late interaction of K cached vectors with N items, then top-k."""
    N, d, b, K = shape.candidates, shape.dim, shape.dtype_bytes, shape.k
    ort = backend == "onnxruntime"
    # a two-tower model is the K = 1 case of the same code (the exported graph stacks [u; q] for it too)
    if shape.aggregation in ("attention", "mlp"):
        rows, agg, passes = 2 * K, shape.aggregation, 6  # [u; q] stacked: one (2K, d) @ (d, N)
    else:
        rows, agg, passes = K, shape.aggregation, 3
    # element-wise passes over (K, N) float32 after the product, counted from the code: torch (engine
    # fast path, in place) ~12: bias add, max, subtract, exp, sum, multiply, sum, divide; the exported
    # graph ~24 as exported (slices, bias add, where, max, subtract, exp, mask multiply, sum, 2
    # multiplies/divides for the contributions, sum), ~14 once ORT fuses its 36 nodes into 20.
    if passes:
        passes = 14 if ort else 12
    agg_ops = ORT_NODES_SCORER + SESSION_NODES if ort else OPS_ONLINE[agg]
    if not ort and rows == 2:  # K = 1: the engine skips the queries (softmax over one segment is 1)
        rows, passes, agg_ops = 1, 0, 1  # one row of the product is picked
    table_bytes = N * d * b
    phases = [
        Phase("interaction", 2 * rows * d * N, table_bytes + rows * N * 4, 1, fresh=(rows * N * 4,),
              wide_bytes=table_bytes if rows > 1 else 0.0),
        # ONNX Runtime's element-wise nodes broadcast over (B, K, N) and reduce over the narrow K axis:
        # compute-bound like normalisation; the engine's in-place passes on contiguous rows stream
        Phase("aggregate", 6 * K * N, passes * max(K, 1) * N * 4, agg_ops,
              kind="elementwise" if ort else "gemm", fresh=(N * 4, N * 4)),
        Phase("top_k", N, 2 * N * 4, NUMPY_TOPK_CALLS if ort else OPS_TOPK, kind="select"),
    ]  # fmt: skip
    if ort:  # the scorer session and the numpy top-k after it: "onnxruntime_scorer" per call
        phases = [replace(p, path="scorer") for p in phases]
    return phases


def cross_encoder_phases(shape: ModelShape, backend: str = "torch") -> list[Phase]:
    """Early interaction: a transformer over ``[history ; candidate]`` for each of the N candidates."""
    encoder = encoder_phases(shape.history + 1, shape.candidates, shape, backend=backend)
    return [*encoder, Phase("top_k", shape.candidates, 8 * shape.candidates, 2, kind="select")]


def stage_phases(shape: ModelShape, backend: str = "torch") -> dict[str, list[Phase]]:
    """Phases of every stage of one model. Cross-encoder: everything is online.

    ``nearline`` is the incremental update of a user whose history fills the window (``history`` =
    L_max events, the bench's user): the window slides on every event, so it is re-encoded, one pass
    over L positions, on torch and on ONNX Runtime alike (while a history is shorter than the window
    the torch engine takes the KV-cached step of :func:`kv_step_phases` instead). A closed segment is
    encoded once, when it closes; ``nearline_full`` re-encodes the window and the K-1 closed segments.
    ``nearline_open_segment`` is the window pass alone (the name is kept for the bench's rows).
    """
    if shape.kind == "cross-encoder":
        online = cross_encoder_phases(shape, backend)
        return {
            "offline": item_table_phases(shape),
            "nearline": [],
            "nearline_full": [],
            "online": online,
            "end_to_end": online,
        }
    open_segment = encoder_phases(shape.history, 1, shape, backend=backend)  # the window, (1, L)
    closed = encoder_phases(shape.s, shape.k - 1, shape, backend=backend) if shape.k > 1 else []
    full = open_segment + closed  # the window and the K-1 closed segments (batched)
    if backend == "torch":
        open_segment = [*open_segment, Phase("bookkeeping", 0, 0, OPS_OPEN_BOOKKEEPING)]
        full = [*full, Phase("bookkeeping", 0, 0, OPS_FULL_BOOKKEEPING + (3 * shape.k) // 2)]
    incremental = open_segment
    online = online_phases(shape, backend)
    end_to_end = incremental + online
    # an update then a request: each runs after the other evicted its caches
    if backend == "torch":
        end_to_end = [replace(p, path="e2e_layer" if p.path == "kv_layer" else "e2e") for p in end_to_end]
    elif backend == "onnxruntime":
        end_to_end = [replace(p, path="e2e") for p in end_to_end]
    return {
        "offline": item_table_phases(shape),
        "nearline": incremental,
        "nearline_open_segment": open_segment,
        "nearline_full": full,
        "online": online,
        "end_to_end": end_to_end,
    }


def phase_seconds(phase: Phase, hardware: Hardware, backend: str = "torch") -> float:
    """``max(F / flops, B / bandwidth(B)) + packing + faults + ops · overhead`` (see the module doc)."""
    if phase.kind == "select":
        compute = phase.flops / hardware.selection()
    elif phase.kind == "attention":
        compute = phase.flops / hardware.attention() + phase.attention_rows * hardware.attention_row_s
    else:
        compute = phase.flops / hardware.flops
    bandwidth = hardware.bandwidth_for(phase.working_set or phase.bytes)
    # a table that already sits in the L2 is packed from it, at a cost lost in the product's own
    packing = (
        hardware.packing(backend) * phase.wide_bytes / bandwidth
        if phase.wide_bytes > hardware.cache_bytes
        else 0.0
    )
    if phase.kind == "elementwise":
        bandwidth = min(bandwidth, hardware.elementwise())
    memory = phase.bytes / bandwidth
    faults = 0.0
    if backend != "onnxruntime":  # ORT's CPU arena recycles its buffers
        faults = sum(a for a in phase.fresh if a > MMAP_THRESHOLD_BYTES) / hardware.faults()
    return (
        max(compute, memory) + packing + faults + phase.ops * hardware.overhead(overhead_key(phase, backend))
    )


def overhead_key(phase: Phase, backend: str) -> str:
    """Which per-call cost of :class:`Hardware` a phase's operator calls pay on ``backend``."""
    if backend == "torch" and phase.path in ("kv", "kv_layer", "e2e", "e2e_layer"):
        return f"torch_{phase.path}"
    if backend == "torch" and phase.module:
        return "torch_module"
    if backend in ("numpy", "torch") and phase.path == "gemm":
        return f"{backend}_gemm"
    if backend == "onnxruntime" and phase.path in ("scorer", "e2e"):
        return f"onnxruntime_{phase.path}"
    return backend


@dataclass(frozen=True)
class Prediction:
    shape: ModelShape
    hardware: str
    backend: str
    seconds: dict[str, float]  # per stage, incl. end_to_end
    flops: dict[str, float]
    bytes: dict[str, float]
    bound: dict[str, str]  # "compute" | "memory" | "overhead": what dominates each stage

    @property
    def qps(self) -> float:
        """Requests per second one worker sustains, end to end (nearline update + online request)."""
        t = self.seconds["end_to_end"]
        return 1.0 / t if t > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.shape.kind,
            "hardware": self.hardware,
            "backend": self.backend,
            "parameters": self.shape.parameters(),
            **{f"{stage}_s": t for stage, t in self.seconds.items()},
            "qps": self.qps,
            "flops": dict(self.flops),
            "bytes": dict(self.bytes),
            "bound": dict(self.bound),
        }


def predict(shape: ModelShape, hardware: Hardware, backend: str = "torch") -> Prediction:
    """Per-stage seconds, end to end and QPS of ``shape`` on ``hardware``."""
    seconds, flops, nbytes, bound = {}, {}, {}, {}
    for stage, phases in stage_phases(shape, backend).items():
        seconds[stage] = sum(phase_seconds(p, hardware, backend) for p in phases)
        flops[stage] = float(sum(p.flops for p in phases))
        nbytes[stage] = float(sum(p.bytes for p in phases))
        terms = {
            "compute": flops[stage] / hardware.flops,
            "memory": nbytes[stage] / hardware.bandwidth,
            "overhead": sum(p.ops for p in phases) * hardware.overhead(backend),
        }
        bound[stage] = max(terms, key=terms.__getitem__) if phases else "none"
    return Prediction(shape, hardware.name, backend, seconds, flops, nbytes, bound)


def floor_phase(kind: str, rows: int, dim: int, candidates: int, dtype_bytes: int = 4) -> Phase:
    """The floors of the bench: a bare ``(rows, d) @ (d, N)`` matmul, or streaming the (N, d) table."""
    table = candidates * dim * dtype_bytes
    if kind == "matmul":
        out = rows * candidates * 4
        return Phase(
            "floor.matmul",
            2 * rows * dim * candidates,
            table + out,
            1,
            fresh=(out,),
            wide_bytes=table if rows > 1 else 0.0,
            path="gemm",
        )
    if kind == "bandwidth":
        return Phase("floor.bandwidth", 0, table, 0)
    raise ValueError(f"unknown floor {kind!r}")


# ---------------------------------------------------------------------------------------------------
# Fitting and calibration


@dataclass(frozen=True)
class Sample:
    """One timed micro-benchmark: its FLOPs, bytes, operator calls, backend and measured seconds."""

    flops: float
    bytes: float
    ops: int
    seconds: float
    backend: str = "torch"
    label: str = ""
    phases: tuple[Phase, ...] = ()  # when given, the sample is timed as these phases (a whole block)


def fit(samples: Sequence[Sample], name: str = "fitted", source: str = "fitted") -> Hardware:
    """Least-squares fit of (flops, bandwidth, overhead per backend) to ``samples`` on log-time.

    Initial values come from the samples that isolate each constant (the largest arithmetic intensity
    for flops, the smallest for bandwidth, the cheapest call for overhead); a few Gauss–Newton steps
    (``scipy.optimize.least_squares``) then refine all of them together.
    """
    import numpy as np
    from scipy.optimize import least_squares

    if len(samples) < 3:
        raise MsliError("Fitting the cost model needs at least 3 timed samples; run more micro-benchmarks.")
    backends = sorted({s.backend for s in samples})
    F = np.array([s.flops for s in samples], dtype=np.float64)
    B = np.array([s.bytes for s in samples], dtype=np.float64)
    ops = np.array([s.ops for s in samples], dtype=np.float64)
    T = np.array([s.seconds for s in samples], dtype=np.float64)
    which = np.array([backends.index(s.backend) for s in samples])
    if np.any(T <= 0):
        raise MsliError("Every timed sample must take a positive time; re-run the micro-benchmarks.")
    # initial values from the samples that isolate each constant: tiny calls -> overhead, high
    # arithmetic intensity -> flops, low intensity -> bandwidth (each net of the others' share)
    tiny = (F + B) < 1e5
    is_composite = np.array([bool(smp.phases) for smp in samples])
    over0 = []
    for i in range(len(backends)):
        pick = tiny & (which == i)
        pool = (
            T[pick] / np.maximum(ops[pick], 1)
            if pick.any()
            else T[which == i] / np.maximum(ops[which == i], 1)
        )
        over0.append(float(np.median(pool)))
    net = np.maximum(T - ops * np.array(over0)[which], 0.2 * T)
    intensity = F / np.maximum(B, 1)
    plain = ~tiny & ~is_composite
    compute, memory = plain & (intensity > 10), plain & (intensity < 1) & (B > 0)
    flops0 = float(np.median(F[compute] / net[compute])) if compute.any() else 1e11
    bw0 = float(np.median(B[memory] / net[memory])) if memory.any() else 1e10
    x0 = np.log([flops0, bw0, *over0])

    composite = [i for i, smp in enumerate(samples) if smp.phases]

    def residuals(x: np.ndarray) -> np.ndarray:
        flops, bw = np.exp(x[0]), np.exp(x[1])
        over = np.exp(x[2:])[which]
        pred = np.maximum(F / flops, B / bw) + ops * over
        for i in composite:  # Σ over the block's phases, as stage_phases would predict it
            pred[i] = sum(max(p.flops / flops, p.bytes / bw) + p.ops * over[i] for p in samples[i].phases)
        return np.log(pred) - np.log(T)

    spread = np.log(4.0)  # the refinement stays within 4x of the isolating estimates
    result = least_squares(residuals, x0, bounds=(x0 - spread, x0 + spread), method="trf", max_nfev=2000)
    x = result.x
    return Hardware(
        name=name,
        flops=float(np.exp(x[0])),
        bandwidth=float(np.exp(x[1])),
        overhead_s={b: float(np.exp(x[2 + i])) for i, b in enumerate(backends)},
        source=source,
        details={"fit_rms_log_error": float(np.sqrt(np.mean(result.fun**2))), "samples": len(samples)},
    )


def _time_call(fn: Callable[[], Any], min_calls: int = 5, budget_s: float = 0.3, cpu: bool = False) -> float:
    """Median seconds of ``fn()`` after a warm-up, ``min_calls`` at least or until the budget is spent.

    ``cpu``: time each call with the calling thread's CPU clock instead of the wall clock (one thread:
    leaves out the time other processes hold the core, the bench's ``cpu_p50_ms``).
    """
    import numpy as np

    clock = time.thread_time_ns if cpu else time.perf_counter_ns
    fn()
    times: list[int] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < budget_s:
        t0 = clock()
        fn()
        times.append(clock() - t0)
        if len(times) >= 10_000:
            break
    return max(float(np.median(times)), 1.0) / 1e9


def _time_calls_together(
    fns: Sequence[Callable[[], Any]], budget_s: float = 0.3, cpu: bool = False
) -> list[float]:
    """Median seconds (CPU or wall clock) of each of ``fns``, timed together by :func:`time_in_rounds`."""
    import numpy as np

    timings = time_in_rounds(fns, budget_s=budget_s)
    return [float(np.median(cpu_ns if cpu else wall_ns)) / 1e9 for wall_ns, cpu_ns in timings]


def _single_thread(threads: int | None) -> bool:
    import torch

    return (threads or torch.get_num_threads()) == 1


def micro_benchmarks(threads: int | None = None, budget_s: float = 0.3) -> list[Sample]:
    """The samples the three headline constants are fitted to: square-ish matmuls (torch), streaming
    copies beyond the last-level cache, tiny operator calls (torch bare and in modules, ORT, numpy)."""
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)
    cpu = _single_thread(threads)
    samples: list[Sample] = []
    with torch.inference_mode():
        # matmuls: square ones near peak and activation-shaped ones like a transformer's dense layers
        for m, k, n in (
            (256, 256, 256),
            (512, 512, 512),
            (1024, 1024, 1024),
            (4096, 64, 256),
            (2048, 128, 512),
        ):
            a, b = torch.randn(m, k), torch.randn(k, n)
            seconds = _time_call(lambda a=a, b=b: a @ b, budget_s=budget_s, cpu=cpu)
            samples.append(
                Sample(2 * m * k * n, 4 * (m * k + k * n + m * n), 1, seconds, "torch", f"mm{m}x{k}x{n}")
            )
        # streaming: copies of 64 and 256 MiB (beyond the last-level cache): bytes = read + write
        for mib in (64, 256):
            src = torch.empty(mib * 2**18)
            dst = torch.empty_like(src)
            seconds = _time_call(lambda src=src, dst=dst: dst.copy_(src), budget_s=budget_s, cpu=cpu)
            samples.append(Sample(0, 2 * src.numel() * 4, 1, seconds, "torch", f"copy{mib}MiB"))
        # overhead: one transformer block on a single token (OPS_PER_LAYER calls through nn.Module
        # dispatch, like the models' forward passes: "torch_module") and bare tensor ops ("torch")
        from msli_core.models.layers import Block

        block = Block(8, 1, 0.0).eval()
        token = torch.randn(1, 1, 8)
        seconds = _time_call(lambda: block(token, causal=True), budget_s=budget_s, cpu=cpu)
        samples.append(Sample(0, 0, OPS_PER_LAYER, seconds, "torch_module", "tiny_block"))
        # eighteen typical bare calls on tiny tensors: four of a KV-cached step (layer norm, linear,
        # GELU, attention) and fourteen of the bookkeeping an online request does (in-place arithmetic,
        # reductions, top-k, gathers, masked writes, comparisons, a view as numpy)
        functional = torch.nn.functional
        v, w, bias = torch.randn(8), torch.randn(8, 8), torch.randn(8)
        q, kv = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 4, 8)
        rows, picks, long = torch.randn(2, 16), torch.tensor([1, 3]), torch.randn(64)

        def functional_calls() -> None:
            functional.gelu(functional.linear(functional.layer_norm(v, (8,)), w, bias))
            functional.scaled_dot_product_attention(q, kv, kv)
            rows.add_(0.0).amax(0).topk(2)
            rows[:, picks]
            long.sub_(0.0).exp_().sum(0)
            long.mul_(1.0).div_(1.0)
            long[picks] = 0.0
            (picks >= 0).numpy()
            long[picks].topk(1)

        seconds = _time_call(functional_calls, budget_s=budget_s, cpu=cpu)
        samples.append(Sample(0, 0, 18, seconds, "torch", "tiny_functional"))
        left, right = torch.randn(2, 8), torch.randn(8, 16)
        seconds = _time_call(lambda: left @ right, budget_s=budget_s, cpu=cpu)  # a bare product
        samples.append(
            Sample(2 * 2 * 8 * 16, 4 * (16 + 128 + 32), 1, seconds, "torch_gemm", "tiny_gemm_torch")
        )
        samples.extend(_tiny_engine_samples(budget_s, cpu))
    # numpy: five typical calls on tiny arrays (a product, argpartition, argsort, a gather, an add)
    x, m8 = np.ones(8, dtype=np.float32), np.ones((8, 8), dtype=np.float32)
    picks_np = np.array([1, 3])

    def numpy_calls() -> None:
        x @ m8
        np.argpartition(x, 2)
        np.argsort(x)
        x[picks_np]
        x + x

    seconds = _time_call(numpy_calls, budget_s=budget_s, cpu=cpu)
    samples.append(Sample(40, 320, 5, seconds, "numpy", "tiny_calls"))
    left, right = np.ones((2, 8), dtype=np.float32), np.ones((8, 16), dtype=np.float32)
    seconds = _time_call(lambda: left @ right, budget_s=budget_s, cpu=cpu)  # a BLAS sgemm call
    samples.append(Sample(2 * 2 * 8 * 16, 4 * (16 + 128 + 32), 1, seconds, "numpy_gemm", "tiny_gemm"))
    with contextlib.suppress(ImportError):  # onnxruntime missing: the torch overhead stands in for it
        samples.extend(_ort_tiny_samples(threads, budget_s))
        samples.extend(_ort_engine_samples(threads, budget_s, cpu))
    return samples


# The toy model the engine-path micro-benchmarks time: d = 8, K = 2, S = 4, 16 items, one layer.
TOY_SHAPE = ModelShape(kind="msli", history=8, segments=2, dim=8, layers=1, heads=1, candidates=16)


def _toy_model(layers: int = 1):
    """An untrained MS-LI model of :data:`TOY_SHAPE` with ``layers`` blocks, in eval mode."""
    from msli_core.models.msli import MSLIConfig, MSLIModel

    t = TOY_SHAPE
    config = MSLIConfig(n_items=t.candidates, n_genres=2, dim=t.dim, segments=t.segments, max_len=t.history,
                        layers=layers, heads=t.heads, dropout=0.0)  # fmt: skip
    return MSLIModel(config).eval()


@functools.lru_cache(maxsize=1)
def _toy_ort_graphs() -> tuple[bytes, bytes]:
    """The toy model's exported (scorer, segment encoder), once per process (each calibration reuses them)."""
    from msli_core.serving import onnx_export as ox

    model = _toy_model()
    return ox.scorer_onnx(model), ox.segment_encoder_onnx(model)


def _tiny_engine_samples(budget_s: float, cpu: bool) -> list[Sample]:
    """The serving engine's own code paths on toy models (d = 8, K = 2, 16 items) with one and with two
    layers: a KV-cached update (observe), a top-10 request (recommend) and the two alternating (end to
    end). Their FLOPs and bytes are negligible, so they time the per-call cost of the engine's torch
    calls, Python glue included. The two-layer toy minus the one-layer toy is one block's KV-cached step
    ("torch_kv_layer", and "torch_e2e_layer" inside the alternating pair); the one-layer toy minus that
    step is the update's own calls ("torch_kv", "torch_e2e")."""
    import numpy as np

    from msli_core.serving.engine import InferenceEngine

    calls: dict[tuple[str, int], Callable[[], None]] = {}
    for layers in (1, 2):
        engine = InferenceEngine(_toy_model(layers), np.linspace(1.0, 0.0, 17))
        engine.offline()
        engine.load_history("u", np.arange(1, 9))
        events = iter(np.tile(np.arange(1, 17), 100_000))

        def observe(engine=engine, events=events) -> None:
            engine.observe("u", int(next(events)))

        def recommend(engine=engine) -> None:
            engine.recommend("u", 16, top_k=10)

        def end_to_end(observe=observe, recommend=recommend) -> None:
            observe()
            recommend()

        calls["observe", layers], calls["recommend", layers] = observe, recommend
        calls["end_to_end", layers] = end_to_end
    # the one- and two-layer toys timed in rounds: their difference is what is kept
    times = dict(
        zip(calls, _time_calls_together(list(calls.values()), budget_s=3 * budget_s, cpu=cpu), strict=True)
    )
    own_ops = sum(p.ops for p in kv_step_phases(TOY_SHAPE) if p.path != "kv_layer")
    online_ops = sum(p.ops for p in online_phases(TOY_SHAPE))
    samples = [Sample(0, 0, online_ops, times["recommend", 1], "torch", "tiny_engine_recommend")]
    for name, key, ops in (
        ("observe", "torch_kv", own_ops),
        ("end_to_end", "torch_e2e", own_ops + online_ops),
    ):
        one, two = times[name, 1], times[name, 2]
        layer = max(two - one, 0.1 * one)  # a noisy difference never goes below a tenth of the toy
        samples += [
            Sample(0, 0, OPS_KV_LAYER, layer, f"{key}_layer", f"tiny_engine_{name}_layer"),
            Sample(0, 0, ops, max(one - layer, 0.1 * one), key, f"tiny_engine_{name}"),
        ]
    return samples


def _ort_engine_samples(threads: int | None, budget_s: float, cpu: bool) -> list[Sample]:
    """The ONNX Runtime serving path on a toy model (d = 8, one layer, K = 2, S = 4, 16 items): the
    exported scorer with the numpy top-10 after it (a request: "onnxruntime_scorer"), and the exported
    segment encoder over the open segment followed by a request (end to end: "onnxruntime_e2e"), timed
    in rounds. FLOPs and bytes are negligible: they time the per-call cost of the path."""
    import numpy as np

    from msli_core.serving import onnx_export as ox
    from msli_core.serving.bench import _top_k

    scorer_graph, encoder_graph = _toy_ort_graphs()
    scorer = ox.OrtScorer(scorer_graph, threads=threads or 1)
    encoder = ox.OrtSegmentEncoder(encoder_graph, threads=threads or 1)
    vectors = np.random.default_rng(0).standard_normal((1, 2, 8)).astype(np.float32)  # (1, K, d)
    mask = np.ones((1, 2), dtype=bool)
    table_t = np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32)  # (d, N)
    ids = np.arange(1, 17)
    open_items = np.arange(1, 5, dtype=np.int64)[None]  # (1, S)

    def request() -> None:
        scores, contributions = scorer.score(vectors, mask, table_t)
        top = _top_k(scores[0], 10)
        ids[top], scores[0, top], contributions[0][:, top]

    def end_to_end() -> None:
        vectors[0, -1] = encoder.encode(open_items)[0][0]
        request()

    request_ops = sum(p.ops for p in online_phases(TOY_SHAPE, "onnxruntime"))
    update_ops = sum(p.ops for p in encoder_phases(TOY_SHAPE.s, 1, TOY_SHAPE, backend="onnxruntime"))
    t_request, t_pair = _time_calls_together([request, end_to_end], budget_s=2 * budget_s, cpu=cpu)
    return [
        Sample(0, 0, request_ops, t_request, "onnxruntime_scorer", "tiny_ort_request"),
        Sample(0, 0, update_ops + request_ops, t_pair, "onnxruntime_e2e", "tiny_ort_end_to_end"),
    ]


def _ort_tiny_samples(threads: int | None, budget_s: float) -> list[Sample]:
    """Session runs of a 1-node and a 64-node chain of tiny Adds: the per-node dispatch cost."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    samples = []
    for nodes in (1, 64):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])
        y = helper.make_tensor_value_info(f"t{nodes}", TensorProto.FLOAT, [8])
        chain = [
            helper.make_node("Add", ["x" if i == 0 else f"t{i}", "x"], [f"t{i + 1}"]) for i in range(nodes)
        ]
        graph = helper.make_graph(chain, "tiny", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the chain
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {"x": np.ones(8, dtype=np.float32)}
        seconds = _time_call(
            lambda session=session, feed=feed: session.run(None, feed),
            budget_s=budget_s,
            cpu=(threads or 1) == 1,
        )
        samples.append(
            Sample(8 * nodes, 64 * nodes, nodes + SESSION_NODES, seconds, "onnxruntime", f"chain{nodes}")
        )
    return samples


def refinement_benchmarks(
    threads: int | None, budget_s: float, bandwidth: float, overhead: dict[str, float], flops: float = 1e11
) -> dict[str, Any]:
    """The refinements of :class:`Hardware`, each from the micro-benchmark that isolates it.

    - cache tiers: copies of a working set (read + write) of half the L2 (``cache_bandwidth``), and of
      4-64 MiB: ``llc_bytes`` is the largest working set still copied at >= 1.5x the memory
      ``bandwidth``, ``llc_bandwidth`` the median rate of the tiers between the L2 and it;
    - ``skinny_passes``: :func:`skinny_passes`;
    - ``elementwise_bandwidth``: layer norm, GELU and softmax over a (4096, 128) float32 tensor (2 MiB),
      bytes read + written over the time net of the three calls' overhead;
    - ``fault_bandwidth``: filling a freshly allocated 64 MiB tensor minus filling an existing one;
    - ``select_rate``: elements/s of a top-10 selection over 2^18 scores (torch.topk, np.argpartition);
    - ``attention_flops``, ``attention_row_s``: ``scaled_dot_product_attention`` (2 heads of width 32)
      over 256 sequences of 32 tokens and over 16 sequences of 128 tokens, the same ``4·B·T²·d`` FLOPs
      but four times the query rows in the first: ``t = F / attention_flops + rows · attention_row_s``
      solved for both (shapes no bench point uses).
    """
    import numpy as np
    import torch

    cpu = _single_thread(threads)
    out: dict[str, Any] = {}
    l2 = cache_size(2)
    src = np.ones(l2 // 8, dtype=np.float32)  # read + write = half of L2
    dst = np.empty_like(src)
    out["cache_bandwidth"] = (
        2 * src.nbytes / _time_call(lambda: np.copyto(dst, src), budget_s=budget_s, cpu=cpu)
    )
    out["cache_bytes"] = float(l2)
    tiers = {}
    for ws_mib in (4, 8, 16, 24, 32, 48, 64):
        src = np.ones(ws_mib * 2**17, dtype=np.float32)  # ws / 2 bytes, read + written
        dst = np.empty_like(src)
        seconds = _time_call(lambda src=src, dst=dst: np.copyto(dst, src), budget_s=budget_s / 3, cpu=cpu)
        tiers[ws_mib] = 2 * src.nbytes / seconds
    fast = [ws for ws in sorted(tiers) if tiers[ws] >= 1.5 * bandwidth]
    fast = [ws for i, ws in enumerate(fast) if ws == sorted(tiers)[i]]  # contiguous from the smallest
    out["copy_tiers_bytes_per_s"] = {f"{ws}MiB": rate for ws, rate in tiers.items()}
    if fast:
        out["llc_bytes"] = float(fast[-1] * 2**20)
        out["llc_bandwidth"] = float(np.median([tiers[ws] for ws in fast]))
    out["skinny_passes"] = skinny_passes(threads, budget_s, flops)
    with torch.inference_mode():
        x = torch.randn(4096, 128)
        functional = torch.nn.functional

        def elementwise() -> None:
            functional.layer_norm(x, (128,))
            functional.gelu(x)
            torch.softmax(x, -1)

        seconds = _time_call(elementwise, budget_s=budget_s, cpu=cpu)
        net = max(seconds - 3 * overhead.get("torch", 0.0), 0.2 * seconds)
        out["elementwise_bandwidth"] = 3 * 2 * x.numel() * 4 / net
        numel = 64 * 2**18
        existing = torch.empty(numel)
        rates = []
        for _ in range(3):  # back-to-back pairs, the median of their rates
            fill = _time_call(lambda: existing.fill_(1.0), budget_s=budget_s / 6, cpu=cpu)
            fresh = _time_call(lambda: torch.empty(numel).fill_(1.0), budget_s=budget_s / 6, cpu=cpu)
            rates.append(numel * 4 / max(fresh - fill, 0.1 * fresh))
        out["fault_bandwidth"] = float(np.median(rates))
        out.update(_attention_rates(budget_s, cpu, overhead.get("torch", 0.0)))
        scores = torch.rand(2**18)
        select = [_time_call(lambda: torch.topk(scores, 10), budget_s=budget_s / 2, cpu=cpu)]
        select.append(_time_call(lambda: np.argpartition(scores.numpy(), 9), budget_s=budget_s / 2, cpu=cpu))
        out["select_rate"] = float(scores.numel() / np.mean(select))
    return out


def _attention_rates(budget_s: float, cpu: bool, call_s: float) -> dict[str, float]:
    """``attention_flops`` and ``attention_row_s`` from two fused-attention calls of equal FLOPs: 256
    sequences of 32 tokens (16384 query rows per head) and 16 of 128 (4096), 2 heads of width 32,
    timed in rounds; ``t = F / rate + rows · row_s`` solved for both (row_s >= 0)."""
    import torch

    functional = torch.nn.functional
    shapes = ((256, 32), (16, 128))  # (B, T)
    inputs = [torch.randn(b, 2, t, 32) for b, t in shapes]  # (B, heads, T, head width), d = 64
    times = _time_calls_together(
        [lambda q=q: functional.scaled_dot_product_attention(q, q, q) for q in inputs],
        budget_s=budget_s,
        cpu=cpu,
    )
    flops = 4 * 256 * 32 * 32 * 64  # the same for both shapes
    short, long_ = (max(t - call_s, 0.5 * t) for t in times)  # net of the call's fixed cost
    rows_short, rows_long = (2 * b * t for b, t in shapes)  # query rows × heads
    row_s = max(short - long_, 0.0) / (rows_short - rows_long)
    return {"attention_flops": flops / (long_ - rows_long * row_s), "attention_row_s": row_s}


def skinny_passes(threads: int | None, budget_s: float, flops: float) -> dict[str, float]:
    """Extra passes a skinny product makes over its table, per backend: ``(t2 - max(t1, F2/flops)) / t1``
    with ``t1`` the fastest (1, 64) @ (64, 65536) product of any backend (one streaming pass over the
    16 MiB table, no packing) and ``t2`` the backend's (2, 64) @ (64, 65536) product, timed back to back;
    the median over five rounds."""
    import numpy as np
    import torch

    cpu = _single_thread(threads)
    d, n = 64, 65536
    table = np.random.rand(d, n).astype(np.float32)
    table_t = torch.from_numpy(table)
    lefts = {rows: np.random.rand(rows, d).astype(np.float32) for rows in (1, 2)}
    calls: dict[tuple[str, int], Callable[[], Any]] = {}
    for rows, left in lefts.items():
        calls["numpy", rows] = lambda left=left: left @ table
        calls["torch", rows] = lambda t=torch.from_numpy(left): t @ table_t
    with contextlib.suppress(ImportError):
        calls.update(_ort_matmuls(threads, table, lefts))
    backends = sorted({b for b, _ in calls})
    ratios: dict[str, list[float]] = {b: [] for b in backends}
    for _ in range(5):  # rounds of back-to-back calls: a ratio within a round cancels the machine's drift
        seconds = {key: _time_call(call, budget_s=budget_s / 6, cpu=cpu) for key, call in calls.items()}
        t1 = min(t for (_, rows), t in seconds.items() if rows == 1)  # one pass, however it is read
        for b in backends:
            ratios[b].append(max(0.0, (seconds[b, 2] - max(t1, 2 * 2 * d * n / flops)) / t1))
    return {b: float(np.median(r)) for b, r in ratios.items()}


def _ort_matmuls(threads: int | None, table: Any, lefts: dict[int, Any]) -> dict:
    """ONNX Runtime MatMul sessions of (rows, d) @ (d, N), both inputs fed (like the scorer's table)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    d, n = table.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        "skinny",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["r", d]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [d, n]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["r", n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return {
        ("onnxruntime", rows): (lambda feed={"a": left, "b": table}: session.run(None, feed))
        for rows, left in lefts.items()
    }


def calibrate(threads: int | None = None, budget_s: float = 0.3, save: bool = True) -> Hardware:
    """Measure this machine's constants, optionally store them.

    The three headline constants are fitted (:func:`fit`) to :func:`micro_benchmarks`; the refinements
    (cache tiers, skinny-product rates, element-wise rate, page-fault rate) come from
    :func:`refinement_benchmarks`. One thread: every call is timed on the thread's CPU clock.
    """
    import torch

    samples = micro_benchmarks(threads, budget_s)
    used_threads = threads or torch.get_num_threads()
    hardware = fit(
        samples, name="this machine", source=f"measured on {cpu_model()} with {used_threads} threads"
    )
    extra = refinement_benchmarks(threads, budget_s, hardware.bandwidth, hardware.overhead_s, hardware.flops)
    tiers = extra.pop("copy_tiers_bytes_per_s")
    hardware = replace(
        hardware,
        **extra,
        details={
            **hardware.details,
            "cpu": cpu_model(),
            "threads": used_threads,
            "clock": "thread CPU time" if _single_thread(threads) else "wall clock",
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "copy_tiers_bytes_per_s": tiers,
            "samples_detail": [asdict(s) for s in samples],
        },
    )
    if save:
        save_hardware(hardware)
    return hardware


def _llc_bytes(measurements: Sequence[Hardware], how: str) -> float:
    """The last-level cache tier of several calibrations: their median ("median"), else the smallest."""
    import numpy as np

    sizes = [h.llc_bytes for h in measurements if h.llc_bandwidth]
    if not sizes:
        return 0.0
    return float(np.median(sizes)) if how == "median" else float(min(sizes))


def combine(measurements: Sequence[Hardware], name: str = "this machine", how: str = "gmean") -> Hardware:
    """Several calibrations (e.g. before and after a sweep on a shared machine) as one.

    ``how="gmean"``: the geometric mean of each constant; ``how="median"``: each constant's median (the
    bench calibrates before, between and after its passes: the middle one is the machine's typical
    state, robust to one calibration taken during a burst of other work or an unusually quiet spell);
    ``how="best"``: each constant's quietest measurement (the highest throughput, the lowest overhead).
    """
    import numpy as np

    if not measurements:
        raise ValueError("combine needs at least one Hardware")
    if how not in ("gmean", "median", "best"):
        raise ValueError(f"combine how={how!r}: use 'gmean', 'median' or 'best'")

    def gmean(values: list[float], lower_is_better: bool = False) -> float:
        if how == "best":
            return float(min(values) if lower_is_better else max(values))
        if how == "median":
            return float(np.exp(np.median(np.log(values))))
        return float(np.exp(np.mean(np.log(values))))

    keys = set.intersection(*(set(h.overhead_s) for h in measurements))
    skinny_keys = set.intersection(*(set(h.skinny_passes) for h in measurements))

    def optional(attr: str, derived: bool = False) -> float | None:
        values = [getattr(h, attr) for h in measurements if getattr(h, attr)]
        if not values:
            return None
        if derived and how == "best":  # a difference of two timings has no quieter side
            return float(np.exp(np.mean(np.log(values))))
        return gmean(values)

    first = measurements[0]
    return Hardware(
        name=name,
        flops=gmean([h.flops for h in measurements]),
        bandwidth=gmean([h.bandwidth for h in measurements]),
        overhead_s={k: gmean([h.overhead_s[k] for h in measurements], True) for k in sorted(keys)},
        source=first.source
        + (
            f" (geometric mean of {len(measurements)} calibrations)"
            if how == "gmean"
            else f" ({how} of {len(measurements)} calibrations per constant)"
        ),
        details={
            **first.details,
            "calibrations": [{k: v for k, v in h.as_dict().items() if k != "details"} for h in measurements],
        },
        cache_bandwidth=optional("cache_bandwidth"),
        cache_bytes=first.cache_bytes,
        llc_bandwidth=optional("llc_bandwidth"),
        llc_bytes=_llc_bytes(measurements, how),
        skinny_passes={  # differences of timings too ("best": their geometric mean), offset by 0.05
            k: float(
                np.exp(
                    (np.median if how == "median" else np.mean)(
                        np.log([h.skinny_passes[k] + 0.05 for h in measurements])
                    )
                )
            )
            - 0.05
            for k in sorted(skinny_keys)
        },
        elementwise_bandwidth=optional("elementwise_bandwidth"),
        fault_bandwidth=optional("fault_bandwidth", derived=True),
        select_rate=optional("select_rate"),
        attention_flops=optional("attention_flops"),
        attention_row_s=float(np.median([h.attention_row_s for h in measurements])),
    )


# ---------------------------------------------------------------------------------------------------
# Error against measured bench rows


def shape_from_row(row: dict[str, Any]) -> ModelShape:
    """The :class:`ModelShape` a bench row measured (``dim``, ``layers``, ``heads`` default to 64, 2, 2)."""
    kind = row["model"] if row["model"] in MODEL_KINDS else "msli"
    return ModelShape(
        kind=kind,
        history=int(row.get("history") or 1),
        segments=int(row.get("segments") or 1),
        segment_len=int(row["segment_len"]) if row.get("segment_len") else None,
        dim=int(row.get("dim") or 64),
        layers=int(row.get("layers") or 2),
        heads=int(row.get("heads") or 2),
        candidates=int(row.get("candidates") or 1),
        ffn_mult=int(row.get("ffn_mult") or 4),
        catalog=int(row["catalog"]) if row.get("catalog") else None,
    )


def predict_row(row: dict[str, Any], hardware: Hardware) -> float | None:
    """Predicted seconds of one bench row, or None when the row is not a measured timing."""
    backend = row.get("backend", "torch")
    stage = row["stage"]
    if stage == "floor":
        if row.get("variant") not in ("matmul", "matmul_torch"):
            return None  # the bandwidth floor is computed from the measured bandwidth, not timed
        rows = int(row.get("rows") or row.get("segments") or 1)
        phase = floor_phase("matmul", rows, int(row.get("dim") or 64), int(row["candidates"]))
        return phase_seconds(phase, hardware, backend)
    shape = shape_from_row(row)
    key = stage
    if stage == "nearline" and row.get("variant") in ("full", "open_window"):
        key = f"nearline_{row['variant']}"
    phases = stage_phases(shape, backend).get(key)
    if not phases:
        return None
    return sum(phase_seconds(p, hardware, backend) for p in phases)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def measured_ms(row: dict[str, Any]) -> float | None:
    """The time a bench row measured for the cost model: the median CPU time of the calling thread
    (``cpu_p50_ms``, one thread: the core's time spent on a call, robust to other processes taking the
    core) where the row has one, else the wall-clock p50; None for a row without a timing."""
    for key in ("cpu_p50_ms", "p50_ms"):
        if _positive(row.get(key)):
            return float(row[key])
    return None


def error_report(rows: Iterable[dict[str, Any]], hardware: Hardware) -> dict[str, Any]:
    """Predicted/measured p50 for every timed row: median ratio, worst ratio (farthest from 1), points."""
    import numpy as np

    points = []
    seen: set[tuple] = set()
    for row in rows:
        measured = measured_ms(row)
        if measured is None:
            continue
        predicted = predict_row(row, hardware)
        if predicted is None:
            continue
        # a measurement repeated across K or L (offline, floors: ``shared`` rows) is counted once
        key = (row["model"], row["stage"], row.get("variant"), row.get("backend"), row.get("candidates"),
               float(measured), round(predicted, 12))  # fmt: skip
        if key in seen:
            continue
        seen.add(key)
        points.append(
            {
                "model": row["model"],
                "stage": row["stage"],
                "variant": row.get("variant", ""),
                "backend": row.get("backend", ""),
                "segments": row.get("segments"),
                "candidates": row.get("candidates"),
                "history": row.get("history"),
                "measured_ms": float(measured),
                "wall_ms": row.get("p50_ms"),
                "measured_on": "cpu" if _positive(row.get("cpu_p50_ms")) else "wall",
                "predicted_ms": predicted * 1e3,
                "ratio": predicted * 1e3 / float(measured),
            }
        )
    if not points:
        return {"points": [], "median_ratio": math.nan, "worst_ratio": math.nan, "within_2x": math.nan}
    ratios = np.array([p["ratio"] for p in points])
    worst = ratios[np.argmax(np.abs(np.log(ratios)))]
    return {
        "hardware": hardware.name,
        "points": points,
        "median_ratio": float(np.median(ratios)),
        "worst_ratio": float(worst),
        "within_2x": float(np.mean((ratios <= 2) & (ratios >= 0.5))),
    }
