"""Bad data input, one table per class (issue 9): zip bombs, non-regular files, timestamps at the edges,
headers, tables too small to evaluate, files that are not datasets. Each case ends with one MsliError
sentence naming the file (or ``msli`` exit 2 with one line on stderr), or loads with a validation note
where accepting is right; nothing hangs, nothing expands in memory, no file content is echoed.
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _fixtures import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msli_core.cli import main
from msli_core.data import load_dataset
from msli_core.errors import MsliError

HEADER = "userId,movieId,rating,timestamp\n"


def _cases(rows: list[tuple]) -> list:
    """Table rows (name, *values) as pytest params named by their first field."""
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


def _sentence(path: Path | str, **kwargs) -> str:
    """The MsliError message of loading ``path``: one line, naming the file."""
    with pytest.raises(MsliError) as err:
        load_dataset(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and message.endswith("."), message
    assert Path(path).name in message, message
    return message


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# ------------------------------------------------------------------------------------------- zip bombs


def _deflate_zip(path: Path, members: dict[str, tuple[bytes, bytes, int]]) -> Path:
    """A real zip whose members expand to ``size`` bytes (``head`` then ``line`` repeated), built in
    well under a second: one block of about 1 MiB is deflated once (after a full flush the compressor's output
    for the same input is the same) and repeated, instead of compressing every byte."""
    block_size = 1 << 20
    entries, body = [], bytearray()
    for name, (head, line, size) in members.items():
        block = line * (block_size // len(line)) if line else b""  # whole lines only
        n_blocks = -(-(size - len(head)) // len(block)) if block and size > len(head) else 0
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        first = co.compress(head) + co.flush(zlib.Z_FULL_FLUSH)
        packed = co.compress(block) + co.flush(zlib.Z_FULL_FLUSH)
        assert packed == co.compress(block) + co.flush(zlib.Z_FULL_FLUSH)
        data = first + packed * n_blocks + co.flush()
        crc = zlib.crc32(head)
        for _ in range(n_blocks):
            crc = zlib.crc32(block, crc)
        expanded = len(head) + n_blocks * len(block)
        raw = name.encode()
        offset = len(body)
        body += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), expanded, len(raw), 0
        )
        body += raw + data
        entries.append((raw, crc, len(data), expanded, offset))
    central = bytearray()
    for raw, crc, packed_size, expanded, offset in entries:
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, packed_size, expanded, len(raw),
            0, 0, 0, 0, 0, offset,
        )  # fmt: skip
        central += raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(body), 0)
    path.write_bytes(bytes(body + central + end))
    return path


RATING_LINE = b"1,2,3.5,1600000000\n"
U_DATA = b"".join(f"{u}\t{i}\t3\t{1_600_000_000 + 60 * i}\n".encode() for u in (1, 2) for i in (1, 2, 3))


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


ZIP_CASES = [
    # (case, members, environment, fragments of the message)
    (
        "a 3 MB zip expanding to a 1.2 GB ratings.csv",
        {"ml-latest/ratings.csv": (HEADER.encode(), RATING_LINE, 1_200_000_000)},
        {},
        ("ratings.csv", "would expand to 1,14", "1,024 MB per zip member", "MSLI_MAX_EXPANDED_MB="),
    ),
    (
        "a zip holding a 900 MB u.item beside a real u.data",
        {
            "ml-100k/u.data": (U_DATA, b"", 0),
            "ml-100k/u.item": (b"", b"1|Film (1995)|" + b"0|" * 22 + b"\n", 900_000_000),
        },
        {},
        ("u.item", "MB", "limit", "MSLI_MAX_"),
    ),
    (
        "a member over a lowered size limit",
        {"ratings.csv": (HEADER.encode(), RATING_LINE, 6 << 20)},
        {"MSLI_MAX_EXPANDED_MB": "4"},
        ("ratings.csv", "above the limit of 4 MB", "MSLI_MAX_EXPANDED_MB=7"),
    ),
    (
        "a member over the compression ratio limit",
        {"data/ratings.csv": (HEADER.encode(), RATING_LINE, 12 << 20)},
        {},
        ("ratings.csv", "times", "above the limit of 200 times", "MSLI_MAX_ZIP_RATIO="),
    ),
    (
        "a limit in the environment that is not a number",
        {"ratings.csv": (HEADER.encode() + RATING_LINE, b"", 0)},
        {"MSLI_MAX_EXPANDED_MB": "lots"},
        ("MSLI_MAX_EXPANDED_MB", "not a positive number"),
    ),
]


@pytest.mark.parametrize(("members", "env", "fragments"), _cases(ZIP_CASES))
def test_zip_bombs_are_refused_before_they_expand(tmp_path, monkeypatch, members, env, fragments):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    archive = _deflate_zip(tmp_path / "upload.zip", members)
    assert archive.stat().st_size < 5_000_000
    before = _maxrss_mb()
    with pytest.raises(MsliError) as err:
        load_dataset(archive)
    message = str(err.value)
    assert "\n" not in message and message.endswith("."), message
    assert "upload.zip" in message or "MSLI_MAX_EXPANDED_MB" in env, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    # a sanity check on memory, not a timing: nothing near the expanded size was ever held
    assert _maxrss_mb() - before < 300, "the member was expanded in memory"
    assert list(tmp_path.iterdir()) == [archive], "nothing was extracted"


def test_a_member_that_understates_its_size_never_expands_beyond_it(tmp_path):
    """zipfile yields at most the recorded size (the limits check that), then fails the CRC: a lie about
    the size is a damaged archive, not a way past the limits."""
    archive = _deflate_zip(tmp_path / "lie.zip", {"ratings.csv": (HEADER.encode(), RATING_LINE, 50 << 20)})
    raw = bytearray(archive.read_bytes())
    struct.pack_into("<I", raw, raw.index(b"PK\x03\x04") + 22, 1000)  # local header: uncompressed size
    struct.pack_into("<I", raw, raw.index(b"PK\x01\x02") + 24, 1000)  # central directory: the same
    archive.write_bytes(bytes(raw))
    before = _maxrss_mb()
    assert "cannot be read from its zip archive" in _sentence(archive)
    assert _maxrss_mb() - before < 300


def test_raising_the_limits_lets_a_genuine_archive_through(tmp_path, monkeypatch):
    archive = _deflate_zip(tmp_path / "big.zip", {"ratings.csv": (HEADER.encode(), RATING_LINE, 12 << 20)})
    monkeypatch.setenv("MSLI_MAX_ZIP_RATIO", "100000")
    data = load_dataset(archive)  # 12 MB of one repeated rating: one interaction, duplicates dropped
    assert data.n_interactions == 1
    assert any("duplicate" in note for note in data.notes)


def test_an_oversized_metadata_file_on_disk_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_MAX_METADATA_MB", "1")
    folder = tmp_path / "ml-100k"
    _write(folder / "u.data", U_DATA)
    _write(folder / "u.item", b"1|Film (1995)|" + b"0|" * 22 + b"\n" * (2 << 20))
    message = _sentence(folder)
    assert "u.item" in message and "MSLI_MAX_METADATA_MB" in message


# ------------------------------------------------------------------------------------ non-regular files


def _fifo(folder: Path) -> Path:
    path = folder / "ratings.csv"
    os.mkfifo(path)
    return path


def _socket(folder: Path) -> Path:
    short = Path(tempfile.mkdtemp(prefix="msli-sock-", dir="/tmp"))  # AF_UNIX paths are short
    path = short / "events.csv"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    folder.joinpath("keep-open").write_text("")  # the socket is closed with the test's tmp folder
    _SOCKETS.append(sock)
    return path


_SOCKETS: list[socket.socket] = []


def _link_to_fifo(folder: Path) -> Path:
    target = _fifo(folder)
    link = folder / "data.csv"
    link.symlink_to(target)
    return link


NON_REGULAR = [
    ("a FIFO", _fifo, "is a FIFO (named pipe), not a regular file or folder"),
    ("a socket", _socket, "is a socket, not a regular file or folder"),
    ("a symbolic link to a FIFO", _link_to_fifo, "is a FIFO (named pipe)"),
    ("/dev/zero", lambda _: Path("/dev/zero"), "is a character device, not a regular file or folder"),
    ("/dev/null", lambda _: Path("/dev/null"), "is a character device"),
]


@pytest.mark.parametrize(("make", "fragment"), _cases(NON_REGULAR))
def test_non_regular_files_are_refused_without_being_opened(tmp_path, make, fragment):
    path = make(tmp_path)
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    assert fragment in _sentence(path)
    for sock in _SOCKETS:
        sock.close()
    _SOCKETS.clear()


def test_a_fifo_inside_a_folder_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "u.data")  # would block forever if it were opened
    assert "has no ratings file" in _sentence(tmp_path)


def test_a_proc_file_of_unknown_size_is_refused():
    path = Path("/proc/self/status")
    if not path.exists():
        pytest.skip("no /proc here")
    assert "0 bytes" in _sentence(path)


def test_cli_refuses_a_fifo_with_one_line_and_exit_2(tmp_path, capsys):
    path = _fifo(tmp_path)
    code = main(["data", "inspect", str(path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err and "ratings.csv" in err and "FIFO" in err


# ------------------------------------------------------------------------------------------- timestamps


def _events(stamps: list[str]) -> str:
    return "user,item,timestamp\n" + "".join(f"u1,i{k},{s}\n" for k, s in enumerate(stamps))


SECONDS = ["1600000000", "1600000060", "1600000120", "1600000180"]
TIMESTAMP_CASES = [
    # (case, timestamps, fragment of the message)
    (
        "int64 max among seconds",
        [*SECONDS, "9223372036854775807"],
        "line 6: the timestamp '9223372036854775807' is out of range",
    ),
    (
        "1e30 among seconds",
        ["1600000000", "1e30", "1600000120"],
        "line 3: the timestamp '1e30' is out of range",
    ),
    ("1e30 alone", ["1e30"], "is out of range"),
    ("a value in ms among seconds", [*SECONDS, "1600000240000"], "read as unix seconds like the rest"),
    (
        "ISO 0001-01-01",
        ["0001-01-01", "2020-01-01", "2020-01-02"],
        "line 2: the timestamp '0001-01-01' is before",
    ),
    ("ISO 9999-12-31", ["2020-01-01", "9999-12-31T23:59:59"], "falls after 2262-04-11"),
    ("negative seconds", ["-5", "10", "20"], "line 2: the timestamp value '-5' is negative"),
    ("a date among numbers", ["10", "2020-01-01", "20"], "'2020-01-01' is a date-time while most"),
    ("a number among dates", ["2020-01-01", "2020-01-02", "20"], "'20' is a number while most"),
    ("nan", ["nan", "10", "20"], "'nan' is not a number"),
    ("inf", ["10", "inf"], "'inf' is not finite"),
    ("every timestamp empty", ["", "", ""], "every timestamp is missing"),
    ("one timestamp empty", ["10", "", "20"], "line 3: the timestamp is missing"),
    ("text", ["yesterday", "today"], "neither unix seconds nor an ISO 8601 date-time"),
]


@pytest.mark.parametrize(("stamps", "fragment"), _cases(TIMESTAMP_CASES))
def test_timestamps_at_the_edges_are_one_true_sentence(tmp_path, stamps, fragment):
    assert fragment in _sentence(_write(tmp_path / "events.csv", _events(stamps)))


def test_one_outlier_does_not_change_the_unit_of_the_others(tmp_path):
    """Unit detection follows the column's median: milliseconds throughout are read as such, with a note."""
    millis = [str(int(s) * 1000) for s in SECONDS]
    data = load_dataset(_write(tmp_path / "events.csv", _events(millis)))
    assert data.interactions["timestamp"].tolist() == [int(s) for s in SECONDS]
    assert any("milliseconds" in note for note in data.notes)
    nanos = [str(int(s) * 10**9) for s in SECONDS]  # ns since 1970 fit in int64 up to 2262
    data = load_dataset(_write(tmp_path / "ns.csv", _events(nanos)))
    assert data.interactions["timestamp"].tolist() == [int(s) for s in SECONDS]


PARQUET_CASES = [
    (
        "all null datetimes",
        pd.Series([None, None, None], dtype="datetime64[ns]"),
        "every timestamp is missing",
    ),
    ("all null floats", pd.Series([np.nan] * 3), "every timestamp is missing"),
    ("all null objects", pd.Series([None] * 3, dtype=object), "every timestamp is missing"),
    (
        "one null datetime",
        pd.to_datetime(pd.Series(["2020-01-01", None, "2020-01-03"])),
        "row 2: the timestamp is missing",
    ),
    ("int64 max", pd.Series([1_600_000_000, np.iinfo(np.int64).max, 1_600_000_100]), "is out of range"),
    ("negative ints", pd.Series([-1, 5, 6]), "is negative"),
    (
        "dates before 1970",
        pd.to_datetime(pd.Series(["1960-01-01", "2020-01-01", "2020-01-02"])),
        "before 1970",
    ),
    (
        "dates in year 1",
        pd.Series(np.array(["0001-01-01", "2020-01-01", "2020-01-02"], "datetime64[s]")),
        "before 1970",
    ),
    (
        "dates in year 9999",
        pd.Series(np.array(["2020-01-01", "9999-12-31", "2020-01-02"], "datetime64[s]")),
        "falls after 2262-04-11",
    ),
]


@pytest.mark.parametrize(("stamps", "fragment"), _cases(PARQUET_CASES))
def test_parquet_timestamps_at_the_edges(tmp_path, stamps, fragment):
    path = tmp_path / "events.parquet"
    pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "z"], "timestamp": stamps}).to_parquet(path)
    assert fragment in _sentence(path)


STAMP_TEXT = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.text(alphabet="0123456789-+:.TZe ", max_size=25),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stamps=st.lists(STAMP_TEXT, min_size=1, max_size=6))
def test_any_timestamp_text_loads_or_is_a_sentence(stamps):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "events.csv", _events([s.replace(",", "") for s in stamps]))
        try:
            data = load_dataset(path)
        except MsliError as err:
            assert str(err) and "\n" not in str(err) and "events.csv" in str(err)
        else:
            ts = data.interactions["timestamp"].to_numpy()
            assert (ts >= 0).all() and (ts <= 2**34).all()
            data.summary()  # the statistics of an accepted table are computable (dates in range)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.none(), min_size=1, max_size=5)
    | st.lists(st.floats() | st.none(), min_size=1, max_size=5)
)
def test_any_parquet_timestamp_loads_or_is_a_sentence(values):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.parquet"
        n = len(values)
        ints = all(isinstance(v, int) or v is None for v in values)
        column = pd.array(values, dtype="Int64") if ints else pd.Series(values, dtype="float64")  # fmt: skip
        pd.DataFrame(
            {"user": ["a"] * n, "item": [f"i{k}" for k in range(n)], "timestamp": column}
        ).to_parquet(path)
        try:
            load_dataset(path).summary()
        except MsliError as err:
            assert "events.parquet" in str(err) and "\n" not in str(err)


# ---------------------------------------------------------------------------------------------- headers


def _wide(n: int, tail: str = "user,item,timestamp") -> str:
    names = ",".join(f"c{k}" for k in range(n)) + "," + tail
    row = ",".join("0" for _ in range(n)) + ",u1,i1,1600000000"
    return f"{names}\n{row}\n{row.replace('i1', 'i2')}\n{row.replace('i1', 'i3')}\n"


HEADER_CASES = [
    # (case, file name, content, fragment of the message or None: loads)
    ("a 120 KB header is read whole", "events.csv", _wide(20_000), None),
    ("a header over 1 MB", "events.csv", _wide(150_000), "line 1 is longer than 1 MB"),
    ("one line of 2 MB and no line end", "events.csv", "a," * (1 << 20), "line 1 is longer than 1 MB"),
    (
        "a name repeated after 64 KB",
        "events.csv",
        _wide(15_000, "user,item,timestamp,c109"),
        "the name of column 110 appears twice (again as column 15004)",
    ),
    ("a name repeated at the start", "events.csv", "user,user,timestamp\na,b,1\n", "column 1 appears twice"),
]


@pytest.mark.parametrize(("name", "content", "fragment"), _cases(HEADER_CASES))
def test_headers(tmp_path, name, content, fragment):
    path = _write(tmp_path / name, content)
    if fragment is None:
        assert load_dataset(path).n_interactions == 3
    else:
        assert fragment in _sentence(path)


# ------------------------------------------------------------------------- files that are not datasets

SECRET = "hunter2-Sup3rS3cret"
NOT_DATASETS = [
    # (file name, content): the message names the file and what was expected, never the content
    (".env", f"DB_PASSWORD={SECRET}\nAPI_KEY=abc\n"),
    (".env", f"DB_PASSWORD={SECRET},API_KEY=abc\n"),
    ("config.csv", f"password;{SECRET};host\n1;2;3\n"),
    ("id_rsa", f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET}\n-----END OPENSSH PRIVATE KEY-----\n"),
    ("secrets.tsv", f"name\t{SECRET}\nx\ty\n"),
    ("shop.csv", f"who,{SECRET}\nalice,1\n"),
]


@pytest.mark.parametrize(("name", "content"), NOT_DATASETS)
def test_a_file_that_is_not_a_dataset_never_has_its_content_echoed(tmp_path, name, content):
    message = _sentence(_write(tmp_path / name, content))
    assert SECRET not in message and "hunter2" not in message
    assert any(word in message for word in ("expected", "should be", "needs", "looked for")), message


def test_a_column_map_naming_a_missing_column_does_not_echo_the_header(tmp_path):
    path = _write(tmp_path / "shop.csv", f"who,{SECRET},when\nalice,1,2\n")
    message = _sentence(path, column_map={"user": "who", "item": "what", "timestamp": "when"})
    assert "'what'" in message and SECRET not in message


def test_a_movies_csv_with_a_wrong_header_does_not_echo_it(tmp_path):
    folder = tmp_path / "ml"
    _write(folder / "ratings.csv", HEADER + "1,2,3,4\n")
    _write(folder / "movies.csv", f"{SECRET},title\n1,x\n")
    with pytest.raises(MsliError) as err:
        load_dataset(folder / "ratings.csv")
    message = str(err.value)
    assert "movies.csv" in message and "needs exactly movieId,title,genres" in message
    assert SECRET not in message


# ---------------------------------------------------------------------------- tables too small to evaluate

TINY = [
    ("one event per user", _events(["1"]).replace("u1,", "u1,", 1) + "u2,i9,2\nu3,i8,3\n", True),
    ("two rows in all", "user,item,timestamp\nu1,a,1\nu1,b,2\n", True),
    ("one row", "user,item,timestamp\nu1,a,1\n", True),
    ("one user with three events", "user,item,timestamp\nu1,a,1\nu1,b,2\nu1,c,3\n", False),
]


@pytest.mark.parametrize(("content", "noted"), _cases(TINY))
def test_a_table_no_user_can_be_evaluated_on_says_so_in_its_validation_notes(tmp_path, content, noted):
    summary = load_dataset(_write(tmp_path / "events.csv", content)).summary()
    flagged = any("no user has the 3 events evaluation needs" in n for n in summary["validation"])
    assert flagged == noted, summary["validation"]
    assert (summary["validation"] != ["ok"]) == noted
    assert (summary["evaluable_users"] == 0) == noted


def test_cli_inspect_reports_the_tiny_table_note(tmp_path, capsys):
    path = _write(tmp_path / "events.csv", "user,item,timestamp\nu1,a,1\nu1,b,2\n")
    assert main(["data", "inspect", str(path), "--json"]) == 0
    out, _ = capsys.readouterr()
    assert "no user has the 3 events evaluation needs" in out


# -------------------------------------------------------------- timestamps in the MovieLens layouts
# Every layout goes through one range check (build_dataset -> timestamps.check_seconds_range): a
# MovieLens timestamp is unix seconds, and one past 2262-04-11 (microseconds, int64 max, year 10000)
# is one sentence, not an OutOfBoundsDatetime traceback later, when the dates are shown. It names the
# file's line (the fixtures have a header in ratings.csv only: the 13th data row is line 14 there).


def _layout_dir(tmp_path: Path, layout: str, extra_stamp: int | None) -> Path:
    """A copy of a layout fixture with one row (user 1, item 38, rating 4) at ``extra_stamp`` appended."""
    src = FIXTURES / f"layout-{layout}"
    folder = tmp_path / layout
    folder.mkdir()
    for f in src.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    if extra_stamp is not None:
        name, row = {
            "100k": ("u.data", f"1\t38\t4\t{extra_stamp}\n"),
            "1m": ("ratings.dat", f"1::38::4::{extra_stamp}\n"),
            "latest": ("ratings.csv", f"1,38,4.0,{extra_stamp}\n"),
        }[layout]
        with open(folder / name, "a") as fh:
            fh.write(row)
    return folder


LAYOUT_FILES = {"100k": "u.data", "1m": "ratings.dat", "latest": "ratings.csv"}
OUT_OF_RANGE = [
    ("microseconds", 1534795915000000),
    ("int64 max", 9223372036854775807),
    ("year 10000", 253402300800),
    ("a second after 2262-04-11", None),  # MAX_TIMESTAMP_S + 1, filled in below
]


@pytest.mark.parametrize("layout", ["100k", "1m", "latest"])
@pytest.mark.parametrize("stamp", _cases(OUT_OF_RANGE))
def test_a_movielens_timestamp_past_2262_is_one_sentence_in_every_layout(tmp_path, layout, stamp):
    from msli_core.data.timestamps import MAX_TIMESTAMP_S

    stamp = MAX_TIMESTAMP_S + 1 if stamp is None else stamp
    folder = _layout_dir(tmp_path, layout, stamp)
    message = _sentence(folder)
    line = 14 if layout == "latest" else 13
    assert message == (
        f"{folder / LAYOUT_FILES[layout]}, line {line}: the timestamp '{stamp}' is out of range: read as "
        "unix seconds like the rest of the column, it falls after 2262-04-11, the latest date this tool can "
        "hold; fix the row (a time in milliseconds or microseconds must be converted to seconds)."
    )


@pytest.mark.parametrize("layout", ["100k", "1m", "latest"])
def test_the_last_representable_second_loads_and_shows_as_a_date(tmp_path, layout):
    from msli_core.data.timestamps import MAX_TIMESTAMP_S

    data = load_dataset(_layout_dir(tmp_path, layout, MAX_TIMESTAMP_S))
    assert data.n_interactions == 13
    summary = data.summary()
    assert summary["time_end"] == "2262-04-11T23:47:15"


def test_a_timestamp_past_2262_in_a_zip_and_in_synthetic_data_is_refused(tmp_path):
    import zipfile

    folder = _layout_dir(tmp_path, "latest", 1534795915000000)
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"ml-latest-small/{f.name}")
    assert "upload.zip:ml-latest-small/ratings.csv, line 14: the timestamp '1534795915000000'" in (
        _sentence(archive)
    )
    # The synthetic layout: ratings.csv plus a ground truth that matches it row for row.
    ratings = (folder / "ratings.csv").read_text().splitlines()[1:]
    truth = "userId,movieId,timestamp,phase,interest\n" + "".join(
        f"{u},{i},{t},0,-1\n" for u, i, _, t in (line.split(",") for line in ratings)
    )
    (folder / "ground_truth.csv").write_text(truth)
    assert "ratings.csv, line 14: the timestamp '1534795915000000' is out of range" in _sentence(folder)


def test_cli_inspect_and_train_refuse_a_timestamp_past_2262(tmp_path, capsys):
    """The audit's case: msli data inspect crashed with OutOfBoundsDatetime, msli train accepted it."""
    folder = _layout_dir(tmp_path, "latest", 1534795915000000)
    assert main(["data", "inspect", str(folder)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "falls after 2262-04-11" in err and "Traceback" not in err
    out_dir = tmp_path / "model"
    assert main(["train", "--data", str(folder), "--model", "popularity", "--out", str(out_dir)]) == 2
    out, err = capsys.readouterr()
    assert "falls after 2262-04-11" in err and not out_dir.exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stamp=st.integers(min_value=0, max_value=2**63 - 1), layout=st.sampled_from(["100k", "1m", "latest"]))
def test_any_movielens_timestamp_loads_and_shows_or_is_a_sentence(stamp, layout):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _layout_dir(Path(tmp), layout, stamp)
        try:
            data = load_dataset(folder)
        except MsliError as err:
            assert "\n" not in str(err) and "falls after 2262-04-11" in str(err)
        else:
            summary = data.summary()  # every accepted time can be shown as a date
            assert summary["time_end"] <= "2262-04-11T23:47:15"


def test_check_seconds_range_names_the_first_bad_row():
    from msli_core.data.timestamps import MAX_TIMESTAMP_S, check_seconds_range

    check_seconds_range(np.array([], dtype=np.int64), "empty.csv")
    check_seconds_range(np.array([0, MAX_TIMESTAMP_S], dtype=np.int64), "ok.csv")
    with pytest.raises(MsliError, match=r"^x\.csv, row 2: the timestamp '-1' is before 1970"):
        check_seconds_range(np.array([5, -1, MAX_TIMESTAMP_S + 1], dtype=np.int64), "x.csv")
    with pytest.raises(MsliError, match=r"^x\.csv, row 3: the timestamp '\d+' is out of range"):
        check_seconds_range(np.array([5, 6, MAX_TIMESTAMP_S + 1], dtype=np.int64), "x.csv")


# -------------------------------------------------- a metadata file that is not a file; header bytes


@pytest.mark.parametrize(
    ("layout", "name"),
    [("100k", "u.item"), ("1m", "movies.dat"), ("latest", "movies.csv")],
)
def test_item_metadata_that_is_a_folder_is_named_as_such(tmp_path, layout, name):
    folder = _layout_dir(tmp_path, layout, None)
    (folder / name).unlink()
    (folder / name).mkdir()
    ratings = LAYOUT_FILES[layout]
    assert _sentence(folder) == (
        f"{folder / name} is a folder, not a regular file, so it cannot be read beside {ratings}; replace "
        f"it with the {name} file, or move it away to load {ratings} without it."
    )


def test_a_broken_link_or_a_fifo_named_movies_csv_is_named_as_such(tmp_path):
    folder = _layout_dir(tmp_path, "latest", None)
    (folder / "movies.csv").unlink()
    (folder / "movies.csv").symlink_to(tmp_path / "gone.csv")
    assert "movies.csv is a broken symbolic link, not a regular file" in _sentence(folder)
    (folder / "movies.csv").unlink()
    os.mkfifo(folder / "movies.csv")
    assert "movies.csv is a FIFO (named pipe), not a regular file" in _sentence(folder)
    (folder / "movies.csv").unlink()
    (folder / "ground_truth.csv").mkdir()
    assert "ground_truth.csv is a folder, not a regular file" in _sentence(folder)


def test_a_folder_named_movies_csv_inside_a_zip_is_named_as_such(tmp_path):
    import zipfile

    folder = _layout_dir(tmp_path, "latest", None)
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / "ratings.csv", "ml/ratings.csv")
        zf.writestr("ml/movies.csv/readme.txt", "a folder, by mistake")
    assert "upload.zip:ml/movies.csv is a folder, not a regular file" in _sentence(archive)
    # A missing metadata file is still only a validation note.
    (folder / "movies.csv").unlink()
    assert any("no item metadata file" in note for note in load_dataset(folder).notes)


@pytest.mark.parametrize("byte", [b"\xa0", b"\x85", b"\xff"], ids=["nbsp", "nel", "ff"])
@pytest.mark.parametrize("line", [1, 2])
def test_a_non_utf8_byte_is_refused_on_the_header_line_as_on_any_other(tmp_path, byte, line):
    """NBSP and NEL decode as latin-1 whitespace, so the header check alone once let them through on line
    1 while the same byte on line 2 was refused; now both are the same sentence."""
    folder = _layout_dir(tmp_path, "latest", None)
    lines = (folder / "ratings.csv").read_bytes().split(b"\n")
    lines[line - 1] += byte
    (folder / "ratings.csv").write_bytes(b"\n".join(lines))
    assert _sentence(folder) == (
        f"{folder / 'ratings.csv'}, line {line} is not valid UTF-8 text; an ml-latest ratings.csv file "
        "(userId,movieId,rating,timestamp) must be saved as UTF-8."
    )


def test_a_non_utf8_byte_in_the_ground_truth_header_is_refused(tmp_path):
    folder = _layout_dir(tmp_path, "latest", None)
    ratings = (folder / "ratings.csv").read_text().splitlines()[1:]
    rows = "".join(f"{u},{i},{t},0,-1\n" for u, i, _, t in (line.split(",") for line in ratings))
    (folder / "ground_truth.csv").write_bytes(
        b"userId,movieId,timestamp,phase,interest\xa0\n" + rows.encode()
    )
    assert "ground_truth.csv, line 1 is not valid UTF-8 text" in _sentence(folder)
    (folder / "ground_truth.csv").write_bytes(b"userId,movieId,timestamp,phase,interest\n" + rows.encode())
    assert load_dataset(folder).format == "synthetic"


def test_a_utf8_bom_and_crlf_header_still_load(tmp_path):
    folder = _layout_dir(tmp_path, "latest", None)
    text = (folder / "ratings.csv").read_bytes().replace(b"\n", b"\r\n")
    (folder / "ratings.csv").write_bytes(b"\xef\xbb\xbf\r\n" + text)
    assert load_dataset(folder).n_interactions == 12
