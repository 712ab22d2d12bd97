"""The synthetic generator (issue 2 item 5): determinism, layout, planted structure, CLI, atomic writes,
and a sanity check that the planted structure leaves room for sequential and multi-segment models."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msli_core.cli import main
from msli_core.data import synth
from msli_core.data.dataset import MOVIELENS_GENRES, leave_one_out
from msli_core.data.synth import NOISE_INTEREST, SynthConfig, generate, to_dataset, write_synthetic
from msli_core.errors import MsliError
from msli_core.outputs import MARKER

SMALL = SynthConfig(seed=7, users=80, items=400, interactions=6000, interests=8)
FILES = ("ratings.csv", "movies.csv", "ground_truth.csv", "synth_config.json")


@pytest.fixture(scope="module")
def default_data() -> synth.SyntheticData:
    return generate(SynthConfig())


@pytest.fixture(scope="module")
def small_data() -> synth.SyntheticData:
    return generate(SMALL)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frames(small_data):
    again = generate(SMALL)
    pd.testing.assert_frame_equal(small_data.ratings, again.ratings)
    pd.testing.assert_frame_equal(small_data.movies, again.movies)
    pd.testing.assert_frame_equal(small_data.truth, again.truth)


def test_other_seed_gives_other_data(small_data):
    other = generate(dataclasses.replace(SMALL, seed=8))
    assert not small_data.ratings.equals(other.ratings)
    assert not small_data.movies["title"].equals(other.movies["title"])


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = write_synthetic(tmp_path / "a", SMALL)
    b = write_synthetic(tmp_path / "b", SMALL)
    for name in FILES:
        assert _sha(a / name) == _sha(b / name), name


# ---------------------------------------------------------------------------------------- layout


def test_frames_have_ml_latest_columns_and_ranges(small_data):
    r, m, t = small_data.ratings, small_data.movies, small_data.truth
    assert list(r.columns) == ["userId", "movieId", "rating", "timestamp"]
    assert list(m.columns) == ["movieId", "title", "genres"]
    assert list(t.columns) == ["userId", "movieId", "timestamp", "phase", "interest"]
    assert r["userId"].nunique() == SMALL.users and r["userId"].min() == 1
    assert abs(len(r) - SMALL.interactions) <= 0.02 * SMALL.interactions
    assert r["rating"].between(0.5, 5.0).all() and ((r["rating"] * 2) % 1 == 0).all()
    start, end = pd.Timestamp("2015-01-01").timestamp(), pd.Timestamp("2021-01-01").timestamp()
    assert r["timestamp"].between(start, end - 1).all()
    assert m["movieId"].is_unique and m["movieId"].is_monotonic_increasing and len(m) == SMALL.items
    assert set(r["movieId"]) <= set(m["movieId"])
    assert m["title"].str.match(r"^.+ \((19|20)\d\d\)$").all()
    genres = set("|".join(m["genres"]).split("|"))
    assert genres <= set(MOVIELENS_GENRES) - {"unknown"}
    # ml-latest-small order: by user, then movie id
    assert r.equals(r.sort_values(["userId", "movieId"], kind="stable"))
    # the truth is aligned with the ratings, row for row
    for col in ("userId", "movieId", "timestamp"):
        assert (t[col].to_numpy() == r[col].to_numpy()).all()


def test_files_are_ml_latest_small_layout(tmp_path):
    out = write_synthetic(tmp_path / "d", SMALL)
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, MARKER])  # marker: "msli wrote this"
    ratings = (out / "ratings.csv").read_bytes()
    assert b"\r" not in ratings
    assert ratings.startswith(b"userId,movieId,rating,timestamp\n")
    assert (out / "movies.csv").read_bytes().startswith(b"movieId,title,genres\n")
    assert (out / "ground_truth.csv").read_bytes().startswith(b"userId,movieId,timestamp,phase,interest\n")
    movies_text = (out / "movies.csv").read_text(encoding="utf-8")
    assert ", The (" in movies_text and '",' in movies_text  # titles with commas are quoted
    back = pd.read_csv(out / "movies.csv")
    assert back["title"].str.contains(", The").any()
    first = ratings.split(b"\n")[1].split(b",")
    assert first[2].endswith(b".0") or first[2].endswith(b".5")  # ratings written as 4.0 / 3.5
    meta = json.loads((out / "synth_config.json").read_text())
    assert meta["config"]["seed"] == SMALL.seed and meta["interactions"] == len(
        pd.read_csv(out / "ratings.csv")
    )


def test_to_dataset_keeps_counts_and_aligns_truth(small_data):
    data = to_dataset(small_data)
    assert data.format == "synthetic"
    assert data.n_users == SMALL.users
    assert data.n_items == small_data.ratings["movieId"].nunique()
    assert data.n_interactions == len(small_data.ratings)
    # after the chronological re-sort, the truth still describes the same row
    key = small_data.truth.set_index(["userId", "movieId", "timestamp"])
    inter = data.interactions
    users = data.user_ids[inter["user"].to_numpy()].astype(int)
    items = data.item_ids[inter["item"].to_numpy()].astype(int)
    expected = key.loc[list(zip(users, items, inter["timestamp"], strict=True))]
    assert (expected["interest"].to_numpy() == data.truth["interest"].to_numpy()).all()
    assert (expected["phase"].to_numpy() == data.truth["phase"].to_numpy()).all()
    assert data.items.loc[1:, "year"].notna().all()


# ---------------------------------------------------------------------------------------- structure


def test_no_duplicates_and_strictly_increasing_time(default_data):
    t = default_data.truth
    assert not t.duplicated(["userId", "movieId", "timestamp"]).any()
    assert not t.duplicated(["userId", "movieId"]).any()  # repeat_prob 0: each movie rated once per user
    chrono = t.sort_values(["userId", "timestamp"], kind="stable")
    same_user = np.diff(chrono["userId"].to_numpy()) == 0
    gaps = np.diff(chrono["timestamp"].to_numpy())[same_user]
    assert (gaps > 0).all()
    # phases follow time: never go back
    assert (np.diff(chrono["phase"].to_numpy())[same_user] >= 0).all()
    # sessions: most gaps are minutes, some are days (a session-gap segmenter has something to find)
    long_gaps = (gaps > 3600).mean()
    assert 0.05 < long_gaps < 0.4
    assert np.median(gaps) < 600


def test_every_user_has_about_one_phase_per_phase_events_with_their_own_interest(default_data):
    t, cfg = default_data.truth, default_data.config
    phases = t.groupby("userId")["phase"].agg(["min", "max", "nunique"])
    assert (phases["min"] == 0).all()
    assert phases["max"].add(1).between(cfg.min_phases, cfg.max_phases).all()
    assert (phases["nunique"] == phases["max"] + 1).all()  # phases are 0..P-1 without gaps
    assert set(phases["max"].add(1)) == set(range(cfg.min_phases, cfg.max_phases + 1))
    # about one phase per phase_events events (= S for K = 4 at L_max = 200), so a phase fills about one
    # segment and the 4 segments of a history mostly hold different interests
    events = t.groupby("userId").size()
    expected = np.clip(np.round(events / cfg.phase_events), cfg.min_phases, cfg.max_phases)
    assert (phases["max"].add(1) == expected).mean() > 0.95
    lengths = default_data.phases["events"]
    assert 0.8 * cfg.phase_events <= lengths.mean() <= 1.2 * cfg.phase_events
    # each phase has its own interest, different from the user's other phases, and generates most of it
    ph = default_data.phases
    assert (ph.groupby("userId")["interest"].nunique() == ph.groupby("userId").size()).all()
    assert (ph.groupby("userId")["events"].sum() == t.groupby("userId").size()).all()
    joined = t.join(ph.set_index(["userId", "phase"])["interest"].rename("own"), on=["userId", "phase"])
    on = joined[joined["interest"] != NOISE_INTEREST]
    assert (on["interest"] == on["own"]).mean() > 0.7


def test_interest_events_use_items_of_that_interest(default_data):
    t = default_data.truth
    cluster = default_data.clusters.set_index("movieId")["interest"]
    on = t[t["interest"] != NOISE_INTEREST]
    assert (cluster.loc[on["movieId"]].to_numpy() == on["interest"].to_numpy()).all()
    # the clusters' items share the cluster's genres
    movies = default_data.movies.set_index("movieId")
    for row in default_data.interests.itertuples():
        members = default_data.clusters.loc[default_data.clusters["interest"] == row.interest, "movieId"]
        for genre in row.genres.split("|"):
            assert movies.loc[members, "genres"].str.contains(genre, regex=False).all()


def test_later_phases_return_to_earlier_interests(default_data):
    t, ph = default_data.truth, default_data.phases
    own = ph.set_index(["userId", "phase"])["interest"]
    on = t[t["interest"] != NOISE_INTEREST].join(own.rename("own"), on=["userId", "phase"])
    later = on[on["phase"] > 0]
    earlier_interests = {
        (u, p): set(g.loc[g["phase"] < p, "interest"]) for u, g in ph.groupby("userId") for p in g["phase"]
    }
    keys = zip(later["userId"], later["phase"], later["interest"], strict=True)
    is_return = np.array([k in earlier_interests[(u, p)] for u, p, k in keys])
    cfg = default_data.config
    assert abs(is_return.mean() - cfg.return_prob) < 0.05
    # the rest is the phase's own interest, or (rarely) a similar cluster when a heavy user used one up
    moved = ~is_return & (later["interest"] != later["own"]).to_numpy()
    assert moved.mean() < 0.08
    assert (on.loc[on["phase"] == 0, "interest"] == on.loc[on["phase"] == 0, "own"]).mean() > 0.9


def test_popularity_is_zipf_like_and_activity_skewed_and_long(default_data):
    r = default_data.ratings
    counts = np.sort(r["movieId"].value_counts().to_numpy())[::-1]
    top = counts[: len(default_data.movies) // 10].sum() / len(r)
    assert top > 0.3  # top 10% of the catalog hold more than 3x their uniform share
    ranks = np.arange(1, len(counts) + 1)
    slope = np.polyfit(np.log(ranks[:500]), np.log(counts[:500]), 1)[0]
    assert slope < -0.3
    per_user = r.groupby("userId").size()
    cfg = default_data.config
    assert per_user.min() >= cfg.min_events and per_user.max() <= cfg.max_events
    assert per_user.mean() > 1.05 * per_user.median()  # right-skewed
    assert per_user.max() >= 2 * per_user.median()
    # long enough for the default K = 4 segments of S = 50 (L_max = 200): the mean history is L_max,
    # and most users fill at least 3 of the 4 segments
    assert abs(per_user.mean() - 200) < 10
    assert (per_user > 100).mean() > 0.85


def test_noise_rate_is_close_to_config(default_data, small_data):
    for d in (default_data, small_data):
        rate = (d.truth["interest"] == NOISE_INTEREST).mean()
        assert abs(rate - d.config.noise) < 0.02
    quiet = generate(dataclasses.replace(SMALL, noise=0.0))
    assert (quiet.truth["interest"] == NOISE_INTEREST).mean() < 0.01
    loud = generate(dataclasses.replace(SMALL, noise=1.0))
    assert (loud.truth["interest"] == NOISE_INTEREST).all()


@pytest.mark.parametrize(
    "config",
    [
        SynthConfig(seed=1, users=30, items=40, interests=4, interactions=900, noise=0.3),  # users see it all
        SynthConfig(seed=2, users=5, items=40, interests=4, interactions=200, noise=1.0),
        SynthConfig(seed=3, users=10, items=20, interests=4, interactions=50, min_events=5),  # 5 each
        SynthConfig(seed=4, users=20, items=200, interests=3, interactions=4000),  # fewer interests than
        # the phases of a long history would want: one phase per interest at most
    ],
)
def test_edge_configs_stay_valid(config):
    d = generate(config)
    t = d.truth
    assert not t.duplicated(["userId", "movieId"]).any()
    assert t.groupby("userId").size().between(config.min_events, config.most_events).all()
    assert (
        t.groupby("userId")["phase"].max().add(1).between(1, min(config.max_phases, config.interests)).all()
    )
    assert set(t["interest"]) <= set(range(-1, config.interests))


# ---------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"users": 0}, "--users"),
        ({"items": -5}, "--items"),
        ({"interactions": -1}, "--interactions"),
        ({"interests": 0}, "--interests"),
        ({"noise": 1.5}, "--noise"),
        ({"noise": -0.1}, "--noise"),
        ({"items": 30}, "--items"),
        ({"seed": -1}, "--seed"),
        ({"interactions": 100}, "--interactions"),
        ({"interactions": 10_000_000}, "--interactions"),
    ],
)
def test_bad_config_names_the_flag(change, flag):
    with pytest.raises(MsliError, match=flag):
        dataclasses.replace(SynthConfig(), **change).validate()


# ---------------------------------------------------------------------------------------- CLI


def test_cli_writes_and_prints_json(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["--users", "60", "--items", "300", "--interactions", "3000", "--interests", "6", "--seed", "2"]
    rc = main(["data", "synth", "--out", str(out), *args, "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["users"] == 60 and summary["out"] == str(out)
    assert summary["interactions"] == len(pd.read_csv(out / "ratings.csv"))
    assert summary["items"] == pd.read_csv(out / "ratings.csv")["movieId"].nunique()
    rc = main(["data", "synth", "--out", str(tmp_path / "plain"), *args])
    assert rc == 0
    assert "Wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--users", "-3"], "--users"),
        (["--noise", "2"], "--noise"),
        (["--items", "10", "--interests", "20"], "--items"),
        (["--interactions", "0"], "--interactions"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, flag):
    out = tmp_path / "bad"
    assert main(["data", "synth", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_non_numeric_argument_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", "--out", str(tmp_path / "x"), "--users", "many"])
    assert exc.value.code == 2
    assert "--users" in capsys.readouterr().err


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synth._csv_bytes

    def failing(frame, float_format=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(frame, float_format)

    monkeypatch.setattr(synth, "_csv_bytes", failing)
    with pytest.raises(OSError):
        write_synthetic(tmp_path / "out", SMALL)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_folder(tmp_path, monkeypatch):
    out = write_synthetic(tmp_path / "out", SMALL)
    before = {name: _sha(out / name) for name in FILES}

    def failing(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "_csv_bytes", failing)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic(out, dataclasses.replace(SMALL, seed=99))
    assert {name: _sha(out / name) for name in FILES} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# ---------------------------------------------------------------------------------------- sample_data


def test_sample_data_is_what_the_documented_command_writes(sample_data_dir, tmp_path):
    if not (sample_data_dir / "ratings.csv").exists():
        pytest.skip("sample_data/ not generated yet")
    fresh = write_synthetic(tmp_path / "fresh", SynthConfig())
    for name in FILES:
        assert _sha(fresh / name) == _sha(sample_data_dir / name), f"sample_data/{name} is stale"
    readme = (sample_data_dir / "README.md").read_text(encoding="utf-8")
    assert "msli data synth --out /tmp/sample && cp" in readme
    for name in FILES:
        assert _sha(sample_data_dir / name) in readme, f"README lacks the checksum of {name}"


def test_summary_floats_are_rounded_so_every_cpu_writes_the_same_bytes(tmp_path):
    """The last bits of a float sum differ between CPUs (summation order); the summary is rounded."""
    out = write_synthetic(tmp_path / "d", SMALL)
    meta = json.loads((out / "synth_config.json").read_text(encoding="utf-8"))
    for interest in meta["interests"]:
        value = interest["popularity"]
        assert value == round(value, synth.SUMMARY_DIGITS) and len(repr(value)) <= 2 + synth.SUMMARY_DIGITS


def test_documented_sample_command_is_refused_because_the_folder_holds_a_readme(sample_data_dir, capsys):
    before = {p.name: _sha(p) for p in sample_data_dir.iterdir() if p.is_file()}
    assert main(["data", "synth", "--out", str(sample_data_dir)]) == 2
    assert "did not create" in capsys.readouterr().err
    assert {p.name: _sha(p) for p in sample_data_dir.iterdir() if p.is_file()} == before


def test_loader_reads_sample_data_like_to_dataset(sample_data_dir, default_data):
    formats = pytest.importorskip("msli_core.data.formats")
    if not (sample_data_dir / "ratings.csv").exists():
        pytest.skip("sample_data/ not generated yet")
    loaded = formats.load_dataset(sample_data_dir)
    mine = to_dataset(default_data)
    assert loaded.format == "synthetic"
    assert (loaded.n_users, loaded.n_items, loaded.n_interactions) == (
        mine.n_users,
        mine.n_items,
        mine.n_interactions,
    )
    assert (loaded.item_ids == mine.item_ids).all() and (loaded.user_ids == mine.user_ids).all()
    pd.testing.assert_frame_equal(
        loaded.interactions[["user", "item", "timestamp"]], mine.interactions[["user", "item", "timestamp"]]
    )
    pd.testing.assert_frame_equal(loaded.truth[["phase", "interest"]], mine.truth[["phase", "interest"]])
    assert (loaded.items["genres"] == mine.items["genres"]).all()


# ---------------------------------------------------------------------------------------- room for models


def _ndcg_at_10(split, score, pop):
    """Mean NDCG@10 over evaluated users, full ranking, earlier items masked (docs/design.md §3)."""
    gains = []
    for user in split.eval_users:
        history, target = split.history(user, "test"), split.target(user, "test")
        scores = score(user, history[-200:]).astype(np.float64) + 1e-6 * pop  # popularity breaks ties
        scores[0] = -np.inf
        scores[history] = -np.inf
        rank = int((scores > scores[target]).sum())
        gains.append(1.0 / np.log2(rank + 2) if rank < 10 else 0.0)
    return float(np.mean(gains))


def planted_structure_report(data) -> dict:
    """Simple numpy baselines on the leave-one-out split: how much room the planted structure leaves.

    - popularity: training counts;
    - recency (sequential item-kNN): transitions (a -> b within 3 steps, weight 1/distance) from the
      last 3 history items: what a one-vector model that attends to the end of the history can do;
    - recency + per-interest memory (oracle-ish, reads the ground truth of the *history* only): adds,
      for every interest in the history, transitions from that interest's items, max over interests;
      the analogue of one segment vector per interest, the upper end of what several segments add;
    - recency + fixed segments: the same with 4 segments of 50 events instead of the truth;
    - recency + bag: transitions from the whole history summed (linear, like one user vector).
    """
    split = leave_one_out(data)
    n = data.n_items
    trains = [split.train_sequence(u) for u in range(1, data.n_users + 1)]
    pop = np.bincount(np.concatenate(trains), minlength=n + 1).astype(np.float64)
    trans = np.zeros((n + 1, n + 1))  # (N+1, N+1) item -> next-item counts
    for seq in trains:
        for dist in (1, 2, 3):
            if len(seq) > dist:
                np.add.at(trans, (seq[:-dist], seq[dist:]), 1.0 / dist)
    interest = data.truth["interest"].to_numpy()
    offsets = data._offsets

    def unit(v):
        return v / (v.max() + 1e-12)

    def recency(_user, h):
        tail = h[-3:]
        return trans[tail].T @ np.array([0.25, 0.5, 1.0])[-len(tail) :]

    def per_interest(user, h):
        full = split.history(user, "test")
        it = interest[offsets[user] : offsets[user] + len(full)][-len(h) :]
        parts = [unit(trans[h[it == k]].sum(0)) for k in np.unique(it[it >= 0])]
        return np.max(parts, axis=0) if parts else np.zeros(n + 1)

    def segments(_user, h, size=50, k=4):
        starts = list(range(0, len(h), size))[-k:]
        return np.max([unit(trans[h[s : s + size]].sum(0)) for s in starts], axis=0)

    report = {
        "popularity": _ndcg_at_10(split, lambda _u, _h: pop.copy(), pop),
        "recency": _ndcg_at_10(split, recency, pop),
        "recency+per_interest": _ndcg_at_10(
            split, lambda u, h: unit(recency(u, h)) + 0.5 * per_interest(u, h), pop
        ),
        "recency+bag": _ndcg_at_10(
            split, lambda u, h: unit(recency(u, h)) + 0.3 * unit(trans[h].sum(0)), pop
        ),
        "recency+4_segments": _ndcg_at_10(
            split, lambda u, h: unit(recency(u, h)) + 0.3 * segments(u, h), pop
        ),
    }
    # Which interest generated the held-out item: the current (last) phase's, an earlier one's, or noise.
    phase = data.truth["phase"].to_numpy()
    kinds: Counter = Counter()
    for user in split.eval_users:
        a, b = offsets[user], offsets[user + 1]
        target_interest, last_phase = interest[b - 1], phase[b - 1]
        current = interest[a:b][(phase[a:b] == last_phase) & (interest[a:b] >= 0)]
        main = np.bincount(current).argmax() if len(current) else -2
        kinds["noise" if target_interest < 0 else "current" if target_interest == main else "earlier"] += 1
    report["held_out"] = dict(kinds)
    # Explanation accuracy of the crude segment scorer: is the segment whose transitions score the held-out
    # item highest the one holding most events of the interest that generated it? (chance: 1 / segments)
    hits = []
    for user in split.eval_users:
        h = split.history(user, "test")[-200:]
        t_interest = interest[offsets[user + 1] - 1]
        starts = list(range(0, len(h), 50))[-4:]
        if t_interest < 0 or len(starts) < 2:
            continue
        it = interest[offsets[user + 1] - 1 - len(h) : offsets[user + 1] - 1]
        target = split.target(user, "test")
        contrib = [trans[h[s : s + 50], target].sum() for s in starts]
        owner = [(it[s : s + 50] == t_interest).sum() for s in starts]
        hits.append((len(starts), int(np.argmax(contrib)) == int(np.argmax(owner))))
    full = [hit for k, hit in hits if k == 4]  # users with all 4 segments: chance is 1/4
    report["explanation_accuracy_all"] = float(np.mean([hit for _, hit in hits]))
    report["explanation_chance_all"] = float(np.mean([1 / k for k, _ in hits]))
    report["explanation_accuracy_4_segments"] = float(np.mean(full))
    report["explanation_users_4_segments"] = len(full)
    report["held_out_current_share"] = kinds["current"] / max(1, kinds["current"] + kinds["earlier"])
    return report


def test_planted_structure_leaves_room_for_sequential_and_multi_segment_models(default_data, capsys):
    report = planted_structure_report(to_dataset(default_data))
    with capsys.disabled():
        print("\nplanted-structure report:", json.dumps(report, indent=None, default=float))
    assert report["recency"] > 3 * report["popularity"]
    assert report["recency+per_interest"] > 1.1 * report["recency"]
    assert report["recency+4_segments"] > report["recency"]
    assert 0.5 <= report["held_out_current_share"] <= 0.75
    assert report["explanation_accuracy_4_segments"] > 2 * 0.25


def test_the_short_profile_writes_a_log_where_most_users_have_under_ten_events(tmp_path):
    from msli_core.cli import main
    from msli_core.data import load_dataset

    assert main(["data", "synth", "--profile", "short", "--users", "400", "--interactions", "3200",
                 "--out", str(tmp_path / "short")]) == 0  # fmt: skip
    data = load_dataset(tmp_path / "short")
    lengths = [len(data.sequences[u]) for u in range(1, data.n_users + 1)]
    assert data.n_users == 400 and min(lengths) >= 3
    assert sum(n < 10 for n in lengths) / len(lengths) > 0.6
