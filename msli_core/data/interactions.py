"""Any CSV/TSV/Parquet interactions table: columns mapped to roles, ids as text, timestamps checked.

The table needs a header and user, item and timestamp columns (rating optional), named by ``column_map``
(role -> column) or guessed from common names (:data:`GUESSES`, compared ignoring case and punctuation).
Ids may be any text; timestamps are read by :func:`msli_core.data.timestamps.seconds_from`.
"""

from __future__ import annotations

import array
import csv
import io
import re

import numpy as np
import pandas as pd

from msli_core.data import audience
from msli_core.data.arrowread import (
    FALLBACK_BYTES_PER_ROW,
    check_memory,
    estimate_rows,
    pq_rows,
    read_generic_parquet_fast,
    read_generic_text_fast,
)
from msli_core.data.files import DataFile
from msli_core.data.texttable import (
    guess_delimiter,
    parser_error,
    raise_first_bad_numbers,
    sniff_text,
    split_header,
    undecodable,
)
from msli_core.data.timestamps import file_lines, seconds_from
from msli_core.errors import MsliError

ROLES = ("user", "item", "timestamp", "rating")  # the columns an interactions table maps to

# Common column names per role, compared after lower-casing and dropping everything but letters/digits.
GUESSES = {
    "user": ("userid", "user", "uid", "customerid", "visitorid", "sessionid"),
    "item": ("movieid", "itemid", "item", "productid", "trackid", "iid", "sku", "articleid", "songid"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "eventtime", "date", "createdat"),
    "rating": ("rating", "stars", "rate"),
}


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def check_column_map(column_map: dict[str, str] | None) -> None:
    """Refuse a column map that names an unknown role, or one column for two roles (a user id is not
    an item id: such a table would load with every user rating only themself).

    >>> check_column_map({"user": "who", "item": "who"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    msli_core.errors.MsliError: The column map names the column 'who' for both user and item; a column ...
    """
    if not column_map:
        return
    unknown = [k for k in column_map if k not in ROLES]
    if unknown:
        raise MsliError(
            f"The column map names role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)} "
            "(for example user=uid,item=sku,timestamp=ts)."
        )
    seen: dict[str, str] = {}
    for role in ROLES:  # in the roles' order, so the message does not depend on the map's
        column = column_map.get(role)
        if column is None:
            continue
        if column in seen:
            first = seen[column]
            raise MsliError(
                audience.words(
                    cli=f"The column map names the column {column!r} for both {first} and {role}; a column "
                    f"can hold one role only, so name another column for {role}.",
                    app=f"The {audience.name(first)} and {audience.name(role)} boxes both name the column "
                    f"{column!r}; a column can hold one role only, so type another column in "
                    f"{audience.name(role)}.",
                )
            )
        seen[column] = role


def _map_columns(file: DataFile, header: list[str], column_map: dict[str, str] | None) -> dict[str, str]:
    """role -> column of the file, from ``column_map`` first, then from common names.

    >>> _map_columns(DataFile("t.csv"), ["Customer ID", "SKU", "created_at", "price"], None)
    {'user': 'Customer ID', 'item': 'SKU', 'timestamp': 'created_at'}
    >>> _map_columns(DataFile("t.csv"), ["who", "sku", "when"], {"user": "who", "timestamp": "when"})
    {'user': 'who', 'timestamp': 'when', 'item': 'sku'}
    """
    column_map = dict(column_map or {})
    check_column_map(column_map)
    # The header's names are not shown: until its columns are recognised, a file may be anything (a
    # .env, a key), and its content is never echoed; only the count of columns and the names expected.
    shown = f"{len(header)} column{'s' if len(header) != 1 else ''}"
    roles: dict[str, str] = {}
    for role, column in column_map.items():
        if column not in header:
            named = audience.words(
                cli=f"named for {role} in the column map", app=f"typed in the {audience.name(role)} box"
            )
            raise MsliError(
                f"{file.display} has no column {column!r} ({named}) among its {shown}; check the spelling "
                "(names are case-sensitive)."
            )
        roles[role] = column
    normal = {_normal(h): h for h in reversed(header)}
    for role in ROLES:
        if role in roles:
            continue
        for guess in GUESSES[role]:
            if guess in normal and normal[guess] not in roles.values():
                roles[role] = normal[guess]
                break
    missing = [r for r in ("user", "item", "timestamp") if r not in roles]
    if missing:
        expected = "; ".join(f"{r}: {', '.join(GUESSES[r][:4])}, …" for r in missing)
        boxes = [audience.name(r) for r in missing]
        fix = audience.words(
            cli="name them with a column map such as --column-map user=uid,item=sku,timestamp=ts",
            app=f"type {'their names' if len(missing) > 1 else 'its name'} in the "
            f"{' and '.join([', '.join(boxes[:-1]), boxes[-1]] if len(boxes) > 1 else boxes)} "
            f"box{'es' if len(missing) > 1 else ''} under “{audience.FILTERS_PANEL}”",
        )
        raise MsliError(
            f"{file.display} has no {' or '.join(missing)} column that could be recognised among its "
            f"{shown} (names looked for, ignoring case and punctuation — {expected}); {fix}."
        )
    return roles


_WHAT = "an interactions table with a header row (user, item, timestamp[, rating])"


def _text_layout(file: DataFile, column_map: dict[str, str] | None) -> tuple[str, list[str], dict[str, str]]:
    """(delimiter, header names, role -> column) of a generic text table; bad headers are refused.

    The header is the first line that is not blank (:func:`sniff_text`); blank lines before it are
    passed over, and a sentence about the header names its line as an editor numbers it
    (:func:`msli_core.data.timestamps.file_lines`)."""
    what = _WHAT
    first = sniff_text(file, what)
    at = lambda: f"line {file_lines(file, header=False)(0)}"  # noqa: E731 - the header's line, read on error
    sep = "\t" if file.name.lower().endswith(".tsv") and "\t" in first else guess_delimiter(first)
    if sep is None:
        raise MsliError(
            f"{file.display}, {at()} has a single column; {what} needs comma, tab, semicolon or "
            "pipe-separated columns."
        )
    header = split_header(first, sep)
    if all(re.fullmatch(r"-?\d+(\.\d+)?", h) for h in header if h):
        raise MsliError(
            f"{file.display} has no header row ({at()} is data); add a header naming the user, item and "
            "timestamp columns."
        )
    if len(set(header)) != len(header):
        seen: dict[str, int] = {}
        for k, h in enumerate(header, 1):
            if h in seen:
                break
            seen[h] = k
        raise MsliError(
            f"{file.display}, {at()}: the name of column {seen[h]} appears twice (again as column {k}); "
            "name each column once."
        )
    return sep, header, _map_columns(file, header, column_map)


def _line_count(file: DataFile) -> int:
    """The lines of ``file`` as an editor counts them: ``\\n``, ``\\r\\n`` or ``\\r`` ends one (the rule of
    :func:`msli_core.data.timestamps.file_lines`), and a last line without an end counts too. Bytes are
    counted, never decoded: a pass at memory speed.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = path.write_bytes(b"a\\r\\n\\rb\\nc")
    >>> _line_count(DataFile("t.csv", path))
    4
    """
    count, cr, last = 0, False, b""
    with file.open() as fh:
        while chunk := fh.read(16 << 20):
            count += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
            count -= cr and chunk.startswith(b"\n")  # a \r\n split between two chunks is one end
            cr, last = chunk.endswith(b"\r"), chunk[-1:]
    return count + (last not in (b"", b"\n", b"\r"))


def _records(file: DataFile, sep: str):
    """Each record of the file with the line (from 1) it starts on: ``(line, fields)``, the header and
    blank lines being records too, as in pandas' reader with ``skip_blank_lines=False``.

    A record is one line, unless a quoted field holds a line break: then it spans the lines up to its
    closing quote, and every later record starts that many lines further down. Python's csv reader
    splits records as pandas' C reader does (fields quoted with ``"``, ``""`` inside them one quote,
    a quote inside an unquoted field taken as written); lines end as in
    :func:`msli_core.data.timestamps.file_lines`."""
    csv.field_size_limit(max(csv.field_size_limit(), (1 << 31) - 1))  # one field may hold the whole file
    with file.open() as fh:
        # utf-8-sig: the BOM is no part of the first field, as for pandas; a line break is ASCII in UTF-8
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="replace", newline="")
        reader = csv.reader(text, delimiter=sep)
        ended = 0  # the last line of the records read so far
        for fields in reader:
            yield ended + 1, fields
            ended = reader.line_num


def _record_lines(file: DataFile, sep: str, records: int | None = None) -> np.ndarray:
    """(R,) int64: the line (from 1, as an editor numbers lines: header and blank lines counted) on which
    each record of the file starts (:func:`_records`). ``records``: stop after that many. Read only on
    the way to an error or when a record spans lines (:func:`_line_count` tells)."""
    starts = array.array("q")
    for line, _ in _records(file, sep):
        starts.append(line)
        if records is not None and len(starts) >= records:
            break
    return np.frombuffer(starts, dtype=np.int64) if starts else np.zeros(0, np.int64)


def _first_surplus_line(file: DataFile, sep: str, width: int) -> int | None:
    """The line on which the first record with a non-empty field past its first ``width`` starts, or
    None. Empty surplus fields (a trailing delimiter) are allowed. One pass of Python's csv reader (about
    1.6 M records/s here), paid only by tables that the columnar fast path did not take, which refuses
    every record whose field count differs."""
    for line, fields in _records(file, sep):
        if len(fields) > width and any(field.strip() for field in fields[width:]):
            return line
    return None


def _unclosed_quote(file: DataFile, sep: str, err: Exception, what: str) -> MsliError | None:
    """pandas' "EOF inside string starting at row N" (N: the record, from 0) as one sentence naming the
    line that record starts on; None for any other parser error."""
    m = re.search(r"EOF inside string starting at row (\d+)", str(err))
    if m is None:
        return None
    record = int(m.group(1))
    starts = _record_lines(file, sep, records=record + 1)
    line = int(starts[record]) if len(starts) > record else record + 1
    return MsliError(
        f"{file.display} cannot be parsed as {what}: the row on line {line} opens a quoted field that is "
        'never closed; add its closing quote (") or remove the opening one.'
    )


def _read_generic_text(
    file: DataFile, sep: str, header: list[str], roles: dict[str, str]
) -> tuple[dict, np.ndarray]:
    """(role -> values, skip): ``values[i]`` (and ``skip[i]``) is on line ``i + 1`` of the file, as an editor
    numbers lines (header and blank lines counted), so that every sentence naming a row names its line.

    Each record of the file is read (``header=None``, blank lines kept), then the lines before the header
    and the header itself are skipped like blank ones: the header is the first record that is not blank,
    as :func:`sniff_text` found it (pandas' ``skiprows`` miscounts lines that end in a lone ``\\r``). While
    each record is one line, record i is on line i + 1. A quoted field holding a line break makes its
    record span lines; then the columns are spread out to one entry per line (the record at the line
    it starts on, every other line skipped), so that value i stays on line i + 1. A record with a
    non-empty field beyond the header's columns is refused (an empty one, a trailing delimiter, is not)."""
    what = _WHAT
    try:
        with file.open() as fh:
            table = pd.read_csv(
                fh, sep=sep, header=None, names=header, index_col=False, usecols=list(roles.values()),
                dtype=str, na_filter=False, keep_default_na=False, skip_blank_lines=False, engine="c",
                encoding="utf-8",
            )  # fmt: skip
    except UnicodeDecodeError:
        raise undecodable(file, "utf-8", what) from None
    except (pd.errors.ParserError, ValueError) as err:
        raise (_unclosed_quote(file, sep, err, what) or parser_error(file, err, what)) from None
    # pandas drops a record's fields past the header's without a word (index_col=False); a non-empty one
    # is a shifted row (a delimiter inside an unquoted field) or a column the header does not name
    surplus = _first_surplus_line(file, sep, len(header))
    if surplus is not None:
        raise MsliError(
            f"{file.display}, line {surplus} has more fields than the header names ({len(header)}); quote a "
            "field that contains the delimiter, or name the extra column in the header."
        )
    cols = {role: table[col] for role, col in roles.items()}
    blank = np.ones(len(table), bool)
    for series in cols.values():
        blank &= (series.str.strip() == "").to_numpy()
    skip = blank.copy()
    if len(skip):
        skip[: int(np.argmax(~blank)) + 1] = True  # the blank lines before the header, and the header
    if _line_count(file) != len(table):  # a record spans lines: place each at the line it starts on
        starts = _record_lines(file, sep)
        if len(starts) == len(table):  # (else the two readers disagree: rows are numbered as records)
            lines, at = int(starts[-1]), starts - 1
            cols = {role: s.set_axis(at).reindex(range(lines), fill_value="") for role, s in cols.items()}
            spread = np.ones(lines, bool)
            spread[at] = skip
            skip = spread
    return cols, skip


def _read_generic_parquet(file: DataFile, column_map: dict[str, str] | None) -> tuple[dict, np.ndarray, str]:
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


def load_interactions(file: DataFile, column_map: dict[str, str] | None) -> tuple[pd.DataFrame, list[str]]:
    """The raw frame (user, item, timestamp, rating) of a generic table, and notes on what was read how.

    Clean tables take pyarrow's columnar fast path (:mod:`msli_core.data.arrowread`, ids as int32-coded
    categoricals); any table it does not accept is read here with pandas, which gives the same frame
    or names the first bad row in one sentence."""
    notes: list[str] = []
    parquet = file.name.lower().endswith((".parquet", ".pq"))
    if parquet:
        roles_for = lambda header: _map_columns(file, header, column_map)  # noqa: E731
        fast, _ = read_generic_parquet_fast(file, roles_for, notes)
    else:
        sep, header, roles = _text_layout(file, column_map)
        fast = read_generic_text_fast(file, sep, header, roles, notes)
    if fast is not None:
        return fast, notes
    # The pandas reader holds ids and times as strings: check the bound again at its own cost per row.
    rows = pq_rows(file) if parquet else estimate_rows(file)
    if rows is not None:
        check_memory(file, rows, FALLBACK_BYTES_PER_ROW)
    if parquet:
        cols, skip, unit = _read_generic_parquet(file, column_map)
        first = 1  # values[i] is on row i + 1
    else:
        cols, skip = _read_generic_text(file, sep, header, roles)
        unit, first = "line", 1  # values[i] is on line i + 1
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
    seconds = seconds_from(file, cols["timestamp"], skip, first, unit, notes)
    if "rating" in cols:
        rating = cols["rating"].astype(str).str.strip()
        raise_first_bad_numbers(
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
