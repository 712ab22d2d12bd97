"""A roofline cost model of the three stages (docs/design.md §4): shapes -> phases -> seconds.

Every stage is a short list of *phases*; each phase costs

    t = max(F / rate[backend, square], W / skinny_stream[backend], B / bandwidth, G / gather_bandwidth)
        + E / elementwise_rate + calls · call_s[backend]

- ``F`` FLOPs (a multiply-add is 2) of its matrix products, at the GEMM rate measured for the backend
  (torch, numpy, onnxruntime) on the ``square`` shape class (both sides wide: the (T, d)·(d, 4d)
  products of an encoder), and the encoder's attention ``4·T²·d`` at the measured rate of the backend's
  attention kernel (the ``attention`` class: torch's fused attention on narrow heads runs at a fraction
  of a dense product's rate);
- ``W`` bytes of the wide operand of a ``skinny`` product (a few rows against a table: the online
  (R, d)·(d, N) product, R <= 64, the table streamed from memory), at the rate the backend's skinny
  product streams it: its measured skinny GEMM rate at R0 rows, ``rate · 4 / (2·R0)`` bytes/s. A
  skinny product of up to a few tens of rows is bound by reading (and packing) its table, not by its
  FLOPs: its time hardly changes from 2 to 8 rows, which a FLOP rate would not predict;
- ``B`` bytes read plus written, at the streaming bandwidth of a memory copy (reads + writes);
- ``G`` bytes of table rows gathered at random ids (a request's own candidate list), at the measured
  random-gather bandwidth;
- ``E`` elements of the online scorer's numpy element-wise passes over arrays that are already in cache
  (the bound's max over K, the exact step's gathers of the passing columns, softmax and sums), at the
  measured rate of such passes: they run at 2-8 elements/ns, bound by the instructions per element
  (``exp``, strided takes, reductions over a short axis), not by memory, so pricing them as bytes at the
  DRAM bandwidth under-stated them 2-4x (measured at K = 16: 6 ms against 1.4 ms priced as bytes).
  They follow the product and the gathers of the same block, so they add rather than overlap;
- ``calls`` the library calls the code makes (counted by reading the code), at one measured per-call
  cost per backend.

Four constants per backend and one element-wise rate, all measured by
:mod:`msli_core.serving.calibrate` on the machine at hand; nothing is fitted to the bench. Shapes
use the project's letters: L history (the window), K segments, S segment length, d width, N candidates.
A transformer layer over T positions costs ``24·T·d²`` (qkv 6d², projection 2d², MLP 16d² with a 4d
hidden) plus ``4·T²·d`` for attention.

Pure functions; nothing here imports torch. Calibration (and calibration on first use) lives in
:mod:`msli_core.serving.calibrate`, which imports this module, never the reverse.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from msli_core import kinds
from msli_core.data import audience
from msli_core.errors import MsliError
from msli_core.outputs import atomic_write_text, check_can_create
from msli_core.serving.scoring import uses_seen_table

MODEL_KINDS = kinds.LADDER
BACKENDS = ("torch", "numpy", "onnxruntime")
SHAPE_CLASSES = ("square", "skinny", "attention")
STAGES = ("offline", "nearline", "nearline_full", "online", "end_to_end")
CALIBRATION_FILE = "hardware.json"  # under platformdirs.user_cache_dir("msli-lab")
FORMAT = 3  # the calibration file's format; a file of another format is measured again (calibrate.py)
MAX_CALIBRATION_BYTES = 1 << 20  # a calibration file is about 2 KB; anything this large is not one
REDO = "re-run `msli costmodel calibrate` to measure this machine again"  # the fix of an unusable file
BLOCK = 4096  # items per block of the online scorer (msli_core.serving.scoring.DEFAULT_BLOCK)
CHUNK = 4096  # cross-encoder pairs per batch (CrossEncoderConfig.pair_chunk)
TOP_K = 10
# Library calls per code path, counted on this code with torch.profiler (top-level aten operations) and
# sys.setprofile (numpy calls; the scorer's per-block count is a test), not fitted to any timing:
CALLS_LAYER = 21  # layers.Block.forward: 4 linears, attention and its reshapes, 2 norms, GELU, 2 adds
# plus views, splits and module dispatch (~5 more)
CALLS_OPEN = 30  # MSLIModel.open_vector outside the blocks: lookup, positions, ln_f, W_o, recency path
CALLS_SEGMENTS = 30  # MSLIModel.encode_segments outside the blocks: masks, pooling, W_s, index copies
CALLS_OBSERVE = 36  # InferenceEngine.observe bookkeeping: slots, queries, the online operands, seen ids
CALLS_OBSERVE_SLOT = 7  # ... and per closed slot: its cached vector and weights copied into the slots
CALLS_FULL = 55  # full_reencode: segment_batch (numpy), slot_vectors' weights and copies, bookkeeping
CALLS_FULL_SLOT = 10  # ... and per closed slot
PASSING = 2 * TOP_K  # candidates scored exactly when the shape does not say (ModelShape.exact_fraction)
CALLS_REQUEST = 40  # recommend: candidate ids, operands, the first block's scout, the result arrays
CALLS_BLOCK = 6  # scoring.top_k per block: the product (torch: from_numpy, mm), max (ufunc reduce), nonzero
CALLS_EXACT_BLOCK = 21  # ... and per block with passing candidates: takes, seen check, exact, merge
CALLS_GATHER = 1  # np.take per block of a request's own candidates
CALLS_ITEMS = 8  # ItemEncoder.table per chunk of 32768 items
CALLS_ORT_LAYER = 25  # ONNX Runtime nodes per exported block, after graph fusions
CALLS_ORT_GRAPH = 60  # nodes outside the blocks, and the session run
CALLS_RETRIEVAL = 30  # AnnIndex.candidates + engine._retrieve: the queries (pooled), the search parameters
# and call, the id shift, unique, the seen filter, the candidate check (read from the code)
INDEX_KINDS = ("ivf", "hnsw")  # msli_core.serving.retrieval.INDEX_KINDS (no faiss import here)
HNSW_LINKS = 64  # 2·M neighbours per node on level 0 (retrieval.HNSW_M = 32)
# What a calibration file may state (Hardware.from_dict refuses the rest, naming the field and the file):
# wide enough for anything this runs on (a small board's 1e6 FLOP/s to a GPU's 1e15, a per-call cost
# from ns to ms), narrow enough that a tampered or corrupt value cannot make a 300-digit prediction.
RATE_RANGE = (1e3, 1e18)  # FLOP/s, bytes/s, elements/s
CALL_S_RANGE = (1e-9, 1.0)  # seconds per library call
LLC_BYTES_RANGE = (1 << 10, 1 << 40)  # the last-level cache: 1 KiB to 1 TiB
SKINNY_ROWS_RANGE = (1, 4096)  # rows of the product the skinny rates were measured with (8)


# --------------------------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class Hardware:
    """The measured (or stated) constants of one machine."""

    name: str  # e.g. "this machine (AMD EPYC)", a preset's name, "user-entered"
    gemm_flops: dict[str, dict[str, float]]  # backend -> {"square": FLOP/s, "skinny": FLOP/s}
    bandwidth: float  # bytes/s read + written by a streaming copy
    gather_bandwidth: float  # bytes/s of table rows gathered at random ids (a table in main memory)
    call_s: dict[str, float]  # backend -> seconds per library call
    source: str  # "measured on ... at ...", "preset: ...", "user-entered"
    measured_at: str | None = None  # UTC time of the measurement (None: not measured)
    dtype: str = "float32"  # what the GEMM rates are for
    skinny_rows: int = 8  # R0: the rows of the product the skinny rates were measured with
    details: dict[str, Any] = field(default_factory=dict)  # cpu, threads, versions, calibration shapes
    # random rows of a table that fits in the last-level cache (None: unknown, gather_bandwidth is used)
    cached_gather_bandwidth: float | None = None
    llc_bytes: int | None = None  # the last-level cache's size
    # elements/s of numpy element-wise passes over in-cache float32 arrays (None: not measured; a
    # stated machine prices an element as 8 bytes, a read and a write, at ``bandwidth``)
    elementwise_rate: float | None = None

    def elements_rate(self) -> float:
        """Elements/s of in-cache element-wise passes: measured, else ``bandwidth / 8``."""
        return self.elementwise_rate or self.bandwidth / 8

    def gather_rate(self, table_bytes: float) -> float:
        """Bytes/s of random rows gathered from a table of ``table_bytes``: from the last-level cache
        when the table fits in it, else from main memory."""
        if self.cached_gather_bandwidth and self.llc_bytes and 0 < table_bytes <= self.llc_bytes:
            return self.cached_gather_bandwidth
        return self.gather_bandwidth

    def rate(self, backend: str, shape_class: str) -> float:
        """FLOP/s of a ``shape_class`` product on ``backend`` ("auto": the faster of torch and numpy,
        as the engine picks); a backend without its own rates uses torch's."""
        if backend == "auto":
            return max(self.rate("torch", shape_class), self.rate("numpy", shape_class))
        rates = (
            self.gemm_flops.get(backend)
            or self.gemm_flops.get("torch")
            or next(iter(self.gemm_flops.values()))
        )
        return rates.get(shape_class) or max(rates.values())

    def skinny_stream(self, backend: str) -> float:
        """Bytes/s of the wide operand a skinny product on ``backend`` streams (float32 table)."""
        return self.rate(backend, "skinny") * 4 / (2 * self.skinny_rows)

    def overhead(self, backend: str) -> float:
        """Seconds per library call on ``backend`` ("auto": numpy's, the scorer's glue)."""
        backend = "numpy" if backend == "auto" else backend
        return self.call_s.get(backend, self.call_s.get("torch", max(self.call_s.values())))

    @property
    def flops(self) -> float:
        """The best GEMM rate of any backend and shape class: the compute ceiling."""
        return max(r for rates in self.gemm_flops.values() for r in rates.values())

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, origin: str = "The hardware description") -> Hardware:
        """Hardware from :meth:`as_dict`'s JSON object; anything else is one :class:`MsliError` sentence,
        ``"{origin}: {what is wrong}; re-run `msli costmodel calibrate` to measure this machine again."``
        naming ``origin`` (the file) and the field. Every constant is checked here, the one place
        Hardware is built from a dict: a positive finite number within its plausible range
        (:data:`RATE_RANGE`, :data:`CALL_S_RANGE`, :data:`LLC_BYTES_RANGE`, :data:`SKINNY_ROWS_RANGE`)."""
        try:
            return cls._from_fields(data, origin)
        except _Unusable as err:
            raise MsliError(f"{origin}: {err.reason}; {_redo()}.") from None

    @classmethod
    def _from_fields(cls, data: Any, origin: str) -> Hardware:
        """:meth:`from_dict` without the sentence: :class:`_Unusable` carries what is wrong (a fragment
        naming the field), which :func:`classify_calibration` puts into its own sentence."""
        if not isinstance(data, dict):
            raise _Unusable(f"it holds {type(data).__name__}, not a cost-model calibration object")
        for key in ("name", "gemm_flops", "bandwidth", "gather_bandwidth", "call_s"):
            if key not in data:
                raise _Unusable(f"the field {key!r} of a cost-model calibration is missing")

        def number(label: str, value: Any, bounds: tuple[float, float], unit: str) -> float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (isinstance(value, int) or math.isfinite(value))  # a JSON int may have 400 digits
            if not ok or value <= 0:
                raise _Unusable(f"{label} is {_shown(value)}, not a finite number above 0")
            lo, hi = bounds
            if not lo <= value <= hi:
                raise _Unusable(
                    f"{label} is {_shown(value)}, outside the plausible range {lo:g} to {hi:g} {unit}"
                )
            return float(value)

        def rate(label: str, value: Any, unit: str) -> float:
            return number(label, value, RATE_RANGE, unit)

        def whole(label: str, value: Any, bounds: tuple[float, float], unit: str) -> int:
            result = number(label, value, bounds, unit)
            if result != int(result):
                raise _Unusable(f"{label} is {_shown(value)}, not a whole number")
            return int(result)

        def table(label: str, value: Any) -> dict:
            if not isinstance(value, dict) or not value:
                raise _Unusable(f"{label} is {_shown(value)}, not a non-empty JSON object")
            return value

        gemm = {
            str(b): {
                str(c): rate(f"gemm_flops.{b}.{c}", r, "FLOP/s")
                for c, r in table(f"gemm_flops.{b}", rates).items()
            }
            for b, rates in table("gemm_flops", data["gemm_flops"]).items()
        }
        calls = table("call_s", data["call_s"])
        details = data.get("details") or {}
        if not isinstance(details, dict):
            raise _Unusable(f"details is {_shown(details)}, not a JSON object")
        return cls(
            name=str(data["name"]),
            gemm_flops=gemm,
            bandwidth=rate("bandwidth", data["bandwidth"], "bytes/s"),
            gather_bandwidth=rate("gather_bandwidth", data["gather_bandwidth"], "bytes/s"),
            call_s={str(b): number(f"call_s.{b}", v, CALL_S_RANGE, "seconds") for b, v in calls.items()},
            source=str(data.get("source", origin)),
            measured_at=None if data.get("measured_at") is None else str(data["measured_at"]),
            dtype=str(data.get("dtype", "float32")),
            skinny_rows=whole("skinny_rows", data.get("skinny_rows", 8), SKINNY_ROWS_RANGE, "rows"),
            details=details,
            cached_gather_bandwidth=None
            if data.get("cached_gather_bandwidth") is None
            else rate("cached_gather_bandwidth", data["cached_gather_bandwidth"], "bytes/s"),
            llc_bytes=None
            if data.get("llc_bytes") is None
            else whole("llc_bytes", data["llc_bytes"], LLC_BYTES_RANGE, "bytes"),
            elementwise_rate=None
            if data.get("elementwise_rate") is None
            else rate("elementwise_rate", data["elementwise_rate"], "elements/s"),
        )


class _Unusable(Exception):
    """What makes a calibration object unusable, as a fragment (``"bandwidth is 0, not ..."``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _redo() -> str:
    """How to measure this machine again: :data:`REDO` on the command line, the What-if page's button in
    the app (:mod:`msli_core.data.audience`)."""
    return audience.words(
        cli=REDO, app=f"measure this machine again with {audience.label('measure')} on the What-if page"
    )


def _meanwhile() -> str:
    """What the app's user can do while the app's calibration file cannot be used: the What-if page's
    presets need none, and a Latency sweep that calibrates measures this machine without reading or
    writing it (``calibrate(save=False)``); either gives the What-if page constants again."""
    hardware, calibrate = audience.label("hardware"), audience.label("calibrate")
    return (
        f"until then, pick a preset in the What-if page's {hardware} box, or run a sweep on the Latency page "
        f"with {calibrate} ticked"
    )


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a tampered file may hold a 300-digit number)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def custom_hardware(
    flops: float, bandwidth: float, call_s: float, name: str = "user-entered", dtype: str = "float32"
) -> Hardware:
    """Typed-in hardware: one sustained FLOP/s for every product, bytes/s, seconds per library call."""
    for label, value in (("flops", flops), ("bandwidth", bandwidth), ("call_s", call_s)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise MsliError(f"Hardware {label} must be a positive number, not {value!r}; enter a value > 0.")
    rates = {c: float(flops) for c in SHAPE_CLASSES}
    return Hardware(
        name=name,
        gemm_flops={b: dict(rates) for b in BACKENDS},
        bandwidth=float(bandwidth),
        gather_bandwidth=float(bandwidth) / 4,  # random rows: an assumption, a quarter of streaming
        call_s={b: float(call_s) for b in BACKENDS},
        source="user-entered",
        dtype=dtype,
    )


# Bundled presets: round numbers, stated assumptions, used only when picked by name.
PRESETS: dict[str, Hardware] = {
    "laptop CPU": custom_hardware(2.0e11, 4.0e10, 5e-6, "laptop CPU"),
    "server CPU": custom_hardware(1.0e12, 1.5e11, 4e-6, "server CPU"),
    "datacenter GPU": custom_hardware(5.0e13, 2.5e12, 1e-5, "datacenter GPU", dtype="float32 (TF32)"),
}
_SOURCES = {
    "laptop CPU": "preset (assumption): 8 cores with AVX2 at ~60% of peak, dual-channel DDR5",
    "server CPU": "preset (assumption): 32 cores with AVX-512 at ~30% of peak, 8 DDR5 channels",
    "datacenter GPU": "preset (assumption): an H100-class GPU in float32 with TF32 tensor cores at ~10% of "
    "peak on these small products, HBM3, eager kernel launches; not measured",
}
PRESETS = {n: Hardware(**{**asdict(h), "source": _SOURCES[n]}) for n, h in PRESETS.items()}


def describe(hardware: Hardware) -> str:
    """One line: which constants these are (name, where they came from) and their values."""
    rates = "; ".join(
        f"{b} " + ", ".join(f"{c} {r / 1e9:.3g}" for c, r in rates.items())
        for b, rates in hardware.gemm_flops.items()
    )
    calls = ", ".join(f"{b} {s * 1e6:.3g}" for b, s in hardware.call_s.items())
    return (
        f"{hardware.name} ({hardware.source}): GFLOP/s {rates} ({hardware.dtype}); bandwidth "
        f"{hardware.bandwidth / 1e9:.3g} GB/s, random gather {hardware.gather_bandwidth / 1e9:.3g} GB/s; "
        f"element-wise {hardware.elements_rate() / 1e9:.3g} G elements/s"
        + ("" if hardware.elementwise_rate else " (bandwidth / 8 bytes)")
        + f"; µs per call {calls}"
    )


# -------------------------------------------------------------------------------- the calibration file


class CalibrationState(StrEnum):
    """What a calibration path holds: :func:`classify_calibration` decides it once, for every entry point
    (:func:`is_calibration_file`, :func:`check_calibration_target`, :func:`load_hardware`,
    ``calibrate.hardware_here``, ``msli costmodel calibrate``, ``msli bench --save-calibration``)."""

    MISSING = "missing"  # nothing there: measured and written
    CURRENT = "current"  # msli's, of this format, every constant loads: used as it is
    OLDER = "older"  # msli's, of an older format: measured again and replaced, with a note saying so
    DAMAGED = "damaged"  # msli's but unusable: measured again and replaced, with a note saying so
    NEWER = "newer"  # msli's, of a newer format: neither read nor replaced (upgrade msli)
    FOREIGN = "foreign"  # not recognisably msli's: neither read nor replaced
    LINK = "link"  # a symbolic link: read through when it leads to a usable file, never replaced
    NOT_A_FILE = "not a file"  # a folder or a special file
    UNREADABLE = "unreadable"  # the path cannot be checked, or the file cannot be read


MSLI_WROTE = frozenset({CalibrationState.CURRENT, CalibrationState.OLDER, CalibrationState.DAMAGED,
                        CalibrationState.NEWER})  # fmt: skip
REPLACEABLE = frozenset({CalibrationState.MISSING, CalibrationState.CURRENT, CalibrationState.OLDER,
                         CalibrationState.DAMAGED})  # fmt: skip
_FIELDS = frozenset({"name", "gemm_flops", "bandwidth", "call_s"})  # what formats 2 and later write
_FIELDS_FIRST = frozenset({"name", "flops", "bandwidth", "overhead_s"})  # the first format (no "format")
_FIELDS_ANY = frozenset({"format", "name", "source"})  # in every format with a "format" field so far
_START = re.compile(rb'\{\n  "format": [0-9]')  # how save_hardware's JSON begins (formats 2 and later)


@dataclass(frozen=True)
class CalibrationFile:
    """One calibration path, classified (:func:`classify_calibration`), and the sentences about it."""

    path: Path
    state: CalibrationState
    named: str  # the path as the sentences name it: "--out X", "X (the calibration file under ...)"
    other: str  # how to pick another path: "choose another --out path", "set MSLI_CACHE_DIR to ..."
    what: str = ""  # what the file is, a fragment after ``named``: "was written by an older MS-LI Lab ..."
    hardware: Hardware | None = None  # CURRENT (or a LINK to a current file): its constants
    server: bool = False  # the app's own cache path, classified in the app: only whoever runs it can act

    def _fix(self, first: str | None) -> str:
        """``first`` (what to do with the file itself) or :attr:`other`; in the app, addressed to whoever
        runs it, and followed by what the app's user can do meanwhile (:func:`_meanwhile`)."""
        either = f"{first} or {self.other}" if first else self.other
        return f"ask whoever runs the app to {either}; {_meanwhile()}" if self.server else either

    @property
    def msli_wrote(self) -> bool:
        return self.state in MSLI_WROTE

    @property
    def replaceable(self) -> bool:
        return self.state in REPLACEABLE

    @property
    def note(self) -> str | None:
        """OLDER or DAMAGED: the sentence saying the file is measured again and replaced; else None."""
        if self.state in (CalibrationState.OLDER, CalibrationState.DAMAGED):
            return f"{self.named} {self.what}, so msli measures this machine again and replaces it."
        return None

    @property
    def refusal(self) -> str | None:
        """The sentence of a path msli will not replace (and, but for a link to a usable file, not read
        either); None for the replaceable states."""
        S = CalibrationState
        if self.state is S.NEWER:
            upgrade = "upgrade MS-LI Lab" if self.server else "upgrade msli,"
            return f"{self.named} {self.what}, so msli will not read or replace it; {self._fix(upgrade)}."
        if self.state is S.FOREIGN:
            return (
                f"{self.named} {self.what}, so msli will not read or replace it; "
                f"{self._fix('move that file away')}."
            )
        if self.state is S.LINK:
            return (
                f"{self.named} is a symbolic link{self.what}, which msli does not replace; "
                f"{self._fix('move it away')}."
            )
        if self.state is S.NOT_A_FILE:
            return f"{self.named} is a folder or a special file, not a calibration file; {self._fix(None)}."
        if self.state is S.UNREADABLE:
            return f"{self.named} {self.what}; {self._fix(None)}."
        return None


def calibration_path() -> Path:
    """Where this machine's constants are stored (``MSLI_CACHE_DIR`` overrides the platform cache dir)."""
    override = os.environ.get("MSLI_CACHE_DIR")
    if override:
        return Path(override) / CALIBRATION_FILE
    import platformdirs

    return Path(platformdirs.user_cache_dir("msli-lab")) / CALIBRATION_FILE


def _at_cache_path(path: Path) -> bool:
    """True when ``path`` is msli's own calibration path (:func:`calibration_path`), however written."""
    try:
        return path.name == CALIBRATION_FILE and path.resolve() == calibration_path().resolve()
    except (OSError, RuntimeError):
        return False


def _serves_app(path: str | os.PathLike | None) -> bool:
    """True for the cache path (``path`` None) inside the app (:func:`msli_core.data.audience.app_user`):
    the app's own calibration file, whose folder the app's user cannot choose."""
    return path is None and audience.for_app()


def _wording(path: str | os.PathLike | None, flag: str | None = "--out") -> tuple[str, str, str]:
    """(the path as sentences name it, how to pick another path, how to pick a writable one): ``path``
    is ``flag``'s (``--out``; None: a file to read, named as it is); None is the cache path, which
    MSLI_CACHE_DIR (or the platform cache folder) chose.

    In the app (:func:`_serves_app`) the cache folder is the server's own configuration: the path is
    named as the app's file (no variable), the variable only in the fix, which is addressed to whoever
    runs the app (:mod:`msli_core.data.audience`'s rule for the server's configuration). The second
    element then follows "ask whoever runs the app to move that file away or" (:meth:`CalibrationFile._fix`);
    the third is a whole fix, ending with what the app's user can do meanwhile."""
    if path is not None and flag is None:
        return str(Path(path)), "pass another calibration file", "pass a writable path"
    if path is not None:
        return f"{flag} {Path(path)}", f"choose another {flag} path", f"choose a writable {flag} path"
    target = calibration_path()
    if _serves_app(path):
        return (
            f"{target} (the app's cost-model calibration file)",
            "set MSLI_CACHE_DIR to another folder and restart it",
            f"ask whoever runs the app to set MSLI_CACHE_DIR to a writable folder and restart it; "
            f"{_meanwhile()}",
        )
    if os.environ.get("MSLI_CACHE_DIR"):
        return (
            f"{target} (the calibration file under MSLI_CACHE_DIR)",
            "set MSLI_CACHE_DIR to another folder",
            "MSLI_CACHE_DIR chose that path, so set MSLI_CACHE_DIR to a writable folder",
        )
    return (
        f"{target} (the calibration file in msli's cache folder)",
        "set MSLI_CACHE_DIR to another folder to keep calibrations there",
        "set MSLI_CACHE_DIR to a writable folder to keep calibrations there",
    )


def _foreign(text: bytes | None, data: Any = None, error: Exception | None = None) -> str:
    """What a file msli cannot recognise holds, in a few words (the part of the sentence saying whose
    it looks like): its JSON keys, its kind of JSON, or its first characters."""
    if data is not None or error is None:
        if isinstance(data, dict):
            keys = [str(k) for k in data]
            shown = ", ".join(repr(k) for k in keys[:4]) + (
                f" and {len(keys) - 4} more" if len(keys) > 4 else ""
            )
            return f"a JSON object with the keys {shown}" if keys else "an empty JSON object"
        kinds_ = {
            list: "a JSON list",
            str: "a JSON string",
            bool: "a JSON true/false",
            type(None): "JSON null",
        }
        return kinds_.get(type(data), "a JSON number")
    assert text is not None
    if not text.strip():
        return "an empty file"
    try:
        lines = text.decode("utf-8").strip().splitlines()  # strips Unicode spaces too: may be none left
    except UnicodeDecodeError:
        return "a file that is not UTF-8 text"
    if not lines:
        return "an empty file"
    first = lines[0]
    if _START.match(text):  # msli's start, but not at msli's path: no evidence it is msli's
        return f"broken JSON outside msli's cache folder ({error})"
    return f"text that is not JSON, starting {_shown(first, 40)}"


def _age(version: int) -> str:
    """The fragment for a file of another format: who wrote it, its format and this version's."""
    if version > FORMAT:
        return f"was written by a newer MS-LI Lab (calibration format {version}; this version reads {FORMAT})"
    return f"was written by an older MS-LI Lab (calibration format {version}; this version writes {FORMAT})"


def classify_calibration(
    path: str | os.PathLike | None = None, flag: str | None = "--out"
) -> CalibrationFile:
    """What ``path`` (``flag``'s, see :func:`_wording`; None: :func:`calibration_path`) holds, as one
    :class:`CalibrationState`, with the sentences every entry point says about it.

    The one rule for "is this a calibration file msli wrote", which every entry point asks here. msli
    must never replace a file it did not write, so a file counts as msli's only on evidence:

    - a JSON object with the fields msli writes (``name``, ``gemm_flops``, ``bandwidth``, ``call_s``):
      of this :data:`FORMAT` and every constant loading (:meth:`Hardware.from_dict`'s checks) CURRENT;
      of this format (or a broken ``format`` field) with a constant that does not load DAMAGED; of an
      older format (2 <= format < FORMAT) OLDER;
    - a JSON object of the first format (no ``format``; ``name``, ``flops``, ``bandwidth``,
      ``overhead_s``): OLDER;
    - a JSON object with a whole ``format`` above :data:`FORMAT` and ``name`` and ``source`` (fields of
      every format so far): NEWER, refused (this version cannot read it, and must not destroy it);
    - a file that does not parse (truncated, cut off mid-write) is msli's only when it sits at msli's
      own calibration path (:func:`calibration_path`, named :data:`CALIBRATION_FILE`) AND starts the
      way :func:`save_hardware` starts its JSON (a brace, a line break, two spaces, ``"format": `` and a
      digit): DAMAGED. The same bytes
      at an ``--out`` path elsewhere, an empty file, a non-object JSON, text, a binary file, a file over
      :data:`MAX_CALIBRATION_BYTES` and an object without msli's fields are FOREIGN.

    A symbolic link is LINK (its target is read, and its constants used when CURRENT; it is never
    replaced); a folder or special file NOT_A_FILE; a path that cannot be checked or read UNREADABLE.
    Reads at most :data:`MAX_CALIBRATION_BYTES`; never raises for what the path holds."""
    target = Path(path) if path is not None else calibration_path()
    named, other, _ = _wording(path, flag)
    S = CalibrationState

    def found(state: CalibrationState, what: str = "", **kw: Any) -> CalibrationFile:
        return CalibrationFile(target, state, named, other, what, server=_serves_app(path), **kw)

    try:
        link, exists, is_file = target.is_symlink(), target.exists(), target.is_file()
    except OSError as err:  # a folder on the way refuses even a look (PermissionError)
        return found(S.UNREADABLE, f"cannot be checked ({err.strerror or err})")
    if link:
        inner = classify_calibration(target.resolve(), flag) if is_file else None
        if inner is None or inner.hardware is not None:  # dangling, a folder, or leading to a usable file
            return found(S.LINK, hardware=inner.hardware if inner else None)
        return found(S.LINK, f" to {inner.path} ({inner.state.value})")
    if not exists:
        return found(S.MISSING)
    if not is_file:
        return found(S.NOT_A_FILE)
    try:
        size = target.stat().st_size
        if size > MAX_CALIBRATION_BYTES:
            return found(
                S.FOREIGN,
                f"is a file msli did not write as far as it can tell ({size:,} bytes, larger than any "
                "calibration file)",
            )
        text = target.read_bytes()
    except OSError as err:
        return found(
            S.UNREADABLE, f"cannot be read ({err.strerror or err}), so msli will not read or replace it"
        )
    not_msli = "is a file msli did not write as far as it can tell"
    try:
        data = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        if _START.match(text) and _at_cache_path(target):
            return found(
                S.DAMAGED,
                f"is a calibration file msli wrote that it cannot use (its JSON breaks off: {err})",
            )
        return found(S.FOREIGN, f"{not_msli} ({_foreign(text, error=err)})")
    if not isinstance(data, dict):
        return found(S.FOREIGN, f"{not_msli} ({_foreign(text, data)})")
    keys = set(data)
    version = data.get("format")
    whole = isinstance(version, int) and not isinstance(version, bool)
    if "format" not in data and keys >= _FIELDS_FIRST:
        return found(S.OLDER, _age(1))
    if whole and version > FORMAT and keys >= _FIELDS_ANY:
        return found(S.NEWER, _age(version))
    if not keys >= _FIELDS:
        return found(S.FOREIGN, f"{not_msli} ({_foreign(text, data)}, without a calibration's fields)")
    if whole and 2 <= version < FORMAT:
        return found(S.OLDER, _age(version))
    try:
        if "format" not in data:
            raise _Unusable("the field 'format' is missing")
        if not (whole and version == FORMAT):  # 1 and below: the first format had no such field
            raise _Unusable(f"format is {_shown(version)}, which no MS-LI Lab writes")
        hardware = Hardware._from_fields(data, str(target))
    except _Unusable as err:
        return found(S.DAMAGED, f"is a calibration file msli wrote that it cannot use ({err.reason})")
    return found(S.CURRENT, hardware=hardware)


def load_hardware(path: str | os.PathLike | None = None) -> Hardware:
    """The constants stored at ``path`` (default :func:`calibration_path`); anything but a usable file
    (:func:`classify_calibration`) is its sentence. Nothing is measured or replaced here, so an older
    or damaged file of msli's says how to measure again; a missing one too
    (:func:`msli_core.serving.calibrate.hardware_here` measures this machine on first use)."""
    found = classify_calibration(path, flag=None)
    S = CalibrationState
    if found.hardware is not None:
        return found.hardware
    redo = "run `msli costmodel calibrate" + (f" --out {found.path}`" if path is not None else "`")
    if found.state is S.MISSING:
        raise MsliError(f"{found.path} does not exist; {redo} first.")
    if found.state in (S.OLDER, S.DAMAGED):
        raise MsliError(f"{found.named} {found.what}; {redo} to measure this machine again.")
    raise MsliError(found.refusal or f"{found.named} is a symbolic link to an unusable file; {redo}.")


def is_calibration_file(path: str | os.PathLike) -> bool:
    """True for a file msli's calibration wrote (:func:`classify_calibration`: CURRENT, OLDER, DAMAGED
    or NEWER; not a link). Its values may be broken: re-calibrating is how a broken file is fixed."""
    return classify_calibration(path).msli_wrote


def check_calibration_target(path: str | os.PathLike | None = None) -> CalibrationFile:
    """Refuse, with one sentence, a calibration path msli must not write; return its classification.

    ``path`` (``--out``) or, when None, :func:`calibration_path`. Refused (:attr:`CalibrationFile.refusal`):
    a symbolic link, a folder, a newer msli's file, a file msli did not write
    (:func:`classify_calibration`), and a path whose folder takes no new files. An older or damaged
    file of msli's is replaced: its :attr:`CalibrationFile.note` says so. Cheap: call it before
    measuring; :func:`save_hardware` calls it again before writing.
    """
    found = classify_calibration(path)
    if found.refusal is not None:
        raise MsliError(found.refusal)
    check_can_create(found.path, fix=_wording(path)[2])
    return found


def save_hardware(hardware: Hardware, path: str | os.PathLike | None = None) -> Path:
    """Store ``hardware`` at ``path`` (default :func:`calibration_path`), atomically; a path msli must not
    write (:func:`check_calibration_target`) is one sentence and nothing is written."""
    target = check_calibration_target(path).path
    atomic_write_text(target, json.dumps(hardware.as_dict(), indent=2), fix=_wording(path)[2])
    return target


def hardware_presets(measured: Hardware | None = None) -> dict[str, Hardware]:
    """The hardware the What-if page and ``msli costmodel predict`` offer: this machine (when given)
    first, then the bundled presets (used only when picked by name)."""
    return ({"this machine": measured} if measured is not None else {}) | dict(PRESETS)


def combine(measurements: Sequence[Hardware], name: str | None = None) -> Hardware:
    """Several calibrations of one machine (before, between and after a sweep) as one: the median of
    each constant (robust to one calibration taken during a burst of other work)."""
    import numpy as np

    if not measurements:
        raise ValueError("combine needs at least one Hardware")
    first = measurements[0]

    def med(values: list[float]) -> float:
        return float(np.median(values))

    gemm = {
        b: {c: med([h.gemm_flops[b][c] for h in measurements]) for c in first.gemm_flops[b]}
        for b in first.gemm_flops
        if all(b in h.gemm_flops for h in measurements)
    }
    calls = {
        b: med([h.call_s[b] for h in measurements])
        for b in first.call_s
        if all(b in h.call_s for h in measurements)
    }
    return Hardware(
        name=name or first.name,
        gemm_flops=gemm,
        bandwidth=med([h.bandwidth for h in measurements]),
        gather_bandwidth=med([h.gather_bandwidth for h in measurements]),
        cached_gather_bandwidth=None
        if any(h.cached_gather_bandwidth is None for h in measurements)
        else med([h.cached_gather_bandwidth for h in measurements]),
        llc_bytes=first.llc_bytes,
        elementwise_rate=None
        if any(h.elementwise_rate is None for h in measurements)
        else med([h.elementwise_rate for h in measurements]),
        call_s=calls,
        source=f"{first.source} (median of {len(measurements)} calibrations per constant)",
        measured_at=measurements[-1].measured_at,
        dtype=first.dtype,
        skinny_rows=first.skinny_rows,
        details={
            **first.details,
            "calibrations": [{k: v for k, v in h.as_dict().items() if k != "details"} for h in measurements],
        },
    )


# ----------------------------------------------------------------------------------- shapes, phases


@dataclass(frozen=True)
class ModelShape:
    """The sizes the cost depends on (weights do not matter, only shapes)."""

    kind: str = "msli"  # one of MODEL_KINDS
    history: int = 200  # L: the window (the bench's user has L events)
    segments: int = 8  # K (two-tower, full-forward, cross-encoder: 1)
    segment_len: int | None = None  # S; default ceil(L / K)
    dim: int = 64  # d
    layers: int = 2
    heads: int = 2  # FLOPs do not depend on it
    candidates: int = 1000  # N: the catalog scored per request
    dtype_bytes: int = 4  # 4 float32, 2 bf16/fp16, 1 int8
    request_candidates: int | None = None  # M: a request's own list of M random ids of the N (gathered)
    # the share of the candidates the online bound lets through to the exact score: a property of the
    # weights (12% at K = 8, 45% at K = 32 with random ones; fewer when trained segments agree), measured
    # by the engine (Recommendation.exact) and recorded by the bench; None: 2·top-k candidates
    exact_fraction: float | None = None
    # an ANN first stage (serving/retrieval.py) in front of the online scorer: "ivf" or "hnsw" (None: the
    # whole catalog is scored); probes = IVF nprobe / HNSW efSearch; lists = IVF nlist (None: 4·sqrt(N));
    # neighbours = k' per query; retrieved = the union re-scored (None: 2·k' per query, the bound for a
    # user with more seen items than k'; the bench measures it, ``retrieved``)
    index: str | None = None
    probes: int = 32
    lists: int | None = None
    neighbours: int = 32
    retrieved: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise MsliError(f"Model kind {self.kind!r} is unknown; use one of {', '.join(MODEL_KINDS)}.")
        for name in ("history", "segments", "dim", "layers", "heads", "candidates", "dtype_bytes", "probes",
                     "neighbours"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MsliError(f"Model shape {name} must be a positive integer, not {value!r}.")
        if self.index not in (None, *INDEX_KINDS):
            raise MsliError(f"The index must be none, ivf or hnsw, not {self.index!r}.")
        if self.lists is not None and not (
            isinstance(self.lists, int) and 1 <= self.lists <= self.candidates
        ):
            raise MsliError(
                f"IVF lists must be a whole number in 1..N ({self.candidates:,}), not {self.lists!r}."
            )

    @property
    def nlist(self) -> int:
        """IVF lists: as given, else ``round(4·sqrt(N))`` (retrieval.default_lists)."""
        return self.lists or max(1, min(round(4 * math.sqrt(self.candidates)), self.candidates // 8))

    @property
    def queries(self) -> int:
        """Queries an ANN request sends: the K segment vectors, plus the pooled one when K > 1."""
        return self.k + (1 if self.k > 1 else 0)

    @property
    def union(self) -> float:
        """Candidates the first stage hands to the exact scorer (measured, else 2·k' per query, at most N)."""
        if self.retrieved is not None:
            return float(self.retrieved)
        return float(min(self.candidates, 2 * self.neighbours * self.queries))

    @property
    def k(self) -> int:
        return self.segments if self.kind == "msli" else 1

    @property
    def s(self) -> int:
        return self.segment_len or math.ceil(self.history / self.k)

    def parameters(self) -> int:
        """Parameters of the encoder's blocks: ``layers · (12d² + 13d)``."""
        return self.layers * (12 * self.dim**2 + 13 * self.dim)


def encoder_parameters(layers: int, dim: int) -> int:
    """Weights of a transformer encoder of ``layers`` blocks of width ``dim``: ``12·layers·d²``."""
    return 12 * layers * dim * dim


def shape_for_parameters(parameters: float, aspect: int = 64) -> tuple[int, int]:
    """(layers, width d) of an encoder with about ``parameters`` weights (``12·layers·d²``), shaped like
    the usual large transformers: width ≈ ``aspect`` × depth (GPT-2 XL: 48 × 1,600; GPT-3: 96 × 12,288),
    the width a multiple of 64. For the What-if page's "a 1B-parameter encoder".

    >>> shape_for_parameters(1e9)
    (28, 1728)
    >>> shape_for_parameters(1e5)
    (2, 64)
    """
    dim = max(64, round((aspect * parameters / 12) ** (1 / 3) / 64) * 64)
    layers = max(1, round(parameters / encoder_parameters(1, dim)))
    return layers, dim


@dataclass(frozen=True)
class Phase:
    name: str
    flops: float = 0.0  # FLOPs of its matrix products
    bytes: float = 0.0  # bytes read + written
    calls: float = 0.0  # library calls
    wide: float = 0.0  # bytes of the wide operand of a skinny product
    attention: float = 0.0  # FLOPs of attention (at the "attention" rate)
    gather: float = 0.0  # bytes of rows gathered at random ids
    gather_table: float = 0.0  # bytes of the table they are gathered from (does it fit in the cache?)
    elements: float = 0.0  # elements of numpy element-wise passes over in-cache arrays
    backend: str | None = None  # the library that runs it (None: the prediction's backend)


def phase_terms(phase: Phase, hardware: Hardware, backend: str) -> dict[str, float]:
    """The roofline's six terms of a phase, in seconds."""
    on = phase.backend or backend
    return {
        "compute": phase.flops / hardware.rate(on, "square")
        + phase.attention / hardware.rate(on, "attention"),
        "skinny": phase.wide / hardware.skinny_stream(on),
        "memory": phase.bytes / hardware.bandwidth,
        "gather": phase.gather / hardware.gather_rate(phase.gather_table),
        "elementwise": phase.elements / hardware.elements_rate(),
        "overhead": phase.calls * hardware.overhead(on),
    }


def phase_seconds(phase: Phase, hardware: Hardware, backend: str = "torch") -> float:
    """``max(F / rate, W / skinny_stream, B / bandwidth, G / gather_bandwidth) + E / elementwise_rate
    + calls · call_s``."""
    t = phase_terms(phase, hardware, backend)
    return max(t["compute"], t["skinny"], t["memory"], t["gather"]) + t["elementwise"] + t["overhead"]


def layer_flops(tokens: int, dim: int) -> tuple[float, float]:
    """One transformer layer over ``tokens`` positions: ``24·T·d²`` in products, ``4·T²·d`` in attention."""
    return 24 * tokens * dim**2, 4 * tokens**2 * dim


def encoder_phases(
    tokens: int, seqs: int, shape: ModelShape, backend: str, name: str, calls_outside: int
) -> list[Phase]:
    """``seqs`` sequences of ``tokens`` positions through ``layers`` blocks, plus the work around them.

    Bytes per layer: the weights (12d² values) and about 36 passes over a (T, d) activation (the
    products' inputs and outputs, two layer norms, GELU on the 4d hidden, two residual adds, a copy)."""
    b, d, act = shape.dtype_bytes, shape.dim, tokens * seqs * shape.dim * shape.dtype_bytes
    per_layer = CALLS_ORT_LAYER if backend == "onnxruntime" else CALLS_LAYER
    calls = CALLS_ORT_GRAPH if backend == "onnxruntime" else calls_outside
    dense, attention = (shape.layers * seqs * f for f in layer_flops(tokens, d))
    return [
        Phase(f"{name}: {shape.layers} layers", dense, shape.layers * (12 * d * d * b + 36 * act),
              shape.layers * per_layer, attention=attention),
        Phase(f"{name}: embed and pool", 2 * tokens * seqs * d * d, 12 * act, calls),
    ]  # fmt: skip


def online_phases(shape: ModelShape, backend: str) -> list[Phase]:
    """The block-wise scorer (scoring.top_k): per block the (K, d)·(d, b) segment scores, their max (the
    bound) and the compare; the exact attention of the few candidates that pass the bound (the first
    block's k best bounds, then whatever beats the running k-th score: ``PASSING`` columns); the top-k.
    ``request_candidates`` M: the M rows are gathered at random first.
    ONNX Runtime: the exported scorer's (2K, d)·(d, N) product, ~14 element-wise passes over (K, N), a
    numpy top-k."""
    K, d, b = shape.k, shape.dim, shape.dtype_bytes
    n = shape.request_candidates or shape.candidates
    blocks = math.ceil(n / BLOCK)
    if backend == "onnxruntime":
        rows = 2 * K if K > 1 else 1
        return [
            Phase(
                "online: product",
                2 * rows * d * n,
                rows * n * 4 + (n * d * b if rows == 1 else 0),
                1,
                n * d * b if rows > 1 else 0,
            ),
            Phase("online: aggregate and top-k", 0, 14 * K * n * 4 + 8 * n, CALLS_ORT_GRAPH // 3),
        ]
    first = min(n, BLOCK)
    passing = PASSING if shape.exact_fraction is None else max(TOP_K, shape.exact_fraction * n)
    busy = min(blocks, max(1, math.ceil(passing / TOP_K)))  # blocks with passing candidates (at most all)
    product = "auto" if backend == "torch" else backend  # the engine multiplies with the faster library
    exact_rows = K if K > 1 else 0  # attention: the queries' product on the passing columns
    table = n * d * b  # one row (K = 1) is a matrix-vector product: no packing, it streams the table
    # element-wise work per passing candidate: attention takes its K scores and d row values, then ~9
    # passes over its K logits (copy, bias, max, subtract, exp, the weighted sum reading 2, sum); one
    # segment or max: the take, the seen lookup and the merge
    per_passing = 10 * K + d if K > 1 else 4
    seen_table = shape.candidates + 1 if uses_seen_table(shape.candidates + 1, n) else 0  # bytes zeroed
    phases = [
        Phase("online: segment scores", 2 * K * d * n, table if K == 1 else 0, blocks * CALLS_BLOCK,
              table if K > 1 else 0, backend=product),
        Phase("online: bound (max over K) and compare", elements=(K + 2) * n if K > 1 else 2 * n,
              backend="numpy"),
        Phase("online: exact scores of the passing candidates, top-k", 2 * exact_rows * d * passing,
              seen_table, CALLS_REQUEST + busy * CALLS_EXACT_BLOCK, elements=first + passing * per_passing,
              backend="numpy"),
    ]  # fmt: skip
    if shape.request_candidates:
        catalog = (shape.candidates + 1) * d * b  # the table the M rows are gathered from
        gather = Phase("online: gather M rows", 0, 0, blocks * CALLS_GATHER, gather=n * d * b,
                       gather_table=catalog, backend="numpy")  # fmt: skip
        phases.insert(0, gather)
    return phases


def retrieval_phases(shape: ModelShape) -> list[Phase]:
    """The ANN first stage of one request (serving/retrieval.py, faiss on one thread), then the exact
    re-score of its union as a request that brings its own candidate list (:func:`online_phases` with
    ``request_candidates`` = the union, gathered from the N-item table).

    IVF (R = :attr:`ModelShape.queries` queries): the coarse quantizer, each query against the ``nlist``
    centroids (``R·nlist·d`` values streamed: faiss takes its per-query loop below 20 queries, not a
    GEMM); then each query scans its ``probes`` lists, ``R·probes·N/nlist`` rows of ``d`` floats and an
    8-byte id, streamed. HNSW: each query expands about ``max(efSearch, 2k')`` nodes on level 0 and
    computes the product with each of their 2M neighbours (at most N products: faiss skips visited
    nodes), rows gathered at random from the index's copy.
    Both: the library calls of the Python glue around the search.

    >>> shape = ModelShape(candidates=1_000_000, segments=8, index="ivf", probes=64)
    >>> [p.name for p in retrieval_phases(shape)][1]
    'retrieval: scan 9 × 64 lists (144,000 rows)'
    >>> rows = [p.bytes for p in retrieval_phases(shape)][1] / (64 * 4 + 8)  # 9 · 64 · 1,000,000 / 4,000
    >>> rows
    144000.0
    """
    d, b, R, N = shape.dim, shape.dtype_bytes, shape.queries, shape.candidates
    if shape.index == "ivf":
        nlist = shape.nlist
        rows = R * min(shape.probes, nlist) * N / nlist
        phases = [
            Phase(f"retrieval: coarse quantizer ({R} queries × {nlist:,} centroids)", 2 * R * d * nlist,
                  R * nlist * d * 4, backend="numpy"),
            Phase(f"retrieval: scan {R} × {min(shape.probes, nlist)} lists ({rows:,.0f} rows)", 2 * d * rows,
                  rows * (d * b + 8), backend="numpy"),
        ]  # fmt: skip
    else:
        # faiss keeps a visited set: a query computes at most one product per item, so at most N
        visits = R * min(max(shape.probes, 2 * shape.neighbours) * HNSW_LINKS, N)
        phases = [
            Phase(f"retrieval: HNSW graph walk ({visits:,.0f} neighbour products)", 2 * d * visits,
                  gather=visits * d * b, gather_table=N * d * b, backend="numpy"),
        ]  # fmt: skip
    phases.append(Phase("retrieval: queries, search call, union and seen filter", 0, 0, CALLS_RETRIEVAL,
                        backend="numpy"))  # fmt: skip
    union = max(1, math.ceil(shape.union))
    rescore = replace(shape, index=None, request_candidates=union, exact_fraction=None)
    return phases + [
        replace(p, name=p.name.replace("online:", f"re-score {union:,}:"))
        for p in online_phases(rescore, "torch")
    ]  # fmt: skip


def index_build_phases(shape: ModelShape) -> list[Phase]:
    """Offline: building the index. IVF: k-means (10 iterations over 32·nlist rows against nlist
    centroids) and the assignment of all N rows to their list, both products at the square GEMM rate,
    the rows copied into the lists. HNSW: per row, about efConstruction (64) expansions of 2M products.
    """
    d, b, N = shape.dim, shape.dtype_bytes, shape.candidates
    if shape.index == "ivf":
        nlist = shape.nlist
        sample = min(N, 32 * nlist)
        flops = 2 * d * nlist * (10 * sample + N)
        return [Phase(f"offline: IVF training and assignment ({nlist:,} lists)", flops, 2 * N * (d * b + 8),
                      math.ceil(N / (1 << 18)))]  # fmt: skip
    visits = N * 64 * HNSW_LINKS
    return [Phase("offline: HNSW graph build", 2 * d * visits, 0, math.ceil(N / (1 << 18)),
                  gather=visits * d * b, gather_table=N * d * b)]  # fmt: skip


def item_table_phases(shape: ModelShape) -> list[Phase]:
    """Offline: id embedding + (N, 20) genre features · (20, d) + year embedding, summed: (N, d)."""
    N, d, b = shape.candidates, shape.dim, shape.dtype_bytes
    return [
        Phase(
            "offline: item table",
            2 * N * 20 * d,
            10 * N * d * b + N * 20 * 4,
            math.ceil(N / 32768) * CALLS_ITEMS,
        )
    ]


def cross_encoder_phases(shape: ModelShape, backend: str) -> list[Phase]:
    """N pairs of L+1 tokens (history; candidate), bidirectional, in chunks of ``CHUNK`` pairs; top-k."""
    chunks = math.ceil(shape.candidates / CHUNK)
    enc = encoder_phases(shape.history + 1, shape.candidates, shape, backend, "pairs", 0)
    enc = [Phase(p.name, p.flops, p.bytes, p.calls * chunks, attention=p.attention) for p in enc]
    return [*enc, Phase("top-k", 0, 8 * shape.candidates, 2)]


def stage_phases(shape: ModelShape, backend: str = "torch") -> dict[str, list[Phase]]:
    """Phases of every stage. ``nearline`` is the update of a user whose history fills the window: the
    window slides on every event, so it is one pass over L positions (torch and ONNX Runtime alike);
    ``nearline_full`` re-encodes the window and the K-1 closed segments of S events."""
    L, K = shape.history, shape.k
    offline = item_table_phases(shape)

    def per_request_only(online: list[Phase]) -> dict[str, list[Phase]]:
        """A model with no nearline stage: every request pays ``online`` whole."""
        return {"offline": offline, "nearline": [], "nearline_full": [], "online": online,
                "end_to_end": online}  # fmt: skip

    if shape.kind == "cross-encoder":
        return per_request_only(cross_encoder_phases(shape, backend))
    window = encoder_phases(L, 1, shape, backend, "window", CALLS_OPEN)
    closed = (
        encoder_phases(shape.s, K - 1, shape, backend, "closed segments", CALLS_SEGMENTS) if K > 1 else []
    )
    slots = CALLS_OBSERVE + CALLS_OBSERVE_SLOT * (K - 1)
    observe = [] if backend == "onnxruntime" else [Phase("observe bookkeeping", calls=slots)]
    nearline = window + observe
    full = (
        window
        + closed
        + (
            []
            if backend == "onnxruntime"
            else [Phase("re-encode bookkeeping", calls=CALLS_FULL + CALLS_FULL_SLOT * (K - 1))]
        )
    )
    online = retrieval_phases(shape) if shape.index else online_phases(shape, backend)
    if shape.index:
        offline = offline + index_build_phases(shape)
    if shape.kind == "full-forward":  # the encoder over the whole history on every request, then score
        return per_request_only(full + online)
    return {"offline": offline, "nearline": nearline, "nearline_full": full, "online": online,
            "end_to_end": nearline + online}  # fmt: skip


@dataclass(frozen=True)
class Prediction:
    shape: ModelShape
    hardware: str
    source: str  # where the hardware's constants came from
    backend: str
    seconds: dict[str, float]  # per stage
    flops: dict[str, float]
    bytes: dict[str, float]
    bound: dict[str, str]  # compute | skinny | memory | gather | elementwise | overhead | none: largest term
    phases: dict[str, list[dict[str, Any]]]  # per stage: name, seconds, flops, bytes, calls, bound

    @property
    def qps(self) -> float:
        """Requests per second one worker sustains, end to end."""
        t = self.seconds["end_to_end"]
        return 1.0 / t if t > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.shape.kind,
            "hardware": self.hardware,
            "source": self.source,
            "backend": self.backend,
            "parameters": self.shape.parameters(),
            **{f"{stage}_s": t for stage, t in self.seconds.items()},
            "qps": self.qps,
            "flops": dict(self.flops),
            "bytes": dict(self.bytes),
            "bound": dict(self.bound),
            "phases": {s: list(p) for s, p in self.phases.items()},
        }


def predict(shape: ModelShape, hardware: Hardware, backend: str = "torch") -> Prediction:
    """Per-stage seconds (and their phases) of ``shape`` on ``hardware`` served with ``backend``."""
    seconds, flops, nbytes, bound, phases = {}, {}, {}, {}, {}
    for stage, items in stage_phases(shape, backend).items():
        rows = []
        totals = dict.fromkeys(("compute", "skinny", "memory", "gather", "elementwise", "overhead"), 0.0)
        for p in items:
            terms = phase_terms(p, hardware, backend)
            for key, value in terms.items():
                totals[key] += value
            rows.append({"name": p.name, "seconds": phase_seconds(p, hardware, backend),
                         "flops": p.flops + p.attention, "bytes": p.bytes + p.wide + p.gather,
                         "calls": p.calls, "bound": max(terms, key=terms.__getitem__)})  # fmt: skip
        seconds[stage] = float(sum(r["seconds"] for r in rows))
        flops[stage] = float(sum(p.flops + p.attention for p in items))
        nbytes[stage] = float(sum(p.bytes + p.wide + p.gather for p in items))
        bound[stage] = max(totals, key=totals.__getitem__) if items else "none"
        phases[stage] = rows
    return Prediction(shape, hardware.name, hardware.source, backend, seconds, flops, nbytes, bound, phases)


# --------------------------------------------------------------------------- against measured rows


def _whole(value: Any, default: int | None) -> int | None:
    """A row's count as an int; missing, None or NaN (a table's empty cell) gives ``default``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or not value:
        return default
    return int(value)


def _fraction(value: Any) -> float | None:
    """A row's share in [0, 1]; missing, None or NaN gives None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return min(1.0, max(0.0, float(value)))
    return None


def shape_from_row(row: dict[str, Any]) -> ModelShape:
    """The :class:`ModelShape` a bench row measured (``dim``, ``layers``, ``heads`` default 64, 2, 2)."""
    kind = row["model"] if row["model"] in MODEL_KINDS else "msli"
    variant = row.get("variant")
    n = _whole(row.get("candidates"), 1)
    m = _whole(row.get("rows"), None)
    return ModelShape(
        kind=kind,
        history=_whole(row.get("history"), 1),
        segments=_whole(row.get("segments"), 1),
        segment_len=_whole(row.get("segment_len"), None),
        dim=_whole(row.get("dim"), 64),
        layers=_whole(row.get("layers"), 2),
        heads=_whole(row.get("heads"), 2),
        candidates=m if variant == "cached_candidates" and m else n,  # the same request over M cached rows
        request_candidates=m if variant == "request_candidates" else None,
        exact_fraction=_fraction(row.get("exact_fraction")),
        **_index_fields(row),
    )


def _index_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The ANN fields of a bench row of ``variant`` ``ann`` (``method`` the index), else none."""
    if row.get("variant") != "ann" or row.get("method") not in INDEX_KINDS:
        return {}
    retrieved = row.get("retrieved")
    return {
        "index": row["method"],
        "probes": _whole(row.get("probes"), 32),
        "lists": _whole(row.get("lists"), None),
        "neighbours": _whole(row.get("neighbours"), 32),
        "retrieved": float(retrieved) if _positive(retrieved) else None,
    }


def predict_row(row: dict[str, Any], hardware: Hardware) -> float | None:
    """Predicted seconds of one bench row; None for a row that is not a predicted timing (floors)."""
    stage = row.get("stage")
    if stage not in ("offline", "nearline", "online", "end_to_end"):
        return None
    key = "nearline_full" if stage == "nearline" and row.get("variant") == "full" else stage
    phases = stage_phases(shape_from_row(row), row.get("backend") or "torch").get(key)
    if not phases:
        return None
    return sum(phase_seconds(p, hardware, row.get("backend") or "torch") for p in phases)


def _positive(value: Any) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def measured_ms(row: dict[str, Any]) -> float | None:
    """A row's measured time for the cost model: its wall-clock p50 (``cpu_p50_ms`` where it has none)."""
    for key in ("p50_ms", "cpu_p50_ms"):
        if _positive(row.get(key)):
            return float(row[key])
    return None


def error_report(rows: Iterable[dict[str, Any]], hardware: Hardware) -> dict[str, Any]:
    """Predicted / measured p50 of every timed row (floor rows are measured, not predicted): the
    median ratio, the worst (farthest from 1), the share within 1.5× and 2×, and every point."""
    import numpy as np

    points, seen = [], set()
    for row in rows:
        measured = measured_ms(row)
        predicted = predict_row(row, hardware) if measured is not None else None
        if predicted is None:
            continue
        key = (row["model"], row["stage"], row.get("variant"), row.get("backend"), row.get("candidates"),
               row.get("rows"), measured, round(predicted, 12))  # fmt: skip
        if key in seen:  # a measurement repeated for each K or L (``shared`` rows) counts once
            continue
        seen.add(key)
        points.append({
            "model": row["model"], "stage": row["stage"], "variant": row.get("variant", ""),
            "backend": row.get("backend", ""), "segments": row.get("segments"),
            "candidates": row.get("candidates"), "history": row.get("history"), "dim": row.get("dim"),
            "layers": row.get("layers"), "rows": row.get("rows"), "measured_ms": measured,
            "predicted_ms": predicted * 1e3, "ratio": predicted * 1e3 / measured,
        })  # fmt: skip
    if not points:
        nan = math.nan
        return {"hardware": hardware.name, "points": [], "median_ratio": nan, "worst_ratio": nan,
                "within_1_5x": nan, "within_2x": nan}  # fmt: skip
    ratios = np.array([p["ratio"] for p in points])
    return {
        "hardware": hardware.name,
        "source": hardware.source,
        "points": points,
        "median_ratio": float(np.median(ratios)),
        "worst_ratio": float(ratios[np.argmax(np.abs(np.log(ratios)))]),
        "within_1_5x": float(np.mean((ratios <= 1.5) & (ratios >= 1 / 1.5))),
        "within_2x": float(np.mean((ratios <= 2) & (ratios >= 0.5))),
    }
