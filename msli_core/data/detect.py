"""Which layout a dataset folder, zip archive or single file holds, and where its ratings file is.

A ratings file is found by name (:data:`MARKERS`: ``u.data`` is ML-100K, ``ratings.dat`` ML-1M/10M,
``ratings.csv`` ml-latest) at the top of the folder or archive or inside one folder below it (e.g.
``ml-100k/u.data``); failing that, the one ``.csv``/``.tsv``/``.txt``/``.parquet`` table that is not known
MovieLens metadata is read as a generic ``interactions`` table. Header checks come later, in the readers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from msli_core.data.files import DataFile
from msli_core.errors import MsliError

FORMATS = ("ml-100k", "ml-1m", "ml-latest", "synthetic", "interactions")
GENERIC_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
# Tables that sit beside MovieLens ratings but are not interactions.
NOT_INTERACTIONS = {
    "movies.csv", "links.csv", "tags.csv", "genome-scores.csv", "genome-tags.csv", "ground_truth.csv",
    "movies.dat", "tags.dat", "users.dat", "u.item", "u.user", "u.genre", "u.occupation", "u.info",
}  # fmt: skip

MARKERS = (("u.data", "ml-100k"), ("ratings.dat", "ml-1m"), ("ratings.csv", "ml-latest"))


def locate_ratings(path: Path, archive: zipfile.ZipFile | None, shown: str) -> tuple[DataFile, str]:
    """The interactions file inside a folder or an archive and its layout (before header checks).
    ``shown``: how messages name ``path``."""
    if archive is not None:
        names = [
            n
            for n in archive.namelist()
            if not n.endswith("/") and not n.startswith("__MACOSX/") and len(PurePosixPath(n).parts) <= 2
        ]
        make = lambda n: DataFile(f"{shown}:{n}", archive=archive, member=n)  # noqa: E731
    else:
        names = []
        try:
            for child in sorted(path.iterdir()):
                if child.is_file() or (child.is_symlink() and not child.exists()):
                    names.append(child.name)  # a link leading nowhere is named when it is read
                elif child.is_dir() and not child.name.startswith("."):
                    names += [f"{child.name}/{g.name}" for g in sorted(child.iterdir()) if g.is_file()]
        except OSError as err:
            raise MsliError(
                f"{shown} cannot be listed ({err.strerror or err}); check its permissions."
            ) from err
        make = lambda n: DataFile(f"{shown}/{n}", path=path / n)  # noqa: E731
    by_depth = sorted(names, key=lambda n: len(PurePosixPath(n).parts))
    for marker, fmt in MARKERS:
        found = [n for n in by_depth if PurePosixPath(n).name == marker]
        if found:
            depth = len(PurePosixPath(found[0]).parts)
            same = [n for n in found if len(PurePosixPath(n).parts) == depth]
            if len(same) > 1:
                raise MsliError(
                    f"{shown} holds several datasets ({', '.join(same)}); pass one of their folders instead."
                )
            return make(same[0]), fmt
    tables = [
        n
        for n in by_depth
        if n.lower().endswith(GENERIC_SUFFIXES)
        and PurePosixPath(n).name.lower() not in NOT_INTERACTIONS
        and not PurePosixPath(n).name.startswith(".")
    ]
    if len(tables) == 1:
        return make(tables[0]), "interactions"
    kind = "archive" if archive is not None else "folder"
    if len(tables) > 1:
        raise MsliError(
            f"{shown} holds several tables ({', '.join(tables[:5])}); pass the interactions file itself."
        )
    raise MsliError(
        f"The {kind} {shown} has no ratings file: expected u.data (ML-100K), ratings.dat (ML-1M/10M), "
        "ratings.csv (ml-latest, 20M/25M/32M) or one interactions .csv/.tsv/.parquet table."
    )
