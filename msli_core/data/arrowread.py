"""Columnar reads of large rating tables with pyarrow (issue 14: ML-25M/32M-size logs in bounded memory).

The readers in :mod:`~msli_core.data.texttable` and :mod:`~msli_core.data.interactions` parse with
pandas and check every rule with string operations, which names the first bad line of any file but
costs minutes and several GB on a 32-million-row table (the generic reader holds every id and time as
a Python-visible string). This module is the fast path in front of them:

- **A fixed MovieLens layout with a header** (``ratings.csv``, ``ground_truth.csv``): pyarrow's
  multi-threaded CSV reader with the column types fixed (ids and times int64, ratings float64).
- **A generic CSV/TSV table**: ids read as strings and factorised by pyarrow (dictionary encoding, no
  Python string per row), timestamps as int64, ratings as float64.
- **A generic Parquet table**: the mapped columns only; integer or string ids, integer or timestamp
  times, numeric ratings.

Decision: the fast path only *accepts* a table, it never *judges* one. Whenever anything is not
clean — a value pyarrow will not parse as the type, a missing value, a negative or non-finite number, an
id that is empty (or ``nan``/``None``/``<NA>``) after stripping, a timestamp outside 1970..2262, a
layout quirk (blank lines before the header, a delimiter longer than one character, another text
encoding) — it returns ``None`` and the caller reads the file the old way, which either gives exactly
the same table or raises the one-sentence :class:`MsliError` naming the first bad line. So clean
files load fast with the result the old readers give, and every bad-input message stays as it was.

Ids come back as a ``pandas.Categorical`` whose categories are already in the order
:func:`msli_core.data.dataset.build_dataset` numbers ids (numeric when every id is a number, else text
order), with int32 codes: the 32 M-row table never holds a string per row.

Memory: a file is refused before it is read when the estimated peak of loading it exceeds the memory
bound (:func:`check_memory`): what the system reports as available, or ``MSLI_MAX_LOAD_MB``.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd

from msli_core import limits
from msli_core.data.audience import raise_limit, words
from msli_core.data.files import HEAD_BYTES, DataFile
from msli_core.errors import MsliError

MAX_LOAD_MB_ENV = "MSLI_MAX_LOAD_MB"
# Peak resident bytes per rating row of loading a table, its split and its padded histories (L = 200),
# measured with msli data bench-load on the 32 M-row synthetic ML-32M log: about 110 B from ratings.csv,
# 125-155 B from a generic CSV or Parquet table; 160 leaves a little room.
BYTES_PER_ROW = 160
# The same for the pandas readers a table falls back to (a generic text table's ids and times held as
# strings): about 310 B measured on 8 M rows.
FALLBACK_BYTES_PER_ROW = 320
# Python's str.strip() whitespace (what the text readers strip), for pyarrow's utf8_trim.
_WHITESPACE = "".join(chr(i) for i in range(0x110000) if chr(i).isspace())
_MISSING_IDS = ("", "nan", "None", "<NA>")  # ids the text reader counts as missing


# ---------------------------------------------------------------------------------------- memory bound


def available_memory_bytes() -> int | None:
    """Bytes of memory this process may still use: ``MSLI_MAX_LOAD_MB`` when set, else the system's
    available memory (:func:`msli_core.limits.available_memory_bytes`), else None (no bound known)."""
    if os.environ.get(MAX_LOAD_MB_ENV, "").strip():  # one rule and one sentence for every such setting
        return int(limits.env_positive(MAX_LOAD_MB_ENV, 4096.0, " of MB") * (1 << 20))
    return limits.available_memory_bytes()


def estimate_rows(file: DataFile) -> int:
    """Rows of a text table, from its size and the mean length of the lines in its first 64 KB."""
    size = file.size()
    head = file.head(HEAD_BYTES)
    lines = max(1, head.count(b"\n"))
    per_line = max(1.0, len(head) / lines) if len(head) >= HEAD_BYTES else max(1.0, size / lines)
    return int(size / per_line)


def check_memory(file: DataFile, rows: int, per_row: int = BYTES_PER_ROW) -> None:
    """Refuse a table whose estimated loading peak (``rows`` × ``per_row``) is above the bound."""
    bound = available_memory_bytes()
    need = rows * per_row
    if bound is None or need <= bound:
        return
    if os.environ.get(MAX_LOAD_MB_ENV):
        override = (
            words(cli=MAX_LOAD_MB_ENV, app="the app's limit on one load")
            + f" is set to {bound / 2**20:,.0f} MB"
        )
    else:
        override = f"{bound / 2**30:,.1f} GB is available"
    raise MsliError(
        f"{file.display} holds about {rows:,} ratings, and loading them needs about {need / 2**30:,.1f} GB "
        f"of memory while {override}; free memory, load a filtered or smaller table, or "
        + words(
            cli=f"set {MAX_LOAD_MB_ENV} to the MB this load may use.",
            app=f"{raise_limit(MAX_LOAD_MB_ENV, int(need / 2**20) + 1)}.",
        )
    )


# ---------------------------------------------------------------------------------------- reading text


def _starts_with_header(file: DataFile) -> bool:
    """The file's first bytes are its header (after an optional BOM): no blank lines before it, which
    pyarrow's ``skip_rows`` would count differently from pandas."""
    head = file.head(4096).removeprefix(b"\xef\xbb\xbf")
    return bool(head) and head[:1] not in (b" ", b"\t", b"\r", b"\n", b"\f", b"\v")


def _read_csv(file: DataFile, sep: str, names: list[str], types: dict, columns: list[str]):
    """A pyarrow Table of ``columns`` of a delimited text file with one header row (replaced by
    ``names``), or None when pyarrow cannot read it as these types."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if len(sep) != 1 or not _starts_with_header(file):
        return None
    read = pacsv.ReadOptions(skip_rows=1, column_names=names, block_size=16 << 20, encoding="utf8")
    parse = pacsv.ParseOptions(delimiter=sep)
    convert = pacsv.ConvertOptions(
        column_types=types,
        include_columns=columns,
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        with file.open() as fh:
            return pacsv.read_csv(fh, read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowException, ValueError, UnicodeDecodeError):
        return None


def _numbers(column, *, floats: bool, signed: bool) -> np.ndarray | None:
    """A numeric pyarrow column as numpy (int64 or float64), or None when a value is missing,
    non-finite or (unless ``signed``) negative."""
    if column.null_count:
        return None
    values = column.to_numpy()
    if floats:
        values = values.astype(np.float64, copy=False)
        if not np.isfinite(values).all():
            return None
    elif values.dtype.kind not in "iu":
        return None
    else:
        values = values.astype(np.int64, copy=False)
    if not signed and len(values) and values.min() < 0:
        return None
    return values


def read_layout_fast(file: DataFile, layout, header: list[str]) -> pd.DataFrame | None:
    """A fixed layout with a header row (``ratings.csv``, ``ground_truth.csv``), typed as
    :func:`msli_core.data.texttable.read_layout` types it, or None (then read it that way)."""
    import pyarrow as pa

    if not layout.header or layout.encoding != "utf-8":
        return None
    check_memory(file, estimate_rows(file))
    types = {c: pa.float64() if c in layout.floats else pa.int64() for c in layout.columns}
    table = _read_csv(file, layout.sep, header, types, list(layout.columns))
    if table is None or table.num_rows == 0:
        return None
    out = {}
    for col in layout.columns:
        values = _numbers(table.column(col), floats=col in layout.floats, signed=col in layout.signed)
        if values is None:
            return None
        out[col] = values
        table = table.drop_columns([col])  # frees the Arrow copy as the numpy one is made
    return pd.DataFrame(out, copy=False)


# ---------------------------------------------------------------------------------------- ids


def canonical_order(uniques: np.ndarray) -> np.ndarray:
    """Positions of ``uniques`` (text ids, first-seen order) in internal-id order: numeric when every
    one is a number (ties in first-seen order), else text order — the rule of ``build_dataset``.

    >>> canonical_order(np.array(["10", "9", "x"], dtype=object)).tolist()
    [0, 1, 2]
    >>> canonical_order(np.array(["10", "9", "1e1"], dtype=object)).tolist()
    [1, 0, 2]
    """
    as_num = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce")
    if as_num.notna().all():
        return np.argsort(as_num.to_numpy(np.float64), kind="stable")
    return np.argsort(uniques.astype(str), kind="stable")


def _string_ids(column) -> pd.Categorical | None:
    """Stripped text ids as a Categorical in canonical order; None when one is missing."""
    import pyarrow.compute as pc

    if column.null_count:
        return None
    # Encode first, strip the (small) dictionary after: ids equal once stripped are then merged.
    encoded = pc.dictionary_encode(column).combine_chunks()  # one dictionary, first-seen order
    raw_codes = encoded.indices.to_numpy()
    stripped = pc.utf8_trim(encoded.dictionary, characters=_WHITESPACE).to_pylist()
    if any(value in _MISSING_IDS for value in stripped):
        return None
    # Merge entries equal once stripped; ``uniques`` stays in first-seen order of the rows.
    merged_code, uniques = pd.factorize(pd.Series(stripped, dtype=object))
    uniques = np.asarray(uniques, dtype=object)
    order = canonical_order(uniques)
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    codes = rank[merged_code][raw_codes]  # (n,) int32
    return pd.Categorical.from_codes(codes, categories=pd.Index(uniques[order], dtype=object))


def _integer_ids(column) -> pd.Categorical | None:
    """Integer ids as a Categorical of their text in numeric order (what the text reader makes of them)."""
    values = _numbers(column, floats=False, signed=True)
    if values is None or (len(values) and np.abs(values).max() >= 2**53):
        return None  # beyond 2**53 the text reader's numeric order (as floats) can tie distinct ids
    codes, uniques = integer_codes(values)
    text = pd.Index([str(u) for u in uniques.tolist()], dtype=object)
    return pd.Categorical.from_codes(codes, categories=text)


def integer_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,) int32 codes and (k,) sorted uniques of integer ids. Ids in a range at most a few times
    the row count (MovieLens: users and movies numbered from 1) are coded with one presence table and a
    cumulative sum, in O(n); others with a hash factorisation, sorted.

    >>> codes, uniques = integer_codes(np.array([30, 10, 30, 20]))
    >>> codes.tolist(), uniques.tolist()
    ([2, 0, 2, 1], [10, 20, 30])
    """
    if len(values) == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo < max(4 * len(values), 1 << 20):
        shifted = values - lo if lo else values
        present = np.zeros(hi - lo + 1, dtype=bool)
        present[shifted] = True
        uniques = np.flatnonzero(present)
        code_of = np.cumsum(present, dtype=np.int64).astype(np.int32) - 1
        return code_of[shifted], uniques + lo
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int32), np.asarray(uniques, dtype=np.int64)


# ---------------------------------------------------------------------------------------- generic tables


def _timestamps(column, notes: list[str]) -> np.ndarray | None:
    """Unix seconds from an integer or timestamp column, by the rules of
    :func:`msli_core.data.timestamps.seconds_from` (unit from the median, 1970..2262); None otherwise."""
    import pyarrow as pa

    from msli_core.data.timestamps import MAX_TIMESTAMP_S, unit_from_median

    if column.null_count:
        return None
    if pa.types.is_timestamp(column.type):
        raw = column.to_numpy()  # datetime64 of the column's unit, UTC when the column has a time zone
        if np.isnat(raw).any():
            return None
        seconds = raw.astype("datetime64[s]").astype(np.int64)
        ok = len(seconds) == 0 or (seconds.min() >= 0 and seconds.max() <= MAX_TIMESTAMP_S)
        return seconds if ok else None
    values = _numbers(column, floats=False, signed=False)
    if values is None:
        return None
    k, note = unit_from_median(float(np.median(values)) if len(values) else 0.0)
    if len(values) and values.max() / 1000.0**k > MAX_TIMESTAMP_S:
        return None
    if note:
        notes.append(note)
    if k == 0 and (len(values) == 0 or values.max() < 2**53):
        return values  # whole seconds: what floor(float(v)) gives, without the float copies
    return np.floor(values.astype(np.float64) / 1000.0**k).astype(np.int64)


def _ratings(column) -> np.ndarray | None:
    import pyarrow as pa

    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        return None
    return _numbers(column, floats=True, signed=False)


def _ids(column) -> pd.Categorical | None:
    import pyarrow as pa

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_integer(column.type):
        return _integer_ids(column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return _string_ids(column)
    return None


def _frame(table, roles: dict[str, str], notes: list[str]) -> pd.DataFrame | None:
    """The raw frame of ``load_interactions`` (user, item, timestamp, rating) from a pyarrow table of the
    mapped columns, or None when a value is not clean."""
    local: list[str] = []
    columns = {role: table.column(name) for role, name in roles.items()}
    del table  # each column is freed once it has been converted
    seconds = _timestamps(columns.pop("timestamp"), local)
    if seconds is None:
        return None
    rating = np.full(len(seconds), np.nan)
    if "rating" in columns:
        rating = _ratings(columns.pop("rating"))
        if rating is None:
            return None
    ids = {}
    for role in ("user", "item"):
        ids[role] = _ids(columns.pop(role))
        if ids[role] is None:
            return None
    if len(seconds) == 0:
        return None
    notes.extend(local)
    return pd.DataFrame(
        {"user": ids["user"], "item": ids["item"], "timestamp": seconds, "rating": rating}, copy=False
    )


def read_generic_text_fast(
    file: DataFile, sep: str, header: list[str], roles: dict[str, str], notes: list[str]
) -> pd.DataFrame | None:
    """A generic delimited table (header already checked, columns mapped), or None (read it the old way)."""
    import pyarrow as pa

    check_memory(file, estimate_rows(file))
    types = {roles["user"]: pa.string(), roles["item"]: pa.string(), roles["timestamp"]: pa.int64()}
    if "rating" in roles:
        types[roles["rating"]] = pa.float64()
    table = _read_csv(file, sep, header, types, list(dict.fromkeys(roles.values())))
    if table is None:
        return None
    return _frame(table, roles, notes)


def pq_rows(file: DataFile) -> int | None:
    """Rows of a Parquet file from its footer, or None when it cannot be read (the reader then says why)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if file.archive is not None:
        return None  # a member is read whole by the reader anyway; its size bounds it
    try:
        return int(pq.ParquetFile(file.path).metadata.num_rows)
    except (pa.ArrowException, OSError, ValueError, TypeError):
        return None


def read_generic_parquet_fast(
    file: DataFile, roles_for, notes: list[str]
) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """A Parquet table's mapped columns (``roles_for(header)`` maps them), or (None, roles)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with file.open() as fh:
            data = io.BytesIO(fh.read()) if file.archive is not None else None
        handle = pq.ParquetFile(data if data is not None else file.path)
        header = [str(c) for c in handle.schema_arrow.names]
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError, KeyError):
        return None, {}
    roles = roles_for(header)
    check_memory(file, handle.metadata.num_rows)
    try:
        table = handle.read(columns=list(dict.fromkeys(roles.values())))
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError, KeyError):
        return None, roles
    return _frame(table, roles, notes), roles
