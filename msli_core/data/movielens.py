"""The MovieLens layouts: their ratings tables, their item metadata files, and the synthetic ground truth.

- ``ml-100k``: ``u.data`` (tab: user item rating timestamp, no header), ``u.item`` (pipe, latin-1,
  id|title|release date|video release date|URL|19 genre flags);
- ``ml-1m`` (also ML-10M): ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``), ``movies.dat``
  (``MovieID::Title::Genres``; latin-1 in 1M, UTF-8 in 10M: UTF-8 is tried first, then latin-1);
- ``ml-latest`` (latest, latest-small, 20M, 25M, 32M): ``ratings.csv`` (userId,movieId,rating,timestamp),
  ``movies.csv`` (movieId,title,genres; quoted titles with commas), UTF-8, CRLF or LF line ends;
- ``synthetic``: the ml-latest layout plus ``ground_truth.csv`` (userId,movieId,timestamp,phase,interest,
  one row per ratings.csv row in the same order), as written by ``msli data synth``.

Item metadata files are read whole, so one larger than ``MSLI_MAX_METADATA_MB`` (default
:data:`DEFAULT_MAX_METADATA_MB`) is refused before it is read.
"""

from __future__ import annotations

import codecs
import re

import numpy as np
import pandas as pd

from msli_core.data.audience import label, raise_limit, words
from msli_core.data.dataset import MOVIELENS_GENRES
from msli_core.data.files import HEAD_BYTES, DataFile
from msli_core.data.texttable import (
    MAX_HEADER_BYTES,
    Layout,
    check_text_head,
    parser_error,
    read_layout,
    sniff_text,
    split_header,
    undecodable,
)
from msli_core.errors import MsliError
from msli_core.limits import env_positive

# Item metadata files are read whole; the official ones are at most a few MB.
MAX_METADATA_MB_ENV = "MSLI_MAX_METADATA_MB"
DEFAULT_MAX_METADATA_MB = 64
_YEAR_IN_TITLE = r"\((\d{4})(?:\s*[-–]\s*\d{4})?\)\s*$"  # "Toy Story (1995)", "Show (2006–2007)"


U_DATA = Layout(
    "an ML-100K u.data file (tab-separated user, item, rating, timestamp)",
    "\t", ("user", "item", "rating", "timestamp"), False, "latin-1", floats=("rating",),
)  # fmt: skip
RATINGS_DAT = Layout(
    "an ML-1M ratings.dat file (UserID::MovieID::Rating::Timestamp)",
    "::", ("UserID", "MovieID", "Rating", "Timestamp"), False, "latin-1", floats=("Rating",),
)  # fmt: skip
RATINGS_CSV = Layout(
    "an ml-latest ratings.csv file (userId,movieId,rating,timestamp)",
    ",", ("userId", "movieId", "rating", "timestamp"), True, "utf-8", floats=("rating",),
)  # fmt: skip
GROUND_TRUTH = Layout(
    "a synthetic ground_truth.csv file (userId,movieId,timestamp,phase,interest)",
    ",", ("userId", "movieId", "timestamp", "phase", "interest"), True, "utf-8", signed=("interest",),
)  # fmt: skip


def check_header_encoding(file: DataFile, layout: Layout) -> None:
    """Refuse a header line that is not valid text in the layout's encoding, in the sentence a bad byte
    on any later line gets (:func:`undecodable`).

    The header is sniffed as latin-1, where every byte decodes, and the typed readers replace it with
    the layout's column names without decoding it, so without this check a stray byte on line 1 of a
    UTF-8 file passed while the same byte on line 2 was refused. A latin-1 layout accepts every byte."""
    if codecs.lookup(layout.encoding).name == codecs.lookup("latin-1").name:  # "iso8859-1"
        return
    buf = b""
    with file.open() as fh:
        while True:  # up to the end of the first non-blank line (sniff_text has bounded its length)
            chunk = fh.read(HEAD_BYTES)
            buf += chunk
            body = buf.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n\f\v")
            if not chunk or re.search(rb"[\r\n]", body) or len(buf) > MAX_HEADER_BYTES + HEAD_BYTES:
                break
    header = re.split(rb"\r\n|\r|\n", body, maxsplit=1)[0]
    try:
        header.decode(layout.encoding)
    except UnicodeDecodeError:
        raise undecodable(file, layout.encoding, layout.what) from None


def read_ratings_csv(file: DataFile) -> pd.DataFrame:
    """An ml-latest ratings.csv (header checked strictly, line 1 included: UTF-8 like every line)."""
    check_header_encoding(file, RATINGS_CSV)
    return read_layout(file, RATINGS_CSV)


def _check_metadata_size(file: DataFile) -> None:
    """Item metadata is read whole: refuse one far larger than any official file before reading it."""
    limit = env_positive(MAX_METADATA_MB_ENV, DEFAULT_MAX_METADATA_MB)
    size = file.size()
    if size > limit * (1 << 20):
        raise MsliError(
            f"{file.display} holds {size / 2**20:,.0f} MB, above the limit of {limit:g} MB for an item "
            f"metadata file (the official ones are a few MB); remove it, or "
            f"{raise_limit(MAX_METADATA_MB_ENV, int(size / 2**20) + 1)}."
        )


# --------------------------------------------------------------------------------------------------
# Item metadata.


def _decode(file: DataFile, data: bytes, encodings: tuple[str, ...], what: str) -> str:
    for enc in encodings:
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise undecodable(file, encodings[0], what)


def _year_from(title: pd.Series, fallback: pd.Series | None = None) -> pd.Series:
    """The year in parentheses at the end of each title, else the 4-digit year ending ``fallback``.

    >>> _year_from(pd.Series(["Toy Story (1995)", "Show (2006–2007)", "Untitled"])).tolist()
    [1995.0, 2006.0, nan]
    """
    year = pd.to_numeric(title.str.extract(_YEAR_IN_TITLE, expand=False), errors="coerce")
    if fallback is not None:
        year = year.fillna(pd.to_numeric(fallback.str.extract(r"(\d{4})\s*$", expand=False), errors="coerce"))
    return year.astype(np.float64)


def _lines_frame(text: str) -> tuple[pd.Series, np.ndarray]:
    """Non-blank lines of ``text`` and their 1-based line numbers."""
    lines = pd.Series(text.splitlines(), dtype=str)
    keep = (lines.str.strip() != "").to_numpy()
    return lines[keep].reset_index(drop=True), np.flatnonzero(keep) + 1


def read_u_item(file: DataFile) -> pd.DataFrame:
    what = "an ML-100K u.item file (id|title|release date|video release date|URL|19 genre flags)"
    _check_metadata_size(file)
    data = file.read_bytes()
    check_text_head(file, data[:HEAD_BYTES], what, "latin-1")
    text = _decode(file, data, ("latin-1",), what)
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


def _u_item_frame(file: DataFile, table: pd.DataFrame, numbers: np.ndarray, what: str) -> pd.DataFrame:
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


def _check_ids_by_line(file: DataFile, ids: pd.Series, numbers: np.ndarray, what: str) -> None:
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


def read_movies_dat(file: DataFile) -> pd.DataFrame:
    what = "an ML-1M movies.dat file (MovieID::Title::Genres)"
    _check_metadata_size(file)
    data = file.read_bytes()
    check_text_head(file, data[:HEAD_BYTES], what)
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


def read_movies_csv(file: DataFile) -> pd.DataFrame:
    what = "an ml-latest movies.csv file (movieId,title,genres)"
    _check_metadata_size(file)
    first = sniff_text(file, what)
    fields = split_header(first, ",")
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
        raise undecodable(file, "utf-8", what) from None
    except (pd.errors.ParserError, ValueError) as err:
        raise parser_error(file, err, what) from None
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


def is_exact_ml_latest(file: DataFile) -> bool:
    """A ratings.csv whose header is exactly the ml-latest columns (in any order): MovieLens data with
    fixed columns, which a column map must not turn into a plain table."""
    fields = split_header(sniff_text(file, RATINGS_CSV.what), ",")
    return sorted(fields) == sorted(RATINGS_CSV.columns)


def looks_like_ml_latest(file: DataFile) -> bool:
    """A ratings.csv is read as ml-latest when its header has userId and movieId (strictly checked then)."""
    fields = split_header(sniff_text(file, RATINGS_CSV.what), ",")
    return "userId" in fields and "movieId" in fields


def _regenerate(what: str) -> str:
    return words(
        cli=f"regenerate {what} with msli data synth",
        app=f"regenerate {what} with the Data page's {label('generate')} source, or move "
        "ground_truth.csv away to load the ratings without it",
    )


def read_truth(truth_file: DataFile, ratings_file: DataFile, raw: pd.DataFrame) -> pd.DataFrame:
    check_header_encoding(truth_file, GROUND_TRUTH)
    truth = read_layout(truth_file, GROUND_TRUTH)
    if len(truth) != len(raw):
        raise MsliError(
            f"{truth_file.display} has {len(truth)} rows but {ratings_file.display} has {len(raw)}; "
            "the ground truth must have one row per rating, in the same order — "
            f"{_regenerate('both')}."
        )
    for mine, theirs in (("userId", "user"), ("movieId", "item"), ("timestamp", "timestamp")):
        differ = truth[mine].to_numpy() != raw[theirs].to_numpy()
        if differ.any():
            row = int(np.argmax(differ))
            raise MsliError(
                f"{truth_file.display}, line {row + 2}: {mine} {truth[mine].iloc[row]} does not match line "
                f"{row + 2} of {ratings_file.display}; {_regenerate('both')}."
            )
    phase, interest = truth["phase"].to_numpy(np.int64), truth["interest"].to_numpy(np.int64)
    if (interest < -1).any():
        row = int(np.argmax(interest < -1))
        raise MsliError(
            f"{truth_file.display}, line {row + 2}: interest {interest[row]} is below -1 (the noise marker); "
            f"{_regenerate('it')}."
        )
    return pd.DataFrame({"phase": phase, "interest": interest})
