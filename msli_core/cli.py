"""The ``msli`` command: everything the app does, headless. Contract: ``docs/design.md`` §6.

Each command group lives in ``msli_core/commands/<group>.py`` and exposes ``register(subparsers)``;
each sub-command sets ``func(args) -> int``. Bad input raises :class:`MsliError`, which ends here as
one line on stderr and exit status 2. Output that scripts read (``--json``) goes to stdout alone.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from msli_core.errors import MsliError
from msli_core.jsonable import to_jsonable

COMMAND_MODULES = (
    "msli_core.commands.data",  # msli data fetch|synth|inspect
    "msli_core.commands.model",  # msli train|evaluate|explain|quality
    "msli_core.commands.latency",  # msli bench|export
)

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``msli: error:`` line (plus usage) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"msli: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="msli", description="Multi-segment late interaction lab (headless).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def print_json(obj: Any) -> None:
    """Write ``obj`` as JSON to stdout (numpy scalars and NaN handled: NaN becomes null)."""
    print(json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "ddp", False):
        # c10d logs a failed join or a lost peer itself, with a 40-frame C++ backtrace, before msli's
        # one sentence (msli_core.distributed turns every such failure into one); read when torch loads,
        # so set here, before any import of it. TORCH_CPP_LOG_LEVEL=INFO in the environment shows them.
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")
    try:
        return int(args.func(args) or 0)
    except MsliError as err:
        print(f"msli: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (e.g. `msli data inspect X --json | head`): stop quietly, like cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("msli: interrupted; nothing partial was kept.", file=sys.stderr)
        return 130
    except MemoryError:
        print(
            "msli: error: out of memory; try a smaller dataset, --segments or --candidates.", file=sys.stderr
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
