"""Every Streamlit page through AppTest: it renders without an exception, its charts have data, and its
main interaction works (load data, a bad upload, train a tiny model, explain a user, a short sweep, a
what-if slider). Settings are made tiny through the pages' own widgets so the file runs in about a minute.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(scope="session")
def tiny_sample_dir(tmp_path_factory) -> Path:
    """A small synthetic set from the project's own generator (60 users, 120 items, with ground truth):
    the app's default dataset in the tests that train, so a training run takes seconds."""
    from msli_core.data.synth import SynthConfig, write_synthetic

    folder = tmp_path_factory.mktemp("tiny") / "sample"
    write_synthetic(folder, SynthConfig(users=60, items=120, interactions=1800, interests=6, max_events=80))
    return folder


@pytest.fixture
def tiny_app(tiny_sample_dir, monkeypatch) -> AppTest:
    monkeypatch.setenv("MSLI_SAMPLE_DATA", str(tiny_sample_dir))
    return new_app()


def new_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def goto(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def plotly_specs(at: AppTest) -> list[dict]:
    """The plotly figures on the current page, as the JSON the browser receives."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def trace_points(trace: dict) -> int:
    """Values a trace draws; plotly packs numpy arrays as {"dtype", "bdata" (base64), "shape"}."""
    for attr in ("y", "x", "z", "values"):
        values = trace.get(attr)
        if isinstance(values, dict) and "bdata" in values:
            return len(base64.b64decode(values["bdata"])) // np.dtype(values["dtype"]).itemsize
        if values is not None:
            return len(values)
    return 0


def assert_charts_have_data(at: AppTest, at_least: int) -> list[dict]:
    specs = plotly_specs(at)
    assert len(specs) >= at_least, f"expected {at_least} charts, found {len(specs)}"
    for spec in specs:
        title = spec["layout"].get("title", {}).get("text", "?")
        assert sum(trace_points(t) for t in spec["data"]) > 0, f"chart {title!r} has no data"
    return specs


def error_texts(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


# ------------------------------------------------------------------------------------------------ Home


def test_home_renders_the_stage_diagram_latency_budget_and_session_state():
    at = new_app()
    assert at.title[0].value == "MS-LI Lab"
    specs = assert_charts_have_data(at, 1)
    assert "latency" in specs[0]["layout"]["title"]["text"].lower()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Models trained"] == "0"
    assert "·" in metrics["Users · items"]


# ------------------------------------------------------------------------------------------------ Data


def test_data_page_shows_the_bundled_sample_statistics_and_four_charts():
    at = goto(new_app(), "data")
    assert any("bundled sample" in s.value for s in at.subheader)
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Users"].replace(",", "")) > 100
    assert_charts_have_data(at, 4)
    at.button(key="data_load_sample").click().run()
    assert not at.exception and not at.error


def test_a_bad_upload_gets_the_core_sentence_not_a_traceback():
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Upload files").run()
    at.file_uploader(key="data_upload").set_value(
        ("ratings.csv", b"\x00\x01\x02 not a table \xff", "text/csv")
    )
    at.run()
    at.button(key="data_load_upload").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = error_texts(at)
    assert len(errors) == 1 and "ratings.csv" in errors[0], errors
    assert "Traceback" not in errors[0]
    assert any("bundled sample" in s.value for s in at.subheader)  # the old dataset stays loaded


def test_a_local_movielens_folder_loads_and_replaces_the_dataset(tmp_path):
    folder = tmp_path / "ml-mini"
    folder.mkdir()
    ratings = ["userId,movieId,rating,timestamp"]
    for user in range(1, 5):
        for j, movie in enumerate((1, 2, 3, 4, 5)):
            ratings.append(f"{user},{movie + user % 2},{(j % 5) + 1}.0,{1_600_000_000 + 60 * j + user}")
    (folder / "ratings.csv").write_text("\n".join(ratings) + "\n")
    movies = ["movieId,title,genres"] + [
        f'{m},"Film {m}, The ({1990 + m})",Drama|Comedy' for m in range(1, 7)
    ]
    (folder / "movies.csv").write_text("\n".join(movies) + "\n")

    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(str(folder)).run()
    at.button(key="data_load_path").click().run()
    assert not at.exception and not at.error, error_texts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "4" and metrics["Interactions"] == "20"
    assert str(folder) in at.subheader[0].value
    assert_charts_have_data(at, 4)


def test_a_missing_local_path_is_refused_with_a_sentence(tmp_path):
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(str(tmp_path / "nowhere")).run()
    at.button(key="data_load_path").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "nowhere" in at.error[0].value


# --------------------------------------------------------------------------------------------- What-if


def test_whatif_predicts_every_model_and_answers_a_slider_at_once():
    at = goto(new_app(), "whatif")
    assert_charts_have_data(at, 1)
    before = {m.label: m.value for m in at.metric}
    at.select_slider(key="whatif_candidates").set_value(100_000).run()
    assert not at.exception
    after = {m.label: m.value for m in at.metric}
    assert after["Cross-encoder online"] != before["Cross-encoder online"]
    table = at.dataframe[0].value
    assert list(table["model"]) == ["MS-LI", "two-tower", "cross-encoder"]
    assert (table["online ms (per request)"] > 0).all()


def test_whatif_user_entered_hardware_changes_the_prediction():
    at = goto(new_app(), "whatif")
    at.selectbox(key="whatif_hardware").set_value("user-entered").run()
    slow = {m.label: m.value for m in at.metric}["Cross-encoder online"]
    at.number_input(key="whatif_tflops").set_value(100.0).run()
    fast = {m.label: m.value for m in at.metric}["Cross-encoder online"]
    assert not at.exception and slow != fast


# --------------------------------------------------------------------------------------------- Latency


def run_short_sweep(at: AppTest, models=("msli", "cross-encoder")) -> AppTest:
    goto(at, "latency")
    assert any("No sweep yet" in i.value for i in at.info)
    at.multiselect(key="latency_segments").set_value([1, 4])
    at.multiselect(key="latency_candidates").set_value([1000])
    at.multiselect(key="latency_models").set_value(list(models))
    at.select_slider(key="latency_budget").set_value(0.02)
    at.select_slider(key="latency_cross_budget").set_value(0.2)
    at.button(key="FormSubmitter:latency_form-Run the sweep").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + error_texts(at)
    return at


def test_a_short_sweep_draws_every_latency_chart_and_offers_the_csv():
    at = run_short_sweep(new_app())
    specs = assert_charts_have_data(at, 4)
    titles = " | ".join(s["layout"]["title"]["text"] for s in specs)
    for part in ("segment count", "Stage costs", "ONNX Runtime", "Nearline"):
        assert part in titles
    vs_k = specs[0]
    names = [t.get("name", "") for t in vs_k["data"]]
    assert "MS-LI online p50" in names and any(n.startswith("cross-encoder") for n in names)
    assert any("floor" in n for n in names)
    rows = at.session_state["lab_bench_rows"]
    assert {r["stage"] for r in rows} >= {"offline", "nearline", "online", "floor"}
    csv = at.session_state["lab_bench_csv"].decode()
    assert csv.splitlines()[0].startswith("model,stage,variant,backend,segments,candidates,history,p50_ms")
    assert len(csv.splitlines()) == len(rows) + 1

    # the What-if page now overlays the measured points with the cost model's error
    goto(at, "whatif")
    specs = assert_charts_have_data(at, 2)
    assert "median ratio" in specs[1]["layout"]["title"]["text"]
