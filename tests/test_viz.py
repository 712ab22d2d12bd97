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
        viz._require_rows([{"segments": 1}], "latency rows", ["segments", "p50_ms"])
