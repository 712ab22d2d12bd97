"""``msli data bench-load``: time and memory of loading a large log, its split and its padded histories
(issue 14; docs/design.md §6)."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "bench-load",
        help="time loading a dataset, its leave-one-out split and padded histories; peak memory",
        description="Load a dataset (folder, zip, or CSV/TSV/Parquet interactions file), build the "
        "leave-one-out split and the padded history arrays the models read, and report each stage's "
        "wall time, the resident memory after it and the peak so far (ru_maxrss).",
    )
    p.add_argument("path", metavar="PATH", help="a dataset folder, an official zip, or a ratings file")
    p.add_argument(
        "--column-map",
        default=None,
        metavar="MAP",
        help="columns of a generic table, e.g. user=uid,item=sku,timestamp=ts,rating=stars",
    )
    p.add_argument(
        "--max-len",
        type=_max_len,
        default=200,
        metavar="L",
        help="history length of the padded arrays (the models' L_max; default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def _max_len(text: str) -> int:
    from msli_core import limits

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--max-len must be a whole number, not {text!r}") from None
    top = limits.scaled(limits.MAX_HISTORY)
    if not 1 <= value <= top:
        raise argparse.ArgumentTypeError(f"--max-len must be between 1 and {top:,}, not {value:,}")
    return value


def run(args: argparse.Namespace) -> int:
    from msli_core.cli import print_json
    from msli_core.commands.data_io import parse_column_map
    from msli_core.data.loadbench import bench_load, format_bench
    from msli_core.progress import TextProgressBar

    progress = None if args.json else TextProgressBar(sys.stderr)
    result = bench_load(
        args.path, column_map=parse_column_map(args.column_map), max_len=args.max_len, progress=progress
    )
    if args.json:
        print_json(result)
    else:
        print(format_bench(result))
    return 0
