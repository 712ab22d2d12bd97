"""The cost model checked out of sample: real engines at shapes the calibration never used.

:mod:`msli_core.serving.calibrate` times products at d = 64 with 8 rows; here real
:class:`~msli_core.serving.engine.InferenceEngine` calls run at other widths (32, 128), depths (1, 3),
catalogs (20k, 300k), segment counts (2, 8) and windows (50, 200), in a fractional design of 8 MS-LI
points plus 2 two-tower / full-forward points. Each point's calls are timed in interleaved rounds
(:func:`timing.time_in_rounds`) and compared by their wall-clock medians with
:func:`costmodel.predict_row` (``msli costmodel validate``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from msli_core.progress import ProgressCallback, ProgressEvent, no_progress
from msli_core.serving import costmodel, timing
from msli_core.serving.bench_settings import LAB_RECENCY_SLOT

# (d, layers, N, K, L): K = (d, layers) interaction and L = (d, N) interaction of a 2^(5-2) design
POINTS = [
    (32, 1, 20_000, 8, 200), (32, 1, 300_000, 8, 50), (32, 3, 20_000, 2, 200), (32, 3, 300_000, 2, 50),
    (128, 1, 20_000, 2, 50), (128, 1, 300_000, 2, 200), (128, 3, 20_000, 8, 50), (128, 3, 300_000, 8, 200),
    (32, 1, 300_000, 1, 200), (128, 3, 20_000, 1, 50),  # two-tower and full-forward
]  # fmt: skip
# a second design on other shapes again (d 48/96, 2/4 layers, N 50k/150k, K 4/16, L 100/200), kept apart
# from the first: a change made after looking at the first design's misses is checked here
FRESH_POINTS = [
    (48, 2, 50_000, 4, 100), (48, 4, 150_000, 16, 200), (96, 2, 150_000, 16, 100), (96, 4, 50_000, 4, 200),
    (48, 2, 150_000, 1, 200), (96, 4, 50_000, 1, 100),  # two-tower and full-forward
]  # fmt: skip
REQUEST_M = 10_000  # a request's own random candidate list, on the 300k catalogs
PASS_ABOVE_MS, PASS_RATIO, MEDIAN_RANGE = 1.0, 1.5, (0.8, 1.25)  # the bar


def measure_point(d: int, layers: int, n: int, k: int, length: int, budget_s: float) -> list[dict[str, Any]]:
    """Bench-schema rows (p50_ms, wall clock) of one engine: nearline update, full re-encode, a whole
    catalog request, and a fresh M-id list (N > M) or, for K = 1, the full forward per request."""
    import torch

    from msli_core.models.msli import MSLIConfig, MSLIModel
    from msli_core.serving.engine import InferenceEngine

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    config = MSLIConfig(
        n_items=n,
        dim=d,
        segments=k,
        max_len=length,
        layers=layers,
        heads=2,
        dropout=0.0,
        recency_slot=LAB_RECENCY_SLOT,
    )
    engine = InferenceEngine(MSLIModel(config).eval(), rng.random(n + 1))
    engine.offline()
    # a full window plus K-1 complete closed segments: every slot is non-empty, and the window slides
    engine.load_history("u", rng.integers(1, n + 1, size=length + (k - 1) * config.S))
    events = iter(rng.integers(1, n + 1, size=1_000_000))
    catalog = range(1, n + 1)
    model = "msli" if k > 1 else "two-tower"
    calls: dict[tuple[str, str, str], Any] = {
        (model, "nearline", "incremental"): lambda: engine.observe("u", int(next(events))),
        (model, "nearline", "full"): lambda: engine.full_reencode("u"),
        (model, "online", ""): lambda: engine.recommend("u", catalog),
    }
    if n > REQUEST_M:
        lists = [rng.choice(n, size=REQUEST_M, replace=False) + 1 for _ in range(16)]
        fresh = iter(lists * 100_000)
        calls[model, "online", "request_candidates"] = lambda: engine.recommend("u", next(fresh))
    if k == 1:

        def full_forward() -> Any:
            engine.full_reencode("u")
            return engine.recommend("u", catalog)

        calls["full-forward", "online", ""] = full_forward
    with torch.inference_mode():
        timings = timing.time_in_rounds(list(calls.values()), budget_s=budget_s, min_rounds=2)
    fraction = {  # the share of candidates the bound let through (an input of the model, like N)
        "": engine.recommend("u", catalog).exact / n,
        "request_candidates": engine.recommend("u", lists[0]).exact / REQUEST_M if n > REQUEST_M else None,
    }
    rows = []
    for (label, stage, variant), (wall, _) in zip(calls, timings, strict=True):
        rows.append({
            "model": label, "stage": stage, "variant": variant, "backend": "torch", "segments": k,
            "candidates": n, "history": length, "dim": d, "layers": layers, "heads": 2,
            "segment_len": config.S, "rows": REQUEST_M if variant == "request_candidates" else None,
            "p50_ms": float(np.median(wall)) / 1e6, "calls": len(wall),
            "exact_fraction": fraction.get(variant) if stage == "online" else None,
        })  # fmt: skip
    return rows


def validate(
    hardware: costmodel.Hardware | None = None,
    threads: int = 1,
    budget_s: float = 2.0,
    repeats: int = 3,
    points: list[tuple[int, int, int, int, int]] | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Measure ``points`` (default :data:`POINTS`) and compare with ``hardware``'s predictions:
    :func:`costmodel.error_report` plus ``passed`` (every point above 1 ms within 1.5×, median ratio in
    0.8–1.25) and the points that missed. Without ``hardware`` the machine is calibrated before each
    pass and the calibrations are combined (:func:`costmodel.combine`): a shared machine's load then
    falls on the constants and the checked points alike."""
    from msli_core.serving import calibrate

    report = progress or no_progress
    points = POINTS if points is None else points
    passes: list[list[dict[str, Any]]] = [[] for _ in points]
    total = repeats * len(points)
    calibrations: list[costmodel.Hardware] = []
    with timing.thread_limits(threads):
        for r in range(repeats):  # every point again, later: the median of the passes' p50s
            if hardware is None or calibrations:
                report(ProgressEvent("validate", r * len(points), total, "calibrating"))
                calibrations.append(calibrate.measure(threads))
            for i, point in enumerate(points):
                message = "d={} layers={} N={} K={} L={}".format(*point)
                report(ProgressEvent("validate", r * len(points) + i, total, message))
                passes[i].append(measure_point(*point, budget_s=budget_s))
    report(ProgressEvent("validate", total, total, "done"))
    rows = []
    for runs in passes:
        for same in zip(*runs, strict=True):  # one row per call, from each pass
            p50s = [row["p50_ms"] for row in same]
            rows.append({**same[0], "p50_ms": float(np.median(p50s)), "passes_ms": p50s})
    hardware = costmodel.combine(calibrations) if calibrations else hardware
    assert hardware is not None
    result = costmodel.error_report(rows, hardware)
    judged = [p for p in result["points"] if p["measured_ms"] > PASS_ABOVE_MS]
    missed = [p for p in judged if not 1 / PASS_RATIO <= p["ratio"] <= PASS_RATIO]
    lo, hi = MEDIAN_RANGE
    result.update(
        threads=threads,
        hardware_used=hardware.as_dict(),
        judged=len(judged),
        missed=missed,
        passed=not missed and lo <= result["median_ratio"] <= hi,
        bar=f"every point above {PASS_ABOVE_MS:g} ms within {PASS_RATIO:g}x, median ratio in {lo:g}-{hi:g}",
    )
    return result


def render(result: dict[str, Any]) -> str:
    """The table ``msli costmodel validate`` prints."""
    lines = [
        f"cost model ({result['source']}) vs measured, out of sample, {result['threads']} thread(s)",
        f"  {'model':<12} {'stage':<8} {'variant':<18} {'d':>4} {'lay':>3} {'N':>7} {'K':>2} {'L':>4}"
        f" {'predicted':>10} {'measured':>10} {'ratio':>6}",
    ]
    for p in result["points"]:
        lines.append(
            f"  {p['model']:<12} {p['stage']:<8} {p['variant'] or '-':<18} {p['dim']:>4} {p['layers']:>3} "
            f"{p['candidates']:>7} {p['segments']:>2} {p['history']:>4} {p['predicted_ms']:>8.3f}ms "
            f"{p['measured_ms']:>8.3f}ms {p['ratio']:>6.2f}"
        )
    lines.append(
        f"median ratio {result['median_ratio']:.3g}, worst {result['worst_ratio']:.3g}; "
        f"{result['judged'] - len(result['missed'])} of {result['judged']} points above 1 ms within 1.5x: "
        + ("PASSED" if result["passed"] else "NOT PASSED")
        + f" ({result['bar']})"
    )
    return "\n".join(lines)
