"""``msli data synth``: synthetic MovieLens-format data with ground truth (DESIGN §6, issue 2 item 5)."""

from __future__ import annotations

import argparse
import dataclasses

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
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced if it exists)")
    p.add_argument("--seed", type=_integer("--seed"), default=defaults.seed, metavar="N")
    p.add_argument("--users", type=_integer("--users"), default=defaults.users, metavar="N")
    p.add_argument("--items", type=_integer("--items"), default=defaults.items, metavar="N")
    p.add_argument(
        "--interactions",
        type=_integer("--interactions"),
        default=defaults.interactions,
        metavar="N",
        help="target number of ratings in all (default %(default)s)",
    )
    p.add_argument(
        "--interests",
        type=_integer("--interests"),
        default=defaults.interests,
        metavar="N",
        help="number of item clusters / interests (default %(default)s)",
    )
    p.add_argument(
        "--noise",
        type=_number("--noise"),
        default=defaults.noise,
        metavar="P",
        help="share of random popular items, 0..1 (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(func=run)


def _defaults():
    from msli_core.data.synth import SynthConfig

    return SynthConfig()


def _integer(flag: str):
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, not {text!r}") from None

    return parse


def _number(flag: str):
    def parse(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, not {text!r}") from None

    return parse


def run(args: argparse.Namespace) -> int:
    from msli_core.cli import print_json
    from msli_core.data.synth import SynthConfig, write_synthetic
    from msli_core.progress import TextProgressBar

    config = dataclasses.replace(
        SynthConfig(),
        seed=args.seed,
        users=args.users,
        items=args.items,
        interactions=args.interactions,
        interests=args.interests,
        noise=args.noise,
    )
    config.validate()
    progress = None if args.json else TextProgressBar()
    out = write_synthetic(args.out, config, progress=progress)
    summary = _summary(out)
    if args.json:
        print_json(summary)
    else:
        print(
            f"Wrote {summary['interactions']} ratings by {summary['users']} users on {summary['items']} "
            f"items ({summary['interests']} interests, seed {summary['seed']}) to {out}"
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
