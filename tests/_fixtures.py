"""The hand-written layout fixtures, laid out under their official file names in a temporary folder.

Files named like MovieLens files (``u.data``, ``ratings.dat``, ...) are never committed, even when
hand-written (the repository's guard against redistributing MovieLens): they are stored with a
``.fixture`` suffix under ``tests/fixtures/`` and copied here, suffix removed, once per test run.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

STORED = Path(__file__).parent / "fixtures"


def _materialize() -> Path:
    root = Path(tempfile.mkdtemp(prefix="msli-fixtures-"))
    atexit.register(shutil.rmtree, root, True)
    for src in STORED.rglob("*"):
        if src.is_file():
            dest = root / src.relative_to(STORED)
            dest = dest.with_name(dest.name.removesuffix(".fixture"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    return root


FIXTURES = _materialize()
