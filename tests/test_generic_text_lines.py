"""The generic CSV/TSV reader (msli_core.data.interactions) finds the header after blank lines and names
every bad row by the line an editor shows it on, also after a quoted field that holds line breaks.

An editor's line: counted from 1, the header and blank lines included, ``\\n``, ``\\r\\n`` or ``\\r``
ending a line (the rule of ``timestamps.file_lines``). A quoted value such as a title may hold line
breaks: its row then spans several lines, and every later row starts that many lines further down.
Each expected line number below is written out by hand and checked against the file's own lines.
"""

from __future__ import annotations

import re

import pytest

from msli_core.data import load_dataset
from msli_core.data.files import DataFile
from msli_core.data.interactions import _line_count, _record_lines
from msli_core.data.timestamps import file_lines
from msli_core.errors import MsliError

ENDS = {"LF": "\n", "CRLF": "\r\n", "CR": "\r"}
ROWS = ["u1,i1,1600000000", "u1,i2,1600000060", "u2,i1,1600000120"]


def _write(tmp_path, lines: list[str], end: str, name: str = "events.csv"):
    path = tmp_path / name
    path.write_bytes((end.join(lines) + end).encode())
    return path


def _sentence(path, **kwargs) -> str:
    with pytest.raises(MsliError) as err:
        load_dataset(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


def _editor_line(path, marker: str) -> int:
    """The line (from 1) an editor shows ``marker`` on: the file split at every line end."""
    lines = re.split(r"\r\n|\r|\n", path.read_bytes().decode())
    return next(k for k, line in enumerate(lines, 1) if marker in line)


# --------------------------------------------------------------------- blank lines before the header
@pytest.mark.parametrize("end", ENDS)
@pytest.mark.parametrize(
    "before", [[""], ["", ""], [" "], ["\t"], [" \t ", ""], ["", "  ", "\t\t", ""]], ids=repr
)
def test_a_header_after_blank_lines_is_the_header(tmp_path, end, before):
    path = _write(tmp_path, [*before, "user,item,when", *ROWS], ENDS[end])
    data = load_dataset(path, column_map={"timestamp": "when"})
    frame = data.interactions
    assert data.n_interactions == 3
    assert sorted(frame["timestamp"].tolist()) == [1600000000, 1600000060, 1600000120]
    # and a bad row after them is named by its line: blank lines and the header counted
    bad = _write(tmp_path, [*before, "user,item,when", *ROWS, "u3,i3,soon"], ENDS[end], "bad.csv")
    line = len(before) + 1 + len(ROWS) + 1
    assert _editor_line(bad, "soon") == line
    assert f"bad.csv, line {line}: the timestamp value 'soon' is not a number" in _sentence(
        bad, column_map={"timestamp": "when"}
    )


@pytest.mark.parametrize("end", ENDS)
def test_a_bad_header_after_blank_lines_names_the_header_s_line(tmp_path, end):
    path = _write(tmp_path, ["", " ", "user,user,timestamp", "a,b,1"], ENDS[end])
    assert "events.csv, line 3: the name of column 1 appears twice (again as column 2)" in _sentence(path)
    path = _write(tmp_path, ["", "1,2,3", "4,5,6"], ENDS[end])
    assert "events.csv has no header row (line 2 is data)" in _sentence(path)
    path = _write(tmp_path, ["\t", "", "", "one column", "x"], ENDS[end])
    assert "events.csv, line 4 has a single column" in _sentence(path)


def test_a_header_after_blank_lines_in_a_tsv(tmp_path):
    path = _write(tmp_path, ["", "user\titem\ttimestamp", "u1\ti1\t1600000000", "u2\ti2\t-5"], "\n", "e.tsv")
    assert "e.tsv, line 4: the timestamp value '-5' is negative" in _sentence(path)


# ---------------------------------------------------------------- quoted fields holding line breaks
HEADER = "user,item,title,timestamp,rating"
TITLE = '"A film,{end}in two lines"'  # one quoted value holding a line break (and a delimiter)
# error kind -> (the bad row, the words of its sentence); each bad row follows the multi-line title
KINDS = {
    "bad timestamp": ("u3,i3,x,tomorrow,4", "the timestamp value 'tomorrow' is not a number"),
    "missing user id": (" ,i3,x,1600000300,4", "the user id is missing"),
    "missing item id": ("u3,,x,1600000300,4", "the item id is missing"),
    "missing fields": ("u3,i3", "the timestamp is missing"),
    "timestamp out of range": ("u3,i3,x,99999999999,4", "the timestamp '99999999999' is out of range"),
    "bad rating": ("u3,i3,x,1600000300,lots", "the rating value 'lots' is not a number"),
}


@pytest.mark.parametrize("end", ENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_sentence_names_the_editor_s_line_after_a_multi_line_title(tmp_path, end, kind):
    row, words = KINDS[kind]
    e = ENDS[end]
    lines = [
        HEADER,  # line 1
        f"u1,i1,{TITLE.format(end=e)},1600000000,4",  # lines 2-3
        "u1,i2,plain,1600000060,3",  # line 4
        "",  # line 5
        f'u2,i1,"three{e}lines{e}long",1600000120,5',  # lines 6-8
        row,  # line 9
    ]
    path = _write(tmp_path, lines, e)
    assert _editor_line(path, row) == 9
    message = _sentence(path)
    assert message.startswith(f"{path}, line 9: {words}"), message


@pytest.mark.parametrize("end", ENDS)
def test_a_date_time_column_after_a_multi_line_title(tmp_path, end):
    e = ENDS[end]
    lines = [
        "", "user,item,title,timestamp",  # the header on line 2
        f'u1,i1,"a{e}b",2020-01-01T00:00:00',  # lines 3-4
        f'u2,i2,"c{e}{e}d",2020-01-02T00:00:00',  # lines 5-7
        "u3,i3,e,the second of May",  # line 8
    ]  # fmt: skip
    path = _write(tmp_path, lines, e)
    assert _editor_line(path, "the second of May") == 8
    assert "events.csv, line 8: the timestamp 'the second of May' is neither" in _sentence(path)


@pytest.mark.parametrize("end", ENDS)
def test_rows_after_a_multi_line_title_load_unshifted(tmp_path, end):
    e = ENDS[end]
    lines = [
        HEADER,
        f"u1,i1,{TITLE.format(end=e)},1600000000,4",
        "u1,i2,x,1600000060,3",
        "u2,i1,y,1600000120,5",
    ]
    data = load_dataset(_write(tmp_path, lines, e))
    frame = data.interactions.sort_values("timestamp")
    assert frame["timestamp"].tolist() == [1600000000, 1600000060, 1600000120]
    assert frame["rating"].tolist() == [4.0, 3.0, 5.0]


@pytest.mark.parametrize("end", ENDS)
def test_a_quote_never_closed_names_the_line_its_row_starts_on(tmp_path, end):
    e = ENDS[end]
    lines = [HEADER, f'u1,i1,"a{e}b",1600000000,4', "u1,i2,x,1600000060,3", 'u2,i1,"unclosed,1600000120,5']
    path = _write(tmp_path, lines, e)
    assert _editor_line(path, "unclosed") == 5
    assert _sentence(path).endswith(
        "cannot be parsed as an interactions table with a header row (user, item, timestamp[, rating]): "
        'the row on line 5 opens a quoted field that is never closed; add its closing quote (") or '
        "remove the opening one."
    )


# ------------------------------------------------------------------------------------ one numbering
@pytest.mark.parametrize("end", ENDS)
def test_record_lines_agree_with_file_lines_where_no_field_holds_a_line_break(tmp_path, end):
    """Without quoted line breaks the reader's line of each row is file_lines' line of that row (the one
    rule): blank lines before the header, between rows and at the end, mixed line ends too."""
    e = ENDS[end]
    path = _write(tmp_path, ["", " \t", "user,item,timestamp", "a,b,1", "", "c,d,2", "\t", "e,f,3", ""], e)
    file = DataFile(str(path), path=path)
    starts = _record_lines(file, ",")
    assert starts.tolist() == list(range(1, 10)) and _line_count(file) == 9
    data_records = [3, 5, 7]  # records (from 0) of the data rows a,b / c,d / e,f after the header (2)
    assert [int(starts[r]) for r in data_records] == [file_lines(file, header=True)(k) for k in range(3)]
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes(b"\r\nuser,item,timestamp\ra,b,1\r\n\nc,d,2")
    file = DataFile(str(mixed), path=mixed)
    assert _record_lines(file, ",").tolist() == [1, 2, 3, 4, 5] and _line_count(file) == 5
    assert int(_record_lines(file, ",")[4]) == file_lines(file, header=True)(1) == 5


def test_record_lines_of_a_quoted_line_break_and_a_bom(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes(b'\xef\xbb\xbf"user",item\r\n"a\r\nb",c\r\n"x""y\nz",w\nlast,one')
    file = DataFile(str(path), path=path)
    assert _line_count(file) == 6
    assert _record_lines(file, ",").tolist() == [1, 2, 4, 6]
    assert _record_lines(file, ",", records=2).tolist() == [1, 2]


# ------------------------------------------------------------------- more fields than the header names
@pytest.mark.parametrize("end", ENDS)
def test_a_row_with_a_field_past_the_header_is_refused_by_its_line(tmp_path, end):
    """pandas drops a record's fields past the header's columns without a word; a non-empty one means a
    shifted row (an unquoted delimiter inside a field) or a column the header does not name, so the
    table is refused on that row's line (after a quoted line break too), and nothing is dropped."""
    e = ENDS[end]
    lines = ["user,item,timestamp", f'u1,"i{e}1",1600000000', "u1,i2,1600000060", "u2,Heat, The,1600000120"]
    path = _write(tmp_path, lines, e)
    assert _editor_line(path, "Heat") == 5
    assert _sentence(path).endswith(
        ", line 5 has more fields than the header names (3); quote a field that contains the delimiter, "
        "or name the extra column in the header."
    )


def test_a_trailing_delimiter_is_no_extra_field(tmp_path):
    """An empty field after the last column (a spreadsheet's trailing comma) holds nothing to drop."""
    path = _write(tmp_path, ["user,item,timestamp", *(f"{row}," for row in ROWS), "u3,i3,1600000180, "], "\n")
    data = load_dataset(path)
    assert data.n_interactions == 4
    assert sorted(data.interactions["timestamp"].tolist()) == [1600000000, 1600000060, 1600000120, 1600000180]
