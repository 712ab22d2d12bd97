"""``msli data``: fetch, synth, inspect, bench-load (docs/design.md §6)."""

from __future__ import annotations

from msli_core.commands import data_bench, data_io, data_synth


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="download, generate and inspect datasets")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(data))
    sub.required = True
    data_io.register(sub)  # fetch, inspect
    data_synth.register(sub)  # synth
    data_bench.register(sub)  # bench-load
