"""The computations the pages call, without Streamlit: matching trained models to bench rows, the sweep's
chart shapes and CSV, one recommendation's score path, uploaded file names (hand-built cases)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from msli_core import explain_view, trained
from msli_core.data import sources
from msli_core.errors import MsliError
from msli_core.serving import report


def _model(name, kind, **config):
    loaded = SimpleNamespace(kind=kind, config=SimpleNamespace(**config), training={"parameters": 10})
    return trained.TrainedModel(name, loaded, {"NDCG@10": 0.5}, 1.0, "fp")


def _row(model, segments, candidates, p50, dim=64, layers=2, **extra):
    row = dict(model=model, stage="online", segments=segments, candidates=candidates, history=50,
               backend="torch", dim=dim, layers=layers, p50_ms=p50, p95_ms=p50 * 2)  # fmt: skip
    return {**row, **extra}


def test_each_model_gets_the_p50_of_its_kind_k_width_and_nearest_catalog():
    rows = [
        _row("msli", 4, 1_000, 2.0),
        _row("msli", 4, 10_000, 9.0),  # farther from the 1,200-item catalog
        _row("msli", 4, 1_000, 7.0, dim=32),  # another width
        _row("msli", 8, 1_000, 5.0),  # another K
        _row("msli", 4, 1_000, 1.0, variant="paired"),  # not the catalog request
        _row("msli", 1, 1_000, 0.5),  # the two-tower model is MS-LI with K = 1
    ]
    models = {
        "a": _model("a", "msli", segments=4, dim=64, layers=2, aggregation="attention"),
        "b": _model("b", "two-tower", segments=1, dim=64, layers=2, aggregation="attention"),
        "c": _model("c", "cross-encoder", dim=64, layers=2),  # not measured: left out
    }
    points = {p["name"]: p for p in trained.quality_latency_points(models, rows, n_items=1_200)}
    assert sorted(points) == ["a", "b"]
    assert points["a"]["p50_ms"] == 2.0 and points["a"]["measured_candidates"] == 1_000
    assert points["b"]["p50_ms"] == 0.5 and points["b"]["segments"] == 1
    assert trained.quality_latency_points(models, [], n_items=1_200) == []


def test_msli_without_a_segment_count_plans_no_job_and_says_so():
    jobs, errors = trained.plan_jobs(["msli", "two-tower"], [], "sum", 8, 1)
    assert jobs == [("two-tower d=8", "two-tower", {"dim": 8, "layers": 1})]
    assert errors == ["MS-LI was chosen without a segment count; pick at least one K."]


def test_chart_choices_and_csv_of_a_sweep():
    rows = [_row("msli", 4, 1_000, 2.0), _row("msli", 1, 100, 1.0, backend="onnxruntime")]
    choices = report.chart_choices(rows)
    assert choices["candidates"] == [100, 1_000] and choices["segments"] == [1, 4]
    assert choices["backends"] == ["torch", "onnxruntime"] and choices["both_backends"]
    assert not choices["nearline_pair"] and not choices["encoder_size"]
    assert report.chart_choices([_row("two-tower", 1, 100, 1.0)]) is None
    # the encoder-size sweep times msli whatever the models picked: it alone draws no K chart
    sizes_only = [_row("two-tower", 1, 100, 1.0), _row("msli", 8, 100, 3.0, variant="encoder_size")]
    assert report.chart_choices(sizes_only) is None and report.has_encoder_size_rows(sizes_only)
    assert report.chart_choices([*rows, sizes_only[1]])["encoder_size"]
    from msli_core.serving.bench import ROW_KEYS

    header = report.rows_csv([{"extra": 1, **rows[0]}]).decode().splitlines()[0].split(",")
    assert header == [c for c in ROW_KEYS if c in rows[0]] + ["extra"]  # msli bench's order, then others
    assert report.cost_model_caption({}) is None
    assert report.cost_model_caption({"cost_model_error": {"median_ratio": math.nan}}) is None


def test_score_path_weights_and_shares_add_up_to_the_score():
    ex = {
        "aggregation": "attention",
        "segments": [
            {"index": 0, "start": 0, "end": 2, "titles": ["a", "b"], "weights": [0.25, 0.75]},
            {"index": 1, "start": 2, "end": 3, "titles": ["c"], "weights": [1.0]},
        ],
        "recommendations": [
            {"title": "x", "score": 1.0, "segment_scores": [2.0, -1.0], "contributions": [1.2, -0.2]}
        ],
    }
    path = explain_view.score_path(ex, 0)
    assert path["a_k"].tolist() == pytest.approx([0.6, 0.2])
    assert path["share of score"].sum() == pytest.approx(1.0)
    assert path["heaviest items (pooling weight)"][0] == "b (0.75); a (0.25)"
    assert "= **1.0000**" in explain_view.score_story(ex, 0, path)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "..\\x", "tab\there", "x" * 201])
def test_an_upload_name_that_is_not_a_plain_file_name_is_refused(name):
    with pytest.raises(MsliError, match="not a plain file name"):
        sources.upload_file_name(name)


def test_two_uploads_with_one_name_are_refused_before_anything_is_written():
    with pytest.raises(MsliError, match=r"both named 'r\.csv'"):
        sources.load_uploads([("r.csv", b"1"), (" r.csv ", b"2")])


def test_accuracy_variants_list_each_population_with_its_ratio_and_interval():
    accuracy = {
        "accuracy": 0.8, "chance": 0.5, "users": 10, "accuracy_interval": [0.49, 0.94],
        "strict_accuracy": 0.5, "strict_chance": 0.25, "strict_users": 8, "strict_interval": [0.22, 0.78],
        "return_accuracy": float("nan"), "return_chance": float("nan"), "return_users": 0,
        "return_interval": [float("nan"), float("nan")],
        "closed_accuracy": 0.75, "closed_chance": 0.25, "closed_users": 4, "closed_interval": [0.3, 0.95],
    }  # fmt: skip
    table = explain_view.accuracy_variants(accuracy)
    assert table["variant"].tolist()[-1] == "users with a closed segment"
    assert table["users"].tolist() == [10, 8, 0, 4]
    assert table["× chance"].tolist()[:2] == [pytest.approx(1.6), pytest.approx(2.0)]
    assert table["× chance"].tolist()[3] == pytest.approx(3.0)
