"""``msli data synth``: synthetic MovieLens-format data with ground truth (docs/design.md §6)."""

from __future__ import annotations

import argparse
import dataclasses
import math

from msli_core.errors import MsliError


def register(subparsers) -> None:
    defaults = _defaults()
    p = subparsers.add_parser(
        "synth",
        help="write synthetic MovieLens-format data with planted interest phases",
        description=(
            "Write ratings.csv, movies.csv (ml-latest-small layout), ground_truth.csv (the phase and "
            "interest that generated every rating) and synth_config.json into --out, all or nothing."
        ),
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="a new or empty folder, or an earlier `msli data synth` output (replaced)",
    )
    p.add_argument(
        "--profile",
        choices=("sample", "short", "ml-25m", "ml-32m"),
        default="sample",
        help="starting point: sample (sample_data/, ~200 events a user), short (most users under 10 "
        "events, like a sparse e-commerce log), ml-25m or ml-32m (the users, movies and ratings of "
        "MovieLens 25M / 32M, written by the bulk engine); the flags below override it (default "
        "%(default)s)",
    )
    p.add_argument(
        "--engine",
        choices=("exact", "bulk"),
        default=None,
        help="exact: the event-by-event generator (about 1 M events a minute; sample_data/ is its output); "
        "bulk: vectorised and written in chunks of users, for logs of tens of millions of events in bounded "
        "memory (same knobs, a simplified walk: msli_core/data/synth_bulk.py). Default: bulk for the "
        "ml-25m and ml-32m profiles, exact otherwise",
    )
    p.add_argument(
        "--no-truth",
        action="store_true",
        help="bulk engine only: skip ground_truth.csv, so the folder is a plain MovieLens-format log "
        "(ratings.csv + movies.csv, loaded as ml-latest)",
    )
    p.add_argument("--seed", type=_integer("--seed", "MAX_SEED"), default=None, metavar="N")
    p.add_argument("--users", type=_integer("--users", "MAX_USERS"), default=None, metavar="N")
    p.add_argument("--items", type=_integer("--items", "MAX_ITEMS"), default=None, metavar="N")
    p.add_argument(
        "--interactions",
        type=_integer("--interactions", "MAX_BULK_INTERACTIONS"),
        default=None,
        metavar="N",
        help=f"target number of ratings in all (sample profile: {defaults.interactions})",
    )
    p.add_argument(
        "--interests",
        type=_integer("--interests", "MAX_ITEMS"),
        default=None,
        metavar="N",
        help=f"number of item clusters / interests (sample profile: {defaults.interests})",
    )
    p.add_argument(
        "--noise",
        type=_number("--noise"),
        default=None,
        metavar="P",
        help=f"share of random popular items, 0..1 (sample profile: {defaults.noise})",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(func=run)


def _defaults():
    from msli_core.data.synth import SynthConfig

    return SynthConfig()


def _integer(flag: str, limit: str):
    """An argparse type: an integer of at most ``msli_core.limits.<limit>`` (the seed is not scaled)."""

    def parse(text: str) -> int:
        from msli_core import limits

        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, not {text!r}") from None
        hi = limits.MAX_SEED if limit == "MAX_SEED" else limits.scaled(_limit(limit))
        if value > hi:
            raise argparse.ArgumentTypeError(
                f"{flag} {value:,} is above the limit of {hi:,} ({limit} in msli_core/limits.py"
                + ("" if limit == "MAX_SEED" else "; MSLI_LIMITS_SCALE raises it")
                + ")"
            )
        return value

    return parse


def _limit(name: str) -> int:
    """A size limit by name: from msli_core/limits.py, or the bulk generator's own."""
    from msli_core import limits

    if name == "MAX_BULK_INTERACTIONS":
        from msli_core.data.synth_bulk import MAX_BULK_INTERACTIONS

        return MAX_BULK_INTERACTIONS
    return getattr(limits, name)


def _number(flag: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{flag} must be a finite number, not {text!r}")
        return value

    return parse


def run(args: argparse.Namespace) -> int:
    from msli_core import limits
    from msli_core.cli import print_json
    from msli_core.data.synth import BULK_PROFILES, PROFILES, SynthConfig, write_synthetic
    from msli_core.progress import TextProgressBar

    flags = ("seed", "users", "items", "interactions", "interests", "noise")
    given = {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
    config = dataclasses.replace(SynthConfig(), **{**PROFILES[args.profile], **given})
    config.validate()
    engine = args.engine or ("bulk" if args.profile in BULK_PROFILES else "exact")
    if args.no_truth and engine != "bulk":
        raise MsliError("--no-truth applies to the bulk engine only; add --engine bulk or drop --no-truth.")
    most = limits.scaled(limits.MAX_SYNTH_INTERACTIONS)
    if engine == "exact" and config.interactions > most:
        raise MsliError(
            f"--interactions {config.interactions:,} is above the limit of {most:,} for the exact engine "
            "(about a million events a minute); add --engine bulk for a log this size."
        )
    progress = None if args.json else TextProgressBar()
    if engine == "bulk":
        from msli_core.data.synth_bulk import write_bulk

        out = write_bulk(args.out, config, ground_truth=not args.no_truth, progress=progress)
    else:
        out = write_synthetic(args.out, config, progress=progress)
    summary = _summary(out)
    summary["engine"] = engine
    if args.json:
        print_json(summary)
    else:
        print(
            f"Wrote {summary['interactions']} ratings by {summary['users']} users on {summary['items']} "
            f"items ({summary['interests']} interests, seed {summary['seed']}, {engine} engine) to {out}"
        )
    return 0


def _summary(out) -> dict:
    import json

    try:
        meta = json.loads((out / "synth_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # pragma: no cover - we just wrote it
        raise MsliError(f"Cannot read back {out / 'synth_config.json'}: {err}.") from err
    return {
        "users": meta["users"],
        "items": meta["items"],
        "interactions": meta["interactions"],
        "interests": meta["config"]["interests"],
        "seed": meta["config"]["seed"],
        "out": str(out),
    }
