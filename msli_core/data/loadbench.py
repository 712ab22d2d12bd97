"""How long loading a large log takes and how much memory it needs: ``msli data bench-load`` (issue 14).

Three stages, each timed alone (wall clock) with the process's resident memory after it and its peak
so far (``getrusage`` ``ru_maxrss``: the kernel's own high-water mark, so nothing is traced and nothing
slows down):

1. ``load``: :func:`~msli_core.data.formats.load_dataset` — read, validate, number the ids, sort.
2. ``split``: :func:`~msli_core.data.dataset.leave_one_out` and the validation and test targets of every
   evaluated user.
3. ``pad``: the padded history arrays the models read: the last ``max_len`` items of every evaluated
   user's validation and test history, ``(U_eval, max_len)`` each, and the last ``max_len + 1``
   training events of every user with at least two (one training row each, ``(U_train, max_len + 1)``),
   int64, right-aligned (:meth:`~msli_core.data.dataset.LeaveOneOutSplit.padded_histories`).
   ``torch.from_numpy`` wraps them without a copy, so torch is not imported (it would add its own
   few hundred MB to the measured peak).

The peak is the process's: run it in a fresh process (the CLI does) for the figure to mean "loading
this log". Wall times on a shared machine vary with what else runs: the result records the load
average at the start and the end.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path

from msli_core.data.dataset import leave_one_out
from msli_core.data.formats import load_dataset
from msli_core.progress import ProgressCallback, ProgressEvent, no_progress

STAGES = ("load", "split", "pad")


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if platform.system() == "Darwin" else int(peak) * 1024


def rss_bytes() -> int | None:
    """The process's resident memory now (Linux /proc/self/statm), or None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory / 2**30 if memory else None}


def bench_load(
    path: str | Path,
    *,
    column_map: dict[str, str] | None = None,
    max_len: int = 200,
    progress: ProgressCallback | None = None,
) -> dict:
    """Time and measure the three stages (module docstring) on the dataset at ``path``; JSON-ready."""
    progress = progress or no_progress
    start_load = _load_average()
    stages: list[dict] = []
    held: dict = {}

    def stage(name: str, work) -> None:
        progress(ProgressEvent("bench-load", len(stages), len(STAGES), f"{name}…"))
        t0 = time.perf_counter()
        held[name] = work()
        seconds = time.perf_counter() - t0
        rss = rss_bytes()
        stages.append(
            {
                "stage": name,
                "seconds": seconds,
                "rss_gib": rss / 2**30 if rss is not None else None,
                "peak_rss_gib": peak_rss_bytes() / 2**30,
            }
        )

    stage("load", lambda: load_dataset(path, column_map=column_map))
    data = held["load"]

    def split():
        s = leave_one_out(data)
        return s, s.targets("valid"), s.targets("test")

    stage("split", split)
    split_, _, _ = held["split"]

    def pad():
        valid = split_.padded_histories("valid", max_len)  # (U_eval, L)
        test = split_.padded_histories("test", max_len)  # (U_eval, L)
        _, train = split_.padded_train_tails(max_len + 1)  # (U_train, L+1)
        return valid, test, train

    stage("pad", pad)
    valid, test, train = held["pad"]
    progress(ProgressEvent("bench-load", len(STAGES), len(STAGES), "done"))
    return {
        "path": str(path),
        "format": data.format,
        "events": data.n_interactions,
        "users": data.n_users,
        "items": data.n_items,
        "eval_users": len(split_.eval_users),
        "max_len": max_len,
        "padded_shapes": {"valid": list(valid.shape), "test": list(test.shape), "train": list(train.shape)},
        "padded_gib": (valid.nbytes + test.nbytes + train.nbytes) / 2**30,
        "stages": stages,
        "total_s": float(sum(s["seconds"] for s in stages)),
        "peak_rss_gib": peak_rss_bytes() / 2**30,
        "machine": {**_machine(), "load_average_start": start_load, "load_average_end": _load_average()},
        "notes": list(data.notes),
    }


def format_bench(result: dict) -> str:
    """The result as a table for people."""
    lines = [
        f"{result['path']}: {result['format']}, {result['events']:,} events, {result['users']:,} users, "
        f"{result['items']:,} items ({result['eval_users']:,} evaluated)",
        f"{'stage':<8}{'seconds':>10}{'RSS GiB':>10}{'peak GiB':>10}",
    ]
    for s in result["stages"]:
        rss = f"{s['rss_gib']:.2f}" if s["rss_gib"] is not None else "?"
        lines.append(f"{s['stage']:<8}{s['seconds']:>10.2f}{rss:>10}{s['peak_rss_gib']:>10.2f}")
    lines.append(f"{'total':<8}{result['total_s']:>10.2f}{'':>10}{result['peak_rss_gib']:>10.2f}")
    shapes = result["padded_shapes"]
    lines.append(
        f"padded int64 arrays (L = {result['max_len']}): valid {tuple(shapes['valid'])}, test "
        f"{tuple(shapes['test'])}, train {tuple(shapes['train'])}: {result['padded_gib']:.2f} GiB"
    )
    m = result["machine"]
    load = m.get("load_average_start")
    lines.append(
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib'] or 0:.0f} GiB; load average at start "
        f"{load[0] if load else '?'} (a busy machine slows every stage)"
    )
    return "\n".join(lines)
