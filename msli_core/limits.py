"""Sane limits on every size a user can ask for: one place, so a typo (``--dim 1e9``) or a hostile
model folder (``segments: 1e9``) is refused with a sentence before anything is allocated.

The limits sit far above what the lab's models need on a laptop (d=64, K=4, S=50, N≈10^4) and far
below what would exhaust a machine. To raise every size limit at once, set the environment variable
``MSLI_LIMITS_SCALE`` (a number ≥ 1, e.g. ``MSLI_LIMITS_SCALE=4``); the memory estimates of ``msli
bench`` still apply.

The sentences follow :mod:`msli_core.data.audience`: on the command line they name the variables; in
the app (a model folder in the workspace over a limit, a badly set variable) the fix is the server's,
so it is addressed to whoever runs the app: a limit by what it limits, a misconfigured variable by its
name (the app's user cannot change either).
"""

from __future__ import annotations

import math
import os

from msli_core.data.audience import server_setting, words
from msli_core.errors import MsliError

SCALE_ENV = "MSLI_LIMITS_SCALE"


def _misconfigured(name: str, raw: str, wanted: str, example: float) -> str:
    """The app's sentence of a badly set variable: the server's own configuration, which no page
    changes, so it is named with what it sets and addressed to whoever runs the app."""
    setting = server_setting(name)
    return (
        f"{setting[0].upper()}{setting[1:]} is {raw!r}, not {wanted}; ask whoever runs the app to unset "
        f"it or set it to e.g. {example:g}, and restart it."
    )


def _raise_scale() -> str:
    """How to raise every size limit: the variable on the command line; in the app, whoever runs it."""
    return words(
        cli=f"raise the upper limit with {SCALE_ENV}",
        app="ask whoever runs the app to raise its size limits",
    )


def _scale() -> float:
    raw = os.environ.get(SCALE_ENV, "1")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1:
        raise MsliError(
            words(
                cli=f"{SCALE_ENV} is {raw!r}; set it to a number >= 1 or unset it.",
                app=_misconfigured(SCALE_ENV, raw, "a number >= 1", 4),
            )
        )
    return value


def scaled(limit: int) -> int:
    """``limit`` times ``MSLI_LIMITS_SCALE``."""
    return int(limit * _scale())


MAX_ITEMS = 10_000_000  # N, catalog size (the largest public MovieLens has ~90k items; 10M is the
# ANN benchmark's generated catalog, 2.4 GiB at d = 64)
MAX_DIM = 4096  # d, item/segment vector width
MAX_LAYERS = 48  # transformer blocks
MAX_HEADS = 64  # attention heads per block
MAX_RECENT_ITEMS = 16  # m, newest events on the recency path (item-kNN votes with 5)
MAX_SEGMENTS = 1024  # K, segments per user
MAX_SEGMENT_LEN = 100_000  # S, events per segment
MAX_HISTORY = 100_000  # L_max, events of history a model reads
MAX_GENRES = 10_000  # G, width of the genre feature
MAX_NEIGHBORS = 10_000  # item-kNN neighbours per item
MAX_EPOCHS = 100_000  # training epochs
MAX_BATCH = 1_000_000  # users per step / pairs per chunk
MAX_CANDIDATES = 10_000_000  # candidates per request in a benchmark (also bounded by memory)
THREADS_PER_CORE = 4  # torch/ORT threads allowed per CPU core


def check_int(name: str, value: int, low: int, high: int) -> None:
    """Refuse ``value`` outside ``[low, scaled(high)]`` with a sentence naming the setting."""
    top = scaled(high)
    if not low <= value <= top:
        raise MsliError(
            f"Setting {name} is {value}; it must be between {low:,} and {top:,} ({_raise_scale()})."
            if value > top
            else f"Setting {name} is {value}; it must be at least {low}."
        )


def check_fraction(name: str, value: float, *, closed: bool = False) -> None:
    """Refuse ``value`` outside ``[0, 1)`` (``[0, 1]`` when ``closed``)."""
    if not (math.isfinite(value) and value >= 0 and (value <= 1 if closed else value < 1)):
        raise MsliError(f"Setting {name} is {value}; it must be in [0, 1{']' if closed else ')'}.")


def max_threads() -> int:
    """Threads a run may ask for: CPU cores × :data:`THREADS_PER_CORE`."""
    return (os.cpu_count() or 1) * THREADS_PER_CORE


# ---- command-line arguments (issue 9 §4/§5: every numeric flag is bounded) --------------------------
MAX_USERS = 1_000_000  # users of a synthetic data set (`data synth --users`)
MAX_SYNTH_INTERACTIONS = 10_000_000  # ratings of a synthetic data set (the generator makes ~1M a minute)
MAX_TOP = 10_000  # recommendations explained per user (`explain --top`)
MAX_REPEATS = 1_000_000  # timed calls per bench point (`bench --repeats`)
MAX_SWEEP_VALUES = 64  # values in one comma list of a sweep (`bench --segments 1,2,4,...`)
MAX_BUDGET_S = 3600.0  # seconds of timing per bench point (`--budget-s`, `--cross-budget-s`): one hour
MAX_SEED = 2**32 - 1  # numpy and torch accept every seed in 0..2**32-1 on every platform (not scaled)
MEMORY_FRACTION = 0.5  # share of the available memory a bench run may plan to use (estimated first)


def available_memory_bytes() -> int | None:
    """Bytes of memory available to a new process now (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def check_float(name: str, value: float, *, low: float, high: float, low_open: bool = True) -> None:
    """Refuse a non-finite ``value`` or one outside ``(low, scaled(high)]`` (``[low, ...]`` unless
    ``low_open``) with a sentence naming the setting."""
    top = high * _scale()
    low_ok = value > low if low_open else value >= low
    if not (math.isfinite(value) and low_ok and value <= top):
        side = "above" if low_open else "at least"
        big = math.isfinite(value) and value > top
        hint = f" ({_raise_scale()})" if big else ""
        raise MsliError(
            f"Setting {name} is {value!r}; it must be a finite number {side} {low:g} "
            f"and at most {top:g}{hint}."
        )


def whole_number(text: str) -> int | None:
    """``"64"`` -> 64, ``"1e9"`` -> 1000000000 (a whole number written as a float); anything else -> None.

    >>> whole_number("64"), whole_number("1e9"), whole_number("2.5"), whole_number("nan")
    (64, 1000000000, None, None)
    """
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value == int(value) else None


def env_positive(name: str, default: float, unit: str = "") -> float:
    """The positive finite number in environment variable ``name``, ``default`` when it is unset; any
    other value is refused with a sentence (``unit``, e.g. " of seconds", is named in it)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise MsliError(  # a misconfigured server: its variable is named, to whoever runs the app
            words(
                cli=f"The environment variable {name}={raw!r} is not a positive number{unit}; unset it or "
                f"set it to e.g. {default:g}.",
                app=_misconfigured(name, raw, f"a positive number{unit}", default),
            )
        )
    return value
