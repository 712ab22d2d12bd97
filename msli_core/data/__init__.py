"""Data: the typed dataset, loaders for every MovieLens layout, the downloader, the split.

Names are imported on first use (PEP 562), so ``import msli_core.data`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "InteractionData": "msli_core.data.dataset",
    "LeaveOneOutSplit": "msli_core.data.dataset",
    "build_dataset": "msli_core.data.dataset",
    "leave_one_out": "msli_core.data.dataset",
    "preprocess": "msli_core.data.dataset",
    "load_dataset": "msli_core.data.formats",
    "fetch_movielens": "msli_core.data.download",
    "MOVIELENS_NAMES": "msli_core.data.download",
}

__all__ = [  # noqa: RUF022 - grouped as in _EXPORTS
    "InteractionData", "LeaveOneOutSplit", "build_dataset", "leave_one_out", "preprocess",
    "load_dataset", "fetch_movielens", "MOVIELENS_NAMES",
]  # fmt: skip

if TYPE_CHECKING:
    from msli_core.data.dataset import (
        InteractionData,
        LeaveOneOutSplit,
        build_dataset,
        leave_one_out,
        preprocess,
    )
    from msli_core.data.download import MOVIELENS_NAMES, fetch_movielens
    from msli_core.data.formats import load_dataset


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'msli_core.data' has no attribute {name!r}")
