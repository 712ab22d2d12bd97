"""msli_core.viz: every figure has data, titles, and the numbers it claims (hand-checkable cases)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from msli_core import viz
from msli_core.data.dataset import build_dataset
from msli_core.errors import MsliError


@pytest.fixture(scope="module")
def tiny_data():
    """3 users with 5, 3 and 1 events over 4 items; timestamps in two months of 2020; ratings 1..5."""
    rows = [
        ("u1", "a", 1_580_000_000, 5.0),
        ("u1", "b", 1_580_000_100, 4.0),
        ("u1", "c", 1_580_000_200, 3.0),
        ("u1", "d", 1_583_000_000, 2.0),
        ("u1", "a", 1_583_000_100, 1.0),
        ("u2", "a", 1_580_000_300, 4.0),
        ("u2", "b", 1_583_000_300, 4.0),
        ("u2", "c", 1_583_000_400, 5.0),
        ("u3", "a", 1_583_000_500, 3.0),
    ]
    raw = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    meta = pd.DataFrame(
        {
            "item": ["a", "b", "c", "d"],
            "title": ["A", "B", "C", "D"],
            "year": [2000] * 4,
            "genres": ["Drama"] * 4,
        }
    )
    return build_dataset(raw, items_meta=meta, format="test", source="<tiny>")


def _ys(fig: go.Figure, i: int = 0) -> list:
    return list(np.asarray(fig.data[i].y).tolist())


def test_activity_long_tail_sorts_users_by_events(tiny_data):
    fig = viz.activity_long_tail(tiny_data)
    assert _ys(fig) == [5, 3, 1]
    assert list(fig.data[0].x) == [1, 2, 3]
    assert fig.layout.yaxis.type == "log"
    # top 10% of 3 users is the first user: 5 of 9 events
    assert "56%" in fig.layout.annotations[0].text


def test_item_popularity_is_a_sorted_log_log_curve(tiny_data):
    fig = viz.item_popularity(tiny_data)
    assert _ys(fig) == [4, 2, 2, 1]  # a: 4, b: 2, c: 2, d: 1
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_interactions_over_time_counts_months_and_mean_rating(tiny_data):
    fig = viz.interactions_over_time(tiny_data)
    bars, line = fig.data
    assert list(np.asarray(bars.y)) == [4, 5]  # January 2020: 4 events, February/March: 5
    assert line.y[0] == pytest.approx((5 + 4 + 3 + 4) / 4)


def test_history_length_histogram_marks_the_median(tiny_data):
    fig = viz.history_length_distribution(tiny_data, max_history=4)
    assert sorted(np.asarray(fig.data[0].x).tolist()) == [1, 3, 5]
    texts = [a.text for a in fig.layout.annotations]
    assert any("median 3" in t for t in texts)
    assert any("L_max 4" in t and "33%" in t for t in texts)  # 1 of 3 users is longer than 4


def test_every_data_figure_has_points_and_a_reading_guide(tiny_data):
    figures = viz.data_figures(tiny_data)
    assert [k for k, _ in figures] == ["activity", "popularity", "over_time", "history_length"]
    for key, fig in figures:
        assert viz.figure_point_count(fig) > 0, key
        assert fig.layout.title.text, key
        assert viz.HOW_TO_READ[key], key


def test_figure_point_count_of_an_empty_figure_is_zero():
    assert viz.figure_point_count(go.Figure()) == 0
    assert viz.figure_point_count(go.Figure(go.Bar(x=[1, 2], y=[3, 4]))) == 2


def test_write_html_embeds_every_figure_and_its_caption(tiny_data, tmp_path):
    path = viz.write_html(viz.data_figures(tiny_data), tmp_path / "report.html", title="Data report")
    html = path.read_text()
    assert html.count("plotly-graph-div") >= 4
    assert viz.HOW_TO_READ["popularity"] in html
    assert html.count("<script") >= 4


def test_rows_without_the_needed_columns_are_refused_with_a_sentence():
    with pytest.raises(MsliError, match="missing columns: p50_ms"):
        viz.common._require_rows([{"segments": 1}], "latency rows", ["segments", "p50_ms"])


def _bench_rows():
    rows = []
    for k in (1, 4, 16):
        for backend, scale in (("torch", 1.0), ("onnxruntime", 0.5)):
            rows.append(dict(model="msli", stage="online", backend=backend, segments=k, candidates=1000,
                             history=50, p50_ms=0.1 * k * scale, p95_ms=0.15 * k * scale))  # fmt: skip
        rows.append(dict(model="msli", stage="offline", backend="torch", segments=k, candidates=1000,
                         history=50, p50_ms=2.0, p95_ms=2.5))  # fmt: skip
        rows.append(dict(model="msli", stage="nearline", variant="incremental", backend="torch", segments=k,
                         candidates=None, history=50, p50_ms=0.5, p95_ms=0.6))  # fmt: skip
        rows.append(dict(model="msli", stage="nearline", variant="full", backend="torch", segments=k,
                         candidates=None, history=50, p50_ms=0.5 * k, p95_ms=0.6 * k))  # fmt: skip
        rows.append(dict(model="floor", stage="floor", variant="matmul", backend="numpy", segments=k,
                         candidates=1000, history=50, p50_ms=0.01 * k, p95_ms=0.012 * k))  # fmt: skip
    rows.append(dict(model="cross-encoder", stage="online", backend="torch", segments=1, candidates=1000,
                     history=50, p50_ms=300.0, p95_ms=320.0, capped=True))  # fmt: skip
    return rows


def test_latency_vs_segments_draws_p50_band_cross_encoder_and_floor():
    fig = viz.latency_vs_segments(_bench_rows(), candidates=1000, history=50)
    names = [t.name for t in fig.data]
    assert "MS-LI online p50" in names
    line = fig.data[names.index("MS-LI online p50")]
    assert list(line.x) == [1, 4, 16] and list(line.y) == pytest.approx([0.1, 0.4, 1.6])
    band = fig.data[names.index("MS-LI p50–p95")]
    assert list(band.y) == pytest.approx([0.15, 0.6, 2.4, 1.6, 0.4, 0.1])  # p95 out, p50 back
    assert any("cross-encoder" in n and "time budget" in n for n in names)
    assert "floor: bare numpy matmul" in names
    assert fig.layout.yaxis.type == "log"


def test_latency_vs_segments_ignores_request_candidate_and_paired_rows():
    other = ("request_candidates", "cached_candidates", "paired")
    rows = _bench_rows() + [
        dict(model="msli", stage="online", variant=v, backend="torch", segments=4, candidates=1000,
             history=50, p50_ms=99.0, p95_ms=99.0) for v in other
    ]  # fmt: skip
    line = next(t for t in viz.latency_vs_segments(rows, 1000, 50).data if t.name == "MS-LI online p50")
    assert list(line.y) == pytest.approx([0.1, 0.4, 1.6])  # the catalog request only


def test_serving_ladder_draws_every_rung_and_both_floors_against_n():
    rows = []
    for n in (1000, 100_000):
        for model, k, ms in (("msli", 8, 0.2), ("two-tower", 1, 0.05), ("full-forward", 1, 3.0)):
            rows.append(dict(model=model, stage="online", backend="torch", segments=k, candidates=n,
                             history=50, p50_ms=ms * n / 1000, dim=64))  # fmt: skip
        for variant, ms in (("compute", 0.01), ("bandwidth", 0.02)):
            rows.append(dict(model="msli", stage="floor", variant=variant, backend="numpy", segments=8,
                             candidates=n, history=50, p50_ms=ms * n / 1000))  # fmt: skip
    rows.append(dict(model="cross-encoder", stage="online", backend="torch", segments=1, candidates=1000,
                     history=50, p50_ms=300.0))  # fmt: skip
    rows.append(dict(model="cross-encoder", stage="online", backend="torch", segments=1, candidates=100_000,
                     history=50, p50_ms=float("nan"), estimated_ms=3e4))  # fmt: skip
    fig = viz.serving_ladder(rows, history=50, segments=8)
    by_name = {t.name.split(":")[0]: t for t in fig.data}
    assert list(by_name["MS-LI K=8"].x) == [1000, 100_000]
    assert list(by_name["MS-LI K=8"].y) == pytest.approx([0.2, 20.0])
    assert list(by_name["full-forward"].y) == pytest.approx([3.0, 300.0])
    assert list(by_name["two-tower"].y) == pytest.approx([0.05, 5.0])
    assert list(by_name["cross-encoder"].y) == pytest.approx([300.0])  # measured only
    estimate = by_name["cross-encoder, cost-model estimate (not timed"]
    assert list(estimate.x) == [100_000] and list(estimate.y) == [3e4]
    assert {"floor"} <= set(by_name) and len([t for t in fig.data if t.name.startswith("floor")]) == 2
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert "d = 64" in fig.layout.title.text
    with pytest.raises(MsliError, match="L = 7"):
        viz.serving_ladder(rows, history=7, segments=8)


def test_latency_vs_encoder_size_marks_the_extrapolation():
    rows = []
    for layers, dim, measured in ((1, 32, True), (2, 64, True), (24, 1024, False)):
        for model, k, ms in (
            ("full-forward", 1, layers * dim / 10),
            ("msli", 8, dim / 100),
            ("two-tower", 1, 0.1),
        ):
            p50 = ms if measured else float("nan")
            rows.append(dict(model=model, stage="online", variant="encoder_size", backend="torch", segments=k,
                             candidates=1000, history=200, layers=layers, dim=dim, p50_ms=p50,
                             estimated_ms=None if measured else ms))  # fmt: skip
    fig = viz.latency_vs_encoder_size(rows)
    by_name = {t.name: t for t in fig.data}
    solid = by_name["full-forward, measured"]
    assert list(solid.x) == [12 * 32**2, 12 * 2 * 64**2] and list(solid.y) == pytest.approx([3.2, 12.8])
    dashed = by_name["full-forward, cost-model extrapolation (not timed)"]
    assert dashed.line.dash == "dash"  # it starts at the last measured point and goes on to the estimate
    assert list(dashed.x) == [12 * 2 * 64**2, 12 * 24 * 1024**2] and dashed.y[-1] == pytest.approx(2457.6)
    assert "MS-LI K=8, measured" in by_name and "two-tower, measured" in by_name
    assert viz.encoder_parameters(24, 1024) == 12 * 24 * 1024**2
    with pytest.raises(MsliError, match="encoder-size"):
        viz.latency_vs_encoder_size(_bench_rows())


def test_latency_vs_segments_refuses_a_shape_that_was_not_measured():
    with pytest.raises(MsliError, match="N = 5"):
        viz.latency_vs_segments(_bench_rows(), candidates=5, history=50)


def test_stage_costs_stack_nearline_and_online_per_k():
    fig = viz.stage_cost_bars(_bench_rows(), candidates=1000, history=50)
    assert fig.layout.barmode == "stack"
    by_name = {t.name.split(" ")[0]: list(t.y) for t in fig.data if t.type == "bar"}
    assert "offline" not in by_name and "2 ms per catalog refresh" in fig.layout.annotations[0].text
    assert by_name["nearline"] == [0.5, 0.5, 0.5]  # the incremental variant, not the full one
    assert by_name["online"] == pytest.approx([0.1, 0.4, 1.6])


def test_backend_comparison_and_nearline_ratio():
    fig = viz.backend_comparison(_bench_rows())
    assert sorted(t.name for t in fig.data) == ["onnxruntime", "torch"]
    near = viz.nearline_update_comparison(_bench_rows())
    assert list(near.data[2].text) == ["1.0× cheaper", "4.0× cheaper", "16.0× cheaper"]


def test_backend_comparison_needs_two_backends():
    rows = [r for r in _bench_rows() if r["backend"] != "onnxruntime"]
    with pytest.raises(MsliError, match="one backend"):
        viz.backend_comparison(rows)


def test_training_curves_and_quality_charts():
    histories = {
        "MS-LI K=4": [{"epoch": 1, "loss": 5.0, "NDCG@10": 0.05}, {"epoch": 2, "loss": 4.0, "NDCG@10": 0.08}],
        "popularity": [{"epoch": 1, "NDCG@10": 0.02}],
    }
    fig = viz.training_curves(histories)
    assert viz.figure_point_count(fig) == 5
    models = [
        {"name": "two-tower", "kind": "two-tower", "segments": 1, "aggregation": None, "NDCG@10": 0.05},
        {"name": "MS-LI K=4", "kind": "msli", "segments": 4, "aggregation": "attention", "NDCG@10": 0.08},
        {"name": "MS-LI K=8", "kind": "msli", "segments": 8, "aggregation": "attention", "NDCG@10": 0.09},
        {"name": "popularity", "kind": "popularity", "segments": None, "aggregation": None, "NDCG@10": 0.02},
    ]
    fig = viz.quality_vs_segments(models)
    curve = fig.data[0]
    assert list(curve.x) == [1, 4, 8] and list(curve.y) == pytest.approx([0.05, 0.08, 0.09])
    assert fig.data[1].name == "popularity (no segments)" and list(fig.data[1].y) == [0.02, 0.02]
    points = [dict(m, p50_ms=p) for m, p in zip(models, (0.05, 0.2, 0.4, None), strict=True)]
    fig = viz.quality_vs_latency(points)
    assert fig.layout.xaxis.type == "log"
    assert viz.figure_point_count(fig) == 3  # the model without a latency is left out


def test_whatif_figures_from_the_cost_model():
    from msli_core.serving import costmodel

    hw = costmodel.PRESETS["laptop CPU"]
    predictions = {
        viz.MODEL_LABELS[k]: costmodel.predict(
            costmodel.ModelShape(kind=k, history=200, segments=8), hw
        ).as_dict()
        for k in ("msli", "two-tower", "cross-encoder")
    }
    fig = viz.whatif_stage_bars(predictions)
    assert len(fig.data) == 3 and fig.layout.yaxis.type == "log"
    cross = fig.data[2]
    assert cross.y[1] is None and cross.text[1] == "none"  # the cross-encoder has no nearline stage
    budget = viz.latency_budget(predictions)
    assert viz.figure_point_count(budget) > 0
    rows = [r for r in _bench_rows() if r["model"] == "msli"]
    report = costmodel.error_report(rows, hw)
    fig = viz.whatif_measured_vs_predicted(report)
    assert f"{report['median_ratio']:.2f}" in fig.layout.title.text
    measured = [p for t in fig.data if t.mode == "markers" for p in t.x]
    assert len(measured) == len(report["points"])


def test_a_cross_encoder_point_over_its_budget_is_drawn_from_the_estimate():
    rows = [r for r in _bench_rows() if r["model"] != "cross-encoder"]
    nan = float("nan")
    rows.append(dict(model="cross-encoder", stage="online", backend="torch", segments=1, candidates=1000,
                     history=50, p50_ms=nan, p95_ms=nan, capped=True, estimated_ms=900.0))  # fmt: skip
    fig = viz.latency_vs_segments(rows, candidates=1000, history=50)
    cross = next(t for t in fig.data if t.name.startswith("cross-encoder"))
    assert "estimate" in cross.name and list(cross.y) == [900.0, 900.0]


def test_history_timeline_puts_each_event_on_its_segment_row():
    events = pd.DataFrame(
        {
            "position": [0, 1, 2, 3, 4],
            "timestamp": [1_600_000_000 + 3600 * i for i in range(5)],
            "title": ["A", "B", "C", "D", "E"],
            "segment": [-1, 0, 0, 1, 1],
        }
    )
    labels = {0: viz.segment_label(0, 1, 3), 1: viz.segment_label(1, 3, 5)}
    fig = viz.history_timeline(events, labels, target={"timestamp": 1_600_100_000, "title": "F"})
    names = ["older (not used)", "segment 0 (events 1–2)", "segment 1 (events 3–4)", "held-out test event"]
    assert [t.name for t in fig.data] == names
    assert [len(t.x) for t in fig.data] == [1, 2, 2, 1]


def test_contribution_heatmap_columns_sum_to_the_scores():
    c = np.array([[0.5, -0.25], [1.0, 0.75]])  # (K=2, n=2)
    fig = viz.contribution_heatmap(c, scores=[1.5, 0.5], item_titles=["X", "Y"], segment_labels=["s0", "s1"])
    heat = fig.data[0]
    assert np.asarray(heat.z).sum(axis=0).tolist() == [1.5, 0.5]
    assert heat.x[0] == "#1 X<br>1.500" and heat.zmid == 0  # rank, title, score
    assert "0.0e+00" in fig.layout.annotations[0].text  # the sums match the scores exactly


def test_within_segment_weights_keeps_the_largest_weights_of_each_segment():
    segments = [
        {"index": 0, "label": "segment 0", "titles": ["a", "b", "c"], "weights": [0.2, 0.7, 0.1]},
        {"index": 1, "label": "segment 1", "titles": ["d"], "weights": [1.0]},
    ]
    fig = viz.within_segment_weights(segments, top=2)
    assert list(fig.data[0].x) == [0.2, 0.7]  # drawn bottom-up: the largest weight ends on top
    assert fig.data[0].y[-1] == "0 · b"
    assert list(fig.data[1].x) == [1.0]


def test_deletion_check_and_item_map():
    fig = viz.deletion_check(
        [
            {"title": "X", "score": 2.0, "without_top": 0.5, "without_random": 1.8},
            {"title": "Y", "score": 1.0, "without_top": 0.2, "without_random": None},
        ]
    )
    assert [t.name for t in fig.data] == [
        "full score",
        "top segment removed",
        "a random other segment removed",
    ]
    rng = np.random.default_rng(0)
    table = np.vstack([np.zeros((1, 8)), rng.normal(size=(50, 8))])
    titles = ["pad"] + [f"item {i}" for i in range(1, 51)]
    labels = ["segment 0 (events 0–4)", "segment 1 (events 5–9)"]
    fig = viz.item_map(
        table, titles, rng.normal(size=(2, 8)), labels, recommended=[3, 7, 9], history=[1, 2], sample=20
    )
    assert len(fig.data[0].x) == 20  # the sampled catalog
    stars = fig.data[-1]
    assert list(stars.text) == ["1", "2", "3"] and len(stars.x) == 3
    assert sum(1 for t in fig.data if t.name.startswith("segment")) == 2


def test_latency_figures_for_an_html_report(tmp_path):
    figures = viz.latency_figures(_bench_rows())
    assert [k for k, _ in figures] == ["latency_vs_k", "stage_costs", "backends", "nearline"]
    html = viz.write_html(figures, tmp_path / "bench.html", title="Sweep").read_text()
    assert html.count("plotly-graph-div") >= 4 and viz.HOW_TO_READ["nearline"] in html


# ------------------------------------------------------------------------------- numbers and log ticks


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (5_820_050, "×", "5.8 M×"),  # the What-if speed-up, formerly "5,820,050×"
        (4.113e15, "FLOP", "4.1 PFLOP"),  # formerly "online GFLOP 4113000"
        (1.2e9, "FLOP", "1.2 GFLOP"),  # a unit takes the SI prefix...
        (1.2e9, "", "1.2 B"),  # ...a bare count says B(illion)
        (12_345, "", "12 k"),
        (950, "", "950"),
        (999_700, "", "1 M"),  # rounds up into the next prefix, not "1000 k"
        (-2500, "", "-2.5 k"),
        (12.3, "×", "12×"),
        (0.004, "", "0.004"),
        (0, "", "0"),
        (23 * 3600, "s", "23 h"),  # seconds pick the unit of time
        (90, "s", "1.5 min"),
        (59.99, "s", "1 min"),
        (0.0021, "s", "2.1 ms"),
        (3e-7, "s", "300 ns"),
        (float("nan"), "", "–"),
        (float("inf"), "s", "–"),
    ],
)
def test_human_number(value, unit, text):
    assert viz.human_number(value, unit) == text


def test_milliseconds_read_as_durations():
    assert [viz.ms_text(ms) for ms in (0.1234, 2.0, 1580.0, 8.28e7)] == ["123 µs", "2 ms", "1.58 s", "23 h"]


@pytest.mark.parametrize(
    ("lo", "hi", "ticks"),
    [
        (1, 1000, [1, 10, 100, 1000]),  # one per decade when that gives three
        (20, 2000, [20, 50, 100, 200, 500, 1000, 2000]),  # else 1-2-5
        (20, 300, [20, 50, 100, 200]),
        (0.11, 0.4, [0.2, 0.3, 0.4]),  # under a decade: 1…9
        (1.01, 2.02, [1.5, 2]),  # a factor of two: 1.5 and 2.5 too
        (5, 5, [5]),  # one value: set_log_ticks widens the axis
        (0, 10, []),
    ],
)
def test_log_ticks(lo, hi, ticks):
    assert viz.log_ticks(lo, hi) == pytest.approx(ticks)


def _log_axes_ticks(fig: go.Figure) -> dict[str, list[float]]:
    """For every log axis: its tick values inside the range it shows (its own range, else its data's)."""
    out = {}
    for letter in ("x", "y"):
        for axis in getattr(fig, f"select_{letter}axes")():
            if axis.type != "log":
                continue
            if axis.range is not None:
                lo, hi = 10 ** axis.range[0], 10 ** axis.range[1]
            else:
                drawn = [getattr(t, letter, None) for t in fig.data]
                flat = np.concatenate([np.asarray(v, dtype=object).ravel() for v in drawn if v is not None])
                values = pd.to_numeric(pd.Series(flat), errors="coerce").dropna()
                lo, hi = values[values > 0].min(), values[values > 0].max()
            ticks = list(axis.tickvals or ())
            assert axis.dtick is None and len(axis.ticktext) == len(ticks), axis.plotly_name
            out[f"{axis.plotly_name}"] = [v for v in ticks if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]
    return out


def test_every_log_axis_shows_at_least_two_labelled_ticks(tiny_data):
    from msli_core.serving import costmodel

    rows = _bench_rows()
    hw = costmodel.PRESETS["laptop CPU"]
    predictions = {
        viz.MODEL_LABELS[k]: costmodel.predict(
            costmodel.ModelShape(kind=k, history=200, segments=8), hw
        ).as_dict()
        for k in ("msli", "two-tower", "cross-encoder")
    }
    models = [
        {"name": "MS-LI K=4", "kind": "msli", "segments": 4, "NDCG@10": 0.08, "p50_ms": 0.2},
        {"name": "MS-LI K=8", "kind": "msli", "segments": 8, "NDCG@10": 0.09, "p50_ms": 0.4},
    ]
    curve = pd.DataFrame({"segments": [1, 2, 4, 8], "predicted_ms": [0.30, 0.33, 0.38, 0.47]})
    measured = pd.DataFrame({"segments": [1, 4], "p50_ms": [0.31, 0.40], "p95_ms": [0.33, 0.45]})
    figures = {
        "activity": viz.activity_long_tail(tiny_data),  # 1..5 events: one tick (1) per decade before
        "popularity": viz.item_popularity(tiny_data),
        "quality_vs_latency": viz.quality_vs_latency(models),
        "one model on quality_vs_latency": viz.quality_vs_latency(models[:1]),
        "quality_vs_k": viz.quality_vs_segments(models),
        "torch_vs_onnx": viz.backend_comparison(rows),
        "nearline": viz.nearline_update_comparison(rows),
        "latency_vs_k": viz.latency_vs_segments(rows, candidates=1000, history=50),
        "whatif_curve": viz.whatif_curve_vs_segments(
            curve, measured, candidates=1000, history=50, backend="torch"
        ),
        "whatif_stages": viz.whatif_stage_bars(predictions),
        "whatif_measured": viz.whatif_measured_vs_predicted(costmodel.error_report(rows, hw)),
        "budget": viz.latency_budget(predictions),
        "one bar": viz.common._layout(go.Figure(go.Bar(x=["a"], y=[5.0])), "one value", yaxis_type="log"),
    }
    for name, fig in figures.items():
        axes = _log_axes_ticks(fig)
        assert axes, name
        for axis, ticks in axes.items():
            assert len(ticks) >= 2, (name, axis, ticks)
    # K stays labelled by its own values; a short latency axis gets values, not one decade tick
    assert list(figures["latency_vs_k"].layout.xaxis.tickvals) == [1, 4, 16]
    assert list(figures["whatif_curve"].layout.yaxis.ticktext) == ["0.3", "0.4"]
    assert list(figures["activity"].layout.yaxis.ticktext) == ["1", "2", "5"]


def test_long_titles_and_the_rating_axis_are_readable(tiny_data):
    near = viz.nearline_update_comparison(_bench_rows())
    assert len(near.layout.title.text) <= 60  # fits a half-width column at 1400 px
    over_time = viz.interactions_over_time(tiny_data)
    assert over_time.layout.yaxis2.tickformat == ".2~f" and over_time.layout.yaxis2.tickmode == "auto"


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        (1340.4, "1,340×"),
        (10.0, "10×"),
        (99_999.0, "99,999×"),
        (3.24, "3.2×"),
        (2.5e7, "25 M×"),
        (1.5e5, "150 k×"),
    ],
)
def test_ratio_text_reads_as_a_headline(ratio, text):
    assert viz.ratio_text(ratio) == text
