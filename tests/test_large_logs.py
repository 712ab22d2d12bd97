"""Large logs in bounded memory (issue 14): the pyarrow fast path gives exactly the dataset the pandas
readers give, the vectorised split and padding equal the list-based ones, the bulk generator writes a
well-formed MovieLens-format log, ``msli data bench-load`` reports its stages, and bad input is still one
sentence. No timing assertions and no large files: speed lives in ``make bench-load``."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _fixtures import FIXTURES

from msli_core.cli import main
from msli_core.data import arrowread, dataset, synth_bulk
from msli_core.data.dataset import leave_one_out, pad_ranges, pad_right_aligned
from msli_core.data.formats import load_dataset
from msli_core.data.synth import SynthConfig, write_synthetic
from msli_core.errors import MsliError

SMALL = SynthConfig(seed=3, users=60, items=300, interactions=4000, interests=6)
BULK = SynthConfig(seed=5, users=300, items=3000, interactions=24_000, interests=10, max_events=600)


# ------------------------------------------------------------------------------------------ helpers


def _declined(*_args, **_kwargs):
    return None


def _declined_parquet(*_args, **_kwargs):
    return None, {}


def _fast_used(monkeypatch) -> list[str]:
    """Record which fast readers returned a table (so a test knows the fast path really ran)."""
    used: list[str] = []
    for module, name in (
        ("msli_core.data.texttable", "read_layout_fast"),
        ("msli_core.data.interactions", "read_generic_text_fast"),
        ("msli_core.data.interactions", "read_generic_parquet_fast"),
    ):
        real = getattr(arrowread, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            out = _real(*args, **kwargs)
            table = out[0] if isinstance(out, tuple) else out
            if table is not None:
                used.append(_name)
            return out

        monkeypatch.setattr(f"{module}.{name}", spy)
    return used


def _assert_same(a, b) -> None:
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    assert a.user_ids.tolist() == b.user_ids.tolist()
    assert a.item_ids.tolist() == b.item_ids.tolist()
    pd.testing.assert_frame_equal(a.items, b.items)
    assert a.notes == b.notes
    assert a.format == b.format
    assert (a.truth is None) == (b.truth is None)
    if a.truth is not None:
        pd.testing.assert_frame_equal(a.truth, b.truth)
    assert leave_one_out(a).eval_users.tolist() == leave_one_out(b).eval_users.tolist()


def _load_both(path, monkeypatch, column_map=None):
    used = _fast_used(monkeypatch)
    fast = load_dataset(path, column_map=column_map)
    monkeypatch.undo()
    with monkeypatch.context() as m:
        m.setattr("msli_core.data.texttable.read_layout_fast", _declined)
        m.setattr("msli_core.data.interactions.read_generic_text_fast", _declined)
        m.setattr("msli_core.data.interactions.read_generic_parquet_fast", _declined_parquet)
        slow = load_dataset(path, column_map=column_map)
    return fast, slow, used


def _reference(users, items, times, ratings):
    """The protocol, written the slow obvious way: ids (stripped text) numbered in numeric order when all
    are numbers, else text order; rows sorted by (user, time), ties in file order; repeated (user, item,
    time) rows dropped but the first."""

    def number(ids):
        text = [str(x).strip() for x in ids]
        uniques = list(dict.fromkeys(text))
        try:
            uniques.sort(key=float)
        except ValueError:
            uniques.sort()
        index = {u: i + 1 for i, u in enumerate(uniques)}
        return [index[t] for t in text], uniques

    u, user_ids = number(users)
    i, item_ids = number(items)
    rows = sorted(range(len(u)), key=lambda r: (u[r], times[r], r))
    seen, kept = set(), []
    for r in rows:
        if (u[r], i[r], times[r]) not in seen:
            seen.add((u[r], i[r], times[r]))
            kept.append(r)
    frame = pd.DataFrame(
        {
            "user": np.array([u[r] for r in kept], dtype=np.int64),
            "item": np.array([i[r] for r in kept], dtype=np.int64),
            "timestamp": np.array([times[r] for r in kept], dtype=np.int64),
            "rating": np.array([ratings[r] for r in kept], dtype=np.float64),
        }
    )
    return frame, ["", *user_ids], ["", *item_ids]


def _table(rng: np.random.Generator, n: int = 3000) -> pd.DataFrame:
    """A messy generic log: text ids with spaces, numeric-looking and not, ties, exact repeats."""
    users = rng.integers(1, 120, n)
    items = rng.integers(1, 400, n)
    times = 1_500_000_000 + rng.integers(0, 5000, n)  # many (user, time) ties
    frame = pd.DataFrame(
        {
            "customer_id": [f" c{u} " if u % 7 else f"{u}" for u in users],
            "sku": [f"{i:05d}" if i % 5 else f" {i}" for i in items],  # "00012" and " 12" differ
            "event_time": times,
            "stars": rng.integers(1, 11, n) / 2,
        }
    )
    return pd.concat([frame, frame.iloc[:40]], ignore_index=True)  # 40 exact repeats


# ------------------------------------------------------------------------------------------ fast == slow


@pytest.mark.parametrize("layout", ["layout-latest", "layout-latest-crlf"])
def test_fast_path_equals_the_pandas_readers_on_the_layout_fixtures(layout, monkeypatch):
    fast, slow, used = _load_both(FIXTURES / layout, monkeypatch)
    assert "read_layout_fast" in used
    _assert_same(fast, slow)


@pytest.mark.parametrize(
    ("name", "column_map", "fast"),
    [("interactions.csv", None, False), ("interactions.tsv", {"user": "visitor"}, True)],
)
def test_fast_path_equals_the_pandas_readers_on_the_generic_fixtures(name, column_map, fast, monkeypatch):
    # ISO 8601 times (interactions.csv) are left to the pandas reader (arrowread's docstring)
    got, slow, used = _load_both(FIXTURES / name, monkeypatch, column_map)
    assert used == (["read_generic_text_fast"] if fast else [])
    _assert_same(got, slow)


def test_fast_path_equals_the_pandas_readers_on_a_synthetic_folder_with_ground_truth(tmp_path, monkeypatch):
    out = write_synthetic(tmp_path / "synth", SMALL)
    fast, slow, used = _load_both(out, monkeypatch)
    assert used == ["read_layout_fast", "read_layout_fast"]  # ratings.csv and ground_truth.csv
    assert fast.format == "synthetic"
    _assert_same(fast, slow)


def test_generic_csv_and_parquet_give_the_reference_dataset(tmp_path, monkeypatch):
    table = _table(np.random.default_rng(0))
    csv = tmp_path / "log.csv"
    table.to_csv(csv, index=False)
    parquet = tmp_path / "log.parquet"
    table.to_parquet(parquet, index=False)
    columns = [table[c] for c in ("customer_id", "sku", "event_time", "stars")]
    frame, user_ids, item_ids = _reference(*columns)
    for path in (csv, parquet):
        fast, slow, used = _load_both(path, monkeypatch)
        assert len(used) == 1, path
        _assert_same(fast, slow)
        pd.testing.assert_frame_equal(fast.interactions, frame)
        assert fast.user_ids.tolist() == user_ids
        assert fast.item_ids.tolist() == item_ids
        assert fast.notes == (
            "dropped 40 duplicate (user, item, timestamp) row(s), keeping the first of each",
        )


def test_parquet_integer_ids_milliseconds_and_timestamp_columns(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    n = 2000
    users, items = rng.integers(1, 90, n), rng.integers(10, 300, n) * 1000  # sparse item ids
    seconds = 1_400_000_000 + rng.integers(0, 10**6, n)
    cases = {
        "ms.parquet": pa.table({"user_id": users, "item_id": items, "ts": seconds * 1000}),
        "tz.parquet": pa.table(
            {
                "user_id": users,
                "item_id": pa.array(items).dictionary_encode(),
                "ts": pa.array(seconds * 10**6, pa.timestamp("us", tz="Europe/Paris")),
            }
        ),
        "naive.parquet": pa.table(
            {"user_id": users, "item_id": items, "ts": pa.array(seconds, pa.timestamp("s"))}
        ),
    }
    for name, table in cases.items():
        pq.write_table(table, tmp_path / name)
        fast, slow, used = _load_both(tmp_path / name, monkeypatch)
        assert used == ["read_generic_parquet_fast"], name
        _assert_same(fast, slow)
        assert fast.interactions["timestamp"].min() >= 1_400_000_000, name
    assert fast.item_ids[1:].tolist() == [str(i) for i in np.unique(items)]


def test_the_bulk_log_loads_the_same_fast_and_slow_in_csv_and_parquet(tmp_path, monkeypatch):
    out = synth_bulk.write_bulk(tmp_path / "bulk", BULK, ground_truth=False, chunk_users=70)
    fast, slow, used = _load_both(out, monkeypatch)
    assert used == ["read_layout_fast"] and fast.format == "ml-latest"
    _assert_same(fast, slow)
    ratings = pd.read_csv(out / "ratings.csv")
    ratings.rename(columns={"userId": "user_id", "movieId": "item_id"}).to_parquet(tmp_path / "log.parquet")
    fast_pq, slow_pq, used = _load_both(tmp_path / "log.parquet", monkeypatch)
    assert used == ["read_generic_parquet_fast"]
    _assert_same(fast_pq, slow_pq)
    pd.testing.assert_frame_equal(fast_pq.interactions, fast.interactions)
    assert fast_pq.item_ids.tolist() == fast.item_ids.tolist()


HEAD = "userId,movieId,rating,timestamp\n"
ROWS = "1,2,4.0,10\n1,3,4.0,11\n1,4,4.0,12\n"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (HEAD + ROWS + "1,+5,4.0,13\n", "a '+' pyarrow does not parse"),
        ("\n" + HEAD + ROWS, "a blank line before the header"),
        (HEAD + ROWS + "1,6,4.0,1e3\n", "a timestamp in exponent notation"),
        (HEAD + ROWS + "1,6,,13\n", "a missing rating"),
        (HEAD + ROWS + "1,6,inf,13\n", "an infinite rating"),
        (HEAD + ROWS + "1,6,4.0\n", "a short line"),
    ],
)
def test_quirks_the_fast_path_declines_still_load_as_before(tmp_path, text, why, monkeypatch):
    folder = tmp_path / "latest"
    folder.mkdir()
    (folder / "ratings.csv").write_text(text)
    used = _fast_used(monkeypatch)
    try:
        fast = load_dataset(folder)
    except MsliError as err:
        fast = err
    assert used == [], why
    monkeypatch.undo()
    with monkeypatch.context() as m:
        m.setattr("msli_core.data.texttable.read_layout_fast", _declined)
        try:
            slow = load_dataset(folder)
        except MsliError as err:
            slow = err
    if isinstance(slow, MsliError):
        assert str(fast) == str(slow)
    else:
        _assert_same(fast, slow)


# ------------------------------------------------------------------------------------------ ids


def test_integer_codes_dense_and_sparse_agree_with_numpy_unique():
    rng = np.random.default_rng(2)
    for values in (rng.integers(0, 50, 1000), rng.integers(-(10**15), 10**15, 1000), np.array([7])):
        codes, uniques = arrowread.integer_codes(values)
        want_uniques, want_codes = np.unique(values, return_inverse=True)
        assert uniques.tolist() == want_uniques.tolist()
        assert codes.tolist() == want_codes.tolist()
        assert codes.dtype == np.int32


def test_dataset_columns_keep_their_public_dtypes(tmp_path):
    out = synth_bulk.write_bulk(tmp_path / "bulk", BULK, ground_truth=False)
    data = load_dataset(out)
    assert [str(t) for t in data.interactions.dtypes] == ["int64", "int64", "int64", "float64"]
    assert data.user_ids.dtype == object and data.user_ids[0] == ""
    assert isinstance(data.item_ids[1], str)


# ------------------------------------------------------------------------------------------ padding


def _pad_reference(sequences, max_len):
    """The loop pad_right_aligned used to be."""
    out = np.zeros((len(sequences), max_len), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[-max_len:] if max_len > 0 else seq[:0]
        if len(tail):
            out[row, max_len - len(tail) :] = tail
    return out


def test_pad_right_aligned_by_hand():
    seqs = [np.array([5, 6, 7]), np.array([], dtype=np.int64), np.array([9]), np.array([1, 2, 3, 4, 5])]
    assert pad_right_aligned(seqs, 3).tolist() == [[5, 6, 7], [0, 0, 0], [0, 0, 9], [3, 4, 5]]
    assert pad_right_aligned(seqs, 1).tolist() == [[7], [0], [9], [5]]
    assert pad_right_aligned(seqs, 0).shape == (4, 0)
    assert pad_right_aligned([], 4).shape == (0, 4)
    assert pad_right_aligned([np.array([], dtype=np.int64)] * 2, 2).tolist() == [[0, 0], [0, 0]]
    assert pad_right_aligned([[1, 2]], 3).dtype == np.int64


def test_pad_ranges_by_hand_and_across_chunks(monkeypatch):
    values = np.arange(1, 11)  # 1..10
    got = pad_ranges(values, [0, 2, 5, 9, 4], [2, 5, 10, 10, 4], 3)
    assert got.tolist() == [[0, 1, 2], [3, 4, 5], [8, 9, 10], [0, 0, 10], [0, 0, 0]]
    monkeypatch.setattr(dataset, "PAD_CHUNK_ROWS", 2)  # three chunks of rows give the same array
    assert pad_ranges(values, [0, 2, 5, 9, 4], [2, 5, 10, 10, 4], 3).tolist() == got.tolist()


def test_pad_right_aligned_equals_the_loop_on_random_sequences():
    rng = np.random.default_rng(4)
    seqs = [rng.integers(1, 100, rng.integers(0, 30)) for _ in range(200)]
    for max_len in (1, 5, 29, 40):
        assert np.array_equal(pad_right_aligned(seqs, max_len), _pad_reference(seqs, max_len))


def test_split_vectorised_builders_equal_the_per_user_lists(tmp_path):
    data = load_dataset(write_synthetic(tmp_path / "s", SMALL))
    split = leave_one_out(data)
    lengths = np.array([len(s) for s in data.sequences])
    assert split.eval_users.tolist() == np.flatnonzero(lengths >= 3).tolist()
    for stage in ("valid", "test"):
        assert split.targets(stage).tolist() == [split.target(int(u), stage) for u in split.eval_users]
        for max_len in (1, 7, 50, 400):
            want = _pad_reference(split.histories(stage), max_len)
            assert np.array_equal(split.padded_histories(stage, max_len), want)
            stamps = _pad_reference(
                [split.history_timestamps(int(u), stage) for u in split.eval_users], max_len
            )
            assert np.array_equal(split.padded_histories(stage, max_len, timestamps=True), stamps)
        some = split.eval_users[::5]
        assert np.array_equal(
            split.padded_histories(stage, 9, some),
            _pad_reference([split.history(int(u), stage) for u in some], 9),
        )
    users, tails = split.padded_train_tails(60)
    assert np.array_equal(tails, _pad_reference(split.train_sequences(), 60))
    assert [len(split.train_sequence(int(u))) >= 2 for u in users] == [True] * len(users)


# ------------------------------------------------------------------------------------------ bulk generator


def test_bulk_generator_is_deterministic_and_well_formed(tmp_path):
    a = synth_bulk.write_bulk(tmp_path / "a", BULK, chunk_users=70)
    b = synth_bulk.write_bulk(tmp_path / "b", BULK, chunk_users=70)
    for name in ("ratings.csv", "movies.csv", "ground_truth.csv", "synth_config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ratings = pd.read_csv(a / "ratings.csv")
    truth = pd.read_csv(a / "ground_truth.csv")
    assert list(ratings.columns) == ["userId", "movieId", "rating", "timestamp"]
    assert (a / "ratings.csv").read_bytes().startswith(b"userId,movieId,rating,timestamp\n")
    assert abs(len(ratings) - BULK.interactions) < 0.05 * BULK.interactions
    assert not ratings.duplicated(["userId", "movieId"]).any()  # no (user, movie) pair twice, as MovieLens
    assert ratings["userId"].is_monotonic_increasing
    assert (ratings.groupby("userId")["movieId"].apply(lambda s: s.is_monotonic_increasing)).all()
    assert ratings["rating"].isin(np.arange(1, 11) / 2).all()
    by_time = ratings.sort_values(["userId", "timestamp"])
    assert not by_time.duplicated(["userId", "timestamp"]).any()  # strictly increasing per user
    assert ratings.groupby("userId").size().min() >= BULK.min_events - synth_bulk.NOISE_REDRAWS - 5
    assert ratings["movieId"].isin(pd.read_csv(a / "movies.csv")["movieId"]).all()
    assert (
        truth[["userId", "movieId", "timestamp"]].to_numpy()
        == ratings[["userId", "movieId", "timestamp"]].to_numpy()
    ).all()
    assert truth["interest"].between(-1, BULK.interests - 1).all()
    assert 0.05 < (truth["interest"] == -1).mean() < 0.3  # noise near the 10% asked, plus used-up clusters
    meta = json.loads((a / "synth_config.json").read_text())
    assert meta["interactions"] == len(ratings) and meta["generator"] == "msli_core.data.synth_bulk"
    data = load_dataset(a)
    assert data.format == "synthetic" and data.truth is not None and data.n_interactions == len(ratings)


def test_bulk_chunk_walk_moves_forward_inside_each_interest(tmp_path):
    out = synth_bulk.write_bulk(tmp_path / "w", BULK, chunk_users=1000)
    truth = pd.read_csv(out / "ground_truth.csv")
    clusters = pd.read_csv(out / "movies.csv")  # ranks come from the catalog the generator made
    rng = np.random.default_rng(BULK.seed)
    cat = synth_bulk._catalog(rng, BULK)
    place = {
        int(cat.movie_ids[item]): pos for members in cat.cluster_items for pos, item in enumerate(members)
    }
    on = truth[truth["interest"] >= 0].sort_values(["userId", "timestamp"])
    on = on.assign(pos=on["movieId"].map(place))
    steps = on.groupby(["userId", "interest"])["pos"].diff().dropna()
    assert (steps > 0).all()  # never the same item twice, never backwards
    assert (steps <= 3).mean() > 0.5  # mostly small sequential steps (sequential_prob = 0.7)
    assert len(clusters) == BULK.items


def test_synth_cli_bulk_engine_and_its_flags(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "synth", "--engine", "bulk", "--users", "200", "--items", "500", "--interactions", "9000"]
    assert main([*args, "--interests", "8", "--no-truth", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["engine"] == "bulk" and summary["users"] == 200
    assert not (out / "ground_truth.csv").exists()
    assert load_dataset(out).format == "ml-latest"
    assert main(["data", "synth", "--no-truth", "--out", str(tmp_path / "x")]) == 2
    assert "--no-truth applies to the bulk engine only" in capsys.readouterr().err
    big = ["data", "synth", "--engine", "exact", "--users", "200000", "--interactions", "20000000"]
    assert main([*big, "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "add --engine bulk" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# ------------------------------------------------------------------------------------------ bench-load


def test_bench_load_cli_reports_every_stage(tmp_path, capsys):
    out = synth_bulk.write_bulk(tmp_path / "b", BULK, ground_truth=False)
    assert main(["data", "bench-load", str(out), "--max-len", "50", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [s["stage"] for s in result["stages"]] == ["load", "split", "pad"]
    data = load_dataset(out)
    assert (result["events"], result["users"], result["items"]) == (
        data.n_interactions,
        data.n_users,
        data.n_items,
    )
    n_eval = len(leave_one_out(data).eval_users)
    assert result["padded_shapes"]["test"] == [n_eval, 50] and result["padded_shapes"]["train"][1] == 51
    assert result["peak_rss_gib"] >= max(s["peak_rss_gib"] for s in result["stages"]) > 0
    assert result["total_s"] == pytest.approx(sum(s["seconds"] for s in result["stages"]))
    assert main(["data", "bench-load", str(out), "--max-len", "50"]) == 0
    text = capsys.readouterr().out
    assert "stage" in text and "pad" in text and "peak GiB" in text


# ------------------------------------------------------------------------------------------ bad input


def _one_sentence(capsys) -> str:
    """The one error line on stderr (a progress bar may come before it on a slow machine)."""
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("msli: error: ")]
    assert len(errors) == 1 and err.endswith(errors[0]) and "Traceback" not in err
    return errors[0]


def test_a_table_above_the_memory_bound_is_refused_in_one_sentence(tmp_path, monkeypatch, capsys):
    out = synth_bulk.write_bulk(tmp_path / "b", BULK, ground_truth=False)
    monkeypatch.setenv(arrowread.MAX_LOAD_MB_ENV, "0.5")
    assert main(["data", "bench-load", str(out)]) == 2
    err = _one_sentence(capsys)
    assert "ratings.csv holds about" in err and "MSLI_MAX_LOAD_MB" in err
    table = _table(np.random.default_rng(5))
    table.to_parquet(tmp_path / "t.parquet", index=False)
    monkeypatch.setenv(arrowread.MAX_LOAD_MB_ENV, "0.1")
    with pytest.raises(MsliError, match=r"t\.parquet holds about 3,040 ratings"):
        load_dataset(tmp_path / "t.parquet")
    # a table the fast path declines (ISO times) is checked again at the pandas reader's cost per row
    monkeypatch.setenv(arrowread.MAX_LOAD_MB_ENV, str(2800 / 2**20))  # 12 rows: 1.9 kB fast, 3.8 kB not
    with pytest.raises(MsliError, match=r"interactions\.csv holds about"):
        load_dataset(FIXTURES / "interactions.csv")
    monkeypatch.setenv(arrowread.MAX_LOAD_MB_ENV, "lots")
    with pytest.raises(MsliError, match=r"MSLI_MAX_LOAD_MB=.lots. is not a positive number of MB"):
        load_dataset(tmp_path / "t.parquet")


def test_malformed_columns_still_name_the_line(tmp_path, capsys):
    bulk = synth_bulk.write_bulk(tmp_path / "b", BULK, ground_truth=False)
    lines = (bulk / "ratings.csv").read_text().splitlines()
    lines[1234] = lines[1234].replace(",", ",-", 1)  # a negative movie id on line 1235
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ratings.csv").write_text("\n".join(lines) + "\n")
    assert main(["data", "bench-load", str(bad)]) == 2
    assert "line 1235" in _one_sentence(capsys)

    table = _table(np.random.default_rng(6))
    table["event_time"] = table["event_time"].astype(str)
    table.loc[777, "event_time"] = "soon"
    table.to_csv(tmp_path / "g.csv", index=False)
    assert main(["data", "bench-load", str(tmp_path / "g.csv")]) == 2
    assert "line 779" in _one_sentence(capsys)

    frame = pd.DataFrame({"user": ["a", None, "b"], "item": ["x", "y", "z"], "timestamp": [1, 2, 3]})
    frame.to_parquet(tmp_path / "n.parquet", index=False)
    assert main(["data", "bench-load", str(tmp_path / "n.parquet")]) == 2
    assert "row 2: the user id is missing" in _one_sentence(capsys)


def test_the_fast_modules_doctests():
    for module in (arrowread, dataset, synth_bulk):
        failures, _ = doctest.testmod(module)
        assert failures == 0, module.__name__
