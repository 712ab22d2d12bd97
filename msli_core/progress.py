"""Progress reporting shared by long-running core calls (download, training, benchmarks).

Core functions take an optional ``progress: ProgressCallback``; the CLI renders events as a text
bar on stderr, the app as ``st.progress`` plus live charts. The core never prints.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class ProgressEvent:
    task: str  # what is running: "download", "train", "bench", ...
    done: float  # units finished so far
    total: float | None  # units in all, None when unknown
    message: str = ""  # one short line for humans, e.g. "epoch 3/20 loss 5.12"
    metrics: dict[str, float] = field(default_factory=dict)  # numbers a live chart may plot

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:  # noqa: ARG001 - the do-nothing default
    return None


def eta_seconds(elapsed_s: float, fraction: float | None) -> float | None:
    """Seconds left if the rest goes at the pace so far; None before there is a pace to go by (under
    2% done or under a second spent) or when the total is unknown.

    >>> eta_seconds(10.0, 0.25), eta_seconds(0.5, 0.5), eta_seconds(10.0, None)
    (30.0, None, None)
    """
    if fraction is None or fraction < 0.02 or elapsed_s < 1.0:
        return None
    return elapsed_s * (1.0 - fraction) / fraction


class Throttle:
    """At most one repaint per ``min_interval_s`` seconds, and always the final event (done == total):
    a renderer (a terminal bar, the app's bar) asks :meth:`due` before it draws."""

    def __init__(self, min_interval_s: float):
        self.min_interval_s = min_interval_s
        self._last = 0.0

    def due(self, event: ProgressEvent) -> bool:
        now = time.monotonic()
        final = event.total is not None and event.done >= event.total
        if not final and now - self._last < self.min_interval_s:
            return False
        self._last = now
        return True


class TextProgressBar:
    """Renders events as one rewritten line on a terminal (or one line per event elsewhere)."""

    def __init__(self, stream: TextIO | None = None, width: int = 30, min_interval_s: float = 0.1):
        self.stream = stream or sys.stderr
        self.width = width
        self.throttle = Throttle(min_interval_s)
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, event: ProgressEvent) -> None:
        if not self.throttle.due(event):
            return
        final = event.total is not None and event.done >= event.total
        now = time.monotonic()
        frac = event.fraction
        if frac is None:
            bar = f"{event.task}: {event.done:g}"
        else:
            filled = round(frac * self.width)
            bar = f"{event.task} [{'#' * filled}{'.' * (self.width - filled)}] {100 * frac:5.1f}%"
        line = f"{bar} {event.message}".rstrip()
        if self._tty:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        elif final or frac is None or int(now) % 5 == 0:
            self.stream.write(line + "\n")
        self.stream.flush()
