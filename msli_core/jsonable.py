"""Plain JSON from the lab's results: numpy scalars and arrays become Python values, NaN/inf become null.

Used by everything that writes JSON (the CLI's ``--json``, model folders, bench outputs), so a value
reads back the same way wherever it was written.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """``obj`` with dict keys as strings, tuples as lists, numpy values as Python values, non-finite floats
    as None.

    >>> to_jsonable({1: (np.float32(0.5), float("nan")), "a": np.arange(2)})
    {'1': [0.5, None], 'a': [0, 1]}
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
