"""The one timing primitive of the latency lab: per-call wall-clock and CPU time, rounds of warm calls,
thread limits, the machine's bandwidth and CPU name (``msli bench``, the cost model and ONNX checks use it).

Every duration is taken with ``time.perf_counter_ns`` (wall clock) and ``time.thread_time_ns`` (CPU time
of the calling thread: with one thread, torch, ONNX Runtime and BLAS all run on it, so it leaves out the
time another process held the core; it is reported as a diagnostic beside the wall-clock figures).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def time_calls(
    fn: Callable[[], Any],
    *,
    warmup: int,
    repeats: int,
    budget_s: float,
    min_calls: int = 3,
    cpu_ns: list[int] | None = None,
) -> tuple[np.ndarray, bool]:
    """Per-call nanoseconds of ``fn()`` after ``warmup`` calls; stops at ``repeats`` or the budget
    (:func:`time_in_rounds` with one function, one timed call a round, no re-warming call).

    Returns ``(times_ns, capped)``; ``capped`` is True when the budget stopped it before ``repeats``.
    When ``cpu_ns`` is a list, each call's CPU time of the calling thread is appended to it.
    """
    [(wall, cpu)] = time_in_rounds(
        [fn], budget_s=budget_s, warmup=warmup, min_rounds=min_calls, max_calls=repeats, timed=[1],
        rewarm=[False],
    )  # fmt: skip
    if cpu_ns is not None:
        cpu_ns.extend(cpu)
    return np.asarray(wall, dtype=np.int64), len(wall) < repeats


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


TIMED_BLOCK = 5  # time_in_rounds: timed calls of each function per round, after one untimed re-warming call


def time_in_rounds(
    fns: Sequence[Callable[[], Any]],
    *,
    budget_s: float,
    warmup: int | Sequence[int] = 1,
    min_rounds: int = 1,
    max_calls: int = 10_000,
    timed: Sequence[int] | None = None,
    rewarm: Sequence[bool] | None = None,
) -> list[tuple[list[int], list[int]]]:
    """The one timing loop of the lab. Time several calls in rounds: ``warmup`` untimed calls of each
    first (an int for all, or one per function), then rounds in which each runs once untimed (it
    re-warms the caches the other calls evicted; ``rewarm`` False skips that, for a call too slow to
    repeat) and ``timed`` times timed (default :data:`TIMED_BLOCK` each), until the budget is spent
    (after ``min_rounds``) or the first function has ``max_calls`` timings.

    A drift of the machine's load falls on all of them alike (their differences stay meaningful) while
    each timing is of a warm call, as one request type served in a loop; strict alternation would charge
    a small call for the cache misses a large one causes. Returns, per function, its per-call
    wall-clock and calling-thread CPU nanoseconds."""
    n = len(fns)
    warm = [warmup] * n if isinstance(warmup, int) else list(warmup)
    per_round = list(timed) if timed is not None else [TIMED_BLOCK] * n
    again = list(rewarm) if rewarm is not None else [True] * n
    for fn, count in zip(fns, warm, strict=True):
        for _ in range(count):
            fn()
    walls: list[list[int]] = [[] for _ in fns]
    cpus: list[list[int]] = [[] for _ in fns]
    deadline = time.perf_counter_ns() + int(budget_s * 1e9)
    rounds = 0
    while len(walls[0]) < max_calls and (rounds < min_rounds or time.perf_counter_ns() < deadline):
        for fn, wall, cpu, count, rw in zip(fns, walls, cpus, per_round, again, strict=True):
            if rw:
                fn()  # untimed: re-warms this call's caches
            for _ in range(count):
                c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
                fn()
                wall.append(time.perf_counter_ns() - t0)
                cpu.append(time.thread_time_ns() - c0)
        rounds += 1
    return list(zip(walls, cpus, strict=True))


def measure_bandwidth(mib: int = 64, budget_s: float = 0.3) -> float:
    """Bytes/s of a streaming copy (read + write) of ``mib`` MiB, best of the timed calls."""
    src = np.ones(mib * 2**18, dtype=np.float32)
    dst = np.empty_like(src)
    times, _ = time_calls(lambda: np.copyto(dst, src), warmup=1, repeats=50, budget_s=budget_s)
    return 2 * src.nbytes / (float(times.min()) / 1e9)


def peak_gemm_flops(sizes: Sequence[int] = (256, 512), budget_s: float = 0.2) -> float:
    """FLOP/s of this machine's best float32 GEMM: square products in numpy and torch, the best call.

    The compute ceiling of a roofline (the thread settings in force apply)."""
    import torch

    best = 0.0
    for n in sizes:
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        at = torch.from_numpy(a)
        for fn in (lambda a=a: a @ a, lambda at=at: at @ at):
            times, _ = time_calls(fn, warmup=1, repeats=20, budget_s=budget_s)
            best = max(best, 2 * n**3 / (float(times.min()) / 1e9))
    return best


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's description elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


@functools.cache
def cache_size(level: int = 2, default: int = 1 << 20) -> int:
    """Bytes of the CPU's level-``level`` data cache (sysfs), or ``default`` where unknown. Read once per
    process (the engine asks on every request)."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(base.glob("index*")):
            if (index / "level").read_text().strip() == str(level) and (
                index / "type"
            ).read_text().strip() in (
                "Data",
                "Unified",
            ):
                text = (index / "size").read_text().strip().upper()
                scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
                return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return default
