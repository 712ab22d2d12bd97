"""Loading a dataset: every MovieLens layout, or any interactions table, into InteractionData.

Layouts (docs/design.md §3), autodetected from a folder, a zip archive (files at its root or inside one top
folder, e.g. ``ml-100k/u.data``), or a single file:

- ``ml-100k``: ``u.data`` (tab: user item rating timestamp, no header), ``u.item`` (pipe, latin-1,
  id|title|release date|video release date|URL|19 genre flags);
- ``ml-1m`` (also ML-10M): ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``), ``movies.dat``
  (``MovieID::Title::Genres``; latin-1 in 1M, UTF-8 in 10M: UTF-8 is tried first, then latin-1);
- ``ml-latest`` (latest, latest-small, 20M, 25M, 32M): ``ratings.csv`` (userId,movieId,rating,timestamp),
  ``movies.csv`` (movieId,title,genres; quoted titles with commas), UTF-8, CRLF or LF line ends
  (a ``ratings.csv`` whose header lacks userId or movieId, or that comes with a column map and has other
  columns than these four, is read as an ``interactions`` table);
- ``synthetic``: the ml-latest layout plus ``ground_truth.csv`` (userId,movieId,timestamp,phase,interest,
  one row per ratings.csv row in the same order), as written by ``msli data synth``;
- ``interactions``: any CSV/TSV/Parquet table with a header and user, item and timestamp columns (rating
  optional), named by ``column_map`` or guessed from common names. Ids may be any text. Timestamps may be
  unix seconds (a column whose median is above 1e11 is read as milliseconds, and so on down, with a
  note; one outlier never sets the unit) or ISO 8601 date-times (converted to unix seconds, UTC when no
  offset is given), one form per column; every timestamp must fall between 1970 and 2262-04-11.

Rules applied to every layout: ids in MovieLens files are non-negative integers; timestamps and ratings
are finite and non-negative; blank lines are skipped; duplicate (user, item, timestamp) rows keep the
first row and drop the rest, with a note in ``InteractionData.notes`` (:func:`build_dataset`); an item
listed twice in the item metadata (u.item, movies.dat, movies.csv) keeps its first row, with a note.
A column map applies to generic tables only: with MovieLens data of fixed columns (u.data, ratings.dat,
a ratings.csv of exactly userId,movieId,rating,timestamp) it is refused, never silently used or ignored,
and one column may fill one role only.
Anything else that is wrong is bad input: one :class:`MsliError` sentence naming the file (and line).

Zip archives are read as streams, never extracted, with zip-slip and zip-bomb checks; only regular files
and folders are read. Messages about a file that is not a dataset name the file and what was expected,
never its content.

This module is the entry point (:func:`load_dataset`); each step lives in its own module:

- :mod:`msli_core.data.detect`: which layout a folder, zip archive or file holds, and its ratings file;
- :mod:`msli_core.data.files`: files on disk or in a zip archive, zip-slip/zip-bomb limits, special files;
- :mod:`msli_core.data.texttable`: delimited text tables, their fast typed read and first-bad-line messages;
- :mod:`msli_core.data.movielens`: the MovieLens ratings layouts, item metadata and synthetic ground truth;
- :mod:`msli_core.data.interactions`: generic CSV/TSV/Parquet tables with a column map;
- :mod:`msli_core.data.timestamps`: timestamp unit detection (seconds … nanoseconds, ISO 8601), range checks.

The public names of those modules that were defined here before the split are re-exported, so
``from msli_core.data.formats import ...`` keeps working.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from msli_core.data import audience
from msli_core.data.dataset import InteractionData, build_dataset, preprocess
from msli_core.data.detect import FORMATS, MARKERS, locate_ratings
from msli_core.data.files import (
    DEFAULT_MAX_EXPANDED_MB,
    DEFAULT_MAX_ZIP_RATIO,
    MAX_EXPANDED_MB_ENV,
    MAX_ZIP_RATIO_ENV,
    RATIO_CHECK_MIN_BYTES,
    DataFile,
    check_file_kind,
    check_zip_member_size,
    check_zip_members,
    open_zip,
    user_path,
    zip_limits,
)
from msli_core.data.interactions import ROLES, check_column_map, load_interactions
from msli_core.data.movielens import (
    DEFAULT_MAX_METADATA_MB,
    MAX_METADATA_MB_ENV,
    RATINGS_CSV,  # noqa: F401 - re-exported (see the module docstring)
    RATINGS_DAT,
    U_DATA,
    is_exact_ml_latest,
    looks_like_ml_latest,
    read_movies_csv,
    read_movies_dat,
    read_ratings_csv,
    read_truth,
    read_u_item,
)
from msli_core.data.texttable import MAX_HEADER_BYTES, read_layout
from msli_core.data.timestamps import MAX_TIMESTAMP_S, file_lines
from msli_core.errors import MsliError

__all__ = [
    "DEFAULT_MAX_EXPANDED_MB",
    "DEFAULT_MAX_METADATA_MB",
    "DEFAULT_MAX_ZIP_RATIO",
    "FORMATS",
    "MAX_EXPANDED_MB_ENV",
    "MAX_HEADER_BYTES",
    "MAX_METADATA_MB_ENV",
    "MAX_TIMESTAMP_S",
    "MAX_ZIP_RATIO_ENV",
    "RATIO_CHECK_MIN_BYTES",
    "ROLES",
    "check_zip_member_size",
    "check_zip_members",
    "load_dataset",
    "zip_limits",
]


def load_dataset(
    path: str | Path,
    *,
    column_map: dict[str, str] | None = None,
    min_rating: float | None = None,
    k_core: int | None = None,
    display: str | None = None,
) -> InteractionData:
    """Load a dataset from a folder, a zip archive or a single interactions file (layout autodetected).

    ``column_map`` maps roles (user, item, timestamp, rating) to column names of a generic table.
    ``min_rating`` and ``k_core`` are the protocol's optional filters (:func:`preprocess`).
    ``display``: how messages (and the dataset's ``source``) name ``path`` (default: the path itself),
    e.g. an uploaded file's own name instead of the temporary path it was saved under; files inside a
    folder are named ``display/NAME``, members of an archive ``display:NAME``.
    Bad input raises :class:`MsliError` with one sentence naming the file, in the words of its reader
    (:mod:`msli_core.data.audience`: CLI flags, or the app's boxes inside ``audience.app_user()``).
    Only regular files and folders are read: a FIFO, a socket or a device is refused before it is opened;
    a path that cannot be stat'ed says why (missing, a loop of links, too long, an unknown ``~user``).
    """
    path = user_path(path)
    shown = str(path) if display is None else display
    if min_rating is not None and not np.isfinite(min_rating):
        fix = audience.words(
            cli="pass e.g. --min-rating 4", app=f"type e.g. 4 in {audience.name('min_rating')}"
        )
        raise MsliError(f"The minimum rating {min_rating} is not a finite number; {fix}.")
    if k_core is not None and k_core < 1:
        fix = audience.words(cli="pass e.g. --k-core 5", app=f"type e.g. 5 in {audience.name('k_core')}")
        raise MsliError(f"The k-core {k_core} is not a positive whole number; {fix}.")
    check_column_map(column_map)
    info = check_file_kind(path, shown)
    if stat.S_ISREG(info.st_mode) and info.st_size == 0:
        raise MsliError(
            f"{shown} is empty (0 bytes; or a special file, like those under /proc, whose size is unknown); "
            "pass a dataset folder, a .zip archive or a ratings file."
        )
    archive = None
    try:
        if stat.S_ISDIR(info.st_mode):
            file, fmt = locate_ratings(path, None, shown)
        elif zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
            archive = open_zip(path, shown)
            file, fmt = locate_ratings(path, archive, shown)
        else:
            file = DataFile(shown, path=path)
            fmt = dict(MARKERS).get(path.name, "interactions")
        data = _load(file, fmt, column_map)
    finally:
        if archive is not None:
            archive.close()
    if min_rating is not None or (k_core is not None and k_core > 1):
        data = preprocess(data, min_rating=min_rating, k_core=k_core)
    return data


def _load(file: DataFile, fmt: str, column_map: dict[str, str] | None) -> InteractionData:
    if column_map and (fmt in ("ml-100k", "ml-1m") or (fmt == "ml-latest" and is_exact_ml_latest(file))):
        # a map would turn MovieLens data into a plain table (no titles, no genres, no ground truth)
        drop = audience.words(
            cli="drop --column-map",
            app=f"clear the column boxes under “{audience.FILTERS_PANEL}”",
        )
        raise MsliError(
            f"{file.display} is MovieLens data with fixed columns, so a column map does not apply; {drop}."
        )
    if fmt == "ml-latest" and (column_map or not looks_like_ml_latest(file)):
        fmt = "interactions"
    notes: list[str] = []
    truth = None
    if fmt == "ml-100k":
        raw = read_layout(file, U_DATA)
        meta_file = file.sibling("u.item")
        meta = read_u_item(meta_file) if meta_file else None
    elif fmt == "ml-1m":
        raw = read_layout(file, RATINGS_DAT).set_axis(["user", "item", "rating", "timestamp"], axis=1)
        meta_file = file.sibling("movies.dat")
        meta = read_movies_dat(meta_file) if meta_file else None
    elif fmt == "ml-latest":
        raw = read_ratings_csv(file)
        raw = raw.rename(columns={"userId": "user", "movieId": "item"})
        meta_file = file.sibling("movies.csv")
        meta = read_movies_csv(meta_file) if meta_file else None
        truth_file = file.sibling("ground_truth.csv")
        if truth_file is not None:
            truth = read_truth(truth_file, file, raw)
            fmt = "synthetic"
    else:
        raw, notes = load_interactions(file, column_map)
        meta_file, meta = None, None
    if fmt != "interactions" and meta_file is None:
        notes.append("no item metadata file beside the ratings; titles, years and genres are unknown")
    if meta is not None:
        meta = _drop_repeated_items(meta, meta_file, notes)
    raw = raw[["user", "item", "timestamp", "rating"]]
    lines = None if fmt == "interactions" else file_lines(file, header=fmt not in ("ml-100k", "ml-1m"))
    return build_dataset(
        raw, items_meta=meta, format=fmt, source=file.display, notes=tuple(notes), truth=truth, lines=lines
    )


def _drop_repeated_items(meta: pd.DataFrame, meta_file: DataFile, notes: list[str]) -> pd.DataFrame:
    """Item metadata with one row per item id: a repeated id keeps its first row (the rule of duplicate
    rating rows too), and how many rows were dropped, and the first repeated id, go into ``notes``, so the
    page never says "nothing was dropped" about a title it dropped. ``meta``: the readers' frame (item,
    title, year, genres), the item id as text."""
    ids = meta["item"].astype(str).str.strip()
    repeated = ids.duplicated(keep="first").to_numpy()
    if not repeated.any():
        return meta
    n_rows = int(repeated.sum())
    n_ids = ids[repeated].nunique()
    first = ids[repeated].iloc[0]
    rows = f"{n_rows} repeated row{'s' if n_rows != 1 else ''}"
    if n_ids == 1:
        notes.append(
            f"{meta_file.display} lists movie id {first} {n_rows + 1} times; kept its first row and dropped "
            f"the {rows}"
        )
    else:
        notes.append(
            f"{meta_file.display} lists {n_ids} movie ids more than once (the first of them: {first}); kept "
            f"the first row of each and dropped {rows}"
        )
    return meta[~repeated].reset_index(drop=True)
