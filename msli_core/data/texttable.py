"""Delimited text tables: sniffing the header, a fast typed read, a diagnosis naming the first bad line.

A fixed MovieLens :class:`Layout` (delimiter, columns, encoding) is read by :func:`read_layout` with
pandas' typed C reader; when that read fails or its values break a rule (ids and timestamps non-negative
whole numbers, ratings finite and non-negative), the file is re-read as text and the first wrong line is
named in one :class:`MsliError` sentence (:func:`raise_first_bad_numbers`, also used for generic tables).
Messages about a file that is not a dataset name the file and what was expected, never its content.
"""

from __future__ import annotations

import codecs
import csv
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from msli_core.data.arrowread import read_layout_fast
from msli_core.data.files import HEAD_BYTES, DataFile
from msli_core.errors import MsliError

MAX_HEADER_BYTES = 1 << 20  # the longest first line (header) read; a longer one is refused as too long


# Byte-order marks of the wide Unicode encodings (UTF-32 first: its little-endian mark starts with UTF-16's).
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def wide_text(head: bytes) -> str | None:
    """How ``head`` (a file's first bytes) shows it is UTF-16 or UTF-32 text rather than binary data:
    "is UTF-16 text (...)" from a byte-order mark, "looks like UTF-16 text (...)" when, without a mark,
    nearly every other byte is 0 and no byte between them is (ASCII text saved as UTF-16); else None.

    >>> wide_text(codecs.BOM_UTF16_LE + "userId,movieId".encode("utf-16-le"))
    'is UTF-16 text (it starts with a UTF-16 byte-order mark)'
    >>> wide_text("userId,movieId".encode("utf-16-be"))
    'looks like UTF-16 text (every other byte is 0)'
    >>> wide_text(b"\\x00\\x01\\x02binary\\xff") is None
    True
    """
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            return f"is {name} text (it starts with a {name} byte-order mark)"
    if len(head) >= 8:
        even, odd = head[0::2], head[1::2]
        for zeros, chars in ((odd, even), (even, odd)):
            if zeros.count(0) >= 0.9 * len(zeros) and chars.count(0) == 0:
                return "looks like UTF-16 text (every other byte is 0)"
    return None


def check_text_head(file: DataFile, head: bytes, what: str, encoding: str = "utf-8") -> None:
    """Refuse a file whose first bytes are not text in an encoding the readers take: UTF-16/UTF-32 text
    is named as such (with how to save it in ``encoding``), anything else holding a NUL byte is binary."""
    wide = wide_text(head)
    if wide is not None:
        plain = "Latin-1" if codecs.lookup(encoding).name == "iso8859-1" else "UTF-8"
        how = " (in Excel: “CSV UTF-8”)" if plain == "UTF-8" else ""
        raise MsliError(
            f"{file.display} {wide}, but {what} must be {plain} text; save it again as {plain}{how} and "
            "load it."
        )
    if b"\x00" in head:
        raise MsliError(f"{file.display} is binary data, not text; it should be {what}.")


def sniff_text(file: DataFile, what: str) -> str:
    """The file's first non-blank line (decoded), read whole up to :data:`MAX_HEADER_BYTES`; refuses
    empty, UTF-16/UTF-32 and binary files (:func:`check_text_head`) and a first line longer than that."""
    with file.open() as fh:
        head = fh.read(HEAD_BYTES)
        if not head.strip():
            raise MsliError(f"{file.display} is empty; it should be {what}.")
        check_text_head(file, head, what)
        buf = head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n\f\v")
        while not re.search(rb"[\r\n]", buf) and len(buf) <= MAX_HEADER_BYTES:
            more = fh.read(HEAD_BYTES)
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


def split_header(line: str, sep: str) -> list[str]:
    """The names in a header line, quotes and surrounding spaces dropped.

    >>> split_header(' userId , "movieId",rating', ",")
    ['userId', 'movieId', 'rating']
    """
    return [f.strip().strip('"').strip() for f in next(csv.reader([line], delimiter=sep))] if line else []


def guess_delimiter(line: str) -> str | None:
    """The most frequent of tab, comma, semicolon and pipe in ``line``; None when it has none.

    >>> guess_delimiter("user;item;ts"), guess_delimiter("one column")
    (';', None)
    """
    counts = {sep: line.count(sep) for sep in ("\t", ",", ";", "|")}
    sep, n = max(counts.items(), key=lambda kv: kv[1])
    return sep if n else None


def _delimiter_name(sep: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", "::": "'::'"}.get(sep, repr(sep))


@dataclass(frozen=True)
class Layout:
    """A fixed MovieLens table layout."""

    what: str  # words for messages, e.g. "an ML-100K u.data ratings file"
    sep: str  # delimiter as written ("\t", "::", ",")
    columns: tuple[str, ...]  # the header (header=True) or the meaning of each field
    header: bool
    encoding: str
    floats: tuple[str, ...] = ()  # columns read as floats (ratings); the others are integers
    signed: tuple[str, ...] = ()  # integer columns that may be negative


def _check_layout_header(file: DataFile, layout: Layout, first_line: str) -> list[str]:
    """Refuse a wrong delimiter or wrong columns; returns the header's names (stripped) in file order."""
    fields = split_header(first_line, layout.sep) if layout.sep != "::" else first_line.split("::")
    if len(fields) == 1:
        other = guess_delimiter(first_line)
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


def parser_error(file: DataFile, err: Exception, what: str) -> MsliError:
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


def undecodable(file: DataFile, encoding: str, what: str) -> MsliError:
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


def _read_physical(file: DataFile, layout: Layout, header: list[str], **kwargs) -> pd.DataFrame:
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


def read_layout(file: DataFile, layout: Layout) -> pd.DataFrame:
    """Read a fixed-layout MovieLens table fast (typed C reader); on any doubt, diagnose line by line."""
    header = _check_layout_header(file, layout, sniff_text(file, layout.what))
    fast = read_layout_fast(file, layout, header)  # pyarrow, or None: then pandas, which names bad lines
    if fast is not None:
        return fast
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
        raise undecodable(file, layout.encoding, layout.what) from None
    except pd.errors.ParserError as err:
        raise parser_error(file, err, layout.what) from None
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


def _typed_ok(frame: pd.DataFrame, layout: Layout) -> bool:
    for col in layout.columns:
        values = frame[col].to_numpy()
        if col in layout.floats and not np.isfinite(values).all():
            return False
        if col not in layout.signed and (values < 0).any():
            return False
    return True


def _diagnose(file: DataFile, layout: Layout, header: list[str]) -> None:
    """Re-read as text, line numbers intact, and raise for the first line that is wrong."""
    try:
        text = _read_physical(file, layout, header, dtype=str, na_filter=False, skip_blank_lines=False)
    except UnicodeDecodeError:
        raise undecodable(file, layout.encoding, layout.what) from None
    except pd.errors.ParserError as err:
        raise parser_error(file, err, layout.what) from None
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
    raise_first_bad_numbers(
        file,
        {c: text[c] for c in layout.columns},
        blank,
        first_line,
        "line",
        integers=[c for c in layout.columns if c not in layout.floats],
        signed=list(layout.signed),
        what=layout.what,
    )


def raise_first_bad_numbers(
    file: DataFile,
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
