"""``msli data fetch`` and ``msli data inspect`` (docs/design.md §6)."""

from __future__ import annotations

import argparse
import sys

from msli_core.data.download import MOVIELENS_NAMES  # light: requests is imported on first download
from msli_core.errors import MsliError


def register(sub) -> None:
    fetch = sub.add_parser(
        "fetch",
        help="download, verify and unpack an official MovieLens archive",
        description="Download an official GroupLens MovieLens zip, verify its published checksum, unpack "
        "it into the cache and print the dataset folder.",
    )
    fetch.add_argument("name", metavar="NAME", choices=MOVIELENS_NAMES, help=" ".join(MOVIELENS_NAMES))
    fetch.add_argument("--dir", default=None, help="cache folder (default: the platform cache folder)")
    fetch.set_defaults(func=_fetch)

    inspect = sub.add_parser(
        "inspect",
        help="detect a dataset's format and print its statistics",
        description="Load a dataset (folder, zip or interactions file), validate it and print statistics.",
    )
    inspect.add_argument("path", metavar="PATH", help="a dataset folder, an official zip, or a ratings file")
    inspect.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    inspect.add_argument("--min-rating", type=float, default=None, help="keep ratings >= R as interactions")
    inspect.add_argument("--k-core", type=int, default=None, help="keep users and items with >= K events")
    inspect.add_argument(
        "--column-map",
        default=None,
        metavar="MAP",
        help="columns of a generic table, e.g. user=uid,item=sku,timestamp=ts,rating=stars",
    )
    inspect.set_defaults(func=_inspect)


def parse_column_map(text: str | None) -> dict[str, str] | None:
    """``"user=uid,item=sku"`` -> ``{"user": "uid", "item": "sku"}``; a malformed map is bad input."""
    if text is None:
        return None
    mapping: dict[str, str] = {}
    for part in text.split(","):
        role, sep, column = part.partition("=")
        role, column = role.strip(), column.strip()
        if not sep or not role or not column:
            raise MsliError(
                f"--column-map {text!r}: {part.strip()!r} is not ROLE=COLUMN; write it like "
                "user=uid,item=sku,timestamp=ts,rating=stars."
            )
        if role in mapping:
            raise MsliError(f"--column-map {text!r} names the role {role!r} twice; name each role once.")
        mapping[role] = column
    return mapping


def _fetch(args: argparse.Namespace) -> int:
    from msli_core.data.download import fetch_movielens
    from msli_core.progress import TextProgressBar

    folder = fetch_movielens(args.name, directory=args.dir, progress=TextProgressBar(sys.stderr))
    print(folder)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from msli_core.cli import print_json
    from msli_core.data.formats import load_dataset

    data = load_dataset(
        args.path,
        column_map=parse_column_map(args.column_map),
        min_rating=args.min_rating,
        k_core=args.k_core,
    )
    summary = data.summary()
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    """The summary as an aligned two-column table for people."""
    time_range = (
        f"{summary['time_start']} .. {summary['time_end']}" if summary.get("time_start") else "(none)"
    )
    rows = [
        ("format", summary["format"]),
        ("source", summary["source"]),
        ("users", f"{summary['users']}"),
        ("items", f"{summary['items']}"),
        ("interactions", f"{summary['interactions']}"),
        ("time range", time_range),
        ("density", f"{summary['density']:.4%}"),
        (
            "history length",
            f"median {summary['history_length_median']:g}, max {summary['history_length_max']}",
        ),
        ("evaluable users", f"{summary['evaluable_users']} (3 or more events)"),
        ("ratings", "yes" if summary["has_ratings"] else "no (implicit only)"),
        ("genres", f"{summary['genres']}"),
        ("ground truth", "yes (synthetic)" if summary["synthetic_ground_truth"] else "no"),
    ]
    validation = summary.get("validation") or ["ok"]
    rows.append(("validation", validation[0]))
    rows += [("", note) for note in validation[1:]]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
