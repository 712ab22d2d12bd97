"""The model kinds of the lab, in one table: every list of kinds in the code derives from it.

A *kind* is what ``msli train --model`` builds (and a saved model's ``config.json`` names), or a rung of
the serving ladder that ``msli bench`` times. ``full-forward`` is a way to serve the two-tower model's
encoder (run it over the whole history on every request), so it is timed but never trained.
Pure data: nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # the name in configs, CLI flags and bench rows
    label: str  # how figures and tables name it
    color: str  # its colour in every figure
    trainable: bool  # ``msli train --model KIND`` builds it
    neural: bool  # trained by gradient descent (epochs, learning rate, a torch module)
    late_interaction: bool  # K cached segment vectors: served by the engine, explained per segment
    ladder: bool  # a rung of the serving ladder ``msli bench`` times


SPECS = (
    ModelSpec("msli", "MS-LI", "#4C78A8", True, True, True, True),
    ModelSpec("two-tower", "two-tower", "#F58518", True, True, True, True),
    ModelSpec("full-forward", "full-forward", "#B279A2", False, False, False, True),
    ModelSpec("cross-encoder", "cross-encoder", "#E45756", True, True, False, True),
    ModelSpec("popularity", "popularity", "#9D755D", True, False, False, False),
    ModelSpec("item-knn", "item-kNN", "#72B7B2", True, False, False, False),
)
BY_KIND = {spec.kind: spec for spec in SPECS}

TRAINABLE = tuple(s.kind for s in SPECS if s.trainable)  # msli, two-tower, cross-encoder, baselines
NEURAL = tuple(s.kind for s in SPECS if s.neural)  # msli, two-tower, cross-encoder
LATE_INTERACTION = tuple(s.kind for s in SPECS if s.late_interaction)  # msli, two-tower
LADDER = tuple(s.kind for s in SPECS if s.ladder)  # msli, two-tower, full-forward, cross-encoder
LABELS = {s.kind: s.label for s in SPECS}
COLORS = {s.kind: s.color for s in SPECS}


def is_late_interaction(kind: object) -> bool:
    """True for the kinds the serving engine serves and the Explain page explains.

    >>> is_late_interaction("two-tower"), is_late_interaction("cross-encoder")
    (True, False)
    """
    return kind in LATE_INTERACTION
