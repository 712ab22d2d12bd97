"""Measure the cost model's constants on the machine at hand (:mod:`msli_core.serving.costmodel`).

Micro-benchmarks, one thread by default, timed in interleaved rounds (:func:`timing.time_in_rounds`:
the machine's load at any moment falls on all of them alike) and summarised by their medians:

- per backend (torch, numpy, onnxruntime) one *call cost*: a tiny product, (1, 8)·(8, 8) (torch: an
  ``nn.Linear`` module call, as the model code makes them; ONNX Runtime: a session of 16 chained Add
  nodes on 8 floats, per node);
- per backend two GEMM rates: ``square`` (256, 64)·(64, 256), and ``skinny`` (8, 64)·(64, 4096) blocks
  walking a 64 MiB table as the online scorer does (ONNX Runtime: one (8, 64)·(64, 2^18) product);
- the streaming bandwidth of a 64 MiB copy (:func:`timing.measure_bandwidth`, reads + writes);
- the random-gather bandwidth: blocks of 4096 rows of 256 bytes taken at random ids from that table,
  and from a part of it a quarter of the last-level cache in size (rows a request gathers from a
  catalog that fits in the cache come from there, not from main memory);
- the element-wise rate (elements/s) of the numpy passes the online scorer makes over a block that is
  in cache: on (8, 2048) float32 operands a take of half a block's columns, ``exp``, a max and a sum
  over the 8 rows, a broadcast subtract, a weighted sum (``einsum``, two operands), and a take of
  2048 rows of 64 floats.

Nothing is fitted: each constant is its own measurement. Shapes used here (d = 64, R = 8) are the
ones :mod:`msli_core.serving.costcheck` avoids when it checks the model out of sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from msli_core.errors import MsliError
from msli_core.progress import ProgressCallback, ProgressEvent, no_progress
from msli_core.serving import costmodel, timing

DIM, SQUARE_ROWS, SKINNY_ROWS, TABLE_ROWS = 64, 256, 8, 1 << 18
BUDGET_S = 2.0  # seconds of timed rounds (the whole calibration takes about twice that)


def _ort_session(nodes: list, inputs: list, outputs: list, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def info(name: str, shape: list) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    graph = helper.make_graph(nodes, "calibration", [info(*i) for i in inputs], [info(*o) for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _benchmarks(threads: int) -> dict[str, tuple[Callable[[], Any], float]]:
    """name -> (call, work per call: calls, FLOPs or bytes)."""
    import torch
    import torch.nn.functional as F

    tiny_module = torch.nn.Linear(8, 8)  # the model code's calls go through modules
    rng = np.random.default_rng(0)
    d, R, n = DIM, SKINNY_ROWS, TABLE_ROWS

    def rand(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    tiny_a, tiny_w = rand(1, 8), rand(8, 8)
    sq_a, sq_w = rand(SQUARE_ROWS, d), rand(d, 4 * d)
    half = costmodel.BLOCK // 2
    block_scores, block_rows = rand(R, costmodel.BLOCK), rand(costmodel.BLOCK, d)
    columns = np.sort(rng.choice(costmodel.BLOCK, size=half, replace=False))
    ew_a, ew_b = rand(R, half), rand(R, half)
    elementwise_elements = 7 * R * half + half * d  # (8, 2048) operands; einsum reads two
    table, left = rand(n, d), rand(R, d)
    timing_block = costmodel.BLOCK
    out = np.empty((R, timing_block), dtype=np.float32)
    t_tiny_a, t_sq_a, t_sq_w = (torch.from_numpy(x) for x in (tiny_a, sq_a, sq_w.T.copy()))
    heads = torch.from_numpy(rand(1, 2, SQUARE_ROWS, d // 2))  # (B, heads, T, head width), causal
    t_left, t_out = torch.from_numpy(left), torch.from_numpy(out)
    ids = rng.integers(0, n, size=(16, timing_block))
    cached_rows = max(timing_block, min(n, timing.cache_size(3) // 4 // (d * 4)))
    gathered = np.empty((timing_block, d), dtype=np.float32)
    square_flops, skinny_flops = 2 * SQUARE_ROWS * d * 4 * d, 2 * R * d * n

    def skinny_numpy() -> None:
        for lo in range(0, n, timing_block):
            np.matmul(left, table[lo : lo + timing_block].T, out=out)

    def skinny_torch() -> None:
        for lo in range(0, n, timing_block):
            torch.mm(t_left, torch.from_numpy(table[lo : lo + timing_block]).T, out=t_out)

    def gather() -> None:
        for row in ids:
            np.take(table, row, axis=0, out=gathered)

    cached_ids = ids % cached_rows  # the same gathers from a table a quarter of the last-level cache

    def gather_cached() -> None:
        for row in cached_ids:
            np.take(table, row, axis=0, out=gathered)

    def elementwise() -> None:
        np.take(block_scores, columns, axis=1)
        np.exp(ew_a)
        ew_a.max(axis=0)
        ew_a - ew_a[:1]
        np.einsum("km,km->m", ew_a, ew_b)
        ew_a.sum(axis=0)
        np.take(block_rows, columns, axis=0)

    bench: dict[str, tuple[Callable[[], Any], float]] = {
        "call torch": (lambda: tiny_module(t_tiny_a), 1),
        "call numpy": (lambda: tiny_a @ tiny_w, 1),
        "square torch": (lambda: F.linear(t_sq_a, t_sq_w), square_flops),
        "square numpy": (lambda: sq_a @ sq_w, square_flops),
        "attention torch": (
            lambda: F.scaled_dot_product_attention(heads, heads, heads, is_causal=True),
            4 * SQUARE_ROWS**2 * d,
        ),
        "skinny torch": (skinny_torch, skinny_flops),
        "skinny numpy": (skinny_numpy, skinny_flops),
        "gather": (gather, ids.size * d * 4),
        "gather cached": (gather_cached, ids.size * d * 4),
        "elementwise": (elementwise, elementwise_elements),
    }
    try:
        from onnx import helper
    except ImportError:
        return bench
    chain = [helper.make_node("Add", [f"x{i}", "x0"], [f"x{i + 1}"]) for i in range(16)]
    tiny = _ort_session(chain, [("x0", [8])], [("x16", [8])], threads)
    matmul = [helper.make_node("MatMul", ["a", "b"], ["y"])]
    sq = _ort_session(matmul, [("a", ["r", d]), ("b", [d, 4 * d])], [("y", ["r", 4 * d])], threads)
    sk = _ort_session(matmul, [("a", [R, d]), ("b", [d, n])], [("y", [R, n])], threads)
    table_t = np.ascontiguousarray(table.T)  # the exported scorer takes the table as (d, N)
    x8 = np.ones(8, dtype=np.float32)
    bench["call onnxruntime"] = (lambda: tiny.run(None, {"x0": x8}), 16)
    bench["square onnxruntime"] = (lambda: sq.run(None, {"a": sq_a, "b": sq_w}), square_flops)
    bench["skinny onnxruntime"] = (lambda: sk.run(None, {"a": left, "b": table_t}), skinny_flops)
    return bench


def measure(
    threads: int = 1, budget_s: float = BUDGET_S, progress: ProgressCallback | None = None
) -> costmodel.Hardware:
    """This machine's constants (nothing stored)."""
    import torch

    report = progress or no_progress
    report(ProgressEvent("calibrate", 0, 3, "preparing the micro-benchmarks"))
    with timing.thread_limits(threads):
        bench = _benchmarks(threads)
        report(ProgressEvent("calibrate", 1, 3, f"timing {len(bench)} micro-benchmarks in rounds"))
        names = list(bench)
        with torch.inference_mode():  # as the engine runs
            rounds = timing.time_in_rounds([bench[k][0] for k in names], budget_s=budget_s, min_rounds=2)
        seconds = {k: float(np.median(wall)) / 1e9 for k, (wall, _) in zip(names, rounds, strict=True)}
        report(ProgressEvent("calibrate", 2, 3, "streaming bandwidth"))
        bandwidth = float(np.median([timing.measure_bandwidth(64, budget_s=budget_s / 8) for _ in range(3)]))
    per = {k: bench[k][1] / seconds[k] for k in names}  # calls/s, FLOP/s or bytes/s
    backends = [b for b in costmodel.BACKENDS if f"call {b}" in per]
    cpu = timing.cpu_model()
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report(ProgressEvent("calibrate", 3, 3, "done"))
    return costmodel.Hardware(
        name=f"this machine ({cpu})",
        gemm_flops={
            b: {c: per[f"{c} {b}"] for c in costmodel.SHAPE_CLASSES if f"{c} {b}" in per} for b in backends
        },
        bandwidth=bandwidth,
        gather_bandwidth=per["gather"],
        cached_gather_bandwidth=per["gather cached"],
        llc_bytes=timing.cache_size(3),
        elementwise_rate=per["elementwise"],
        call_s={b: 1 / per[f"call {b}"] for b in backends},
        source=f"measured on {cpu}, {threads} thread{'s' * (threads > 1)}, {when}",
        measured_at=when,
        skinny_rows=SKINNY_ROWS,
        details={
            "cpu": cpu,
            "threads": threads,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "seconds_per_call": seconds,
            "shapes": f"square ({SQUARE_ROWS}, {DIM})·({DIM}, {4 * DIM}); attention 2 causal heads of "
            f"{DIM // 2} over {SQUARE_ROWS} positions; skinny ({SKINNY_ROWS}, {DIM})·({DIM}, "
            f"{costmodel.BLOCK}) blocks over a ({TABLE_ROWS}, {DIM}) table; tiny (1, 8)·(8, 8); element-wise "
            f"passes over ({SKINNY_ROWS}, {costmodel.BLOCK // 2}) operands",
        },
    )


def calibrate(
    threads: int = 1,
    save: bool = True,
    progress: ProgressCallback | None = None,
    budget_s: float = BUDGET_S,
    note: Callable[[str], None] | None = None,
) -> costmodel.Hardware:
    """Measure this machine (:func:`measure`); with ``save``, store it at the calibration path (checked
    before the measurement, :func:`costmodel.check_calibration_target`: a file msli did not write there,
    a newer msli's file, or a folder that takes no new files, is one sentence and nothing is measured).
    An older or damaged calibration of msli's there is replaced, and ``note`` gets the sentence saying
    so (:attr:`costmodel.CalibrationFile.note`) before the measurement starts."""
    if save:
        said = costmodel.check_calibration_target().note
        if said and note is not None:
            note(said)
    hardware = measure(threads, budget_s, progress)
    if save:
        costmodel.save_hardware(hardware)
    return hardware


def hardware_here(
    threads: int = 1,
    progress: ProgressCallback | None = None,
    budget_s: float = BUDGET_S,
    note: Callable[[str], None] | None = None,
) -> costmodel.Hardware:
    """This machine's constants: the stored calibration when it is usable, else measured now and stored.

    What the calibration path holds is decided by :func:`costmodel.classify_calibration`, the rule
    ``msli costmodel calibrate`` and ``msli bench --save-calibration`` follow too: a usable file (or a
    link to one) is read; nothing there is measured and written; an older-format or damaged file of
    msli's is measured again and replaced, and ``note`` (without one, the first progress event) gets
    the sentence saying so; a newer msli's file, a file msli did not write, a link to an unusable
    file, a folder, or a path that cannot be read is that sentence as an :class:`MsliError`, and
    nothing is measured."""
    found = costmodel.classify_calibration()
    if found.hardware is not None:
        return found.hardware
    if found.refusal is not None:
        raise MsliError(found.refusal)
    if found.note is not None and note is not None:
        note(found.note)
    elif found.note is not None and progress is not None:  # a caller without notes shows progress
        progress(ProgressEvent("calibrate", 0, 3, found.note))
    return calibrate(threads, save=True, progress=progress, budget_s=budget_s)
