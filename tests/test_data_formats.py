"""Loaders for every layout: counts, ids, metadata, order, split invariants, and every kind of bad input."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _fixtures import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msli_core.data import InteractionData, leave_one_out, load_dataset
from msli_core.errors import MsliError


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _zip(target: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return target


def _zip_folder(folder: Path, target: Path, top: str | None) -> Path:
    members = {(f"{top}/{f.name}" if top else f.name): f.read_bytes() for f in sorted(folder.iterdir())}
    return _zip(target, members)


def _sequence(data: InteractionData, user: str) -> list[str]:
    """A user's chronological items, in original ids."""
    return [data.item_ids[i] for i in data.sequences[data.internal_user(user)]]


def _item(data: InteractionData, original: str) -> pd.Series:
    return data.items.loc[int(np.flatnonzero(data.item_ids == original)[0])]


# ---------------------------------------------------------------- the official layouts


def test_ml100k_counts_ids_metadata_and_tie_order():
    data = load_dataset(FIXTURES / "layout-100k")
    assert (data.format, data.n_users, data.n_items, data.n_interactions) == ("ml-100k", 4, 6, 12)
    assert list(data.item_ids[1:]) == ["1", "2", "3", "4", "5", "6"]  # numeric ids keep their order
    # user 1 rated items 1 and 2 at the same second (rows 3 and 5): ties keep the file's row order
    assert _sequence(data, "1") == ["3", "1", "2", "5"]
    assert _sequence(data, "4") == ["5", "3"]
    assert _item(data, "1")[["title", "year", "genres"]].tolist() == [
        "The Quiet Harbor (1995)",
        1995.0,
        "Animation|Children's|Comedy",
    ]
    cafe = _item(data, "4")
    assert cafe["title"] == "Café Lumière" and cafe["year"] == 1996.0  # latin-1; year from release date
    assert np.isnan(_item(data, "5")["year"])
    assert data.items.shape[0] == 7 and data.notes == ()  # item 7 in u.item was never rated: not an item
    assert data.interactions["rating"].tolist()[:4] == [4.0, 5.0, 4.0, 3.0]


def test_ml1m_dat_latin1_titles_and_ties():
    data = load_dataset(FIXTURES / "layout-1m")
    assert (data.format, data.n_users, data.n_items, data.n_interactions) == ("ml-1m", 4, 4, 12)
    assert list(data.item_ids[1:]) == ["661", "914", "1193", "3408"]
    assert _item(data, "661")[["title", "year", "genres"]].tolist() == [
        "Amélie à Montmartre (2001)",
        2001.0,
        "Comedy|Romance",
    ]
    assert _item(data, "914")["title"] == "Harbour Lights: Part II (1964)"
    assert _sequence(data, "3") == ["661", "914", "1193", "3408"]  # 661 and 914 share a second
    assert _sequence(data, "1") == ["3408", "1193", "914", "661"]


def test_ml10m_utf8_movies_dat(tmp_path):
    folder = tmp_path / "ten"
    _write(folder / "ratings.dat", "1::5::3.5::100\n1::6::4::101\n")
    _write(folder / "movies.dat", "5::Ça commence (2003)::Drama\n6::Zoë (2004)::(no genres listed)\n")
    data = load_dataset(folder)
    assert data.format == "ml-1m"
    assert _item(data, "5")["title"] == "Ça commence (2003)" and _item(data, "6")["genres"] == ""
    assert data.interactions["rating"].tolist() == [3.5, 4.0]


@pytest.mark.parametrize("folder", ["layout-latest", "layout-latest-crlf"])
def test_ml_latest_quoted_titles_lf_and_crlf(folder):
    data = load_dataset(FIXTURES / folder)
    assert (data.format, data.n_users, data.n_items, data.n_interactions) == ("ml-latest", 4, 4, 12)
    assert _item(data, "1")["title"] == "Garden, The (1998)"
    assert _item(data, "3")[["title", "year", "genres"]].tolist() == [
        "Long Night, A: Part 2 (2004)",
        2004.0,
        "Action|Thriller",
    ]
    show = _item(data, "47")
    assert show["title"] == 'Show, "The Quotes" Edition (2006–2007)'
    assert show["year"] == 2006.0 and show["genres"] == ""  # "(no genres listed)" means unknown
    assert _item(data, "6")["title"] == "Señora Kōan (2010)"
    assert _sequence(data, "1") == ["3", "6", "1"]


def test_lf_and_crlf_load_identically():
    lf, crlf = load_dataset(FIXTURES / "layout-latest"), load_dataset(FIXTURES / "layout-latest-crlf")
    pd.testing.assert_frame_equal(lf.interactions, crlf.interactions)
    pd.testing.assert_frame_equal(lf.items, crlf.items)


@pytest.mark.parametrize("folder", ["layout-100k", "layout-1m", "layout-latest"])
@pytest.mark.parametrize("top", [None, "ml-dataset"])
def test_zip_reads_like_the_folder(tmp_path, folder, top):
    archive = _zip_folder(FIXTURES / folder, tmp_path / "data.zip", top)
    from_zip, from_folder = load_dataset(archive), load_dataset(FIXTURES / folder)
    pd.testing.assert_frame_equal(from_zip.interactions, from_folder.interactions)
    pd.testing.assert_frame_equal(from_zip.items, from_folder.items)
    assert from_zip.format == from_folder.format
    assert from_zip.source.startswith(str(archive))
    assert list(tmp_path.iterdir()) == [archive]  # read in memory: nothing extracted


def test_single_ratings_file_finds_its_metadata():
    data = load_dataset(FIXTURES / "layout-100k" / "u.data")
    assert data.format == "ml-100k" and _item(data, "2")["title"] == "Iron Meadow (1994)"


def test_ratings_without_metadata_get_a_note(tmp_path):
    folder = tmp_path / "bare"
    (folder).mkdir()
    (folder / "u.data").write_bytes((FIXTURES / "layout-100k" / "u.data").read_bytes())
    data = load_dataset(folder)
    assert data.items.loc[1, "title"] == "item 1"
    assert any("no item metadata" in n for n in data.notes)


# ---------------------------------------------------------------- generic interactions tables


def test_generic_csv_guesses_columns_and_converts_iso_times():
    data = load_dataset(FIXTURES / "interactions.csv")
    assert (data.format, data.n_users, data.n_items, data.n_interactions) == ("interactions", 4, 4, 12)
    assert list(data.user_ids[1:]) == ["alice", "bob", "carol", "dave"]
    assert _sequence(data, "carol") == ["SKU-1", "SKU-4", "SKU-3"]
    carol = data.timestamps[data.internal_user("carol")]
    assert carol[0] == int(pd.Timestamp("2023-05-02T08:00:00Z").timestamp())  # +02:00 -> UTC
    assert data.summary()["has_ratings"] and not data.summary()["has_metadata"]
    assert load_dataset(FIXTURES / "layout-100k").summary()["has_metadata"]


def test_generic_tsv_needs_and_takes_a_column_map():
    with pytest.raises(MsliError, match=r"interactions\.tsv has no user column"):
        load_dataset(FIXTURES / "interactions.tsv")
    data = load_dataset(FIXTURES / "interactions.tsv", column_map={"user": "visitor"})
    assert (data.n_users, data.n_items, data.n_interactions) == (4, 4, 12)
    assert not data.summary()["has_ratings"]
    assert _sequence(data, "v1") == ["A", "C", "B", "D"]


def test_generic_parquet_matches_csv(tmp_path):
    frame = pd.read_csv(FIXTURES / "interactions.csv")
    frame["datetime"] = pd.to_datetime(frame["datetime"], utc=True, format="ISO8601")
    frame.to_parquet(tmp_path / "log.parquet")
    from_parquet, from_csv = (
        load_dataset(tmp_path / "log.parquet"),
        load_dataset(FIXTURES / "interactions.csv"),
    )
    pd.testing.assert_frame_equal(from_parquet.interactions, from_csv.interactions)
    archive = _zip(tmp_path / "log.zip", {"log/events.parquet": (tmp_path / "log.parquet").read_bytes()})
    pd.testing.assert_frame_equal(load_dataset(archive).interactions, from_csv.interactions)


def test_generic_millisecond_timestamps_are_converted_with_a_note(tmp_path):
    path = _write(tmp_path / "clicks.csv", "user,item,ts\na,x,1600000000000\na,y,1600000001500\n")
    data = load_dataset(path)
    assert data.interactions["timestamp"].tolist() == [1600000000, 1600000001]
    assert any("milliseconds" in n for n in data.notes)


def test_column_map_errors_name_the_file():
    path = FIXTURES / "interactions.csv"
    with pytest.raises(MsliError, match="no column 'sku'"):
        load_dataset(path, column_map={"item": "sku"})
    with pytest.raises(MsliError, match="roles are"):
        load_dataset(path, column_map={"usr": "user_id"})
    with pytest.raises(MsliError, match="column map does not apply"):
        load_dataset(FIXTURES / "layout-100k", column_map={"user": "x"})


# ---------------------------------------------------------------- protocol rules


def test_duplicates_keep_the_first_row_and_say_so(tmp_path):
    path = _write(
        tmp_path / "d" / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,10,2.0,5\n1,10,4.0,5\n1,11,3.0,6\n1,10,5.0,7\n",
    )
    data = load_dataset(path)
    assert data.n_interactions == 3
    assert data.interactions["rating"].tolist() == [2.0, 3.0, 5.0]  # the first of (1, 10, 5) is kept
    assert any("dropped 1 duplicate" in n for n in data.notes)


def test_integer_and_text_ids_build_the_same_dataset(tmp_path):
    """MovieLens ids are integers (a fast path in build_dataset); text ids must give the same result."""
    rows = "3,20,1.0,7\n1,10,2.0,5\n1,11,3.0,5\n1,10,4.0,5\n2,10,5.0,1\n1,9,1.0,4\n10,11,2.0,5\n"
    as_int = load_dataset(_write(tmp_path / "a" / "ratings.csv", HEADER + rows))
    as_text = load_dataset(_write(tmp_path / "b" / "events.csv", "user,item,rating,timestamp\n" + rows))
    pd.testing.assert_frame_equal(as_int.interactions, as_text.interactions)
    assert list(as_int.user_ids) == list(as_text.user_ids) == ["", "1", "2", "3", "10"]  # numeric order
    assert list(as_int.item_ids) == list(as_text.item_ids) == ["", "9", "10", "11", "20"]
    # (1, 10, 5) appears twice, with (1, 11, 5) between them: the later one is the duplicate
    assert _sequence(as_int, "1") == ["9", "10", "11"]
    assert as_int.interactions["rating"].tolist()[:3] == [1.0, 2.0, 3.0]
    assert (
        as_int.notes[-1]
        == as_text.notes[-1]
        == ("dropped 1 duplicate (user, item, timestamp) row(s), keeping the first of each")
    )


def test_min_rating_and_k_core_filters():
    data = load_dataset(FIXTURES / "layout-100k", min_rating=4)
    assert data.n_interactions == 6 and (data.interactions["rating"] >= 4).all()
    core = load_dataset(FIXTURES / "layout-100k", k_core=2)
    counts_u = np.bincount(core.interactions["user"])[1:]
    counts_i = np.bincount(core.interactions["item"])[1:]
    assert counts_u.min() >= 2 and counts_i.min() >= 2
    with pytest.raises(MsliError, match="k-core"):
        load_dataset(FIXTURES / "layout-100k", k_core=0)
    with pytest.raises(MsliError, match="left no interactions"):
        load_dataset(FIXTURES / "layout-100k", min_rating=6)


@pytest.mark.parametrize(
    "path", ["layout-100k", "layout-1m", "layout-latest", "interactions.csv", "interactions.tsv"]
)
def test_leave_one_out_invariants_against_the_raw_file(path):
    column_map = {"user": "visitor"} if path.endswith(".tsv") else None
    data = load_dataset(FIXTURES / path, column_map=column_map)
    split = leave_one_out(data)
    raw = data.interactions
    assert (np.diff(raw["user"]) >= 0).all()
    for user in range(1, data.n_users + 1):
        rows = raw[raw["user"] == user]
        assert (np.diff(rows["timestamp"]) >= 0).all()  # chronological within each user
    for user in split.eval_users:
        seq, ts = data.sequences[user], data.timestamps[user]
        assert split.target(user, "test") == seq[-1] and ts[-1] == ts.max()
        assert split.target(user, "valid") == seq[-2]
        assert list(split.train_sequence(user)) == list(seq[:-2])
        assert list(split.history(user, "valid")) == list(seq[:-2])  # no validation target inside
        assert list(split.history(user, "test")) == list(seq[:-1])  # no test target inside
        assert len(split.train_sequence(user)) + 2 == len(seq)
        assert (split.history_timestamps(user, "test") <= ts[-1]).all()
    lengths = np.array([len(s) for s in data.sequences[1:]])
    assert sorted(split.eval_users.tolist()) == (np.flatnonzero(lengths >= 3) + 1).tolist()


def test_synthetic_ground_truth_follows_the_rows(tmp_path):
    folder = tmp_path / "synth"
    _write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n2,5,4.0,30\n1,6,3.0,20\n1,5,5.0,10\n")
    _write(folder / "movies.csv", "movieId,title,genres\n5,Invented (2001),Drama\n6,Other (2002),Comedy\n")
    _write(
        folder / "ground_truth.csv",
        "userId,movieId,timestamp,phase,interest\n2,5,30,0,7\n1,6,20,1,-1\n1,5,10,0,3\n",
    )
    data = load_dataset(folder)
    assert data.format == "synthetic" and data.truth is not None
    # after sorting, user 1's events are (5, t=10) then (6, t=20): their truth rows moved with them
    assert data.truth[["phase", "interest"]].values.tolist() == [[0, 3], [1, -1], [0, 7]]
    assert data.summary()["synthetic_ground_truth"]


@pytest.mark.parametrize(
    ("truth", "message"),
    [
        ("userId,movieId,timestamp,phase,interest\n1,5,10,0,3\n", "has 1 rows but"),
        ("userId,movieId,timestamp,phase,interest\n1,5,10,0,3\n1,7,20,0,3\n", "line 3: movieId 7"),
        ("userId,movieId,timestamp,phase\n1,5,10,0\n1,6,20,0\n", "lacks column(s) interest"),
        ("userId,movieId,timestamp,phase,interest\n1,5,10,0,-4\n1,6,20,0,3\n", "below -1"),
    ],
)
def test_mismatching_ground_truth_is_bad_input(tmp_path, truth, message):
    folder = tmp_path / "synth"
    _write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n1,5,5.0,10\n1,6,3.0,20\n")
    _write(folder / "ground_truth.csv", truth)
    with pytest.raises(MsliError) as err:
        load_dataset(folder)
    assert "ground_truth.csv" in str(err.value) and message in str(err.value)


# ---------------------------------------------------------------- bad input: one sentence naming the file

HEADER = "userId,movieId,rating,timestamp\n"
BAD_FILES = [
    # (file name, content, fragment of the message)
    ("u.data", b"", "is empty"),
    ("ratings.csv", b"\n\n  \n", "is empty"),
    ("u.data", "1,2,3,4\n5,6,7,8\n", "looks comma-separated"),
    ("ratings.dat", "1\t2\t3\t4\n", "looks tab-separated"),
    ("u.data", "1\t2\t3\n", "line 1 has 3 fields"),
    ("u.data", "1\t2\t3\t4\n1\t2\t3\t4\t5\n", "line 2 has 5 fields"),
    ("u.data", "1\t2\t3\t4\n\n1\t2\t3\n", "line 3: the timestamp value is missing"),
    (("ratings.csv", HEADER.replace(",timestamp", "") + "1,2,3\n", "lacks column(s) timestamp")),
    ("ratings.csv", HEADER.strip() + ",extra\n1,2,3,4,5\n", "unexpected column(s) extra"),
    ("ratings.csv", HEADER + "1,2,3,4\n1,2,3,4,5\n", "line 3 has 5 fields"),
    ("ratings.csv", HEADER, "has a header but no rows"),
    ("u.data", "1\t2\t3\t4\nabc\t2\t3\t4\n", "line 2: the user value 'abc' is not a number"),
    ("ratings.dat", "1::2::3::4\n1::x::3::4\n", "line 2: the MovieID value 'x' is not a number"),
    ("ratings.dat", "1::2::3::4\n1::2::3:4:\n", "line 2 is not four fields separated by '::'"),
    ("ratings.dat", "1::2.5::3::4\n", "MovieID value '2.5' is not a whole number"),
    ("ratings.csv", HEADER + "1,2,3,1e30\n", "is not a whole number"),
    ("u.data", "1\t2\t3\t-5\n", "line 1: the timestamp value '-5' is negative"),
    ("ratings.csv", HEADER + "1,2,3,4\n1,3,-1,5\n", "line 3: the rating value '-1' is negative"),
    ("ratings.csv", HEADER + "1,2,inf,4\n", "line 2: the rating value 'inf' is not finite"),
    ("ratings.csv", HEADER + "1,2,nan,4\n", "line 2: the rating value 'nan' is not a number"),
    ("ratings.csv", HEADER + "1,2,3,soon\n", "line 2: the timestamp value 'soon' is not a number"),
    ("u.data", b"\x00\x01\x02\x03binary\xff", "is binary data"),
    ("events.csv", b"user,item,timestamp\nalice,a,1\n\xff\xfe,b,2\n", "line 3 is not valid UTF-8"),
    ("ratings.csv", HEADER.encode() + b"1,2,3,4\n\x93,2,3,4\n", "line 3 is not valid UTF-8"),
    (
        "events.csv",
        "user,item,timestamp\na,b,2020-01-01\na,c,yesterday\n",
        "line 3: the timestamp 'yesterday'",
    ),
    ("events.csv", "user,item,timestamp\na,b,-3\n", "line 2: the timestamp value '-3' is negative"),
    (
        "events.csv",
        "user,item,timestamp\na,b,1960-01-01\n",
        "line 2: the timestamp '1960-01-01' is before 1970",
    ),
    ("events.csv", "user,item,timestamp\na,,3\n", "line 2: the item id is missing"),
    ("events.csv", "user,item,timestamp,rating\na,b,3,x\n", "line 2: the rating value 'x' is not a number"),
    ("events.csv", "1,2,3\n4,5,6\n", "no header row"),
    ("events.csv", "user,user,timestamp\na,b,1\n", "appears twice"),
    ("events.csv", "just one column\nvalue\n", "single column"),
    ("events.csv", "session;product;when\na;b;1\n", "no user or item or timestamp column"),
    ("events.csv", 'user,item,timestamp\n"a,b,1\n', "cannot be parsed"),
    ("events.parquet", b"PAR1 not really parquet PAR1", "not a readable Parquet file"),
    ("data.zip", b"PK\x03\x04 not really a zip", "not a readable zip archive"),
]


@pytest.mark.parametrize(("name", "content", "fragment"), BAD_FILES)
def test_bad_file_is_one_sentence_naming_it(tmp_path, name, content, fragment):
    path = _write(tmp_path / "in" / name, content)
    with pytest.raises(MsliError) as err:
        load_dataset(path)
    message = str(err.value)
    assert name in message and fragment in message
    assert "\n" not in message and message.endswith(".")


BAD_METADATA = [
    ("layout-100k", "u.item", "1|only two\n", "u.item, line 1 has 2 '|'-separated fields"),
    ("layout-100k", "u.item", "x" + "|a" * 23 + "\n", "the movie id 'x'"),
    ("layout-1m", "movies.dat", "661::no genres\n", "movies.dat, line 1 is not three fields"),
    ("layout-latest", "movies.csv", "id,title\n1,x\n", "needs exactly movieId,title,genres"),
    ("layout-latest", "movies.csv", b"movieId,title,genres\n1,\xff,Drama\n", "line 2 is not valid UTF-8"),
    ("layout-latest", "movies.csv", b"\x00\x00\x00", "binary data"),
]


@pytest.mark.parametrize(("folder", "name", "content", "fragment"), BAD_METADATA)
def test_bad_metadata_names_the_metadata_file(tmp_path, folder, name, content, fragment):
    target = tmp_path / folder
    target.mkdir()
    for f in (FIXTURES / folder).iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    _write(target / name, content)
    with pytest.raises(MsliError) as err:
        load_dataset(target)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("members", "fragment"),
    [
        ({"../escape/u.data": b"1\t2\t3\t4\n"}, "points outside"),
        ({"/abs/u.data": b"1\t2\t3\t4\n"}, "points outside"),
        ({"ml/ok/../../u.data": b"1\t2\t3\t4\n"}, "points outside"),
        ({"C:/win/u.data": b"1\t2\t3\t4\n"}, "points outside"),
        ({"ml-100k/README": b"no ratings here"}, "has no ratings file"),
        ({"a/u.data": b"1\t2\t3\t4\n", "b/u.data": b"1\t2\t3\t4\n"}, "several datasets"),
        ({"a.csv": b"user,item,timestamp\n", "b.csv": b"user,item,timestamp\n"}, "several tables"),
        ({"ml-100k/u.data": b""}, "is empty"),
    ],
)
def test_bad_zip_is_refused_with_a_sentence(tmp_path, members, fragment):
    archive = _zip(tmp_path / "upload.zip", members)
    with pytest.raises(MsliError) as err:
        load_dataset(archive)
    assert "upload.zip" in str(err.value) and fragment in str(err.value)
    assert list(tmp_path.iterdir()) == [archive]


def test_missing_path_and_unrecognised_folder(tmp_path):
    with pytest.raises(MsliError, match="nowhere does not exist"):
        load_dataset(tmp_path / "nowhere")
    _write(tmp_path / "docs" / "notes.md", "hello")
    with pytest.raises(MsliError, match="docs has no ratings file"):
        load_dataset(tmp_path / "docs")


def test_damaged_zip_member_is_a_sentence(tmp_path):
    archive = _zip(tmp_path / "broken.zip", {"ml/u.data": b"1\t2\t3\t4\n" * 200})
    raw = bytearray(archive.read_bytes())
    start = raw.index(b"ml/u.data") + len(b"ml/u.data")
    raw[start + 5 : start + 25] = b"\x00" * 20  # damage the compressed stream of the first member
    archive.write_bytes(bytes(raw))
    with pytest.raises(MsliError) as err:
        load_dataset(archive)
    assert "broken.zip" in str(err.value)


# ---------------------------------------------------------------- property: random bytes never crash

NAMES = ["u.data", "ratings.csv", "ratings.dat", "events.csv", "events.tsv", "events.parquet", "data.zip"]


def _load_or_sentence(path: Path) -> None:
    try:
        data = load_dataset(path)
    except MsliError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert isinstance(data, InteractionData) and data.n_interactions > 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), content=st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_msli_error(name, content):
    with tempfile.TemporaryDirectory() as tmp:
        _load_or_sentence(_write(Path(tmp) / name, content))


TEXTY = st.text(alphabet="0123456789\t,:;|.-+eE \n\r\"'abcxyzTZ\x00é", max_size=300)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(NAMES[:5]), header=st.sampled_from(["", HEADER, "user,item,timestamp\n"]), body=TEXTY
)
def test_random_table_like_text_never_raises_anything_but_msli_error(name, header, body):
    with tempfile.TemporaryDirectory() as tmp:
        _load_or_sentence(_write(Path(tmp) / name, header + body))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    member=st.sampled_from(
        ["u.data", "ml/ratings.csv", "x/ratings.dat", "ml/movies.csv", "e.csv", "../u.data"]
    ),
    content=st.binary(max_size=300) | TEXTY.map(str.encode),
    meta=st.binary(max_size=200),
)
def test_random_zip_members_never_raise_anything_but_msli_error(member, content, meta):
    with tempfile.TemporaryDirectory() as tmp:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(member, content)
            meta_name = str(Path(member).parent / ("u.item" if member.endswith("u.data") else "movies.csv"))
            if meta_name != member:
                zf.writestr(meta_name, meta)
        _load_or_sentence(_write(Path(tmp) / "random.zip", buf.getvalue()))
