"""Reading interaction data in every MovieLens layout, or any interactions table, into InteractionData.

Layouts (docs/design.md §3), autodetected from a folder, a zip archive (files at its root or inside one top
folder, e.g. ``ml-100k/u.data``), or a single file:

- ``ml-100k``: ``u.data`` (tab: user item rating timestamp, no header), ``u.item`` (pipe, latin-1,
  id|title|release date|video release date|URL|19 genre flags);
- ``ml-1m`` (also ML-10M): ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``), ``movies.dat``
  (``MovieID::Title::Genres``; latin-1 in 1M, UTF-8 in 10M: UTF-8 is tried first, then latin-1);
- ``ml-latest`` (latest, latest-small, 20M, 25M, 32M): ``ratings.csv`` (userId,movieId,rating,timestamp),
  ``movies.csv`` (movieId,title,genres; quoted titles with commas), UTF-8, CRLF or LF line ends
  (a ``ratings.csv`` whose header lacks userId or movieId is read as an ``interactions`` table);
- ``synthetic``: the ml-latest layout plus ``ground_truth.csv`` (userId,movieId,timestamp,phase,interest,
  one row per ratings.csv row in the same order), as written by ``msli data synth``;
- ``interactions``: any CSV/TSV/Parquet table with a header and user, item and timestamp columns (rating
  optional), named by ``column_map`` or guessed from common names. Ids may be any text. Timestamps may be
  unix seconds (a column whose median is above 1e11 is read as milliseconds, and so on down, with a
  note; one outlier never sets the unit) or ISO 8601 date-times (converted to unix seconds, UTC when no
  offset is given), one form per column; every timestamp must fall between 1970 and 2262-04-11.

Rules applied to every layout: ids in MovieLens files are non-negative integers; timestamps and ratings
are finite and non-negative; blank lines are skipped; duplicate (user, item, timestamp) rows keep the
first row and drop the rest, with a note in ``InteractionData.notes`` (:func:`build_dataset`).
Anything else that is wrong is bad input: one :class:`MsliError` sentence naming the file (and line).

Zip archives are read member by member through :mod:`zipfile`, as streams, never extracted; an archive
with a member whose name would escape a target folder (absolute, ``..``) is refused whole, and so is a
member that would expand beyond :data:`DEFAULT_MAX_EXPANDED_MB` or, above
:data:`RATIO_CHECK_MIN_BYTES`, by more than :data:`DEFAULT_MAX_ZIP_RATIO` times its compressed size (zip
bombs); the environment variables ``MSLI_MAX_EXPANDED_MB`` and ``MSLI_MAX_ZIP_RATIO`` raise the limits.
Only regular files and folders are read (never a FIFO, a socket or a device such as ``/dev/zero``).
Messages about a file that is not a dataset name the file and what was expected, never its content.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import stat
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np
import pandas as pd

from msli_core.data.dataset import MOVIELENS_GENRES, InteractionData, build_dataset, preprocess
from msli_core.errors import MsliError
from msli_core.limits import env_positive

FORMATS = ("ml-100k", "ml-1m", "ml-latest", "synthetic", "interactions")
ROLES = ("user", "item", "timestamp", "rating")  # the columns an interactions table maps to

# Common column names per role, compared after lower-casing and dropping everything but letters/digits.
_GUESSES = {
    "user": ("userid", "user", "uid", "customerid", "visitorid", "sessionid"),
    "item": ("movieid", "itemid", "item", "productid", "trackid", "iid", "sku", "articleid", "songid"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "eventtime", "date", "createdat"),
    "rating": ("rating", "stars", "rate"),
}
_GENERIC_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
# Tables that sit beside MovieLens ratings but are not interactions.
_NOT_INTERACTIONS = {
    "movies.csv", "links.csv", "tags.csv", "genome-scores.csv", "genome-tags.csv", "ground_truth.csv",
    "movies.dat", "tags.dat", "users.dat", "u.item", "u.user", "u.genre", "u.occupation", "u.info",
}  # fmt: skip
_HEAD_BYTES = 1 << 16  # how much of a file is sniffed for binary content
MAX_HEADER_BYTES = 1 << 20  # the longest first line (header) read; a longer one is refused as too long

# Zip bombs: limits on what one archive member may expand to (raisable through the environment).
MAX_EXPANDED_MB_ENV = "MSLI_MAX_EXPANDED_MB"
MAX_ZIP_RATIO_ENV = "MSLI_MAX_ZIP_RATIO"
DEFAULT_MAX_EXPANDED_MB = 1024  # per member; ml-32m's ratings.csv, the largest official file, is 877 MB
DEFAULT_MAX_ZIP_RATIO = 200  # expanded / compressed; real rating tables compress 3-10x
RATIO_CHECK_MIN_BYTES = 8 << 20  # small members may compress as well as they like
# Item metadata files are read whole; the official ones are at most a few MB.
MAX_METADATA_MB_ENV = "MSLI_MAX_METADATA_MB"
DEFAULT_MAX_METADATA_MB = 64
# The latest date a timestamp may hold: pandas' nanosecond datetimes end on 2262-04-11.
MAX_TIMESTAMP_S = int(pd.Timestamp.max.as_unit("s").timestamp()) - 1
_YEAR_IN_TITLE = r"\((\d{4})(?:\s*[-–]\s*\d{4})?\)\s*$"  # "Toy Story (1995)", "Show (2006–2007)"


# --------------------------------------------------------------------------------------------------
# Files: on disk or inside a zip archive, read the same way.


@dataclass(frozen=True)
class _File:
    """One readable file: a path on disk, or a member of an open zip archive (read in memory)."""

    display: str  # how messages name it: "data/u.data" or "ml-100k.zip:ml-100k/u.data"
    path: Path | None = None
    archive: zipfile.ZipFile | None = None
    member: str | None = None

    @property
    def name(self) -> str:
        return PurePosixPath(self.member).name if self.member else self.path.name

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        if self.archive is not None:
            check_zip_member_size(self.archive.getinfo(self.member), self.display)
        with _io_errors(self):
            stream = self.archive.open(self.member) if self.archive else open(self.path, "rb")  # noqa: SIM115
            with stream:
                yield stream

    def size(self) -> int:
        """Bytes the file holds (a zip member: once expanded)."""
        if self.archive is not None:
            return self.archive.getinfo(self.member).file_size
        with _io_errors(self):
            return self.path.stat().st_size

    def head(self, n: int = _HEAD_BYTES) -> bytes:
        with self.open() as fh:
            return fh.read(n)

    def read_bytes(self) -> bytes:
        with self.open() as fh:
            return fh.read()

    def sibling(self, name: str) -> _File | None:
        """The file called ``name`` in the same folder (of the disk or of the archive), if any."""
        if self.archive is not None:
            parent = PurePosixPath(self.member).parent
            member = name if str(parent) == "." else f"{parent}/{name}"
            if member in self.archive.NameToInfo:
                shown = self.display[: len(self.display) - len(self.member)] + member
                return _File(shown, archive=self.archive, member=member)
            return None
        path = self.path.with_name(name)
        shown = self.display[: len(self.display) - len(self.path.name)] + name
        return _File(shown, path=path) if path.is_file() else None


@contextmanager
def _io_errors(file: _File) -> Iterator[None]:
    """Turn read failures (damaged archive, unreadable file) into one sentence naming the file."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as err:
        raise MsliError(
            f"{file.display} cannot be read from its zip archive ({err}); the archive is damaged or uses "
            "an unsupported compression — download it again."
        ) from err
    except RuntimeError as err:  # zipfile: encrypted member
        raise MsliError(f"{file.display} cannot be read ({err}); pass an unencrypted archive.") from err
    except PermissionError as err:
        raise MsliError(f"{file.display} cannot be read: permission denied; check its permissions.") from err
    except IsADirectoryError as err:
        raise MsliError(f"{file.display} is a folder, not a file; pass a data file or folder.") from err
    except OSError as err:
        raise MsliError(f"{file.display} cannot be read ({err.strerror or err}); check the file.") from err


def check_zip_members(archive: zipfile.ZipFile, display: str) -> None:
    """Refuse an archive any of whose member names is absolute or climbs out with ``..`` (zip slip)."""
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\x00" in name:
            raise MsliError(
                f"{display} contains a member named {info.filename!r} that points outside the archive's "
                "folder; refusing to read it — use an archive whose members are plain relative paths."
            )


def _env_limit(name: str, default: float) -> float:
    return env_positive(name, default)


def zip_limits() -> tuple[int, float]:
    """(most bytes one zip member may expand to, most expanded/compressed ratio), from the environment."""
    mb = _env_limit(MAX_EXPANDED_MB_ENV, DEFAULT_MAX_EXPANDED_MB)
    return int(mb * (1 << 20)), _env_limit(MAX_ZIP_RATIO_ENV, DEFAULT_MAX_ZIP_RATIO)


def check_zip_member_size(info: zipfile.ZipInfo, display: str) -> None:
    """Refuse a member that would expand beyond the size or ratio limit, before reading a byte of it.

    :mod:`zipfile` never yields more than a member's recorded size (a member that lies about it fails
    its CRC check), so checking the recorded sizes bounds what a read can expand to."""
    max_bytes, max_ratio = zip_limits()
    size, packed = info.file_size, max(info.compress_size, 1)
    if size > max_bytes:
        raise MsliError(
            f"{display} would expand to {size / 2**20:,.0f} MB, above the limit of "
            f"{max_bytes / 2**20:,.0f} MB per zip member; refusing to read it — if the file is genuine, "
            "raise the limit with "
            f"{MAX_EXPANDED_MB_ENV}={int(size / 2**20) + 1} or unpack the archive and pass its folder."
        )
    if size > RATIO_CHECK_MIN_BYTES and size / packed > max_ratio:
        raise MsliError(
            f"{display} would expand {size / packed:,.0f} times (from {packed / 2**20:,.1f} MB to "
            f"{size / 2**20:,.0f} MB), above the limit of {max_ratio:g} times for a zip member (a zip "
            f"bomb?); refusing to read it — if the file is genuine, raise the limit with "
            f"{MAX_ZIP_RATIO_ENV}={int(size / packed) + 1}."
        )


def _check_metadata_size(file: _File) -> None:
    """Item metadata is read whole: refuse one far larger than any official file before reading it."""
    limit = _env_limit(MAX_METADATA_MB_ENV, DEFAULT_MAX_METADATA_MB)
    size = file.size()
    if size > limit * (1 << 20):
        raise MsliError(
            f"{file.display} holds {size / 2**20:,.0f} MB, above the limit of {limit:g} MB for an item "
            f"metadata file (the official ones are a few MB); remove it, or raise the limit with "
            f"{MAX_METADATA_MB_ENV}={int(size / 2**20) + 1}."
        )


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _check_file_kind(path: Path, shown: str) -> os.stat_result:
    """Regular files and folders only (checked with stat before anything is opened)."""
    try:
        info = path.stat()
    except OSError as err:
        raise MsliError(f"{shown} cannot be accessed ({err.strerror or err}); check the path.") from err
    if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
        return info
    kind = next((words for test, words in _KINDS if test(info.st_mode)), "not a regular file")
    raise MsliError(
        f"{shown} is {kind}, not a regular file or folder; pass a dataset folder, a .zip archive or a "
        "ratings file."
    )


def _open_zip(path: Path, shown: str) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(path)
        archive.infolist()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as err:
        raise MsliError(f"{shown} is not a readable zip archive ({err}); download it again.") from err
    check_zip_members(archive, shown)
    return archive


# --------------------------------------------------------------------------------------------------
# Locating the ratings file of a dataset.

_MARKERS = (("u.data", "ml-100k"), ("ratings.dat", "ml-1m"), ("ratings.csv", "ml-latest"))


def _locate(path: Path, archive: zipfile.ZipFile | None, shown: str) -> tuple[_File, str]:
    """The interactions file inside a folder or an archive and its layout (before header checks).
    ``shown``: how messages name ``path``."""
    if archive is not None:
        names = [
            n
            for n in archive.namelist()
            if not n.endswith("/") and not n.startswith("__MACOSX/") and len(PurePosixPath(n).parts) <= 2
        ]
        make = lambda n: _File(f"{shown}:{n}", archive=archive, member=n)  # noqa: E731
    else:
        names = []
        try:
            for child in sorted(path.iterdir()):
                if child.is_file():
                    names.append(child.name)
                elif child.is_dir() and not child.name.startswith("."):
                    names += [f"{child.name}/{g.name}" for g in sorted(child.iterdir()) if g.is_file()]
        except OSError as err:
            raise MsliError(
                f"{shown} cannot be listed ({err.strerror or err}); check its permissions."
            ) from err
        make = lambda n: _File(f"{shown}/{n}", path=path / n)  # noqa: E731
    by_depth = sorted(names, key=lambda n: len(PurePosixPath(n).parts))
    for marker, fmt in _MARKERS:
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
        if n.lower().endswith(_GENERIC_SUFFIXES)
        and PurePosixPath(n).name.lower() not in _NOT_INTERACTIONS
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


# --------------------------------------------------------------------------------------------------
# Text tables: sniffing, a fast typed read, and a diagnosis that finds the first bad line.


def _sniff_text(file: _File, what: str) -> str:
    """The file's first non-blank line (decoded), read whole up to :data:`MAX_HEADER_BYTES`; refuses
    empty and binary files and a first line longer than that."""
    with file.open() as fh:
        head = fh.read(_HEAD_BYTES)
        if not head.strip():
            raise MsliError(f"{file.display} is empty; it should be {what}.")
        if b"\x00" in head:
            raise MsliError(f"{file.display} is binary data, not text; it should be {what}.")
        buf = head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n\f\v")
        while not re.search(rb"[\r\n]", buf) and len(buf) <= MAX_HEADER_BYTES:
            more = fh.read(_HEAD_BYTES)
            if not more:
                break
            buf += more
    first = re.split(rb"\r\n|\r|\n", buf, maxsplit=1)[0]
    if len(first) > MAX_HEADER_BYTES:
        raise MsliError(
            f"{file.display}, line 1 is longer than {MAX_HEADER_BYTES >> 20} MB: a header that long is not "
            f"supported (or this is not a text table); it should be {what}."
        )
    return first.decode("latin-1").strip()


def _split_header(line: str, sep: str) -> list[str]:
    return [f.strip().strip('"').strip() for f in next(csv.reader([line], delimiter=sep))] if line else []


def _guess_delimiter(line: str) -> str | None:
    counts = {sep: line.count(sep) for sep in ("\t", ",", ";", "|")}
    sep, n = max(counts.items(), key=lambda kv: kv[1])
    return sep if n else None


def _delimiter_name(sep: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", "::": "'::'"}.get(sep, repr(sep))


@dataclass(frozen=True)
class _Layout:
    """A fixed MovieLens table layout."""

    what: str  # words for messages, e.g. "an ML-100K u.data ratings file"
    sep: str  # delimiter as written ("\t", "::", ",")
    columns: tuple[str, ...]  # the header (header=True) or the meaning of each field
    header: bool
    encoding: str
    floats: tuple[str, ...] = ()  # columns read as floats (ratings); the others are integers
    signed: tuple[str, ...] = ()  # integer columns that may be negative


_U_DATA = _Layout(
    "an ML-100K u.data file (tab-separated user, item, rating, timestamp)",
    "\t", ("user", "item", "rating", "timestamp"), False, "latin-1", floats=("rating",),
)  # fmt: skip
_RATINGS_DAT = _Layout(
    "an ML-1M ratings.dat file (UserID::MovieID::Rating::Timestamp)",
    "::", ("UserID", "MovieID", "Rating", "Timestamp"), False, "latin-1", floats=("Rating",),
)  # fmt: skip
_RATINGS_CSV = _Layout(
    "an ml-latest ratings.csv file (userId,movieId,rating,timestamp)",
    ",", ("userId", "movieId", "rating", "timestamp"), True, "utf-8", floats=("rating",),
)  # fmt: skip
_GROUND_TRUTH = _Layout(
    "a synthetic ground_truth.csv file (userId,movieId,timestamp,phase,interest)",
    ",", ("userId", "movieId", "timestamp", "phase", "interest"), True, "utf-8", signed=("interest",),
)  # fmt: skip


def _check_layout_header(file: _File, layout: _Layout, first_line: str) -> list[str]:
    """Refuse a wrong delimiter or wrong columns; returns the header's names (stripped) in file order."""
    fields = _split_header(first_line, layout.sep) if layout.sep != "::" else first_line.split("::")
    if len(fields) == 1:
        other = _guess_delimiter(first_line)
        found = f"it looks {_delimiter_name(other)}-separated" if other else "it has a single column"
        raise MsliError(
            f"{file.display}, line 1: expected {layout.what} with {_delimiter_name(layout.sep)} between "
            f"fields, but {found}; save it with the expected delimiter."
        )
    if layout.header:
        missing = [c for c in layout.columns if c not in fields]
        extra = [c for c in fields if c not in layout.columns]
        if missing or extra:
            problem = []
            if missing:
                problem.append(f"lacks column(s) {', '.join(missing)}")
            if extra:
                problem.append(f"has unexpected column(s) {', '.join(extra)}")
            raise MsliError(
                f"{file.display}, line 1: the header {' and '.join(problem)}; it should be exactly "
                f"{','.join(layout.columns)}."
            )
        if len(set(fields)) != len(fields):
            raise MsliError(f"{file.display}, line 1: the header names a column twice; name each once.")
    elif len(fields) != len(layout.columns):
        raise MsliError(
            f"{file.display}, line 1 has {len(fields)} fields but {layout.what} has {len(layout.columns)}; "
            "check that this is the right file."
        )
    return fields


def _parser_error(file: _File, err: Exception, what: str) -> MsliError:
    """A pandas tokenizer error as one sentence (with the line number pandas reports)."""
    text = str(err)
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if m:
        return MsliError(
            f"{file.display}, line {m.group(2)} has {m.group(3)} fields where {m.group(1)} were expected; "
            f"every line of {what} must have the same fields."
        )
    detail = text.replace("Error tokenizing data. C error: ", "").strip().splitlines()
    detail_text = detail[0].rstrip(".") if detail else type(err).__name__
    return MsliError(f"{file.display} cannot be parsed as {what} ({detail_text}); check the file.")


def _undecodable(file: _File, encoding: str, what: str) -> MsliError:
    """Find the first line that is not valid ``encoding`` text and say so."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    with file.open() as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                line += chunk[: err.start].count(b"\n")
                break
            line += chunk.count(b"\n")
    return MsliError(
        f"{file.display}, line {line} is not valid {encoding.upper()} text; {what} must be saved as "
        f"{encoding.upper()}."
    )


def _read_physical(file: _File, layout: _Layout, header: list[str], **kwargs) -> pd.DataFrame:
    """pandas' C reader over the file; the ``::`` delimiter is read as ':' with empty fields between.
    ``header``: the names of a headered layout's columns in file order (the file's own header row is
    replaced by them, so stray spaces around names do not matter)."""
    sep = ":" if layout.sep == "::" else layout.sep
    with file.open() as fh:
        return pd.read_csv(
            fh,
            sep=sep,
            header=0 if layout.header else None,
            names=header if layout.header else None,
            engine="c",
            encoding=layout.encoding,
            quoting=csv.QUOTE_MINIMAL if layout.header else csv.QUOTE_NONE,
            **kwargs,
        )


def _read_layout(file: _File, layout: _Layout) -> pd.DataFrame:
    """Read a fixed-layout MovieLens table fast (typed C reader); on any doubt, diagnose line by line."""
    header = _check_layout_header(file, layout, _sniff_text(file, layout.what))
    n_phys = len(layout.columns) * 2 - 1 if layout.sep == "::" else len(layout.columns)
    if layout.header:
        dtype = {c: (np.float64 if c in layout.floats else np.int64) for c in layout.columns}
    else:
        logical = {2 * k if layout.sep == "::" else k: c for k, c in enumerate(layout.columns)}
        dtype = {
            k: (np.float64 if k not in logical or logical[k] in layout.floats else np.int64)
            for k in range(n_phys)
        }
    try:
        with warnings.catch_warnings():  # pandas warns on a float it will then refuse as an integer
            warnings.simplefilter("ignore", RuntimeWarning)
            frame = _read_physical(file, layout, header, dtype=dtype, skip_blank_lines=True)
    except UnicodeDecodeError:
        raise _undecodable(file, layout.encoding, layout.what) from None
    except pd.errors.ParserError as err:
        raise _parser_error(file, err, layout.what) from None
    except (ValueError, OverflowError):
        frame = None
    if frame is not None and not layout.header:
        frame = frame.rename(columns=logical)
        spacers = [k for k in range(n_phys) if k not in logical]
        if spacers and frame[spacers].notna().to_numpy().any():
            frame = None
        else:
            frame = frame[list(layout.columns)]
    if frame is not None and frame.shape[1] == len(layout.columns) and _typed_ok(frame, layout):
        if frame.empty:
            raise MsliError(f"{file.display} has a header but no rows; it should be {layout.what}.")
        return frame
    _diagnose(file, layout, header)
    raise MsliError(f"{file.display} cannot be read as {layout.what}; check the file.")  # pragma: no cover


def _typed_ok(frame: pd.DataFrame, layout: _Layout) -> bool:
    for col in layout.columns:
        values = frame[col].to_numpy()
        if col in layout.floats and not np.isfinite(values).all():
            return False
        if col not in layout.signed and (values < 0).any():
            return False
    return True


def _diagnose(file: _File, layout: _Layout, header: list[str]) -> None:
    """Re-read as text, line numbers intact, and raise for the first line that is wrong."""
    try:
        text = _read_physical(file, layout, header, dtype=str, na_filter=False, skip_blank_lines=False)
    except UnicodeDecodeError:
        raise _undecodable(file, layout.encoding, layout.what) from None
    except pd.errors.ParserError as err:
        raise _parser_error(file, err, layout.what) from None
    first_line = 2 if layout.header else 1
    blank = (text.apply(lambda col: col.str.strip() == "")).all(axis=1).to_numpy()
    if layout.sep == "::":
        spacer_cols = [text.columns[k] for k in range(1, text.shape[1], 2)]
        bad = ~blank & (text[spacer_cols].apply(lambda col: col.str.strip() != "")).any(axis=1).to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise MsliError(
                f"{file.display}, line {row + first_line} is not four fields separated by '::'; every "
                f"line of {layout.what} must be."
            )
        text = text[[text.columns[k] for k in range(0, text.shape[1], 2)]]
    if not layout.header:
        text.columns = list(layout.columns)
    _raise_first_bad_numbers(
        file,
        {c: text[c] for c in layout.columns},
        blank,
        first_line,
        "line",
        integers=[c for c in layout.columns if c not in layout.floats],
        signed=list(layout.signed),
        what=layout.what,
    )


def _raise_first_bad_numbers(
    file: _File,
    columns: dict[str, pd.Series],
    skip: np.ndarray,
    first_line: int,
    unit: str,
    *,
    integers: list[str],
    signed: list[str],
    what: str,
) -> None:
    """Raise for the earliest row whose value in any column is missing, non-numeric, non-finite,
    negative (unless ``signed``) or, for ``integers``, not a whole number."""
    worst: tuple[int, str] | None = None
    for col, series in columns.items():
        s = series.astype(str).str.strip()
        num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        empty = (s == "").to_numpy() & ~skip
        notnum = ~empty & ~skip & np.isnan(num)
        inf = ~skip & np.isinf(num)
        neg = ~skip & (num < 0) if col not in signed else np.zeros(len(s), bool)
        with np.errstate(invalid="ignore"):
            frac = (
                ~skip & np.isfinite(num) & ((num != np.floor(num)) | (np.abs(num) >= 2.0**63))
                if col in integers
                else np.zeros(len(s), bool)
            )
        for mask, problem in (
            (empty, "is missing"),
            (notnum, "is not a number"),
            (inf, "is not finite"),
            (neg, "is negative"),
            (frac, "is not a whole number that fits in 64 bits"),
        ):
            if mask.any():
                row = int(np.argmax(mask))
                if worst is None or row < worst[0]:
                    value = s.iloc[row]
                    shown = f"the {col} value {value[:40]!r}" if value else f"the {col} value"
                    worst = (row, f"{shown} {problem}")
    if worst is not None:
        row, message = worst
        need = "whole numbers" if integers else "numbers"
        raise MsliError(
            f"{file.display}, {unit} {row + first_line}: {message}; ids and timestamps in {what} must be "
            f"non-negative {need}, ratings finite and non-negative."
        )


# --------------------------------------------------------------------------------------------------
# Item metadata.


def _decode(file: _File, data: bytes, encodings: tuple[str, ...], what: str) -> str:
    for enc in encodings:
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise _undecodable(file, encodings[0], what)


def _year_from(title: pd.Series, fallback: pd.Series | None = None) -> pd.Series:
    year = pd.to_numeric(title.str.extract(_YEAR_IN_TITLE, expand=False), errors="coerce")
    if fallback is not None:
        year = year.fillna(pd.to_numeric(fallback.str.extract(r"(\d{4})\s*$", expand=False), errors="coerce"))
    return year.astype(np.float64)


def _lines_frame(text: str) -> tuple[pd.Series, np.ndarray]:
    """Non-blank lines of ``text`` and their 1-based line numbers."""
    lines = pd.Series(text.splitlines(), dtype=str)
    keep = (lines.str.strip() != "").to_numpy()
    return lines[keep].reset_index(drop=True), np.flatnonzero(keep) + 1


def _read_u_item(file: _File) -> pd.DataFrame:
    what = "an ML-100K u.item file (id|title|release date|video release date|URL|19 genre flags)"
    _check_metadata_size(file)
    text = _decode(file, file.read_bytes(), ("latin-1",), what)
    if "\x00" in text[:_HEAD_BYTES]:
        raise MsliError(f"{file.display} is binary data, not text; it should be {what}.")
    lines, numbers = _lines_frame(text)
    parts = lines.str.split("|", regex=False)
    n_fields = parts.str.len().to_numpy()
    bad = n_fields != 5 + len(MOVIELENS_GENRES)
    if bad.any():
        row = int(np.argmax(bad))
        raise MsliError(
            f"{file.display}, line {numbers[row]} has {n_fields[row]} '|'-separated fields but {what} has "
            f"{5 + len(MOVIELENS_GENRES)}; check the file."
        )
    if lines.empty:
        return pd.DataFrame(columns=["item", "title", "year", "genres"])
    table = pd.DataFrame(parts.tolist(), dtype=str)
    return _u_item_frame(file, table, numbers, what)


def _u_item_frame(file: _File, table: pd.DataFrame, numbers: np.ndarray, what: str) -> pd.DataFrame:
    _check_ids_by_line(file, table[0], numbers, what)
    genres = pd.Series("", index=table.index, dtype=str)
    for k, name in enumerate(MOVIELENS_GENRES):
        flag = table[5 + k].str.strip() == "1"
        genres = genres.where(~flag, genres + "|" + name)
    return pd.DataFrame(
        {
            "item": table[0].str.strip(),
            "title": table[1].str.strip(),
            "year": _year_from(table[1], table[2]),
            "genres": genres.str.lstrip("|"),
        }
    )


def _check_ids_by_line(file: _File, ids: pd.Series, numbers: np.ndarray, what: str) -> None:
    s = ids.astype(str).str.strip()
    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(num) | (num < 0) | (num != np.floor(num))
    if bad.any():
        row = int(np.argmax(bad))
        raise MsliError(
            f"{file.display}, line {numbers[row]}: the movie id {s.iloc[row][:40]!r} is not a non-negative "
            f"whole number, as ids in {what} must be."
        )


def _read_movies_dat(file: _File) -> pd.DataFrame:
    what = "an ML-1M movies.dat file (MovieID::Title::Genres)"
    _check_metadata_size(file)
    data = file.read_bytes()
    if b"\x00" in data[:_HEAD_BYTES]:
        raise MsliError(f"{file.display} is binary data, not text; it should be {what}.")
    text = _decode(file, data, ("utf-8", "latin-1"), what)  # 1M is latin-1, 10M is UTF-8
    lines, numbers = _lines_frame(text)
    if lines.empty:
        return pd.DataFrame(columns=["item", "title", "year", "genres"])
    head = lines.str.split("::", n=1, regex=False, expand=True)
    if head.shape[1] < 2:
        head[1] = None
    tail = head[1].fillna("").str.rsplit("::", n=1, expand=True)
    if tail.shape[1] < 2:
        tail[1] = None
    bad = head[1].isna().to_numpy() | tail[1].isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise MsliError(
            f"{file.display}, line {numbers[row]} is not three fields separated by '::'; every line of "
            f"{what} must be."
        )
    _check_ids_by_line(file, head[0], numbers, what)
    return pd.DataFrame(
        {
            "item": head[0].str.strip(),
            "title": tail[0].str.strip(),
            "year": _year_from(tail[0].str.strip()),
            "genres": tail[1].str.strip().replace("(no genres listed)", ""),
        }
    )


def _read_movies_csv(file: _File) -> pd.DataFrame:
    what = "an ml-latest movies.csv file (movieId,title,genres)"
    _check_metadata_size(file)
    first = _sniff_text(file, what)
    fields = _split_header(first, ",")
    if sorted(fields) != ["genres", "movieId", "title"]:
        # the header is not shown: a file that is not a dataset never has its content echoed
        missing = [c for c in ("movieId", "title", "genres") if c not in fields]
        problem = f"lacks {', '.join(missing)}" if missing else f"has {len(fields)} columns"
        raise MsliError(
            f"{file.display}, line 1: the header {problem}, but {what} needs exactly movieId,title,genres."
        )
    try:
        with file.open() as fh:
            table = pd.read_csv(fh, dtype=str, na_filter=False, encoding="utf-8", engine="c")
    except UnicodeDecodeError:
        raise _undecodable(file, "utf-8", what) from None
    except (pd.errors.ParserError, ValueError) as err:
        raise _parser_error(file, err, what) from None
    numbers = np.arange(len(table)) + 2
    _check_ids_by_line(file, table["movieId"], numbers, what)
    title = table["title"].str.strip()
    return pd.DataFrame(
        {
            "item": table["movieId"].str.strip(),
            "title": title,
            "year": _year_from(title),
            "genres": table["genres"].str.strip().replace("(no genres listed)", ""),
        }
    )


# --------------------------------------------------------------------------------------------------
# Generic interactions tables (CSV/TSV/Parquet).


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _map_columns(file: _File, header: list[str], column_map: dict[str, str] | None) -> dict[str, str]:
    """role -> column of the file, from ``column_map`` first, then from common names."""
    column_map = dict(column_map or {})
    unknown = [k for k in column_map if k not in ROLES]
    if unknown:
        raise MsliError(
            f"The column map names role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)} "
            "(for example user=uid,item=sku,timestamp=ts)."
        )
    # The header's names are not shown: until its columns are recognised, a file may be anything (a
    # .env, a key), and its content is never echoed; only the count of columns and the names expected.
    shown = f"{len(header)} column{'s' if len(header) != 1 else ''}"
    roles: dict[str, str] = {}
    for role, column in column_map.items():
        if column not in header:
            raise MsliError(
                f"{file.display} has no column {column!r} (named for {role} in the column map) among its "
                f"{shown}; check the spelling (names are case-sensitive)."
            )
        roles[role] = column
    normal = {_normal(h): h for h in reversed(header)}
    for role in ROLES:
        if role in roles:
            continue
        for guess in _GUESSES[role]:
            if guess in normal and normal[guess] not in roles.values():
                roles[role] = normal[guess]
                break
    missing = [r for r in ("user", "item", "timestamp") if r not in roles]
    if missing:
        expected = "; ".join(f"{r}: {', '.join(_GUESSES[r][:4])}, …" for r in missing)
        raise MsliError(
            f"{file.display} has no {' or '.join(missing)} column that could be recognised among its "
            f"{shown} (names looked for, ignoring case and punctuation — {expected}); name them with a "
            "column map such as --column-map user=uid,item=sku,timestamp=ts."
        )
    return roles


def _read_generic_text(file: _File, column_map: dict[str, str] | None) -> tuple[dict, np.ndarray, str]:
    what = "an interactions table with a header row (user, item, timestamp[, rating])"
    first = _sniff_text(file, what)
    sep = "\t" if file.name.lower().endswith(".tsv") and "\t" in first else _guess_delimiter(first)
    if sep is None:
        raise MsliError(
            f"{file.display}, line 1 has a single column; {what} needs comma, tab, semicolon or "
            "pipe-separated columns."
        )
    header = _split_header(first, sep)
    if all(re.fullmatch(r"-?\d+(\.\d+)?", h) for h in header if h):
        raise MsliError(
            f"{file.display} has no header row (line 1 is data); add a header naming the user, item and "
            "timestamp columns."
        )
    if len(set(header)) != len(header):
        seen: dict[str, int] = {}
        for k, h in enumerate(header, 1):
            if h in seen:
                break
            seen[h] = k
        raise MsliError(
            f"{file.display}, line 1: the name of column {seen[h]} appears twice (again as column {k}); "
            "name each column once."
        )
    roles = _map_columns(file, header, column_map)
    try:
        with file.open() as fh:
            table = pd.read_csv(
                fh, sep=sep, header=0, names=header, index_col=False, usecols=list(roles.values()),
                dtype=str, na_filter=False, keep_default_na=False, skip_blank_lines=False, engine="c",
                encoding="utf-8",
            )  # fmt: skip
    except UnicodeDecodeError:
        raise _undecodable(file, "utf-8", what) from None
    except (pd.errors.ParserError, ValueError) as err:
        raise _parser_error(file, err, what) from None
    cols = {role: table[col] for role, col in roles.items()}
    blank = np.ones(len(table), bool)
    for series in cols.values():
        blank &= (series.str.strip() == "").to_numpy()
    return cols, blank, "line"


def _read_generic_parquet(file: _File, column_map: dict[str, str] | None) -> tuple[dict, np.ndarray, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with file.open() as fh:
            data = io.BytesIO(fh.read()) if file.archive is not None else None
        table = pq.ParquetFile(data if data is not None else file.path)
        header = [str(c) for c in table.schema_arrow.names]
        roles = _map_columns(file, header, column_map)
        frame = table.read(columns=list(roles.values())).to_pandas()
    except MsliError:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError, KeyError) as err:
        raise MsliError(
            f"{file.display} is not a readable Parquet file ({str(err).splitlines()[0][:120]}); "
            "check the file."
        ) from err
    return {role: frame[col] for role, col in roles.items()}, np.zeros(len(frame), bool), "row"


_UNITS = ("seconds", "milliseconds", "microseconds", "nanoseconds")
_LAST_DATE = "2262-04-11"  # the day MAX_TIMESTAMP_S falls on


def _datetimes_to_seconds(stamps: pd.Series) -> np.ndarray:
    """Unix seconds (float) of tz-aware or naive (read as UTC) datetimes of any resolution; NaT -> nan."""
    if getattr(stamps.dtype, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    raw = stamps.to_numpy()
    seconds = raw.astype("datetime64[s]").astype(np.int64).astype(np.float64)
    return np.where(np.isnat(raw), np.nan, seconds)


def _seconds_from(
    file: _File, values: pd.Series, skip: np.ndarray, first: int, unit: str, notes: list[str]
) -> np.ndarray:
    """Unix seconds from numbers or ISO 8601 date-times (one form for the whole column).

    Numbers are unix seconds, or milliseconds/microseconds/nanoseconds when the column's *median* is
    above 1e11/1e14/1e17 (so one outlier never changes the unit of the others). Every timestamp must
    then fall between 1970 and 2262-04-11 (:data:`MAX_TIMESTAMP_S`); a row outside is refused."""
    where = lambda mask: int(np.argmax(mask)) + first  # noqa: E731 - the line/row of the first True
    k, numbers = 0, False
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        text = None
        missing = values.isna().to_numpy() & ~skip
    else:
        missing_na = values.isna().to_numpy()
        text = values.astype(object).where(~missing_na, "").astype(str).str.strip()
        missing = ~skip & (missing_na | (text == "").to_numpy())
    if missing.any() and not (~skip & ~missing).any():
        raise MsliError(
            f"{file.display}: every timestamp is missing (empty or null); each event needs a time (unix "
            "seconds or an ISO 8601 date-time) to order each user's history."
        )
    if missing.any():
        raise MsliError(f"{file.display}, {unit} {where(missing)}: the timestamp is missing; fill it in.")
    if text is None:
        seconds = _datetimes_to_seconds(values)
    else:
        numeric = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        is_num = ~skip & ~np.isnan(numeric)
        is_text = ~skip & np.isnan(numeric)
        if is_num.any() and is_text.any():
            row = int(np.argmax(is_text if is_num.sum() >= is_text.sum() else is_num))
            value = text.iloc[row]
            if is_num.sum() < is_text.sum():
                raise MsliError(
                    f"{file.display}, {unit} {row + first}: the timestamp {value[:40]!r} is a number while "
                    "most timestamps in the column are date-times; use one form for every row."
                )
            if not pd.isna(pd.to_datetime(value, errors="coerce", utc=True, format="ISO8601")):
                raise MsliError(
                    f"{file.display}, {unit} {row + first}: the timestamp {value[:40]!r} is a date-time "
                    "while most timestamps in the column are unix times; use one form for every row."
                )
        numbers = bool(is_num.any())
        if numbers:
            _raise_first_bad_numbers(
                file, {"timestamp": text}, skip, first, unit, integers=[], signed=[],
                what="an interactions table",
            )  # fmt: skip
            median = float(np.median(numeric[~skip]))
            while k < 3 and median > 1e11 * 1000.0**k:
                k += 1
            seconds = numeric / 1000.0**k
            if k:
                above = f"1e{11 + 3 * (k - 1)}"
                notes.append(
                    f"timestamps read as unix {_UNITS[k]} (the column's median is above {above}), converted "
                    "to seconds"
                )
        else:
            try:
                stamps = pd.to_datetime(text.where(~pd.Series(skip, index=text.index), None),
                                        errors="coerce", utc=True, format="ISO8601")  # fmt: skip
            except (ValueError, OverflowError, TypeError) as err:
                raise MsliError(
                    f"{file.display}: the timestamps cannot be read as ISO 8601 date-times "
                    f"({str(err).splitlines()[0][:80]}); use unix seconds or ISO 8601 for every row."
                ) from err
            bad = stamps.isna().to_numpy() & ~skip
            if bad.any():
                row = int(np.argmax(bad))
                raise MsliError(
                    f"{file.display}, {unit} {row + first}: the timestamp {text.iloc[row][:40]!r} is neither "
                    "unix seconds nor an ISO 8601 date-time; use one form for every row."
                )
            seconds = _datetimes_to_seconds(stamps)
    neg = ~skip & (seconds < 0)
    if neg.any():
        raise MsliError(
            f"{file.display}, {unit} {where(neg)}: the timestamp is before 1970 (negative unix time); "
            "timestamps must be non-negative."
        )
    late = ~skip & (seconds > MAX_TIMESTAMP_S)
    if late.any():
        row = int(np.argmax(late))
        shown = f" {text.iloc[row][:40]!r}" if text is not None else ""
        read_as = f"read as unix {_UNITS[k]} like the rest of the column, it" if numbers else "it"
        fix = "fix the row, or write every timestamp in one unit" if numbers else "fix the row"
        raise MsliError(
            f"{file.display}, {unit} {row + first}: the timestamp{shown} is out of range: {read_as} falls "
            f"after {_LAST_DATE}, the latest date this tool can hold; {fix}."
        )
    return np.floor(np.where(skip, 0, seconds)).astype(np.int64)


def _load_generic(file: _File, column_map: dict[str, str] | None) -> tuple[pd.DataFrame, list[str]]:
    notes: list[str] = []
    if file.name.lower().endswith((".parquet", ".pq")):
        cols, skip, unit = _read_generic_parquet(file, column_map)
        first = 1
    else:
        cols, skip, unit = _read_generic_text(file, column_map)
        first = 2
    ids = {}
    for role in ("user", "item"):
        s = cols[role]
        s = s.astype(str).str.strip() if not pd.api.types.is_integer_dtype(s.dtype) else s.astype(str)
        empty = (s == "").to_numpy() | s.isna().to_numpy() | (s.isin(["nan", "None", "<NA>"]).to_numpy())
        empty &= ~skip
        if empty.any():
            row = int(np.argmax(empty))
            raise MsliError(f"{file.display}, {unit} {row + first}: the {role} id is missing; fill it in.")
        ids[role] = s
    seconds = _seconds_from(file, cols["timestamp"], skip, first, unit, notes)
    if "rating" in cols:
        rating = cols["rating"].astype(str).str.strip()
        _raise_first_bad_numbers(
            file, {"rating": rating}, skip, first, unit, integers=[], signed=[], what="an interactions table"
        )
        ratings = pd.to_numeric(rating.where(~skip, "0")).to_numpy(np.float64)
    else:
        ratings = np.full(len(seconds), np.nan)
    raw = pd.DataFrame({"user": ids["user"], "item": ids["item"], "timestamp": seconds, "rating": ratings})
    raw = raw[~skip].reset_index(drop=True)
    if raw.empty:
        raise MsliError(f"{file.display} has a header but no rows; add interaction rows.")
    return raw, notes


# --------------------------------------------------------------------------------------------------
# The entry point.


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
    Bad input raises :class:`MsliError` with one sentence naming the file.
    Only regular files and folders are read: a FIFO, a socket or a device is refused before it is opened.
    """
    path = Path(path).expanduser()
    shown = str(path) if display is None else display
    if min_rating is not None and not np.isfinite(min_rating):
        raise MsliError(f"The minimum rating {min_rating} is not a finite number; pass e.g. --min-rating 4.")
    if k_core is not None and k_core < 1:
        raise MsliError(f"The k-core {k_core} is not a positive whole number; pass e.g. --k-core 5.")
    if not path.exists():
        raise MsliError(f"{shown} does not exist; pass a dataset folder, a .zip archive or a ratings file.")
    info = _check_file_kind(path, shown)
    if stat.S_ISREG(info.st_mode) and info.st_size == 0:
        raise MsliError(
            f"{shown} is empty (0 bytes; or a special file, like those under /proc, whose size is unknown); "
            "pass a dataset folder, a .zip archive or a ratings file."
        )
    archive = None
    try:
        if stat.S_ISDIR(info.st_mode):
            file, fmt = _locate(path, None, shown)
        elif zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
            archive = _open_zip(path, shown)
            file, fmt = _locate(path, archive, shown)
        else:
            file = _File(shown, path=path)
            fmt = dict(_MARKERS).get(path.name, "interactions")
        data = _load(file, fmt, column_map)
    finally:
        if archive is not None:
            archive.close()
    if min_rating is not None or (k_core is not None and k_core > 1):
        data = preprocess(data, min_rating=min_rating, k_core=k_core)
    return data


def _load(file: _File, fmt: str, column_map: dict[str, str] | None) -> InteractionData:
    if column_map and fmt in ("ml-100k", "ml-1m"):
        raise MsliError(
            f"{file.display} is MovieLens data with fixed columns, so a column map does not apply; drop it."
        )
    if fmt == "ml-latest" and (column_map or not _looks_like_ml_latest(file)):
        fmt = "interactions"
    notes: list[str] = []
    truth = None
    if fmt == "ml-100k":
        raw = _read_layout(file, _U_DATA)
        meta_file = file.sibling("u.item")
        meta = _read_u_item(meta_file) if meta_file else None
    elif fmt == "ml-1m":
        raw = _read_layout(file, _RATINGS_DAT).set_axis(["user", "item", "rating", "timestamp"], axis=1)
        meta_file = file.sibling("movies.dat")
        meta = _read_movies_dat(meta_file) if meta_file else None
    elif fmt == "ml-latest":
        raw = _read_layout(file, _RATINGS_CSV)
        raw = raw.rename(columns={"userId": "user", "movieId": "item"})
        meta_file = file.sibling("movies.csv")
        meta = _read_movies_csv(meta_file) if meta_file else None
        truth_file = file.sibling("ground_truth.csv")
        if truth_file is not None:
            truth = _read_truth(truth_file, file, raw)
            fmt = "synthetic"
    else:
        raw, notes = _load_generic(file, column_map)
        meta_file, meta = None, None
    if fmt != "interactions" and meta_file is None:
        notes.append("no item metadata file beside the ratings; titles, years and genres are unknown")
    raw = raw[["user", "item", "timestamp", "rating"]]
    return build_dataset(
        raw, items_meta=meta, format=fmt, source=file.display, notes=tuple(notes), truth=truth
    )


def _looks_like_ml_latest(file: _File) -> bool:
    """A ratings.csv is read as ml-latest when its header has userId and movieId (strictly checked then)."""
    fields = _split_header(_sniff_text(file, _RATINGS_CSV.what), ",")
    return "userId" in fields and "movieId" in fields


def _read_truth(truth_file: _File, ratings_file: _File, raw: pd.DataFrame) -> pd.DataFrame:
    truth = _read_layout(truth_file, _GROUND_TRUTH)
    if len(truth) != len(raw):
        raise MsliError(
            f"{truth_file.display} has {len(truth)} rows but {ratings_file.display} has {len(raw)}; "
            "the ground truth must have one row per rating, in the same order — regenerate both with "
            "msli data synth."
        )
    for mine, theirs in (("userId", "user"), ("movieId", "item"), ("timestamp", "timestamp")):
        differ = truth[mine].to_numpy() != raw[theirs].to_numpy()
        if differ.any():
            row = int(np.argmax(differ))
            raise MsliError(
                f"{truth_file.display}, line {row + 2}: {mine} {truth[mine].iloc[row]} does not match line "
                f"{row + 2} of {ratings_file.display}; regenerate both with msli data synth."
            )
    phase, interest = truth["phase"].to_numpy(np.int64), truth["interest"].to_numpy(np.int64)
    if (interest < -1).any():
        row = int(np.argmax(interest < -1))
        raise MsliError(
            f"{truth_file.display}, line {row + 2}: interest {interest[row]} is below -1 (the noise marker); "
            "regenerate it with msli data synth."
        )
    return pd.DataFrame({"phase": phase, "interest": interest})
