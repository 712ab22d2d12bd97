"""``msli bench``, ``msli export``, ``msli costmodel``: the latency lab, headless (docs/design.md §4, §6)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from msli_core import kinds
from msli_core.errors import MsliError
from msli_core.limits import whole_number

DEFAULTS = {
    "segments": "1,2,4,8,16,32",
    "candidates": "100,1000,10000,100000",
    "history": "50,200",
    "backend": "torch,onnxruntime",
    "models": "msli,two-tower,full-forward,cross-encoder",
    "request_candidates": "1000,10000",
    "encoder_sizes": "1x32,2x64,4x128,4x256",
    "extrapolate_sizes": "8x512,12x768,24x1024,32x2048",
    "ann": "ivf",
    "ann_candidates": "100000",
    "ann_probes": "8,16,32,64",
}


def register(subparsers) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="time the serving ladder (two-tower, full-forward, MS-LI per K, cross-encoder) over a sweep",
        description=(
            "Times offline, nearline (incremental and full), online and end-to-end latency per point of the "
            "sweep for the serving ladder: two-tower (one vector), full-forward (the encoder over the whole "
            "history on every request), MS-LI for each K and the cross-encoder, with the floors (bare numpy "
            "and torch matmul, memory = bytes/bandwidth, compute = FLOPs/peak GEMM) in the same run. Each "
            "figure is the median over --passes passes (wall clock; CPU time is a labelled diagnostic). "
            "Writes bench.csv, bench.json, meta.json and costmodel_error.json to --out; --json prints the "
            "rows on stdout. A progress bar goes to stderr."
        ),
    )
    bench.add_argument(
        "--segments", default=DEFAULTS["segments"], help="comma list of K (default %(default)s)"
    )
    bench.add_argument(
        "--candidates",
        default=DEFAULTS["candidates"],
        help="comma list of N: each request scores an N-item catalog (default %(default)s)",
    )
    bench.add_argument(
        "--request-candidates",
        default=DEFAULTS["request_candidates"],
        help="comma list of M: also time requests that bring a fresh list of M random ids (where M < N; "
        "'none' to skip; default %(default)s)",
    )
    bench.add_argument("--history", default=DEFAULTS["history"], help="comma list of L (default %(default)s)")
    bench.add_argument(
        "--backend", default=DEFAULTS["backend"], help="torch,onnxruntime (default %(default)s)"
    )
    bench.add_argument(
        "--encoder-sizes",
        default=DEFAULTS["encoder_sizes"],
        help="LAYERSxWIDTH list: request latency against encoder size, measured (at the largest N, L and "
        "K of the sweep; 'none' to skip; default %(default)s)",
    )
    bench.add_argument(
        "--extrapolate-sizes",
        default=DEFAULTS["extrapolate_sizes"],
        help="LAYERSxWIDTH list the cost model extrapolates to, marked as estimates ('none' to skip; "
        "default %(default)s)",
    )
    bench.add_argument(
        "--models", default=DEFAULTS["models"], help="comma list of msli,two-tower,full-forward,cross-encoder"
    )
    bench.add_argument(
        "--ann",
        default=DEFAULTS["ann"],
        help="ANN first stage beside exhaustive scoring: comma list of ivf, hnsw, or none (default "
        "%(default)s); recall@10 against exhaustive and p50 per --ann-probes, at --ann-candidates N",
    )
    bench.add_argument(
        "--ann-candidates",
        default=DEFAULTS["ann_candidates"],
        help="comma list of N for the ANN points: a generated N-item table (default %(default)s)",
    )
    bench.add_argument(
        "--ann-probes",
        default=DEFAULTS["ann_probes"],
        help="comma list of IVF nprobe (HNSW efSearch) values (default %(default)s)",
    )
    bench.add_argument("--ann-neighbours", default="32", help="k' neighbours per query (default 32)")
    bench.add_argument(
        "--ann-table",
        default="clustered",
        help="the ANN points' table: clustered (a mixture of 1,024 Gaussians) or gaussian (no structure, "
        "the worst case); default %(default)s",
    )
    bench.add_argument("--threads", default="1", help="torch / ONNX Runtime / BLAS threads (default 1)")
    bench.add_argument("--repeats", default="200", help="at most this many timed calls per point")
    bench.add_argument(
        "--budget-s", default="0.15", help="seconds of timing per point and pass (default 0.15)"
    )
    bench.add_argument("--cross-budget-s", default="2", help="seconds per cross-encoder point (default 2)")
    bench.add_argument(
        "--passes",
        default="3",
        help="passes over the sweep; each figure is the median of the passes' (default 3, at most 5)",
    )
    bench.add_argument("--dim", default="64", help="width d of the benchmarked models (default 64)")
    bench.add_argument("--layers", default="2", help="transformer layers (default 2)")
    bench.add_argument("--model", default=None, metavar="DIR", help="time this trained model folder instead")
    bench.add_argument("--no-calibrate", action="store_true", help="skip the cost-model micro-benchmarks")
    bench.add_argument("--save-calibration", action="store_true", help="store the fitted constants for later")
    bench.add_argument("--out", default=None, metavar="DIR", help="write the tables here")
    bench.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    bench.add_argument(
        "--training",
        action="store_true",
        help="time training steps instead: MS-LI (each K>1 of --segments, default 4) beside a plain "
        "SASRec-style step of the same shape (--dim, --layers, --threads, --history L, --items N); "
        "writes training.json to --out",
    )
    bench.add_argument("--items", default="1682", help="catalog size N of --training (default %(default)s)")
    bench.add_argument(
        "--data",
        default=None,
        metavar="DATA",
        help="--training: also time one epoch of this dataset's own training steps (its rows and batches) "
        "for each model, the same batches for all",
    )
    bench.set_defaults(func=run_bench_command)

    export = subparsers.add_parser(
        "export",
        help="export a trained MS-LI model's online scorer and nearline encoders as ONNX",
        description=(
            "Writes the online scorer to FILE.onnx and, beside it, the two nearline graphs with the item "
            "table baked in: the closed-segment encoder (FILE.segment_encoder.onnx) and the open-window "
            "encoder (FILE.open_encoder.onnx); --int8 adds int8 dynamically quantized "
            "FILE.segment_encoder.int8.onnx, FILE.open_encoder.int8.onnx and FILE.catalog.int8.onnx. "
            "Every graph passes onnx.checker."
        ),
    )
    export.add_argument("--model", required=True, metavar="DIR", help="a folder written by `msli train`")
    export.add_argument("--out", required=True, metavar="FILE.onnx", help="where the scorer goes")
    export.add_argument("--int8", action="store_true", help="also write int8 dynamically quantized graphs")
    export.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="with --int8: NDCG@10 and latency of float vs int8 on this data",
    )
    export.add_argument("--json", action="store_true", help="print the written paths as JSON")
    export.set_defaults(func=run_export_command)

    cost = subparsers.add_parser("costmodel", help="calibrate or query the latency cost model")
    cost_sub = cost.add_subparsers(dest="costmodel_command", metavar="ACTION")
    cost_sub.required = True
    calibrate = cost_sub.add_parser("calibrate", help="measure flops, bandwidth and overhead on this machine")
    calibrate.add_argument("--threads", default="1")
    calibrate.add_argument("--out", default=None, metavar="FILE.json", help="default: the platform cache dir")
    calibrate.add_argument("--json", action="store_true")
    calibrate.set_defaults(func=run_calibrate_command)
    predict = cost_sub.add_parser("predict", help="per-stage latency of a model shape on some hardware")
    predict.add_argument("--model", default="msli", choices=kinds.LADDER)
    predict.add_argument("--history", default="200")
    predict.add_argument("--segments", default="8", help="K of --model msli (the others have one vector)")
    predict.add_argument("--dim", default="64")
    predict.add_argument("--layers", default="2")
    predict.add_argument("--heads", default="2")
    predict.add_argument("--candidates", default="1000")
    predict.add_argument("--dtype-bytes", default="4")
    predict.add_argument(
        "--hardware", default="this machine", help="this machine | " + " | ".join(_preset_names())
    )
    predict.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(func=run_predict_command)
    validate = cost_sub.add_parser(
        "validate",
        help="check the cost model out of sample: real engines at widths, depths and N it was not "
        "calibrated on (calibrates this machine before each of 3 passes; about 3 minutes)",
    )
    validate.add_argument("--threads", default="1")
    validate.add_argument(
        "--fresh", action="store_true", help="the second design of shapes (costcheck.FRESH_POINTS)"
    )
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(func=run_validate_command)


def _preset_names() -> list[str]:
    from msli_core.serving.costmodel import PRESETS

    return list(PRESETS)


def parse_int_list(
    flag: str,
    text: str,
    lo: int = 1,
    hi: int | None = None,
    limit: str | None = None,
    *,
    single: bool = False,
) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4); anything else is a sentence naming the flag.

    ``hi`` (already scaled) bounds every value; ``limit`` names it in msli_core/limits.py.
    """
    from msli_core import limits

    example = ",".join(str(lo * m) for m in (1, 2, 4)) if lo > 0 else "0,1,2"  # values the flag accepts
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise MsliError(f"{flag} needs a value, like {example.split(',')[-1] if single else example}.")
    if not all(parts):
        raise MsliError(f"{flag} {text!r} has an empty entry between commas; pass e.g. {example}.")
    values = tuple(whole_number(p) for p in parts)
    if any(v is None for v in values):
        if single:
            one = example.split(",")[-1]
            raise MsliError(f"{flag} takes one whole number like {one}; {text!r} is not one.")
        raise MsliError(f"{flag} takes a comma list of whole numbers like {example}; {text!r} is not one.")
    if any(v < lo for v in values):
        low = min(values)
        if single:
            raise MsliError(f"{flag} takes one whole number of at least {lo}; {low} is too small.")
        raise MsliError(f"{flag} takes whole numbers of at least {lo}, like {example}; {low} is too small.")
    if hi is not None and max(values) > hi:
        where = f" ({limit} in msli_core/limits.py; MSLI_LIMITS_SCALE raises it)" if limit else ""
        raise MsliError(f"{flag} {max(values):,} is above the limit of {hi:,}{where}; pass a smaller value.")
    unique = tuple(dict.fromkeys(values))
    if len(unique) > limits.MAX_SWEEP_VALUES:
        raise MsliError(
            f"{flag} lists {len(unique)} values, more than the {limits.MAX_SWEEP_VALUES} one run takes; "
            "split the sweep into several runs."
        )
    return unique


def parse_int(flag: str, text: str, lo: int = 1, hi: int | None = None, limit: str | None = None) -> int:
    """One whole number in ``lo..hi``; anything else is a sentence naming the flag."""
    if "," in str(text):
        raise MsliError(f"{flag} takes one whole number, not the list {text!r}.")
    return parse_int_list(flag, text, lo, hi, limit, single=True)[0]


def parse_float(flag: str, text: str, hi: float | None = None) -> float:
    """A finite number of seconds above 0 (and at most ``hi``); anything else is a sentence."""
    from msli_core import limits

    try:
        value = float(text)
    except ValueError:
        raise MsliError(f"{flag} takes a positive number of seconds like 0.2; {text!r} is not one.") from None
    if not (math.isfinite(value) and value > 0):
        raise MsliError(f"{flag} must be a finite number of seconds above 0; {text!r} is not.")
    top = float(limits.scaled(int(limits.MAX_BUDGET_S))) if hi is None else hi
    if value > top:
        raise MsliError(
            f"{flag} {value:g} is above the limit of {top:g} s (MAX_BUDGET_S in msli_core/limits.py; "
            "MSLI_LIMITS_SCALE raises it)."
        )
    return value


def _limit(name: str) -> int:
    from msli_core import limits

    return limits.scaled(getattr(limits, name))


def parse_threads(flag: str, text: str) -> int:
    """Threads in 1..cores x 4 (limits.max_threads): more only adds contention, and far more crash."""
    from msli_core import limits

    cap = limits.max_threads()
    value = parse_int(flag, text)
    if value > cap:
        raise MsliError(
            f"{flag} {value:,} is more than this machine's {os.cpu_count() or 1} cores x "
            f"{limits.THREADS_PER_CORE} = {cap} threads; pass at most {cap}."
        )
    return value


def parse_name_list(flag: str, text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    parts = tuple(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    bad = [p for p in parts if p not in allowed]
    if not parts or bad:
        raise MsliError(
            f"{flag} takes a comma list of {', '.join(allowed)}; {bad[0] if bad else text!r} is not one."
        )
    return parts


def parse_sizes(flag: str, text: str) -> tuple[tuple[int, int], ...]:
    """``"2x64,4x128"`` -> ((2, 64), (4, 128)); ``"none"`` -> (); anything else is one sentence.

    Layers are bounded by MAX_LAYERS, widths by MAX_DIM (msli_core/limits.py), and a width must be even
    (two attention heads)."""
    if str(text).strip().lower() in ("none", ""):
        return ()
    sizes = []
    for part in str(text).split(","):
        layers, sep, width = part.strip().lower().partition("x")
        if not sep or not layers.strip() or not width.strip():
            raise MsliError(f"{flag} takes LAYERSxWIDTH pairs like 2x64,4x128; {part.strip()!r} is not one.")
        n_layers = parse_int(flag, layers, 1, _limit("MAX_LAYERS"), "MAX_LAYERS")
        dim = parse_int(flag, width, 2, _limit("MAX_DIM"), "MAX_DIM")
        if dim % 2:
            raise MsliError(f"{flag}: width {dim} must be even (two attention heads); pass e.g. {dim + 1}.")
        sizes.append((n_layers, dim))
    return tuple(dict.fromkeys(sizes))


def ann_settings(args: argparse.Namespace) -> dict:
    """The ``--ann*`` flags as BenchSettings fields; each bad value is one sentence naming its flag."""
    from msli_core.serving import retrieval
    from msli_core.serving.bench_settings import ANN_TABLES

    text = str(args.ann).strip().lower()
    kinds_ = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip() and text != "none"))
    if "none" in kinds_:  # "none" means no index, so it cannot stand beside one
        raise MsliError(
            f"--ann none means no index, so it cannot be listed with "
            f"{', '.join(k for k in kinds_ if k != 'none')}; pass --ann none alone, or only ivf, hnsw."
        )
    bad = [k for k in kinds_ if k not in retrieval.INDEX_KINDS]
    if bad:
        raise MsliError(f"--ann takes a comma list of ivf, hnsw, or none; {bad[0]!r} is not one.")
    if not kinds_:
        return {"ann": ()}
    table = str(args.ann_table).strip().lower()
    if table not in ANN_TABLES:
        raise MsliError(f"--ann-table takes {' or '.join(ANN_TABLES)}; {args.ann_table!r} is not one.")
    return {
        "ann": kinds_,
        "ann_candidates": parse_int_list("--ann-candidates", args.ann_candidates, 640, retrieval.MAX_ITEMS),
        "ann_probes": parse_int_list("--ann-probes", args.ann_probes, 1, retrieval.MAX_PROBES),
        "ann_neighbours": parse_int("--ann-neighbours", args.ann_neighbours, 10, retrieval.MAX_NEIGHBOURS),
        "ann_table": table,
    }


def settings_from_args(args: argparse.Namespace):
    """The sweep's settings, every value bounded (msli_core/limits.py), and its memory estimated:
    all of it before anything is timed or written."""
    from msli_core import limits
    from msli_core.serving.bench import BACKENDS, MODELS, BenchSettings, estimate_bytes

    if args.model is not None and not Path(args.model).is_dir():
        raise MsliError(f"--model {args.model} is not a folder; pass the --out folder of `msli train`.")
    settings = BenchSettings(
        segments=parse_int_list("--segments", args.segments, hi=_limit("MAX_SEGMENTS"), limit="MAX_SEGMENTS"),
        candidates=parse_int_list(
            "--candidates", args.candidates, hi=_limit("MAX_CANDIDATES"), limit="MAX_CANDIDATES"
        ),
        history=parse_int_list("--history", args.history, hi=_limit("MAX_HISTORY"), limit="MAX_HISTORY"),
        request_candidates=()
        if str(args.request_candidates).strip().lower() == "none"
        else parse_int_list(
            "--request-candidates",
            args.request_candidates,
            hi=_limit("MAX_CANDIDATES"),
            limit="MAX_CANDIDATES",
        ),
        encoder_sizes=parse_sizes("--encoder-sizes", args.encoder_sizes),
        extrapolate_sizes=parse_sizes("--extrapolate-sizes", args.extrapolate_sizes),
        backends=parse_name_list("--backend", args.backend, BACKENDS),
        models=parse_name_list("--models", args.models, MODELS),
        threads=parse_threads("--threads", args.threads),
        repeats=parse_int("--repeats", args.repeats, hi=_limit("MAX_REPEATS"), limit="MAX_REPEATS"),
        budget_s=parse_float("--budget-s", args.budget_s),
        cross_budget_s=parse_float("--cross-budget-s", args.cross_budget_s),
        dim=parse_int("--dim", args.dim, hi=_limit("MAX_DIM"), limit="MAX_DIM"),
        layers=parse_int("--layers", args.layers, lo=0, hi=_limit("MAX_LAYERS"), limit="MAX_LAYERS"),
        model_dir=args.model,
        calibrate=not args.no_calibrate,
        passes=parse_int("--passes", args.passes, hi=5),
        **ann_settings(args),
    )
    never = [m for m in settings.request_candidates if m >= max(settings.candidates)]
    if never and str(args.request_candidates) != DEFAULTS["request_candidates"]:
        # an M is timed only beside a catalog larger than it (the defaults are skipped where they do not fit)
        raise MsliError(
            f"--request-candidates {never[0]:,} is not smaller than the largest --candidates "
            f"({max(settings.candidates):,}), so no request could bring that list; pass M < N or 'none'."
        )
    if settings.dim % settings.heads:
        raise MsliError(
            f"--dim {settings.dim} is not a multiple of the {settings.heads} attention heads; pass a "
            f"multiple of {settings.heads} like 64."
        )
    need = estimate_bytes(settings)
    available = limits.available_memory_bytes()
    if available is not None and need > limits.MEMORY_FRACTION * available:
        raise MsliError(
            f"This sweep needs about {need / 2**30:.1f} GiB at its largest point "
            f"(N={max(settings.candidates):,}, d={settings.dim}, K={max(settings.segments)}, "
            f"L={max(settings.history)}), more than "
            f"{limits.MEMORY_FRACTION:.0%} of the {available / 2**30:.1f} GiB available; pass smaller "
            "--candidates, --dim, --segments or --history."
        )
    return settings


def run_training_bench(args: argparse.Namespace) -> int:
    """``msli bench --training``: one training step of each model, timed in one run (training_bench)."""

    from msli_core import limits
    from msli_core.training_bench import epoch_throughput, render, training_throughput

    segments = DEFAULTS["segments"] if args.segments == DEFAULTS["segments"] else args.segments
    ks = tuple(
        k for k in parse_int_list("--segments", segments, 1, limits.MAX_SEGMENTS, "MAX_SEGMENTS") if k > 1
    )
    history = parse_int_list("--history", args.history, 2, limits.MAX_HISTORY, "MAX_HISTORY")
    kwargs = dict(
        n_items=parse_int("--items", args.items, 1, limits.MAX_ITEMS, "MAX_ITEMS"),
        length=max(history),
        dim=parse_int("--dim", args.dim, 1, limits.MAX_DIM, "MAX_DIM"),
        layers=parse_int("--layers", args.layers, 0, limits.MAX_LAYERS, "MAX_LAYERS"),
        segments=ks if args.segments != DEFAULTS["segments"] else (4,),
        repeats=min(parse_int("--repeats", args.repeats, 1), 50),
        threads=parse_threads("--threads", args.threads),
    )
    if kwargs["dim"] % 2:
        raise MsliError(f"--dim {kwargs['dim']} must be even for --training (2 attention heads).")
    if args.out is not None:
        from msli_core.outputs import check_out_dir

        check_out_dir(args.out, "bench")
    data = None
    if args.data is not None:  # read before any work: a bad dataset is one sentence
        from msli_core.data.formats import load_dataset

        data = load_dataset(args.data)
    result = training_throughput(**kwargs)
    if data is not None:
        epoch = epoch_throughput(data, **{k: kwargs[k] for k in ("segments", "dim", "layers", "threads")})
        result["epoch"] = epoch
    if args.out is not None:
        from msli_core.jsonable import to_jsonable
        from msli_core.outputs import atomic_output_dir

        with atomic_output_dir(Path(args.out), kind="bench") as tmp:
            (tmp / "training.json").write_text(json.dumps(to_jsonable(result), indent=1, allow_nan=False))
    if args.json:
        from msli_core.cli import print_json

        print_json(result)
    else:
        print(render(result))
        if data is not None:
            print(render(result["epoch"]))
    return 0


FLAG_DEFAULTS = {  # the flags whose value only some modes read, with their defaults
    "--segments": DEFAULTS["segments"], "--dim": "64", "--layers": "2",
    "--encoder-sizes": DEFAULTS["encoder_sizes"], "--extrapolate-sizes": DEFAULTS["extrapolate_sizes"],
    "--items": "1682",
}  # fmt: skip


def refuse_ignored_flags(args: argparse.Namespace) -> None:
    """A flag the chosen mode would silently ignore is one sentence, before any work: ``--model`` times
    the model's own K, d and layers (and builds no other encoder sizes); ``--items`` is the catalog of
    ``--training`` only; ``--save-calibration`` stores the constants that ``--no-calibrate`` skips."""

    def given(flag: str) -> bool:
        return str(getattr(args, flag[2:].replace("-", "_"))) != FLAG_DEFAULTS[flag]

    if args.model is not None and not args.training:
        ignored = [f for f in ("--segments", "--dim", "--layers", "--encoder-sizes", "--extrapolate-sizes")
                   if given(f)]  # fmt: skip
        if ignored:
            raise MsliError(
                f"{', '.join(ignored)} cannot be used with --model: the model's own segments, width and "
                "layers are timed; drop them, or drop --model to time fresh models of those shapes."
            )
    if args.training and args.model is not None:
        raise MsliError("--training times fresh models of --dim/--layers/--segments; drop --model.")
    if args.data is not None and not args.training:
        raise MsliError("--data times a dataset's training steps, so it needs --training.")
    if not args.training and given("--items"):
        raise MsliError(
            "--items sets the catalog of --training only; use --candidates for the serving sweep's N."
        )
    if args.no_calibrate and args.save_calibration:
        raise MsliError(
            "--save-calibration stores this run's calibration, which --no-calibrate skips; drop one of them."
        )


def run_bench_command(args: argparse.Namespace) -> int:
    refuse_ignored_flags(args)
    if args.training:
        return run_training_bench(args)
    from msli_core.progress import TextProgressBar
    from msli_core.serving import costmodel
    from msli_core.serving.bench import headline, run_bench, write_outputs

    settings = settings_from_args(args)
    if args.save_calibration:  # before any work: never replace a calibration file msli did not write
        _say(costmodel.check_calibration_target().note)  # an older or damaged one of msli's: said so
    if args.out is not None:  # before any work: never replace a folder msli did not write
        from msli_core.outputs import check_out_dir

        check_out_dir(args.out, "bench", data=args.model, data_flag="--model")
    result = run_bench(settings, TextProgressBar(sys.stderr), note=_say)
    if args.save_calibration:
        costmodel.save_hardware(costmodel.Hardware.from_dict(result.meta["hardware"]))
    if args.out is not None:
        write_outputs(result, Path(args.out))
    if args.json:
        from msli_core.cli import print_json

        print_json(result.rows)
    else:
        summary = headline(result.rows, result.meta)
        err = result.meta.get("cost_model_error", {})
        print(f"{len(result.rows)} rows in {result.meta['seconds']:.0f} s on {result.meta['cpu']}, "
              f"threads {settings.threads}" + (f"; written to {args.out}" if args.out else ""))  # fmt: skip
        for label, value in summary.items():
            print(f"  {label}: {value}")
        if err:
            print(f"  cost model predicted/measured: median {err.get('median_ratio', float('nan')):.3g}, "
                  f"worst {err.get('worst_ratio', float('nan')):.3g}, "
                  f"{err.get('within_2x', float('nan')):.0%} within 2x")  # fmt: skip
    return 0


def run_export_command(args: argparse.Namespace) -> int:
    """Everything is checked (flags, output paths, the model, the data and the model's fit to it) and
    every graph built before the first file is written."""
    from msli_core.models.registry import load_model
    from msli_core.serving.onnx_export import check_exportable, export_model, export_paths

    if args.data is not None and not args.int8:
        raise MsliError("--data compares float and int8 graphs; add --int8 (or drop --data).")
    export_paths(args.out, quantize=args.int8)
    data = None
    if args.data is not None:
        from msli_core.data import load_dataset

        data = load_dataset(args.data)
    loaded = load_model(args.model, data)  # with --data: refuses a model trained on other data
    check_exportable(loaded.model, f"Model folder {args.model}")
    quality = None
    if data is not None:
        from msli_core.serving.onnx_export import quantized_quality

        quality = quantized_quality(loaded.model, data)
    paths = {"model": str(args.model), "kind": loaded.kind}
    paths.update(export_model(loaded.model, args.out, quantize=args.int8))
    if quality is not None:
        paths["int8_quality"] = quality
    if args.json:
        from msli_core.cli import print_json

        print_json(paths)
    else:
        for key, value in paths.items():
            if key not in ("model", "kind"):
                print(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")
    return 0


def _say(note: str | None) -> None:
    """A note on stderr (``msli: note: ...``), one line: what msli does to a file it is replacing."""
    if note:
        print(f"msli: note: {note}", file=sys.stderr)


def run_calibrate_command(args: argparse.Namespace) -> int:
    from msli_core.serving import costmodel

    threads = parse_threads("--threads", args.threads)
    _say(costmodel.check_calibration_target(args.out).note)  # before the (seconds-long) measurement
    from msli_core.progress import TextProgressBar
    from msli_core.serving.calibrate import calibrate

    hardware = calibrate(threads=threads, save=False, progress=TextProgressBar(sys.stderr))
    path = costmodel.save_hardware(hardware, args.out)
    data = {**hardware.as_dict(), "path": str(path)}
    if args.json:
        from msli_core.cli import print_json

        print_json(data)
    else:
        print(costmodel.describe(hardware) + f"; saved to {path}")
    return 0


def run_validate_command(args: argparse.Namespace) -> int:
    """``msli costmodel validate``: exit 0 when the issue's bar is met, 1 when it is not."""
    from msli_core.progress import TextProgressBar
    from msli_core.serving import costcheck

    threads = parse_threads("--threads", args.threads)
    points = costcheck.FRESH_POINTS if args.fresh else None
    result = costcheck.validate(threads=threads, points=points, progress=TextProgressBar(sys.stderr))
    if args.json:
        from msli_core.cli import print_json

        print_json(result)
    else:
        print(costcheck.render(result))
    return 0 if result["passed"] else 1


def run_predict_command(args: argparse.Namespace) -> int:
    from msli_core.serving import costmodel

    names = ["this machine", *costmodel.PRESETS]
    if args.model != "msli" and str(args.segments) != "8":  # K = 1 for every other rung of the ladder
        raise MsliError(
            f"--segments applies to --model msli only; a {args.model} model has one vector (K = 1), "
            "so drop --segments or pass --model msli."
        )
    if args.hardware not in names:
        raise MsliError(f"--hardware {args.hardware!r} is unknown; choose one of {', '.join(names)}.")
    shape = costmodel.ModelShape(
        kind=args.model,
        history=parse_int("--history", args.history, hi=_limit("MAX_HISTORY"), limit="MAX_HISTORY"),
        segments=parse_int("--segments", args.segments, hi=_limit("MAX_SEGMENTS"), limit="MAX_SEGMENTS"),
        dim=parse_int("--dim", args.dim, hi=_limit("MAX_DIM"), limit="MAX_DIM"),
        layers=parse_int("--layers", args.layers, hi=_limit("MAX_LAYERS"), limit="MAX_LAYERS"),
        heads=parse_int("--heads", args.heads, hi=_limit("MAX_HEADS"), limit="MAX_HEADS"),
        candidates=parse_int(
            "--candidates", args.candidates, hi=_limit("MAX_CANDIDATES"), limit="MAX_CANDIDATES"
        ),
        dtype_bytes=parse_int("--dtype-bytes", args.dtype_bytes, hi=8),
    )
    if shape.dim % shape.heads:
        raise MsliError(
            f"--dim {shape.dim} is not a multiple of --heads {shape.heads}; pass a multiple, like 64 and 2."
        )
    if args.hardware == "this machine":  # measured here, on first use (a few seconds)
        from msli_core.progress import TextProgressBar
        from msli_core.serving.calibrate import hardware_here

        hardware = hardware_here(progress=TextProgressBar(sys.stderr), note=_say)
    else:
        hardware = costmodel.PRESETS[args.hardware]
    prediction = costmodel.predict(shape, hardware, args.backend).as_dict()
    if args.json:
        from msli_core.cli import print_json

        print_json(prediction)
    else:
        print(render_prediction(prediction))
    return 0


def render_prediction(prediction: dict) -> str:
    """The table ``msli costmodel predict`` prints: per stage the predicted time, work and what bounds it."""
    lines = [
        f"{prediction['model']} on {prediction['hardware']} ({prediction['backend']}), "
        f"{prediction['parameters']:,} parameters; {prediction['qps']:,.0f} requests/s end to end; "
        f"constants: {prediction.get('source', '')}",
        f"  {'stage':<24} {'time':>10} {'FLOP':>10} {'bytes':>10}  bound by",
    ]
    for stage, flops in prediction["flops"].items():
        seconds = prediction[f"{stage}_s"]
        shown = f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"
        lines.append(
            f"  {stage:<24} {shown:>10} {flops:>10.3g} {prediction['bytes'][stage]:>10.3g}  "
            f"{prediction['bound'][stage]}"
        )
    return "\n".join(lines)
