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
