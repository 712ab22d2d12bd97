"""Bench rows and cost-model predictions as the app reports them: the sweep's CSV, the shapes its charts
can be drawn at, the What-if page's predictions and tables, and the cost model's curve against K beside
the measured points. Pure pandas over ``bench`` rows and ``costmodel``; nothing here imports torch.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pandas as pd

from msli_core import kinds
from msli_core.serving import costmodel

# the What-if page's data types and their bytes per value
DTYPES = {"float32": 4, "bfloat16 / float16": 2, "int8": 1}
ANN_VARIANTS = ("ann", "ann_exhaustive")  # bench rows of the ANN first stage and its exhaustive baseline
WHOLE_CATALOG = "MS-LI, whole catalog"  # the What-if page's exhaustive MS-LI beside an ANN first stage


def rows_csv(rows: list[dict]) -> bytes:
    """Bench rows as CSV: the columns of ``msli bench`` first, in its order, then any others."""
    from msli_core.serving.bench_settings import ROW_KEYS

    frame = pd.DataFrame(rows)
    columns = [c for c in ROW_KEYS if c in frame.columns] + [c for c in frame.columns if c not in ROW_KEYS]
    return frame[columns].to_csv(index=False).encode()


def chart_choices(rows: list[dict]) -> dict | None:
    """The shapes the Latency page's K charts can be drawn at: the N, L, backends (torch first) and K of
    the sweep's MS-LI online rows, and whether it has what the backend and nearline comparisons need.
    None when the sweep has no MS-LI online row."""
    frame = pd.DataFrame(rows)
    shapes = frame[(frame["model"] == "msli") & (frame["stage"] == "online")]
    if "variant" in shapes.columns:  # the whole-catalog request only: the ANN points, the encoder-size
        # sweep (always msli, whatever --models) and per-request lists have charts of their own
        shapes = shapes[shapes["variant"].isna() | (shapes["variant"] == "")]
    if shapes.empty:
        return None
    nearline = frame[(frame["stage"] == "nearline") & (frame["model"] == "msli")]
    variants = frame["variant"] if "variant" in frame.columns else pd.Series(dtype=object)
    return {
        "candidates": sorted(int(n) for n in shapes["candidates"].dropna().unique()),
        "history": sorted(int(h) for h in shapes["history"].dropna().unique()),
        "backends": sorted(shapes["backend"].dropna().unique(), key=lambda b: b != "torch"),
        "segments": sorted(int(k) for k in shapes["segments"].dropna().unique()),
        "encoder_size": has_encoder_size_rows(rows),
        "both_backends": {"torch", "onnxruntime"} <= set(shapes["backend"]),
        "nearline_pair": {"incremental", "full"} <= set(variants.reindex(nearline.index).dropna()),
    }


def has_encoder_size_rows(rows: list[dict]) -> bool:
    """Whether the sweep timed requests against encoder size (``variant`` ``encoder_size``)."""
    return any(row.get("variant") == "encoder_size" for row in rows)


def sweep_caption(rows: list[dict], meta: dict) -> str:
    """One line on the last sweep: rows, time, machine, threads, library versions."""
    from msli_core.viz import human_number

    threads = (meta.get("settings") or {}).get("threads", "?")
    return (
        f"Last sweep: {len(rows)} rows in {human_number(meta.get('seconds', 0), 's')} on "
        f"**{meta.get('cpu', '?')}** ({meta.get('cores', '?')} cores), {threads} thread(s) for torch, "
        "ONNX Runtime and BLAS; " + ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items())
    )


def cost_model_caption(meta: dict) -> str | None:
    """The cost model's error against the sweep in one sentence; None when the sweep has no such report."""
    report = meta.get("cost_model_error") or {}
    median = report.get("median_ratio")
    if median is None or median != median:  # absent or NaN
        return None
    return (
        f"Cost model against this sweep: median predicted/measured {median:.2f}, worst "
        f"{report['worst_ratio']:.2f}, {report.get('within_2x', float('nan')):.0%} of points within 2× "
        "(see the What-if page)."
    )


def ladder_predictions(
    hardware, backend: str = "torch", models=kinds.LADDER, **shape
) -> tuple[dict, dict[str, dict]]:
    """The cost model's prediction for each of ``models`` at one shape, keyed by the model's label:
    (label → ``ModelShape``, label → ``Prediction.as_dict()``). ``shape``: ``ModelShape``'s fields but
    ``kind``."""
    shapes = {kinds.LABELS[kind]: costmodel.ModelShape(kind=kind, **shape) for kind in models}
    if shape.get("index") and "msli" in models:  # an ANN first stage: MS-LI scoring everything beside it
        shapes[WHOLE_CATALOG] = costmodel.ModelShape(kind="msli", **{**shape, "index": None})
    predictions = {label: costmodel.predict(s, hardware, backend).as_dict() for label, s in shapes.items()}
    return shapes, predictions


def ann_table(rows: list[dict]) -> pd.DataFrame | None:
    """The ANN points of a sweep, one row per (N, index, probes) plus the exhaustive request of the same
    table: p50 (wall clock and CPU), recall@10 against exhaustive, the speed-up over exhaustive at that
    N, the candidates re-scored, the index's bytes and build time. None when the sweep has none.

    >>> rows = [dict(model="msli", stage="online", variant="ann_exhaustive", method="exhaustive",
    ...              candidates=1000, p50_ms=10.0, recall_at_10=1.0, table="clustered"),
    ...         dict(model="msli", stage="online", variant="ann", method="ivf", probes=8, candidates=1000,
    ...              p50_ms=0.5, recall_at_10=0.9, retrieved=300.0, table="clustered")]
    >>> ann_table(rows)[["index", "probes", "speed-up"]].to_dict("records")[1]
    {'index': 'IVF-Flat', 'probes': 8, 'speed-up': 20.0}
    """
    frame = pd.DataFrame(rows)
    if "variant" not in frame.columns:
        return None
    ann = frame[frame["variant"].isin(ANN_VARIANTS)]
    if ann.empty:
        return None
    labels = {"ivf": "IVF-Flat", "hnsw": "HNSW-Flat", "exhaustive": "none (exhaustive)"}
    whole = ann[ann["variant"] == "ann_exhaustive"].groupby("candidates")["p50_ms"].median()
    out = []
    ann = ann.assign(first=ann["variant"] != "ann_exhaustive")  # the exhaustive baseline first per N
    order = ann.sort_values(["candidates", "first", "method", "probes"], na_position="first")
    for _, r in order.iterrows():
        base = whole.get(r["candidates"], math.nan)

        def value(key: str, row=r) -> Any:
            v = row.get(key)
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        out.append({
            "N": int(r["candidates"]),
            "index": labels.get(str(r.get("method")), str(r.get("method"))),
            "probes": None if value("probes") is None else int(r["probes"]),
            "recall@10": value("recall_at_10"),
            "p50 ms": value("p50_ms"),
            "CPU p50 ms": value("cpu_p50_ms"),
            "speed-up": base / r["p50_ms"] if r.get("p50_ms") else math.nan,
            "candidates re-scored": value("retrieved"),
            "index MiB": None if value("index_bytes") is None else r["index_bytes"] / 2**20,
            "build s": value("build_s"),
            "table": value("table"),
        })  # fmt: skip
    table = pd.DataFrame(out)
    table["probes"] = table["probes"].astype("Int64")
    return table


def prediction_table(predictions: dict[str, dict]) -> pd.DataFrame:
    """One row per model: milliseconds per stage, throughput, what bounds the online stage, its FLOPs."""
    from msli_core.viz import human_number

    return pd.DataFrame(
        [
            {
                "model": label,
                "offline ms": p["offline_s"] * 1e3,
                "nearline ms (per event)": p["nearline_s"] * 1e3,
                "online ms (per request)": p["online_s"] * 1e3,
                "end-to-end ms": p["end_to_end_s"] * 1e3,
                "QPS (one worker)": p["qps"],
                "online bound by": p["bound"].get("online", ""),
                "online FLOPs": human_number(p["flops"].get("online", 0.0), "FLOP"),
            }
            for label, p in predictions.items()
        ]
    )


def phase_table(predictions: dict[str, dict]) -> pd.DataFrame:
    """One row per model, stage and phase of the cost model: milliseconds, FLOPs, bytes, calls, bound."""
    from msli_core.viz import human_number

    return pd.DataFrame(
        [
            {
                "model": label,
                "stage": stage,
                "phase": ph["name"],
                "ms": ph["seconds"] * 1e3,
                "FLOPs": human_number(ph["flops"], "FLOP"),
                "bytes": human_number(ph["bytes"], "B"),
                "calls": ph["calls"],
                "bound by": ph["bound"],
            }
            for label, p in predictions.items()
            for stage in ("nearline", "nearline_full", "online")
            for ph in p["phases"].get(stage, [])
        ]
    )


def whatif_curve(rows: list[dict], hardware) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The What-if page's "predicted vs measured against K": MS-LI online rows of the sweep at its
    largest N (first L, torch when measured), and the cost model's prediction for K = 1..64 there.
    Returns (curve, measured, shape); empty frames and {} when the sweep has no such rows."""
    frame = pd.DataFrame(rows)
    online = frame[(frame["model"] == "msli") & (frame["stage"] == "online")].dropna(subset=["p50_ms"])
    online = online[online["variant"].isna() | (online["variant"] == "")]  # the catalog request
    if online.empty:
        return pd.DataFrame(), pd.DataFrame(), {}
    backend = "torch" if (online["backend"] == "torch").any() else str(online["backend"].iloc[0])
    online = online[online["backend"] == backend]
    n, length = int(online["candidates"].max()), int(online["history"].min())
    measured = online[(online["candidates"] == n) & (online["history"] == length)]
    measured = measured.groupby("segments", as_index=False)[["p50_ms", "p95_ms"]].median()
    template = online.iloc[0].to_dict()
    ks = [1, 2, 4, 8, 16, 32, 64]
    predicted = [
        costmodel.predict_row({**template, "segments": k, "candidates": n, "history": length}, hardware) * 1e3
        for k in ks
    ]
    curve = pd.DataFrame({"segments": ks, "predicted_ms": predicted})
    return curve, measured, {"candidates": n, "history": length, "backend": backend}


BUNDLED_SWEEP = "bench"  # the bundled latency sweep: sample_data/bench/ (made by `make demo-bench`)


def bundled_sweep(sample_dir) -> tuple[list[dict], dict] | None:
    """The latency sweep shipped beside the sample data (``bench.json`` and ``meta.json`` of an
    ``msli bench --out``), so the Latency page and Home have measured figures before the user runs one;
    None when it is absent or not a sweep :func:`check_sweep` accepts. Its ``meta`` names the machine it
    was measured on."""
    from pathlib import Path

    from msli_core.errors import MsliError

    try:
        return read_sweep(Path(sample_dir) / BUNDLED_SWEEP)
    except MsliError:
        return None


# bench.json of the default sweep is ~100 KB; 64 MiB is about 100,000 rows (about a second to parse and
# check). A file over it is refused for its size, before it is read.
MAX_SWEEP_BYTES = 64 << 20
# The columns of a bench row (bench_settings.ROW_KEYS) by the type msli bench writes them with; any may be
# null (not applicable to that row, or a NaN written as null) except the ones in _REQUIRED.
_ROW_TEXT = ("model", "stage", "variant", "backend", "method", "table", "note")
_ROW_WHOLE = ("segments", "candidates", "history", "passes", "threads", "calls", "dim", "layers", "heads",
              "segment_len", "rows", "probes", "lists", "neighbours", "index_bytes")  # fmt: skip
_ROW_NUMBER = ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "qps", "cpu_p50_ms", "estimated_ms", "retrieved",
               "build_s")  # fmt: skip
_ROW_FRACTION = ("exact_fraction", "recall_at_10")
_ROW_FLAG = ("capped", "shared")
# present and not null in every row: what each row is (the pages filter and group by these)
_REQUIRED = ("model", "stage", "backend", "segments", "history", "calls")
# meta.json fields the pages read, by type (each optional)
_META_TYPES = {"cpu": str, "started_at": str, "cores": int, "seconds": (int, float), "settings": dict,
               "versions": dict, "cost_model_error": dict, "ann": dict, "hardware": dict}  # fmt: skip
_META_ERROR_NUMBERS = ("median_ratio", "worst_ratio", "within_1_5x", "within_2x")


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2**53


def _number(v: Any) -> bool:
    return (isinstance(v, float) and math.isfinite(v) and v >= 0) or _whole(v)


def _row_problem(row: Any) -> str | None:
    """What is wrong with one bench row, as a phrase; None when it has the schema msli bench writes."""
    if not isinstance(row, dict):
        return f"a row is {type(row).__name__} {str(row)[:30]}, not an object"
    for key in _REQUIRED:
        if row.get(key) is None:
            return f"a row has no {key}"
    if row["stage"] != "nearline" and row.get("candidates") is None:  # only a nearline update has no N
        return f"a {row['stage']} row has no candidates"
    if row.get("p50_ms", 0) is None and row["calls"]:
        return "a timed row (calls > 0) has no p50_ms"
    checks = (
        (_ROW_TEXT, lambda v: isinstance(v, str), "a string"),
        (_ROW_WHOLE, _whole, "a whole number, 0 or more"),
        (_ROW_NUMBER, _number, "a number, 0 or more"),
        (_ROW_FRACTION, lambda v: _number(v) and v <= 1, "a number from 0 to 1"),
        (_ROW_FLAG, lambda v: isinstance(v, bool), "true or false"),
    )
    for keys, ok, wanted in checks:
        for key in keys:
            value = row.get(key)
            if value is not None and not ok(value):
                return f"a row has {key} = {str(value)[:30]!r} ({type(value).__name__}), not {wanted}"
    return None


def check_sweep(rows: Any, meta: Any) -> str | None:
    """What keeps ``(rows, meta)`` from being shown, as a phrase; None when they have the schema
    ``msli bench`` writes: a non-empty list of row objects whose columns have their types (the identity
    columns present; a number finite and not negative) and a meta object whose fields the pages read
    have theirs.

    >>> check_sweep([1, 2], {})
    'a row is int 1, not an object'
    >>> check_sweep([{"model": "msli", "stage": "online", "backend": "torch", "segments": 4,
    ...               "history": 50, "candidates": 100, "calls": 5, "p50_ms": "2.0"}], {})
    "a row has p50_ms = '2.0' (str), not a number, 0 or more"
    """
    if not isinstance(rows, list) or not isinstance(meta, dict):
        return "bench.json is not a list of rows or meta.json not an object"
    if not rows:
        return "bench.json holds no rows"
    for row in rows:
        if problem := _row_problem(row):
            return problem
    for key, types in _META_TYPES.items():
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            return f"meta.json has {key} = {str(value)[:30]!r} ({type(value).__name__})"
    if isinstance(meta.get("seconds"), float) and not math.isfinite(meta["seconds"]):
        return "meta.json has a non-finite seconds"
    error = meta.get("cost_model_error") or {}
    for key in _META_ERROR_NUMBERS:
        value = error.get(key)
        if value is not None and not _number(value):
            return f"meta.json has cost_model_error.{key} = {str(value)[:30]!r}"
    return None


def read_sweep(
    folder, fix: str = "run the sweep again with `msli bench --out`"
) -> tuple[list[dict], dict] | None:
    """``(rows, meta)`` of a folder written by ``msli bench --out`` (``bench.json``, ``meta.json``), each
    row with every column of ``bench_settings.ROW_KEYS`` (a column an older msli did not write reads as
    null, as the bench writes a column that does not apply to a row); None when the folder has no
    bench.json (not a sweep). A bench.json that cannot be read, or rows or meta that
    :func:`check_sweep` refuses, raise :class:`MsliError`: one sentence naming the folder, what is wrong,
    and ``fix`` (what the reader can do), so a damaged or old-schema sweep is never handed to a page. A
    file over :data:`MAX_SWEEP_BYTES` is refused for what it is, too large (its size, the cap, and that a
    sweep of fewer values fits), before it is read."""
    import json
    from pathlib import Path

    from msli_core.errors import MsliError
    from msli_core.serving.bench_settings import ROW_KEYS

    folder = Path(folder)
    if not (folder / "bench.json").exists():
        return None
    try:
        texts = []
        for name in ("bench.json", "meta.json"):
            with open(folder / name, encoding="utf-8") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size > MAX_SWEEP_BYTES:
                    raise MsliError(_too_large(folder, name, size, fix))
                texts.append(fh.read(MAX_SWEEP_BYTES + 1))
                if len(texts[-1]) > MAX_SWEEP_BYTES:  # grew while it was read
                    raise MsliError(_too_large(folder, name, len(texts[-1].encode("utf-8")), fix))
        rows, meta = (json.loads(t) for t in texts)
    except (OSError, ValueError, RecursionError) as err:
        detail = getattr(err, "strerror", None) or str(err)[:80] or type(err).__name__
        raise MsliError(f"The sweep {folder} cannot be read ({detail}); {fix}.") from err
    problem = check_sweep(rows, meta)
    if problem:
        raise MsliError(
            f"The sweep {folder} is not one this msli can show ({problem}): it was edited, damaged or "
            f"written by another version; {fix}."
        )
    return [{**dict.fromkeys(ROW_KEYS), **row} for row in rows], meta


def _too_large(folder, name: str, size: int, fix: str) -> str:
    """The sentence for a sweep file over :data:`MAX_SWEEP_BYTES`: its true size and the cap, not damage."""
    return (
        f"The sweep {folder} has a {name} of {size / 2**20:.1f} MiB, over the {MAX_SWEEP_BYTES >> 20} MiB "
        f"a sweep file may have, so it is not read (a sweep with fewer values in each setting stays under "
        f"it); {fix}."
    )


def headline_speedup(rows: list[dict]) -> dict | None:
    """MS-LI against the cross-encoder from a sweep: the largest N (then shortest L) where the
    cross-encoder was timed, MS-LI's request at its largest K there (its paired calls when it has them).
    Returns ``{"ratio", "msli_ms", "cross_ms", "segments", "candidates", "history"}`` or None.

    >>> rows = [dict(model="cross-encoder", stage="online", variant=None, backend="torch", segments=1,
    ...              candidates=1000, history=50, p50_ms=300.0, calls=3),
    ...         dict(model="msli", stage="online", variant=None, backend="torch", segments=8,
    ...              candidates=1000, history=50, p50_ms=0.2, calls=50)]
    >>> headline_speedup(rows)["ratio"]
    1500.0
    """
    import math

    def timed(r: dict) -> bool:
        p50 = r.get("p50_ms")
        return isinstance(p50, (int, float)) and math.isfinite(p50) and p50 > 0 and bool(r.get("calls"))

    cross = [r for r in rows if r.get("model") == "cross-encoder" and r.get("stage") == "online" and timed(r)]
    if not cross:
        return None
    best = max(cross, key=lambda r: (r["candidates"], -r["history"]))
    at = (best["candidates"], best["history"])
    msli = [r for r in rows if r.get("model") == "msli" and r.get("stage") == "online" and timed(r)
            and (r["candidates"], r["history"]) == at and r.get("backend") == "torch"
            and r.get("variant") in (None, "", "paired")]  # fmt: skip
    if not msli:
        return None
    k = max(r["segments"] for r in msli)
    chosen = sorted((r for r in msli if r["segments"] == k), key=lambda r: r.get("variant") != "paired")[0]
    msli_ms, cross_ms = chosen["p50_ms"], best["p50_ms"]
    return {"ratio": cross_ms / msli_ms, "msli_ms": msli_ms, "cross_ms": cross_ms, "segments": k,
            "candidates": at[0], "history": at[1]}  # fmt: skip


# ------------------------------------------------------------------------------ the bench's headline


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
