"""report.read_sweep / check_sweep: a sweep file over the size cap is refused for its size (not called
damaged), and check_sweep accepts exactly what the per-row check accepts and names its first problem."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msli_core.errors import MsliError
from msli_core.serving import report
from msli_core.serving.bench_settings import ROW_KEYS


def a_row(**changes) -> dict:
    """One bench row as msli bench writes it (every column in ROW_KEYS order; None where not applicable)."""
    row = dict.fromkeys(ROW_KEYS)
    row.update(
        model="msli",
        stage="online",
        backend="torch",
        segments=4,
        history=50,
        candidates=1000,
        p50_ms=1.5,
        p95_ms=2.25,
        calls=20,
        passes=1,
        threads=1,
        capped=False,
        dim=64,
        layers=2,
    )
    row.update(changes)
    return row


def a_sweep() -> list[dict]:
    """Rows of every kind a sweep holds: online, a nearline update (no N), an untimed estimate (calls 0,
    no p50), an ANN row with fractions and an index size, a note."""
    return [
        a_row(),
        a_row(segments=8, candidates=100_000, p50_ms=12, threads=2, shared=True),
        a_row(stage="nearline", variant="incremental", candidates=None, p50_ms=0.25),
        a_row(calls=0, p50_ms=None, p95_ms=None, estimated_ms=3.5, capped=True, note="too large to time"),
        a_row(
            variant="ann",
            method="ivf",
            exact_fraction=0.5,
            recall_at_10=1.0,
            probes=8,
            lists=64,
            index_bytes=2**40,
            build_s=0.0,
            retrieved=200,
        ),
        a_row(backend="onnx", mean_ms=1.75, qps=571.4, cpu_p50_ms=1.4, heads=2, segment_len=50, rows=4096),
    ]


def per_row(rows) -> str | None:
    """What check_sweep said before the column pass: the first row problem, row by row."""
    return next((p for row in rows if (p := report._row_problem(row))), None)


def column_pass(rows) -> bool:
    """Whether the sweep is accepted (a column-at-a-time pass once did this; one check serves now)."""
    return report.check_sweep(rows, {}) is None


def write_sweep(folder, rows, meta=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_text(json.dumps(rows, indent=1))
    (folder / "meta.json").write_text(json.dumps(meta or {}))


# ---- the size cap ---------------------------------------------------------------------------------------
def test_a_sweep_over_the_size_cap_is_called_too_large_with_its_size_and_the_cap(tmp_path):
    folder = tmp_path / "big"
    write_sweep(folder, [a_row()])
    with open(folder / "bench.json", "r+b") as fh:  # sparse: 65 MiB long, nothing written but one byte
        fh.seek((65 << 20) - 1)
        fh.write(b"]")
    with pytest.raises(MsliError) as err:
        report.read_sweep(folder, fix="the app skips it")
    sentence = str(err.value)
    assert sentence == (
        f"The sweep {folder} has a bench.json of 65.0 MiB, over the 64 MiB a sweep file may have, so it is "
        "not read (a sweep with fewer values in each setting stays under it); the app skips it."
    )
    assert "damaged" not in sentence and "cannot be read" not in sentence


def test_a_meta_json_over_the_cap_is_named_as_meta_json(tmp_path):
    folder = tmp_path / "big-meta"
    write_sweep(folder, [a_row()])
    with open(folder / "meta.json", "r+b") as fh:
        fh.seek((100 << 20) - 1)
        fh.write(b" ")
    with pytest.raises(MsliError, match=r"has a meta\.json of 100\.0 MiB, over the 64 MiB"):
        report.read_sweep(folder)


def test_a_sweep_at_the_cap_is_read(tmp_path, monkeypatch):
    folder = tmp_path / "at-cap"
    write_sweep(folder, a_sweep())
    size = (folder / "bench.json").stat().st_size
    monkeypatch.setattr(report, "MAX_SWEEP_BYTES", size)
    assert report.read_sweep(folder)[0] == a_sweep()
    monkeypatch.setattr(report, "MAX_SWEEP_BYTES", size - 1)
    with pytest.raises(MsliError, match="over the"):
        report.read_sweep(folder)


# ---- the column pass decides as the rows do ------------------------------------------------------------
def test_a_whole_sweep_of_every_kind_of_row_passes_the_column_pass(tmp_path):
    rows = a_sweep()
    assert per_row(rows) is None and column_pass(rows)
    older = [{k: v for k, v in row.items() if k not in ("recall_at_10", "table")} for row in rows]
    assert column_pass(older)  # an older sweep (fewer columns, the same in every row) is decided too
    write_sweep(tmp_path / "s", rows, {"cpu": "x"})
    back, meta = report.read_sweep(tmp_path / "s")
    assert back == rows and meta == {"cpu": "x"} and all(list(r) == list(ROW_KEYS) for r in back)
    write_sweep(tmp_path / "old", older)
    back, _ = report.read_sweep(tmp_path / "old")
    assert all(list(r) == list(ROW_KEYS) for r in back) and back[0]["recall_at_10"] is None


BAD_VALUES = {
    "a string": "1",
    "true": True,
    "a float": 2.5,
    "a whole float": 2.0,
    "NaN": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "negative": -1,
    "a small negative": -1e-9,
    "2**53 + 1": 2**53 + 1,
    "2**53": 2**53,
    "2**52 + 1": 2**52 + 1,
    "past float64": 10**400,
    "above 1": 1.5,
    "null": None,
    "a list": [1],
    "an object": {"a": 1},
}


@pytest.mark.parametrize("value", sorted(BAD_VALUES))
def test_every_column_with_every_odd_value_is_decided_as_the_rows_decide(value):
    """Each value in each column of one row of a good sweep: check_sweep says what the per-row check says
    (the same first problem, or none), and the column pass never passes a sweep with a problem."""
    for key in ROW_KEYS:
        for index in (0, 2, 5):
            rows = a_sweep()
            rows[index][key] = BAD_VALUES[value]
            expected = per_row(rows)
            assert report.check_sweep(rows, {}) == expected, (key, index, value)
            if expected is not None:
                assert not column_pass(rows), (key, index, value)


@pytest.mark.parametrize(
    "change",
    ["drop-required", "drop-candidates", "drop-p50", "extra-key", "reorder", "not-an-object", "one-key"],
)
def test_rows_of_other_shapes_are_decided_as_the_rows_decide(change):
    for index in (0, 2, 3):
        rows = a_sweep()
        row = rows[index]
        if change == "drop-required":
            del row["backend"]
        elif change == "drop-candidates":
            del row["candidates"]
        elif change == "drop-p50":
            del row["p50_ms"]
        elif change == "extra-key":
            row["mine"] = "anything"
        elif change == "reorder":
            rows[index] = dict(reversed(row.items()))
        elif change == "not-an-object":
            rows[index] = [row]
        else:
            rows[index] = {"model": "msli"}
        expected = per_row(rows)
        assert report.check_sweep(rows, {}) == expected, (change, index)
        if expected is not None:
            assert not column_pass(rows)


def test_a_column_missing_from_every_row_is_decided_as_the_rows_decide():
    for key in ("candidates", "p50_ms", "stage", "calls", "note"):
        rows = [{k: v for k, v in row.items() if k != key} for row in a_sweep()]
        expected = per_row(rows)
        assert report.check_sweep(rows, {}) == expected, key
        assert column_pass(rows) == (expected is None), key


VALUES = st.sampled_from(
    [
        None,
        0,
        1,
        7,
        2**52,
        2**52 + 1,
        2**53,
        2**53 + 1,
        -1,
        0.0,
        0.5,
        1.0,
        1.5,
        3.25,
        -0.5,
        math.nan,
        math.inf,
        "msli",
        "nearline",
        "online",
        "",
        True,
        False,
        [1],
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(ROW_KEYS), VALUES), max_size=6))
def test_random_changes_are_decided_as_the_rows_decide(changes):
    rows = a_sweep()
    for index, key, value in changes:
        rows[index][key] = value
    expected = per_row(rows)
    assert report.check_sweep(rows, {}) == expected
    if column_pass(rows):
        assert expected is None


def test_a_large_sweep_is_decided_by_the_column_pass_and_a_late_problem_is_found():
    """100,000 rows: the column pass accepts them (the per-row loop is not needed), and one bad value in
    the last row is still the sentence the rows give."""
    rng = random.Random(0)
    rows = [
        a_row(candidates=rng.randrange(1, 10**6), p50_ms=rng.random() * 10, recall_at_10=rng.random())
        for _ in range(100_000)
    ]
    assert column_pass(rows) and report.check_sweep(rows, {}) is None
    rows[-1]["recall_at_10"] = 1.0000001
    assert (
        report.check_sweep(rows, {})
        == "a row has recall_at_10 = '1.0000001' (float), not a number from 0 to 1"
    )
