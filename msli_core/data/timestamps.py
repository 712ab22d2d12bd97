"""Timestamps of a generic interactions table: unix seconds (unit detected) or ISO 8601, range-checked.

Numbers are unix seconds, or milliseconds/microseconds/nanoseconds when the column's *median* is above
1e11/1e14/1e17 (so one outlier never sets the unit), with a note; text is ISO 8601 date-times, converted
to unix seconds (UTC when no offset is given); one form per column. Every timestamp must fall between
1970 and 2262-04-11 (:data:`MAX_TIMESTAMP_S`, the last day pandas' nanosecond datetimes can hold).

That range holds for every dataset, whatever its layout, and :func:`check_seconds_range` is its one
check and its one sentence: :func:`seconds_from` calls it for a generic table (where it knows the unit
the column was read in), :func:`msli_core.data.dataset.build_dataset` for every layout, so a MovieLens
file with a timestamp in microseconds, or past year 2262 (year 10000 included), is refused with one
sentence instead of failing later where the times are shown as dates. The sentence names the place as
``line N``, the file's line as an editor numbers it, whenever the rows come from a text file
(:func:`file_lines` finds it for the MovieLens layouts, whose fast readers drop blank lines), and as
``row N`` (the N-th data row) where there is no file line: a Parquet table, a frame built in code.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pandas as pd

from msli_core.data.files import DataFile
from msli_core.data.texttable import raise_first_bad_numbers
from msli_core.errors import MsliError

# The latest date a timestamp may hold: pandas' nanosecond datetimes end on 2262-04-11.
MAX_TIMESTAMP_S = int(pd.Timestamp.max.as_unit("s").timestamp()) - 1
_UNITS = ("seconds", "milliseconds", "microseconds", "nanoseconds")
_LAST_DATE = "2262-04-11"  # the day MAX_TIMESTAMP_S falls on


def _datetimes_to_seconds(stamps: pd.Series) -> np.ndarray:
    """Unix seconds (float) of tz-aware or naive (read as UTC) datetimes of any resolution; NaT -> nan.

    >>> _datetimes_to_seconds(pd.Series(pd.to_datetime(["1970-01-02", None]))).tolist()
    [86400.0, nan]
    >>> _datetimes_to_seconds(pd.Series(pd.to_datetime(["1970-01-01T01:00:00+01:00"]))).tolist()
    [0.0]
    """
    if getattr(stamps.dtype, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    raw = stamps.to_numpy()
    seconds = raw.astype("datetime64[s]").astype(np.int64).astype(np.float64)
    return np.where(np.isnat(raw), np.nan, seconds)


def unit_from_median(median: float) -> tuple[int, str | None]:
    """(k, note): numbers are unix seconds / 1000**k (seconds, milliseconds, …), from the column's median;
    the note says so when k > 0.

    >>> unit_from_median(1.5e9), unit_from_median(1.5e12)[0], unit_from_median(1.5e18)[0]
    ((0, None), 1, 3)
    """
    k = 0
    while k < 3 and median > 1e11 * 1000.0**k:
        k += 1
    if not k:
        return 0, None
    above = f"1e{11 + 3 * (k - 1)}"
    return k, (
        f"timestamps read as unix {_UNITS[k]} (the column's median is above {above}), converted to seconds"
    )


def seconds_from(
    file: DataFile, values: pd.Series, skip: np.ndarray, first: int, unit: str, notes: list[str]
) -> np.ndarray:
    """Unix seconds from numbers or ISO 8601 date-times (one form for the whole column).

    Numbers are unix seconds, or milliseconds/microseconds/nanoseconds when the column's *median* is
    above 1e11/1e14/1e17 (so one outlier never changes the unit of the others). Every timestamp must
    then fall between 1970 and 2262-04-11 (:func:`check_seconds_range`, the check of every layout).
    ``first``/``unit``: ``values[i]`` is on ``unit`` ``i + first`` ("line": the file's line; "row": a
    Parquet row, counting from 1)."""
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
            raise_first_bad_numbers(
                file, {"timestamp": text}, skip, first, unit, integers=[], signed=[],
                what="an interactions table",
            )  # fmt: skip
            k, note = unit_from_median(float(np.median(numeric[~skip])))
            seconds = numeric / 1000.0**k
            if note:
                notes.append(note)
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
    column = text if text is not None else values  # a datetime column: each value shown as its date
    check_seconds_range(
        seconds, file.display, line_of=(lambda row: row + first) if unit == "line" else None, skip=skip,
        written=lambda row: str(column.iloc[row]), unit=k, dates=not numbers,
    )  # fmt: skip
    return np.floor(np.where(skip, 0, seconds)).astype(np.int64)


def check_seconds_range(
    seconds: np.ndarray,
    source: str,
    *,
    line_of: Callable[[int], int] | None = None,
    skip: np.ndarray | None = None,
    written: Callable[[int], str] | None = None,
    unit: int = 0,
    dates: bool = False,
) -> None:
    """Refuse unix seconds outside 1970 .. 2262-04-11 (:data:`MAX_TIMESTAMP_S`), so each time can be shown
    as a date: the one range check, and the one sentence, of every reader (:func:`seconds_from` for a
    generic table, :func:`msli_core.data.dataset.build_dataset` for every layout).

    ``seconds``: (n,) unix seconds (int64, or float64 before flooring) in the file's row order; ``source``:
    how the sentence names the file. The first row out of range (either way) is named in one numbering,
    the one a user can find: ``line N``, the line of the file as an editor numbers it (counting from 1,
    the header line and blank lines included), given by ``line_of(row)`` whenever the rows come from a
    text file; without it ``row N``, the N-th data row counting from 1 (a Parquet table, a frame built in
    code, generated data: there is no file line). ``skip``: (n,) rows to pass over (the blank lines a
    reader kept so that row i + first is line i + first). ``written(row)``: the value as written in the
    file, shown instead of the number; ``unit``: the k of :func:`unit_from_median` the numbers were
    read in (0: seconds); ``dates``: the column held date-times, not numbers.

    >>> check_seconds_range(np.array([0, MAX_TIMESTAMP_S]), "ok.csv")
    >>> check_seconds_range(np.array([964982703, 1534795915000000]), "ratings.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    msli_core.errors.MsliError: ratings.csv, row 2: the timestamp '1534795915000000' is out of range: ...
    """
    if not len(seconds):
        return
    with np.errstate(invalid="ignore"):  # nan in a skipped row
        late, early = seconds > MAX_TIMESTAMP_S, seconds < 0
    if skip is not None:
        late, early = late & ~skip, early & ~skip
    if not (late.any() or early.any()):
        return
    row = int(np.argmax(late | early))
    place = f"line {line_of(row)}" if line_of is not None else f"row {row + 1}"
    value = str(int(seconds[row])) if written is None else written(row).strip()[:40]
    shown = repr(value)  # quoted, as in every sentence naming a value of a file
    where = f"{source}, {place}: the timestamp {shown}"
    if early[row]:
        raise MsliError(f"{where} is before 1970 (negative unix time); timestamps must be non-negative.")
    if dates:
        read_as, fix = "it", "fix the row"
    elif unit == 0:
        read_as = "read as unix seconds like the rest of the column, it"
        fix = "fix the row (a time in milliseconds or microseconds must be converted to seconds)"
    else:  # a generic column whose median says milliseconds or finer
        read_as = f"read as unix {_UNITS[unit]} like the rest of the column (from its median), it"
        fix = f"fix the row (every timestamp of the column must be in {_UNITS[unit]})"
    raise MsliError(
        f"{where} is out of range: {read_as} falls after {_LAST_DATE}, the latest date this tool can hold; "
        f"{fix}."
    )


def file_lines(file: DataFile, header: bool) -> Callable[[int], int]:
    """``line_of`` for :func:`check_seconds_range` of a table read without its blank lines (the MovieLens
    layouts): data row i (from 0) -> its line in ``file`` (from 1), the header line and blank lines
    counted, as an editor numbers them. Blank: nothing but spaces and tabs (the lines pandas and pyarrow
    skip); the header is the first line that is not blank. Line ends: ``\\n``, ``\\r\\n`` or ``\\r``.
    Reads the file only when called (on the way to an error), up to the row asked for."""

    def line_of(row: int) -> int:
        wanted = row + (1 if header else 0)  # the non-blank line sought, counting from 0
        with file.open() as fh:  # latin-1: one character per byte, so no line fails to decode
            text = io.TextIOWrapper(fh, encoding="latin-1", newline=None)  # universal line ends
            seen = -1
            for number, line in enumerate(text, start=1):
                if line.strip(" \t\r\n"):
                    seen += 1
                    if seen == wanted:
                        return number
        return row + 1 + (1 if header else 0)  # pragma: no cover - the file changed under the reader

    return line_of
