"""Sane limits on every size a user can ask for: one place, so a typo (``--dim 1e9``) or a hostile
model folder (``segments: 1e9``) is refused with a sentence before anything is allocated.

The limits sit far above what the lab's models need on a laptop (d=64, K=4, S=50, N≈10^4) and far
below what would exhaust a machine. To raise every size limit at once, set the environment variable
``MSLI_LIMITS_SCALE`` (a number ≥ 1, e.g. ``MSLI_LIMITS_SCALE=4``); the memory estimates of ``msli
bench`` still apply.
"""

from __future__ import annotations

import math
import os

from msli_core.errors import MsliError


def _scale() -> float:
    raw = os.environ.get("MSLI_LIMITS_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1:
        raise MsliError(f"MSLI_LIMITS_SCALE is {raw!r}; set it to a number >= 1 or unset it.")
    return value


def scaled(limit: int) -> int:
    """``limit`` times ``MSLI_LIMITS_SCALE``."""
    return int(limit * _scale())


MAX_ITEMS = 5_000_000  # N, catalog size (the largest public MovieLens has ~90k items)
MAX_DIM = 4096  # d, item/segment vector width
MAX_LAYERS = 48  # transformer blocks
MAX_HEADS = 64  # attention heads per block
MAX_SEGMENTS = 1024  # K, segments per user
MAX_SEGMENT_LEN = 100_000  # S, events per segment
MAX_HISTORY = 100_000  # L_max, events of history a model reads
MAX_GENRES = 10_000  # G, width of the genre feature
MAX_NEIGHBORS = 10_000  # item-kNN neighbours per item
MAX_EPOCHS = 100_000  # training epochs
MAX_BATCH = 1_000_000  # users per step / pairs per chunk
MAX_CANDIDATES = 5_000_000  # candidates per request in a benchmark (also bounded by memory)
THREADS_PER_CORE = 4  # torch/ORT threads allowed per CPU core


def check_int(name: str, value: int, low: int, high: int) -> None:
    """Refuse ``value`` outside ``[low, scaled(high)]`` with a sentence naming the setting."""
    top = scaled(high)
    if not low <= value <= top:
        raise MsliError(
            f"Setting {name} is {value}; it must be between {low:,} and {top:,} "
            "(raise the upper limit with MSLI_LIMITS_SCALE)."
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
