"""One timestamp range check (timestamps.check_seconds_range), one sentence, one numbering.

A timestamp past 2262-04-11 is the same sentence on every load path (u.data, ratings.dat, ratings.csv,
a zip member, a generic CSV with a column map, a generic TSV, Parquet, a frame built in code), naming
the place as ``line N`` (the file's line as an editor numbers it: header and blank lines counted) where
the rows come from a text file, and ``row N`` (the N-th data row) where there is no file line.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest

from msli_core.data import load_dataset
from msli_core.data.dataset import build_dataset
from msli_core.data.files import DataFile
from msli_core.data.timestamps import MAX_TIMESTAMP_S, check_seconds_range, file_lines
from msli_core.errors import MsliError

BIG = 1534795915000000  # microseconds, where seconds belong
GOOD = [(1, 10, 4, 1600000000), (1, 11, 3, 1600000060), (2, 10, 5, 1600000120)]
BAD = (2, 11, 4, BIG)


def sentence(source: str, place: str, stamp: int = BIG) -> str:
    return (
        f"{source}, {place}: the timestamp '{stamp}' is out of range: read as unix seconds like the rest of "
        "the column, it falls after 2262-04-11, the latest date this tool can hold; fix the row (a time in "
        "milliseconds or microseconds must be converted to seconds)."
    )


def _lines(rows, fmt: str) -> list[str]:
    return [fmt.format(*row) for row in rows]


def _text(header: str | None, rows: list[str]) -> str:
    """The good rows, a blank line, then the bad row: the bad row is on line 5, 6 with a header."""
    body = [*rows[:3], "", *rows[3:]]
    return "\n".join(([header] if header is not None else []) + body) + "\n"


# path -> (the file's name, its text), every layout with the bad row after a blank line
LAYOUTS = {
    "u.data": ("ml-100k/u.data", _text(None, _lines([*GOOD, BAD], "{}\t{}\t{}\t{}")), 5),
    "ratings.dat": ("ml-1m/ratings.dat", _text(None, _lines([*GOOD, BAD], "{}::{}::{}::{}")), 5),
    "ratings.csv": (
        "ml-latest-small/ratings.csv",
        _text("userId,movieId,rating,timestamp", _lines([*GOOD, BAD], "{},{},{}.0,{}")),
        6,
    ),
    "a generic CSV with a column map": (
        "events.csv",
        _text("who,what,stars,when", _lines([*GOOD, BAD], "u{},i{},{},{}")),
        6,
    ),
    "a generic TSV": ("events.tsv", _text("user\titem\ttimestamp", _lines([*GOOD, BAD], "{0}\t{1}\t{3}")), 6),
}
COLUMN_MAP = {"user": "who", "item": "what", "rating": "stars", "timestamp": "when"}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_timestamp_past_2262_is_one_sentence_on_every_text_path(tmp_path, layout):
    name, text, line = LAYOUTS[layout]
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    assert text.splitlines()[line - 1].endswith(str(BIG))  # the line an editor shows it on
    target = path.parent if "/" in name else path
    column_map = COLUMN_MAP if "column map" in layout else None
    with pytest.raises(MsliError) as err:
        load_dataset(target, column_map=column_map)
    assert str(err.value) == sentence(str(path), f"line {line}")
    # the same file inside a zip archive: the member's line
    if "/" in name:
        archive = tmp_path / "upload.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.write(path, name)
        with pytest.raises(MsliError) as err:
            load_dataset(archive)
        assert str(err.value) == sentence(f"{archive}:{name}", f"line {line}")


def test_parquet_and_a_frame_in_code_have_no_file_line_so_the_sentence_says_row(tmp_path):
    frame = pd.DataFrame([*GOOD, BAD], columns=["user", "item", "rating", "timestamp"])
    path = tmp_path / "events.parquet"
    frame.to_parquet(path)
    with pytest.raises(MsliError) as err:
        load_dataset(path)
    assert str(err.value) == sentence(str(path), "row 4")  # the 4th data row
    with pytest.raises(MsliError) as err:
        build_dataset(frame, items_meta=None, format="interactions", source="my frame")
    assert str(err.value) == sentence("my frame", "row 4")


@pytest.mark.parametrize(
    ("case", "text", "header", "line"),
    [
        ("no blank lines", "a\nb\nBAD\n", False, 3),
        ("blank and space-only lines", "a\n\n  \t\nb\nBAD\n", False, 5),
        ("a header after blank lines", "\n\nhead\na\n\nBAD\n", True, 6),
        ("CRLF line ends", "head\r\na\r\n\r\nBAD\r\n", True, 4),
        ("CR line ends", "head\ra\r\rBAD\r", True, 4),
        ("no final line end", "head\na\nBAD", True, 3),
    ],
)
def test_file_lines_counts_lines_as_an_editor_does(tmp_path, case, text, header, line):
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode())
    data_rows = [x for x in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if x.strip()]
    row = data_rows.index("BAD") - (1 if header else 0)
    assert file_lines(DataFile(str(path), path=path), header)(row) == line, case


def test_movielens_lines_are_true_with_windows_line_ends_and_blank_lines(tmp_path):
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    rows = _lines([*GOOD, BAD], "{},{},{}.0,{}")
    text = "\r\n".join(["", "userId,movieId,rating,timestamp", rows[0], "", "", *rows[1:]]) + "\r\n"
    (folder / "ratings.csv").write_bytes(text.encode())
    with pytest.raises(MsliError) as err:
        load_dataset(folder)
    assert str(err.value) == sentence(str(folder / "ratings.csv"), "line 8")


def test_the_one_check_at_its_edges():
    check_seconds_range(np.array([], dtype=np.int64), "empty.csv")
    check_seconds_range(np.array([0, MAX_TIMESTAMP_S], dtype=np.int64), "ok.csv")
    with pytest.raises(MsliError) as err:
        check_seconds_range(np.array([5, -1, MAX_TIMESTAMP_S + 1], dtype=np.int64), "x.csv")
    assert str(err.value) == (
        "x.csv, row 2: the timestamp '-1' is before 1970 (negative unix time); timestamps must be "
        "non-negative."
    )
    with pytest.raises(MsliError) as err:  # a skipped (blank) row is passed over; lines from line_of
        check_seconds_range(
            np.array([5.0, np.nan, MAX_TIMESTAMP_S + 1.0]), "x.csv", skip=np.array([False, True, False]),
            line_of=lambda row: row + 2, written=lambda row: ["5", "", "9e99"][row],
        )  # fmt: skip
    assert str(err.value).startswith(
        "x.csv, line 4: the timestamp '9e99' is out of range: read as unix seconds"
    )
    with pytest.raises(MsliError) as err:  # a column read in milliseconds says so
        check_seconds_range(np.array([1e10]), "ms.csv", unit=1, written=lambda _: "1e13")
    assert str(err.value) == (
        "ms.csv, row 1: the timestamp '1e13' is out of range: read as unix milliseconds like the rest of the "
        "column (from its median), it falls after 2262-04-11, the latest date this tool can hold; fix the "
        "row (every timestamp of the column must be in milliseconds)."
    )


def test_dates_past_2262_or_before_1970_are_shown_as_written(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user,item,timestamp\nu1,a,2020-01-01\nu1,b,9999-12-31T23:59:59\n")
    with pytest.raises(MsliError) as err:
        load_dataset(path)
    assert str(err.value) == (
        f"{path}, line 3: the timestamp '9999-12-31T23:59:59' is out of range: it falls after 2262-04-11, "
        "the latest date this tool can hold; fix the row."
    )
    parquet = tmp_path / "events.parquet"
    stamps = np.array(["2020-01-01", "1960-01-01", "2020-01-02"], "datetime64[s]")
    pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "z"], "timestamp": stamps}).to_parquet(parquet)
    with pytest.raises(MsliError) as err:
        load_dataset(parquet)
    assert str(err.value) == (
        f"{parquet}, row 2: the timestamp '1960-01-01 00:00:00' is before 1970 (negative unix time); "
        "timestamps must be non-negative."
    )


def test_a_timestamp_in_range_loads_on_every_path(tmp_path):
    """The check refuses only what is out of range: the last second of 2262-04-11 loads everywhere."""
    for layout, (name, text, _) in LAYOUTS.items():
        path = tmp_path / layout.replace(" ", "_") / name
        path.parent.mkdir(parents=True)
        path.write_text(text.replace(str(BIG), str(MAX_TIMESTAMP_S)))
        column_map = COLUMN_MAP if "column map" in layout else None
        data = load_dataset(path.parent if "/" in name else path, column_map=column_map)
        assert int(data.interactions["timestamp"].max()) == MAX_TIMESTAMP_S, layout
