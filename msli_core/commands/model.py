"""``msli train | evaluate | explain | quality`` (docs/design.md §6; JSON keys are part of the contract).

Heavy imports (torch, the models) happen inside the command functions so ``msli --help`` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

from msli_core import kinds
from msli_core.errors import MsliError
from msli_core.limits import whole_number

MODEL_KINDS = kinds.TRAINABLE
AGGREGATIONS = ("attention", "max", "mlp", "sum")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a model on a dataset and save it as a folder", formatter_class=_TrainHelp
    )
    p.add_argument("--data", required=True, help="dataset folder, zip or file (see `msli data inspect`)")
    p.add_argument("--model", required=True, choices=MODEL_KINDS, help="model kind")
    p.add_argument(
        "--segments", type=_bounded("MAX_SEGMENTS"), help="K, segments per user (msli; two-tower is K=1)"
    )
    p.add_argument("--segment-len", type=_bounded("MAX_SEGMENT_LEN"), help="S, events per closed segment")
    p.add_argument("--aggregation", choices=AGGREGATIONS, help="late interaction (msli, two-tower)")
    p.add_argument(
        "--dim",
        type=_bounded("MAX_DIM"),
        help=f"d, width of item and segment vectors (a multiple of {HEADS})",
    )
    p.add_argument("--layers", type=_bounded("MAX_LAYERS", lo=0), help="transformer blocks")
    p.add_argument(
        "--epochs",
        type=_bounded("MAX_EPOCHS", lo=0),
        help="maximum epochs (early stopping may end sooner; 0 saves the untrained model)",
    )
    p.add_argument("--lr", type=_learning_rate, help="learning rate (a finite number above 0)")
    p.add_argument(
        "--recency-slot",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="msli: the newest events as their own slot, beside the encoder's (K counts both; K >= 2; "
        "README, 'Quality')",
    )
    p.add_argument(
        "--recent-items",
        type=_bounded("MAX_RECENT_ITEMS", lo=0),
        help="msli, two-tower: m, the newest events on the recency path, their weights starting as "
        "item-kNN's vote 0.7^j (0 = no recency path; README, 'Quality')",
    )
    p.add_argument(
        "--attention-rank",
        type=_bounded("MAX_DIM"),
        help="msli: r, the rank of the attention form W (q_k = W u_k; r = d is a full W; README, "
        "'Training cost')",
    )
    p.add_argument(
        "--state-dropout",
        type=_fraction,
        help="msli, two-tower: probability that a training row loses the encoder's say, so it is scored by "
        "the recency path alone (0 <= p < 1; default 0, off; README, 'Tried: state dropout')",
    )
    p.add_argument(
        "--seed", type=_seed, default=0, help="seed of every random number generator (default %(default)s)"
    )
    p.add_argument("--out", required=True, help="folder to write (config.json + model.safetensors)")
    p.add_argument(
        "--ddp",
        action="store_true",
        help="data-parallel training (msli, two-tower) in processes started by "
        "`torchrun --nproc-per-node P -m msli_core train ... --ddp`; rank 0 writes --out",
    )
    p.add_argument(
        "--ddp-timeout",
        type=_seconds,
        default=600,
        help="--ddp: seconds a process waits for the others to join or answer (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("evaluate", help="full-ranking leave-one-out metrics of a saved model")
    p.add_argument("--data", required=True, help="the dataset the model was trained on")
    p.add_argument("--model", required=True, help="model folder written by `msli train`")
    p.add_argument("--stage", choices=("test", "valid"), default="test", help="held-out item (default test)")
    p.add_argument("--cascade-from", help="cross-encoder only: re-rank this model folder's top items")
    p.add_argument(
        "--cascade-top",
        type=_bounded("MAX_CANDIDATES"),
        default=None,
        help="with --cascade-from: items re-ranked in the cascade (default 100)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("explain", help="per-segment contributions of a user's recommendations")
    p.add_argument("--data", required=True, help="the dataset the model was trained on")
    p.add_argument("--model", required=True, help="msli or two-tower model folder")
    p.add_argument("--user", required=True, help="user id as written in the data file")
    p.add_argument(
        "--top", type=_bounded("MAX_TOP"), default=10, help="recommendations to explain (default 10)"
    )
    p.add_argument(
        "--stage", choices=("all", "test", "valid"), default="all",
        help="history used: all events (default), or the one before the held-out test/valid item",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_explain)

    p = subparsers.add_parser("quality", help="NDCG@10/HR@10 of MS-LI for several K and the baselines")
    p.add_argument("--data", required=True, help="dataset (default use: sample_data)")
    p.add_argument("--out", required=True, help="folder to write quality.csv, comparisons.csv and quality.md")
    p.add_argument("--segments", default="1,2,4,8,16", type=_int_list, help="K values (default 1,2,4,8,16)")
    p.add_argument(
        "--epochs", type=_bounded("MAX_EPOCHS", lo=0), help="maximum epochs per neural model (0: untrained)"
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed of every random number generator (default 0)")
    p.add_argument("--skip-cross-encoder", action="store_true", help="leave the (slow) cross-encoder out")
    p.add_argument(
        "--recency-slot",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="MS-LI rows with K >= 2: the newest events as their own slot (default: the model's default)",
    )
    p.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    p.set_defaults(func=cmd_quality)


@functools.cache
def train_flag_defaults() -> dict[str, str]:
    """What ``msli train`` uses for each flag left out, as help text: the library's defaults, read from
    :class:`msli_core.train.TrainSettings`, ``msli_core.train.DEFAULTS`` (per model kind) and the model
    config dataclasses, e.g. ``{"epochs": "20; cross-encoder 8", "lr": "0.004; cross-encoder 0.001"}``.
    Imports torch, so it runs only when the help is printed."""
    from msli_core.models.registry import make_config
    from msli_core.train import DEFAULTS, TrainSettings

    settings = TrainSettings()
    configs = {kind: make_config(kind) for kind in kinds.NEURAL}

    def per_kind(values: dict[str, object]) -> str:
        """One value, or the first kind's and each other kind's where it differs."""
        first, *others = values.items()
        text = _help_value(first[1])
        differ = [f"{kind} {_help_value(v)}" for kind, v in others if v != first[1]]
        return "; ".join([text, *differ])

    return {
        "segments": f"{configs['msli'].segments} for msli",
        "segment_len": f"ceil({configs['msli'].max_len}/K)",
        "aggregation": str(configs["msli"].aggregation),
        "attention_rank": f"{configs['msli'].attention_rank} at d = {configs['msli'].dim}, at most d",
        "recent_items": f"{configs['msli'].recent_items}, item-kNN's history_items",
        "dim": per_kind({k: c.dim for k, c in configs.items()}),
        "layers": per_kind({k: c.layers for k, c in configs.items()}),
        "epochs": per_kind({k: DEFAULTS[k].get("epochs", settings.epochs) for k in kinds.NEURAL}),
        "lr": per_kind({k: DEFAULTS[k].get("lr", settings.lr) for k in kinds.NEURAL}),
    }


def _help_value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class _TrainHelp(argparse.HelpFormatter):
    """``msli train --help`` with each flag's default: argparse's own (``%(default)s``) or, for a flag
    whose argparse default is None, the library's (:func:`train_flag_defaults`). The library defaults
    are looked up only when the help is printed, so ``msli --help`` stays fast."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.required or action.default is not None:
            return text
        default = train_flag_defaults().get(action.dest)
        return f"{text} (default {default})" if default else text


# ---- argument types --------------------------------------------------------------------------------
HEADS = 2  # attention heads of every neural model here (MSLIConfig.heads, CrossEncoderConfig.heads)
DEFAULT_HISTORY = 200  # L_max: K segments of ceil(200/K) events unless --segment-len says otherwise
TRAIN_BATCH = 16  # users per training step (msli_core.train's default), for the memory estimate


def _whole(text: str) -> int:
    """``"64"`` -> 64; ``"1e9"`` -> 1000000000 (a whole number written as a float); else a sentence."""
    value = whole_number(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return value


def _bounded(limit: str, lo: int = 1):
    """An argparse type: a whole number in ``lo..limits.<limit>`` (scaled by MSLI_LIMITS_SCALE)."""

    def parse(text: str) -> int:
        from msli_core import limits

        value = _whole(text)
        hi = limits.scaled(getattr(limits, limit))
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {lo}, got {text!r}")
        if value > hi:
            raise argparse.ArgumentTypeError(
                f"{text!r} is above the limit of {hi:,} ({limit} in msli_core/limits.py; "
                "MSLI_LIMITS_SCALE raises it)"
            )
        return value

    parse.__name__ = "whole number"  # argparse names the type in its messages
    return parse


def _seed(text: str) -> int:
    from msli_core.limits import MAX_SEED

    value = _whole(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to {MAX_SEED}, got {text!r}")
    return value


def _finite_float(not_a_number: str, out_of_range: str, ok):
    """An argparse type: a finite float for which ``ok(value)``; each refusal is ``<message>, got 'text'``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{not_a_number}, got {text!r}") from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"{out_of_range}, got {text!r}")
        return value

    return parse


_seconds = _finite_float(
    "expected a number of seconds like 600",
    "expected a positive number of seconds like 600",
    lambda v: v > 0,
)
_learning_rate = _finite_float(
    "expected a number like 0.001", "a learning rate is a finite number above 0 like 0.001", lambda v: v > 0
)
_fraction = _finite_float(
    "expected a number like 0.5", "a probability at least 0 and below 1 like 0.5", lambda v: 0 <= v < 1
)


def _int_list(text: str) -> list[int]:
    from msli_core import limits

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 1,2,4, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,2,4, got {text!r}")
    hi = limits.scaled(limits.MAX_SEGMENTS)
    if max(values) > hi:
        raise argparse.ArgumentTypeError(
            f"{max(values)} is above the limit of {hi:,} segments (MAX_SEGMENTS in msli_core/limits.py)"
        )
    if len(values) > limits.MAX_SWEEP_VALUES:
        raise argparse.ArgumentTypeError(
            f"{len(values)} values are more than the {limits.MAX_SWEEP_VALUES} one run takes"
        )
    return values


def check_train_args(args: argparse.Namespace) -> dict:
    """Everything about ``msli train``'s arguments that argparse alone cannot check, before any work:
    the shape (dim a multiple of the heads, K x S within the history limit) and ``--out``. Returns the
    model config overrides."""
    from msli_core import limits
    from msli_core.outputs import check_out_dir

    config = _model_config(args)
    dim = config.get("dim")
    if dim is not None and dim % HEADS:
        raise MsliError(
            f"--dim {dim} is not a multiple of the {HEADS} attention heads; pass a multiple of {HEADS} "
            "like 64."
        )
    segments = config.get("segments", 1)
    if "segment_len" in config:
        seen = segments * config["segment_len"]
        cap = limits.scaled(limits.MAX_HISTORY)
        if seen > cap:
            raise MsliError(
                f"--segments {segments} x --segment-len {config['segment_len']} = {seen:,} events per user "
                f"is above the limit of {cap:,} (MAX_HISTORY in msli_core/limits.py; MSLI_LIMITS_SCALE "
                "raises it); pass a smaller --segment-len."
            )
    check_out_dir(args.out, "model", data=args.data)
    return config


def check_train_memory(args: argparse.Namespace, config: dict, n_items: int) -> None:
    """Refuse a neural model whose training would need more than a share of this machine's memory."""
    from msli_core import limits

    if args.model in ("popularity", "item-knn"):
        return
    d = config.get("dim", 64)
    layers = config.get("layers", 2)
    K = config.get("segments", 1)
    S = config.get("segment_len") or -(-DEFAULT_HISTORY // K)
    tokens = TRAIN_BATCH * K * S
    activations = tokens * d * 4 * (12 * layers + 4) + TRAIN_BATCH * K * HEADS * S * S * 4 * layers
    parameters = 4 * 4 * ((n_items + 1) * d + 12 * layers * d * d)  # weights, grads, two Adam moments
    logits = 3 * 4 * TRAIN_BATCH * S * (n_items + 1)
    need = activations + parameters + logits
    available = limits.available_memory_bytes()
    if available is not None and need > limits.MEMORY_FRACTION * available:
        raise MsliError(
            f"Training this {args.model} model (d={d}, {layers} layers, K={K}, S={S}, {n_items:,} items) "
            f"needs about {need / 2**30:.1f} GiB, more than half of the {available / 2**30:.1f} GiB "
            "available; pass a smaller --dim, --layers, --segments or --segment-len."
        )


# ---- shared helpers --------------------------------------------------------------------------------
def _load_data(path: str):
    from msli_core.data import load_dataset

    return load_dataset(path)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _progress_bar():
    from msli_core.progress import TextProgressBar

    return TextProgressBar()


def _model_config(args) -> dict:
    config = {}
    late_only = ("segments", "aggregation", "segment_len", "state_dropout", "recency_slot", "attention_rank")
    late_only += ("recent_items",)
    for name in ("dim", "layers", *late_only):
        value = getattr(args, name, None)
        if value is not None:
            config[name] = value
    kind = args.model
    if not kinds.is_late_interaction(kind) and any(name in config for name in late_only):
        raise MsliError(
            "--segments, --segment-len, --aggregation, --state-dropout, --recency-slot, --attention-rank and "
            f"--recent-items apply to msli and two-tower, not {kind}."
        )
    if config.get("recency_slot") and (kind == "two-tower" or config.get("segments") == 1):
        raise MsliError(
            "--recency-slot gives the newest events a vector of their own, so it needs --model msli with "
            "--segments 2 or more (the two-tower model is one vector)."
        )
    if "attention_rank" in config and (kind == "two-tower" or config.get("segments") == 1):
        raise MsliError(
            "--attention-rank shapes the attention over MS-LI's segment vectors, so it needs --model msli "
            "with --segments 2 or more (the two-tower model is one vector)."
        )
    if kind in ("popularity", "item-knn") and ("dim" in config or "layers" in config):
        raise MsliError(f"--dim and --layers apply to neural models, not {kind}.")
    if kind == "two-tower" and config.get("segments", 1) != 1:
        raise MsliError("--model two-tower is MS-LI with one segment; drop --segments or use --model msli.")
    return config


# ---- train -----------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    """``msli train``; with ``--ddp``, one of the P processes torchrun started (see
    :mod:`msli_core.distributed`): every process checks the arguments and loads the data (nothing is
    written before training, so a refusal is the same sentence on every rank), joins the group and
    trains; only rank 0 evaluates the test, writes ``--out`` and prints, so the folder and the JSON are
    those of a single-process run plus ``processes``."""
    from msli_core import distributed
    from msli_core.train import TrainSettings

    world = None
    if getattr(args, "ddp", False):
        distributed.check_kind(args.model)
        world = distributed.from_environment(timeout_s=args.ddp_timeout)
    else:
        distributed.check_not_launched_without_ddp()
    config = check_train_args(args)  # before any work: shape, limits and --out
    data = _load_data(args.data)
    check_train_memory(args, config, data.n_items)
    settings = TrainSettings.for_kind(args.model, epochs=args.epochs, seed=args.seed, lr=args.lr)
    if world is None:
        _threads()
        return _train_and_save(args, data, settings, config, None)
    import torch

    torch.set_num_threads(distributed.threads_per_process(world.local_size))
    with distributed.process_group(world):
        return _train_and_save(args, data, settings, config, world)


def _train_and_save(args, data, settings, config: dict, world) -> int:
    from msli_core.cli import print_json
    from msli_core.models.registry import save_model
    from msli_core.train import train

    main = world is None or world.is_main
    progress = _progress_bar() if main else None
    result = train(data, args.model, settings, config, progress=progress, distributed=world)
    if not main:  # rank != 0 never writes --out nor prints: rank 0 speaks for the group
        return 0
    processes = 1 if world is None else world.size
    summary = {
        **{k: v for k, v in result.metrics.items() if k != "seconds"},
        "seconds": result.seconds,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "parameters": result.parameters,
        "model": args.model,
        "out": str(args.out),
        "valid_NDCG@10": result.valid_metrics.get("NDCG@10"),
        "processes": processes,
    }
    extra = {
        "settings": result.settings,
        "seconds": result.seconds,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "parameters": result.parameters,
        "history": result.history,
        "valid_metrics": result.valid_metrics,
        "data": str(args.data),
        "processes": processes,  # P of a --ddp run (torchrun), 1 otherwise
        **({"distributed": {"backend": world.backend, "world_size": world.size}} if world else {}),
    }
    save_model(result.model, args.out, data=data, metrics=result.metrics, extra=extra)
    if args.json:
        print_json(summary)
    else:
        print(
            f"trained {args.model} in {result.seconds:.1f} s "
            f"({result.epochs} epochs, best {result.best_epoch})"
        )
        print(f"saved to {args.out}")
        _print_metrics(result.metrics)
    return 0


def _threads() -> None:
    """Keep torch's thread count within the machine (set once per command)."""
    import os

    import torch

    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))


def _print_metrics(metrics: dict) -> None:
    for key in ("NDCG@10", "HR@10", "MRR", "Recall@20", "Coverage@10", "users", "evaluation"):
        if key in metrics:
            print(f"  {key:<12} {_fmt(metrics[key])}")


# ---- evaluate --------------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    from msli_core.cli import print_json
    from msli_core.evaluate import evaluate
    from msli_core.models.registry import load_model

    if args.cascade_top is not None and not args.cascade_from:
        raise MsliError(
            "--cascade-top sets the size of a cascade, which needs --cascade-from DIR (the first stage whose "
            "top items the cross-encoder re-ranks); add it, or drop --cascade-top."
        )
    data = _load_data(args.data)
    loaded = load_model(args.model, data)
    first = load_model(args.cascade_from, data) if args.cascade_from else None
    if first is not None and loaded.kind != "cross-encoder":
        raise MsliError(
            f"--cascade-from applies to a cross-encoder, and {args.model} is a {loaded.kind} model."
        )
    if first is not None and first.kind == "cross-encoder":
        raise MsliError(
            f"--cascade-from {args.cascade_from} is a cross-encoder too; the first stage must be a model "
            "that ranks the whole catalog cheaply (msli, two-tower, item-knn, popularity)."
        )
    _threads()
    top = 100 if args.cascade_top is None else args.cascade_top
    out = evaluate(loaded, data, stage=args.stage, cascade_from=first, cascade_top=top)
    out["model"] = loaded.kind
    if args.json:
        print_json(out)
    else:
        print(f"{loaded.kind} model {args.model} on {data.source} ({args.stage}):")
        _print_metrics(out)
    return 0


# ---- explain ---------------------------------------------------------------------------------------
def cmd_explain(args) -> int:
    from msli_core.cli import print_json
    from msli_core.explain import explain
    from msli_core.models.registry import load_model

    data = _load_data(args.data)
    loaded = load_model(args.model, data)
    result = explain(
        loaded, data, args.user, top_n=args.top, stage=None if args.stage == "all" else args.stage
    )
    if args.json:
        print_json(result.to_dict())
        return 0
    print(render_explanation(result.to_dict()))
    return 0


def render_explanation(ex: dict) -> str:
    """A readable text rendering of an explanation (the table the CLI prints)."""
    lines = [
        f"User {ex['user']}: {ex['history_length']} events, {ex['model']} ({ex['aggregation']} aggregation)",
        "",
        "Slots (closed segment: weight = attention-pooling weight; the slot holding the recency path, the"
        " open window or the newest events: weight = recency weight; an open window without weights is"
        " the encoder's state alone):",
    ]
    for seg in ex["segments"]:
        head = f"  [{seg['index']}] {seg.get('role', 'segment')}, events {seg['start']}-{seg['end'] - 1}"
        head += f"  {seg['time_start'][:10]} .. {seg['time_end'][:10]}"
        if "dominant_interest" in seg:
            head += f"  true interest {seg['dominant_interest']}"
        lines.append(head)
        best = [p for p in sorted(zip(seg["weights"], seg["titles"], strict=True), reverse=True) if p[0]][:3]
        lines.append("      top items: " + "; ".join(f"{t} ({w:.2f})" for w, t in best))
    slots = [seg["index"] for seg in ex["segments"]]
    lines += ["", "Recommendations (score = sum of the segment contributions):"]
    header = (
        f"  {'#':>2}  {'title':<40} {'score':>8}  " + " ".join(f"{'c' + str(k):>7}" for k in slots) + "  top"
    )
    lines.append(header)
    for n, rec in enumerate(ex["recommendations"], 1):
        cells = " ".join(f"{rec['contributions'][k]:7.3f}" for k in slots)
        title = rec["title"] if len(rec["title"]) <= 40 else rec["title"][:37] + "..."
        lines.append(f"  {n:>2}  {title:<40} {rec['score']:8.3f}  {cells}  [{rec['top_segment']}]")
    d = ex["deletion"]
    if d.get("applicable"):
        lines += [
            "",
            "Deletion check: removing the top segment lowers a score by "
            f"{d['mean_drop_top']:.3f} on average, "
            f"a random other segment by {d['mean_drop_random']:.3f} (top larger for "
            f"{100 * d['top_larger_fraction']:.0f}% of the items).",
        ]
    held = ex.get("held_out")
    if held:
        line = f"Held-out item: {held['title']} rank {held['rank']:.0f}, top segment [{held['top_segment']}]"
        if "true_interest" in held:
            line += f", true interest {held['true_interest']} (phase {held['true_phase']})"
        lines += ["", line]
    return "\n".join(lines)


# ---- quality ---------------------------------------------------------------------------------------
def cmd_quality(args) -> int:
    from msli_core.cli import print_json
    from msli_core.outputs import check_out_dir
    from msli_core.quality import quality_table, reach_sentence, reranker_sentence, write_quality

    check_out_dir(args.out, "quality", data=args.data)  # before any work
    data = _load_data(args.data)
    _threads()
    rows, meta = quality_table(
        data,
        segments=args.segments,
        epochs=args.epochs,
        seed=args.seed,
        cross_encoder=not args.skip_cross_encoder,
        recency_slot=args.recency_slot,
        progress=_progress_bar(),
    )
    write_quality(rows, meta, args.out)
    if args.json:
        print_json({"rows": rows, **meta})
    else:
        out = Path(args.out)
        print(f"wrote {out / 'quality.csv'}, {out / 'comparisons.csv'} and {out / 'quality.md'}")
        for row in rows:
            print(f"  {row['label']:<28} NDCG@10 {_fmt(row['NDCG@10'])}  HR@10 {_fmt(row['HR@10'])}  "
                  f"{row['train_seconds']:.1f} s")  # fmt: skip
        for c in meta["comparisons"]:
            print(f"  {c['model']} vs {c['against']}: {c['difference']:+.4f} "
                  f"(95% {c['low']:+.4f} … {c['high']:+.4f}) {c['verdict']}")  # fmt: skip
        for r in meta["reach"]:
            print(f"  {reach_sentence(r)}")
        if check := reranker_sentence(rows):
            print(f"  {check}")
    return 0
