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

pytestmark = pytest.mark.slow  # every page run through AppTest: ~40 s of the suite


@pytest.fixture(autouse=True)
def _no_bundled_demo(tmp_path, monkeypatch):
    """The pages' tests start from an empty session (no bundled demo models or sweep) unless a test
    asks for the demo (``demo_app``): they check what a user's own training and sweeps produce."""
    monkeypatch.setenv("MSLI_DEMO_DIR", str(tmp_path / "no-demo"))
    monkeypatch.setenv("MSLI_WORKSPACE", str(tmp_path / "workspace"))  # never the user's real one


@pytest.fixture(scope="session")
def tiny_sample_dir(tmp_path_factory) -> Path:
    """A small synthetic set from the project's own generator (60 users, 120 items, with ground truth):
    the app's default dataset in the tests that train, so a training run takes seconds."""
    from msli_core.data.synth import SynthConfig, write_synthetic

    folder = tmp_path_factory.mktemp("tiny") / "sample"
    # 100 events per user on average, with a long tail (sigma 1, from 5 events, up to 320), so that the
    # Explain page's default user (the longest history) and about ten others have closed segments of 50
    # before their 200-event window for K=4
    config = SynthConfig(
        users=60, items=400, interactions=6000, interests=6, max_events=320, min_events=5, activity_sigma=1.0
    )
    write_synthetic(folder, config)
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


def decode(values) -> np.ndarray:
    """A trace's array; plotly packs numpy arrays as {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(values, dict) and "bdata" in values:
        flat = np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
        shape = values.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.asarray(values, dtype=object)


def trace_points(trace: dict) -> int:
    """Values a trace draws (0: an empty trace)."""
    for attr in ("y", "x", "z", "values"):
        if trace.get(attr) is not None:
            return int(decode(trace[attr]).size)
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
    loaded = [s.value for s in at.success if s.value.startswith("Loaded")]
    assert len(loaded) == 1 and "bundled sample" in loaded[0] and metrics["Users"] in loaded[0], loaded


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


@pytest.mark.parametrize("name", ["..", "/", "a/../b", "", ".", "x\\..\\y"])
def test_an_upload_whose_name_is_not_a_file_name_gets_a_sentence(name):
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Upload files").run()
    at.file_uploader(key="data_upload").set_value((name, b"user,item,timestamp\na,b,1\n", "text/csv"))
    at.run()
    at.button(key="data_load_upload").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = error_texts(at)
    assert len(errors) == 1 and "is not a plain file name" in errors[0], errors
    assert any("bundled sample" in s.value for s in at.subheader)


def test_upload_errors_name_the_uploaded_file_not_the_servers_temp_path():
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Upload files").run()
    at.file_uploader(key="data_upload").set_value(
        [("u.data", b"1\t2\t3\t4\nabc\t2\t3\t4\n", "text/plain"), ("u.item", b"", "text/plain")]
    )
    at.run()
    at.button(key="data_load_upload").click().run()
    errors = error_texts(at)
    assert len(errors) == 1 and errors[0].startswith("upload/u.data, line 2"), errors
    assert "msli-upload-" not in errors[0] and "/tmp" not in errors[0]
    at.file_uploader(key="data_upload").set_value(
        ("events.csv", b"user,item,timestamp\na,b,1e30\n", "text/csv")
    )
    at.run()
    at.button(key="data_load_upload").click().run()
    errors = error_texts(at)
    assert len(errors) == 1 and errors[0].startswith("events.csv, line 2: the timestamp '1e30'"), errors


def test_the_local_path_box_never_shows_the_content_of_a_file_that_is_not_a_dataset(tmp_path):
    import os

    secret = "hunter2-Sup3rS3cret"
    (tmp_path / ".env").write_text(f"DB_PASSWORD={secret},API_KEY={secret}\n")
    (tmp_path / "id_rsa").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n")
    os.mkfifo(tmp_path / "pipe.csv")  # opening it would block the server forever
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Local path").run()
    for name, expected in ((".env", "looked for"), ("id_rsa", "single column"), ("pipe.csv", "FIFO")):
        at.text_input(key="data_path").input(str(tmp_path / name)).run()
        at.button(key="data_load_path").click().run()
        assert not at.exception, [e.value for e in at.exception]
        errors = error_texts(at)
        assert len(errors) == 1 and name in errors[0] and expected in errors[0], errors
        assert secret not in errors[0] and "hunter2" not in errors[0]


def write_mini_movielens(folder: Path) -> Path:
    """4 users × 5 ratings over 6 movies, in the ml-latest layout (ratings.csv + movies.csv)."""
    folder.mkdir(parents=True)
    ratings = ["userId,movieId,rating,timestamp"]
    for user in range(1, 5):
        for j, movie in enumerate((1, 2, 3, 4, 5)):
            ratings.append(f"{user},{movie + user % 2},{(j % 5) + 1}.0,{1_600_000_000 + 60 * j + user}")
    (folder / "ratings.csv").write_text("\n".join(ratings) + "\n")
    movies = ["movieId,title,genres"] + [
        f'{m},"Film {m}, The ({1990 + m})",Drama|Comedy' for m in range(1, 7)
    ]
    (folder / "movies.csv").write_text("\n".join(movies) + "\n")
    return folder


def test_a_local_movielens_folder_loads_and_replaces_the_dataset(tmp_path):
    folder = write_mini_movielens(tmp_path / "ml-mini")
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(str(folder)).run()
    at.button(key="data_load_path").click().run()
    assert not at.exception and not at.error, error_texts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "4" and metrics["Interactions"] == "20"
    assert str(folder) in at.subheader[0].value
    assert_charts_have_data(at, 4)


def test_uploads_of_an_official_zip_and_of_a_mapped_interactions_table(tmp_path):
    import io
    import zipfile

    folder = write_mini_movielens(tmp_path / "ml-mini")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in folder.iterdir():
            archive.write(file, f"ml-mini/{file.name}")
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Upload files").run()
    at.file_uploader(key="data_upload").set_value(("ml-mini.zip", buffer.getvalue(), "application/zip"))
    at.run()
    at.button(key="data_load_upload").click().run()
    assert not at.exception and not at.error, error_texts(at)
    assert {m.label: m.value for m in at.metric}["Interactions"] == "20"
    assert "upload: ml-mini.zip" in at.subheader[0].value

    log = "who,what,when\n" + "".join(
        f"u{u},sku{i},{1_700_000_000 + 60 * i + u}\n" for u in range(3) for i in range(4)
    )
    at.file_uploader(key="data_upload").set_value(("shop.csv", log.encode(), "text/csv"))
    at.text_input(key="data_col_user").input("who")
    at.text_input(key="data_col_item").input("what")
    at.text_input(key="data_col_timestamp").input("when")
    at.run()
    at.button(key="data_load_upload").click().run()
    assert not at.exception and not at.error, error_texts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Users"], metrics["Items"], metrics["Interactions"]) == ("3", "4", "12")
    assert_charts_have_data(at, 4)


def test_generating_a_synthetic_dataset_loads_it_with_its_ground_truth():
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Generate synthetic").run()
    at.number_input(key="data_synth_users").set_value(40)
    at.number_input(key="data_synth_items").set_value(100)
    at.number_input(key="data_synth_interactions").set_value(1_000)
    at.button(key="data_generate").click().run()
    assert not at.exception and not at.error, error_texts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "40" and int(metrics["Items"].replace(",", "")) <= 100
    assert "ground truth present" in " ".join(c.value for c in at.caption)


def test_a_missing_local_path_is_refused_with_a_sentence(tmp_path):
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(str(tmp_path / "nowhere")).run()
    at.button(key="data_load_path").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "nowhere" in at.error[0].value


def test_a_download_that_fails_its_checksum_is_refused_with_a_sentence(tmp_path, monkeypatch):
    """The MovieLens download path against a loopback server serving a wrong archive (no internet)."""
    import functools
    import http.server
    import threading

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "ml-latest-small.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            return None

    handler = functools.partial(Quiet, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MSLI_MOVIELENS_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        at = goto(new_app(), "data")
        at.radio(key="data_source").set_value("Download MovieLens").run()
        at.selectbox(key="data_movielens").set_value("ml-latest-small").run()
        at.button(key="data_fetch").click().run()
    finally:
        server.shutdown()
    assert not at.exception, [e.value for e in at.exception]
    errors = error_texts(at)
    assert len(errors) == 1 and "ml-latest-small" in errors[0] and "checksum" in errors[0].lower(), errors
    assert not list((tmp_path / "cache").rglob("*.csv"))  # nothing half-downloaded was kept


@pytest.mark.parametrize("failure", ["unreachable", "cache not writable"])
def test_a_download_error_tells_an_app_user_what_to_do_in_the_app(failure, tmp_path, monkeypatch):
    """The core's sentences end with a CLI fix (--dir, msli data inspect) for the CLI; the app gets its
    own: no command to run, the Upload files source instead. No internet: a closed loopback port."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on: the connection is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MSLI_MOVIELENS_BASE_URL", f"http://127.0.0.1:{port}")
    cache = tmp_path / "cache"
    if failure == "cache not writable":
        cache.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Download MovieLens").run()
    at.selectbox(key="data_movielens").set_value("ml-100k").run()
    at.button(key="data_fetch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = error_texts(at)
    assert len(errors) == 1 and ("Cannot reach" if failure == "unreachable" else "cache folder") in errors[0]
    assert "Upload files" in errors[0], errors
    assert "msli " not in errors[0] and "--dir" not in errors[0], errors


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
    assert list(table["model"]) == ["MS-LI", "two-tower", "full-forward", "cross-encoder"]
    assert (table["online ms (per request)"] > 0).all()


def test_whatif_user_entered_hardware_changes_the_prediction():
    at = goto(new_app(), "whatif")
    at.selectbox(key="whatif_hardware").set_value("user-entered").run()
    slow = {m.label: m.value for m in at.metric}["Cross-encoder online"]
    at.number_input(key="whatif_tflops").set_value(100.0).run()
    fast = {m.label: m.value for m in at.metric}["Cross-encoder online"]
    assert not at.exception and slow != fast
    # the constants in use are named, the element-wise rate too (typed-in hardware states none)
    constants = next(c.value for c in at.caption if c.value.startswith("Constants in use"))
    assert "user-entered" in constants and "element-wise (bandwidth / 8 bytes)" in constants


# --------------------------------------------------------------------------------------------- Latency


def run_short_sweep(at: AppTest, models=("msli", "two-tower", "full-forward", "cross-encoder")) -> AppTest:
    goto(at, "latency")
    assert any("No sweep yet" in i.value for i in at.info)
    at.multiselect(key="latency_segments").set_value([1, 4])
    at.select_slider(key="latency_dim").set_value(16)
    at.select_slider(key="latency_layers").set_value(1)
    at.multiselect(key="latency_candidates").set_value([100, 1000])
    at.multiselect(key="latency_models").set_value(list(models))
    at.select_slider(key="latency_budget").set_value(0.02)
    at.select_slider(key="latency_cross_budget").set_value(0.2)
    at.select_slider(key="latency_passes").set_value(2)
    at.checkbox(key="latency_calibrate").uncheck()  # the cost model's micro-benchmarks take ~10 s
    at.button(key="FormSubmitter:latency_form-Run the sweep").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + error_texts(at)
    return at


def test_a_short_sweep_draws_every_latency_chart_and_offers_the_csv():
    at = run_short_sweep(new_app())
    specs = assert_charts_have_data(at, 6)
    titles = " | ".join(s["layout"]["title"]["text"] for s in specs)
    for part in (
        "serving ladder",
        "encoder size",
        "segment count",
        "Stage costs",
        "ONNX Runtime",
        "Nearline",
    ):
        assert part in titles
    sizes = [t.get("name", "") for t in specs[1]["data"]]  # measured, then the cost model's extrapolation
    assert "full-forward, measured" in sizes and "MS-LI K=4, cost-model extrapolation (not timed)" in sizes
    ladder = [t.get("name", "") for t in specs[0]["data"]]
    for rung in ("full-forward", "MS-LI K=4", "two-tower", "cross-encoder", "floor: FLOPs", "floor: item"):
        assert any(n.startswith(rung) for n in ladder), (rung, ladder)
    vs_k = specs[2]
    names = [t.get("name", "") for t in vs_k["data"]]
    assert "MS-LI online p50" in names and any(n.startswith("cross-encoder") for n in names)
    assert any("floor" in n for n in names) and any(n.startswith("full-forward") for n in names)
    headline = next(d.value for d in at.dataframe if "comparison (shapes)" in d.value.columns)
    assert headline["comparison (shapes)"].str.contains("K=4 N=1,000").any()
    rows = at.session_state["lab_bench_rows"]
    assert {r["stage"] for r in rows} >= {"offline", "nearline", "online", "floor"}
    ladder_rows = [r for r in rows if r["stage"] == "online" and r["variant"] != "encoder_size"]
    assert {(r["dim"], r["layers"]) for r in ladder_rows} == {(16, 1)}  # the form's shape
    assert {r["passes"] for r in ladder_rows} == {2}  # the form's passes, merged
    csv = at.session_state["lab_bench_csv"].decode()
    assert csv.splitlines()[0].startswith("model,stage,variant,backend,segments,candidates,history,p50_ms")
    assert len(csv.splitlines()) == len(rows) + 1

    # the What-if page now overlays the measured points with the cost model's error
    goto(at, "whatif")
    specs = assert_charts_have_data(at, 3)
    assert "cost model vs measured" in specs[1]["layout"]["title"]["text"]
    assert "median ratio" in specs[2]["layout"]["title"]["text"]


# ----------------------------------------------------------------------------------------------- Train


def train_tiny(at: AppTest, kinds=("msli", "popularity"), segments=(2,)) -> AppTest:
    """Train through the page's own widgets with the smallest settings: 1 epoch, width 8, 1 layer."""
    goto(at, "train")
    at.multiselect(key="train_kinds").set_value(list(kinds))
    at.multiselect(key="train_segments").set_value(list(segments))
    at.select_slider(key="train_dim").set_value(8)
    at.slider(key="train_layers").set_value(1)
    at.number_input(key="train_epochs").set_value(1)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + error_texts(at)
    return at


def test_training_a_tiny_model_fills_the_comparison_and_its_charts(tiny_app):
    at = train_tiny(tiny_app)
    table = at.dataframe[0].value
    assert list(table["name"]) == ["MS-LI K=2 attention d=8", "popularity"]
    assert table["NDCG@10"].between(0, 1).all() and (table["HR@10"] >= table["NDCG@10"]).all()
    assert table.loc[0, "parameters"] > 0 and table.loc[0, "segments"] == "2"
    specs = assert_charts_have_data(at, 2)
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert titles[0] == "Training curves" and "segment count" in titles[1]
    assert sorted(at.session_state["lab_models"]) == sorted(table["name"])  # kept per session


def test_a_trained_model_downloads_as_a_zip_and_loads_back(tiny_app):
    at = train_tiny(tiny_app, kinds=("msli",))
    name = "MS-LI K=2 attention d=8"
    payload = at.session_state["lab_model_zips"][name]
    import io
    import zipfile

    members = sorted(Path(n).name for n in zipfile.ZipFile(io.BytesIO(payload)).namelist())
    assert members == ["config.json", "model.safetensors"]

    at.file_uploader(key="train_upload").set_value(("my-model.zip", payload, "application/zip"))
    at.run()
    at.button(key="train_load").click().run()
    assert not at.exception and not at.error, error_texts(at)
    table = at.dataframe[0].value.set_index("name")
    loaded = f"{name} (loaded)"
    assert loaded in table.index
    assert table.loc[loaded, "NDCG@10"] == pytest.approx(table.loc[name, "NDCG@10"])


def test_a_broken_model_zip_gets_a_sentence(tiny_app):
    at = goto(tiny_app, "train")
    at.file_uploader(key="train_upload").set_value(
        ("broken.zip", b"PK\x03\x04 not really a zip", "application/zip")
    )
    at.run()
    at.button(key="train_load").click().run()
    assert not at.exception
    errors = error_texts(at)
    assert len(errors) == 1 and "broken.zip" in errors[0] and "zip" in errors[0]


def test_a_model_of_another_dataset_is_refused_with_a_sentence(tiny_app, tmp_path):
    at = train_tiny(tiny_app, kinds=("popularity",))
    payload = at.session_state["lab_model_zips"]["popularity"]
    # load other data: the trained model stays listed but is refused, and its zip does not load
    goto(at, "data")
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(str(write_mini_movielens(tmp_path / "other"))).run()
    at.button(key="data_load_path").click().run()
    assert not at.exception and not at.error, error_texts(at)
    assert any("trained on another dataset" in w.value for w in at.warning)
    goto(at, "train")
    assert any("popularity" in w.value and "another dataset" in w.value for w in at.warning)
    at.file_uploader(key="train_upload").set_value(("popularity.zip", payload, "application/zip"))
    at.run()
    at.button(key="train_load").click().run()
    assert not at.exception
    errors = error_texts(at)
    assert len(errors) == 1 and "was trained on" in errors[0], errors


# --------------------------------------------------------------------------------------------- Explain


def test_explain_without_a_model_says_what_to_do(tiny_app):
    at = goto(tiny_app, "explain")
    assert any("Train an MS-LI or two-tower model" in i.value for i in at.info)


def test_explaining_a_user_shows_exact_contributions_and_every_chart(tiny_app):
    at = train_tiny(tiny_app, kinds=("msli",), segments=(4,))
    goto(at, "explain")
    assert not at.error, error_texts(at)
    specs = assert_charts_have_data(at, 5)
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert titles[0].startswith("History timeline") and titles[-1].endswith("(PCA)")
    heat = next(s for s in specs if s["layout"]["title"]["text"].startswith("Per-segment contributions"))
    z = decode(heat["data"][0]["z"]).astype(float)  # (segments, n)
    recs = at.dataframe[0].value
    assert len(recs) == 10 and z.shape[1] == 10
    np.testing.assert_allclose(z.sum(axis=0), recs["score"].to_numpy(), atol=1e-4)  # columns sum to scores

    # the held-out item's rank (1-based) agrees with where the table marks it
    held_rank = int({m.label: m.value for m in at.metric}["Held-out item's rank"].split(" of ")[0])
    # a metric's value is drawn large in a quarter of the page: longer than ~12 characters it is cut off
    assert all(len(m.value) <= 12 for m in at.metric), [m.value for m in at.metric]
    marked = recs.loc[recs["held-out item"] == "✓", "rank"].tolist()
    assert marked == [held_rank] if held_rank <= len(recs) else marked == []

    # the synthetic ground truth is set next to the top segment of the held-out item
    truth = [i.value for i in at.info if "held-out item" in i.value]
    assert truth and "Ground truth: it was generated by interest" in truth[0]

    # explanation accuracy over all users, on a button
    at.button(key="explain_accuracy").click().run()
    measured = {m.label: m.value for m in at.metric}
    assert measured["Top segment is right"].endswith("%") and int(measured["Users counted"]) > 0
    variants = next(d.value for d in at.dataframe if "variant" in d.value.columns)
    assert len(variants) == 4 and 0 < variants.loc[0, "chance"] <= 1  # (a variant with no user is NaN)
    assert variants.loc[3, "variant"] == "users with a closed segment"  # what one open slot counts
    lo, hi = (float(x) for x in variants.loc[0, "95% interval"].split("–"))  # the Wilson interval
    right = variants.loc[0, "top segment right"]
    assert lo - 0.005 <= right <= hi + 0.005

    # the path for one recommendation adds up to its score
    path = next(d.value for d in at.dataframe if "c_k" in d.value.columns)
    assert path["c_k"].sum() == pytest.approx(recs.loc[0, "score"], abs=1e-4)

    # another user and top-n: recomputed; an unrelated widget (the path's recommendation) is not
    at.selectbox(key="explain_user").set_value(1).run()  # internal user 1 (the picker lists user ids)
    at.slider(key="explain_top_n").set_value(5).run()
    assert not at.exception and len(at.dataframe[0].value) == 5
    cached = len(at.session_state["explain_cache"])
    at.selectbox(key="explain_path_rank").set_value(2).run()
    assert len(at.session_state["explain_cache"]) == cached


def test_every_trained_model_with_a_measured_shape_is_placed_on_quality_vs_latency(tiny_app):
    at = train_tiny(tiny_app, kinds=("msli", "popularity"), segments=(4,))
    run_short_sweep(at, models=("msli",))
    goto(at, "train")
    specs = assert_charts_have_data(at, 3)
    chart = next(s for s in specs if s["layout"]["title"]["text"].startswith("Quality against latency"))
    points = [(t["name"], decode(t["x"]).tolist()) for t in chart["data"]]
    assert [name for name, _ in points] == ["msli"] and len(points[0][1]) == 1  # popularity: no latency row
    online_k4 = [
        r["p50_ms"]
        for r in at.session_state["lab_bench_rows"]
        if r["model"] == "msli"
        and r["stage"] == "online"
        and r["segments"] == 4
        and r["backend"] == "torch"
        and not r["variant"]
        and r["candidates"] == 1000  # the tiny catalog's nearest N, the catalog request
    ]
    assert points[0][1][0] == pytest.approx(online_k4[0])


def test_measuring_this_machine_makes_it_the_whatif_default(monkeypatch):
    """The page's wiring of the calibration (the micro-benchmarks themselves are the cost model's tests)."""
    from msli_core.serving import calibrate, costmodel

    measured = costmodel.custom_hardware(1.0e9, 1.0e9, 1e-3, name="this machine")
    measured = costmodel.Hardware(**{**measured.__dict__, "source": "measured in a test"})
    calls = []
    monkeypatch.setattr(calibrate, "calibrate", lambda **kw: calls.append(kw) or measured)
    at = goto(new_app(), "whatif")
    before = {m.label: m.value for m in at.metric}["MS-LI online (per request)"]
    at.button(key="whatif_calibrate").click().run()
    assert calls == [{"save": True}] and not at.exception
    assert any("measured in a test" in c.value for c in at.caption)
    after = {m.label: m.value for m in at.metric}["MS-LI online (per request)"]
    assert after != before  # 1 ms per operator call: the prediction follows the measured constants


def test_a_refused_calibration_file_is_an_error_box_on_the_whatif_page(tmp_path, monkeypatch):
    from msli_core.serving import costmodel

    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    (tmp_path / costmodel.CALIBRATION_FILE).write_text('{"mine": 1}')  # a file msli did not write
    at = goto(new_app(), "whatif")  # refused when the page reads it; the presets still answer
    assert not at.exception and "msli will not read or replace it" in " ".join(error_texts(at))
    assert "this machine" not in at.selectbox(key="whatif_hardware").options and at.metric
    at.button(key="whatif_calibrate").click().run()  # measuring again is refused before it starts
    assert not at.exception and "msli did not write" in " ".join(error_texts(at))
    assert (tmp_path / costmodel.CALIBRATION_FILE).read_text() == '{"mine": 1}'

    monkeypatch.setenv("MSLI_CACHE_DIR", "/proc/msli")  # a cache folder that cannot be created
    at = goto(new_app(), "whatif")
    assert not at.exception and "set MSLI_CACHE_DIR to a writable folder" in " ".join(error_texts(at))

    # a refusal that comes only when the button measures again is an error box too
    from msli_core.errors import MsliError
    from msli_core.serving import calibrate

    def refused(**_kw):
        raise MsliError("the calibration file became a folder; move it away.")

    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path / "fresh"))
    at = goto(new_app(), "whatif")
    assert not error_texts(at)
    monkeypatch.setattr(calibrate, "calibrate", refused)
    at.button(key="whatif_calibrate").click().run()
    assert not at.exception and "became a folder" in " ".join(error_texts(at))


def test_explain_on_data_without_ground_truth(tmp_path):
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(str(write_mini_movielens(tmp_path / "ml-mini"))).run()
    at.button(key="data_load_path").click().run()
    train_tiny(at, kinds=("msli",), segments=(2,))
    goto(at, "explain")
    assert not at.error, error_texts(at)
    specs = assert_charts_have_data(at, 4)
    assert not any("Ground truth" in i.value for i in at.info)  # MovieLens-style data has none
    heat = next(s for s in specs if s["layout"]["title"]["text"].startswith("Per-segment contributions"))
    assert heat["data"][0]["y"] and not any("phase" in label for label in heat["data"][0]["y"])


def test_a_training_error_is_shown_as_its_sentence_after_the_run(tmp_path):
    folder = tmp_path / "too-short"
    folder.mkdir()
    rows = ["userId,movieId,rating,timestamp"] + [
        f"{u},{i},4.0,{1_600_000_000 + 60 * i + u}" for u in (1, 2, 3) for i in (1, 2, 3)
    ]
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(str(folder)).run()
    at.button(key="data_load_path").click().run()
    goto(at, "train")
    at.multiselect(key="train_kinds").set_value(["msli"])
    at.number_input(key="train_epochs").set_value(1)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    assert not at.exception
    errors = error_texts(at)
    assert len(errors) == 1 and errors[0].startswith("MS-LI K=4") and "training events" in errors[0], errors


def test_a_sweep_without_a_segment_count_asks_for_one():
    at = goto(new_app(), "latency")
    at.multiselect(key="latency_segments").set_value([])
    at.button(key="FormSubmitter:latency_form-Run the sweep").click().run()
    assert not at.exception and "lab_bench_rows" not in at.session_state  # nothing was measured
    assert error_texts(at) == ["Choose at least one segment count for the sweep."]


# ------------------------------------------------------------------------------------- bundled demo


@pytest.fixture
def demo_app(monkeypatch) -> AppTest:
    """The app as a fresh clone starts it: the bundled sample with its demo models and sweep."""
    if not (Path(APP).parent / "sample_data" / "models").is_dir():
        pytest.skip("sample_data/models/ not built yet (make demo-model)")
    monkeypatch.delenv("MSLI_DEMO_DIR", raising=False)
    return new_app()


def test_the_bundled_demo_shows_results_without_training(demo_app):
    """Without training or measuring anything: Home states a measured speed-up, Explain shows a
    recommendation whose per-segment contributions sum to its score (and can list only the hits), the
    Train table lists the demo models and the baselines, and Latency draws the bundled sweep, with a
    measured cross-encoder point, saying that it was measured on another machine."""
    at = demo_app
    headline = [s.value for s in at.success if "faster than the cross-encoder" in s.value]
    assert headline and "bundled sweep" in headline[0] and "N = " in headline[0]
    assert any(c.value.startswith("A simple baseline, item-kNN (bundled demo)") for c in at.caption)

    goto(at, "explain")
    assert at.selectbox(key="explain_model").value == "MS-LI K=4 (bundled demo)"
    assert " hit (" in at.selectbox(key="explain_user").format_func(at.selectbox(key="explain_user").value)
    specs = assert_charts_have_data(at, 5)
    heat = next(s for s in specs if s["layout"]["title"]["text"].startswith("Per-segment contributions"))
    recs = at.dataframe[0].value
    z = decode(heat["data"][0]["z"]).astype(float)
    np.testing.assert_allclose(z.sum(axis=0), recs["score"].to_numpy(), atol=1e-4)
    at.toggle(key="explain_hits_only").set_value(True).run()
    picker = at.selectbox(key="explain_user")
    assert picker.options and all(" hit (" in label for label in picker.options)

    goto(at, "train")
    names = " | ".join(at.dataframe[0].value.iloc[:, 0].astype(str))
    for name in ("MS-LI K=4 (bundled demo)", "two-tower (bundled demo)", "item-kNN (bundled demo)"):
        assert name in names
    assert any("A simple baseline" in i.value and "README" in i.value for i in at.info)  # the honest note

    goto(at, "latency")
    assert any("bundled sweep" in i.value for i in at.info)
    specs = assert_charts_have_data(at, 3)
    ladder = next(s for s in specs if "serving ladder" in s["layout"]["title"]["text"])
    cross = [t for t in ladder["data"] if t.get("name", "").startswith("cross-encoder: a transformer")]
    assert cross and len(decode(cross[0]["y"])) >= 1  # a measured cross-encoder point


def test_a_reload_finds_the_models_and_the_sweep_of_the_workspace(tiny_app):
    """What a user trained and measured is in the workspace: a new session (a reload, a new tab) lists
    the model and shows the sweep; Home says where it is kept and can clear it."""
    at = train_tiny(tiny_app, kinds=("msli",), segments=(2,))
    trained_names = set(at.session_state["lab_models"])
    run_short_sweep(at, models=("msli",))
    again = new_app()  # the same MSLI_WORKSPACE and sample: a reload
    assert set(again.session_state["lab_models"]) == trained_names
    assert any("Workspace" in h.value for h in again.subheader)
    assert any("1 model(s), 1 sweep(s)" in m.value for m in again.markdown)
    goto(again, "latency")
    assert not any("No sweep yet" in i.value for i in again.info)
    assert not any("bundled sweep" in i.value for i in again.info)  # the user's own, not the demo's
    goto(again, "home")
    again.button(key="home_clear_workspace").click().run()
    assert any("Removed 2 saved" in s.value for s in again.success)
    assert not new_app().session_state["lab_models"]  # cleared: a fresh session starts empty


def test_whatif_takes_a_parameter_count_and_says_the_shape_it_derives():
    at = goto(new_app(), "whatif")
    at.radio(key="whatif_size_by").set_value("parameter count").run()
    at.number_input(key="whatif_params").set_value(1000.0).run()  # a 1B-parameter encoder
    assert not at.exception
    assert any("28 layers × width 1,728" in c.value for c in at.caption)
    params = {m.label: m.value for m in at.metric}["Segment-encoder parameters"]
    assert params == "1 B", params  # 12 · 28 · 1,728² ≈ 1.0e9 weights
    at.number_input(key="whatif_params").set_value(0.01).run()  # below the smallest shape: said so
    assert any("smallest shape: 1 layer of width 64" in c.value for c in at.caption)


def test_the_train_demo_preset_fills_the_form():
    at = goto(new_app(), "train")
    at.button(key="train_demo_preset").click().run()
    assert not at.exception
    assert at.select_slider(key="train_dim").value == 32 and at.slider(key="train_layers").value == 1
    assert at.number_input(key="train_epochs").value == 8
    assert at.multiselect(key="train_kinds").value == ["msli", "popularity"]


def test_the_train_page_compares_two_models_on_the_same_test_users(demo_app):
    """The paired comparison starts at the ladder's middle rung (MS-LI against the two-tower model) and
    states the difference with its bootstrap interval; the difference is the table's NDCG@10 gap."""
    at = goto(demo_app, "train")
    assert at.selectbox(key="train_compare_model").value == "MS-LI K=4 (bundled demo)"
    assert at.selectbox(key="train_compare_against").value == "two-tower (bundled demo)"
    assert "cross-encoder (bundled demo)" not in at.selectbox(key="train_compare_model").options
    at.button(key="train_compare_go").click().run()
    assert not at.exception
    said = [m.value for m in [*at.info, *at.success] if "MS-LI K=4 (bundled demo) − two-tower" in m.value]
    assert len(said) == 1 and "95% interval" in said[0] and "same 300 test users" in said[0]
    table = at.dataframe[0].value.set_index("name")["NDCG@10"]
    gap = table["MS-LI K=4 (bundled demo)"] - table["two-tower (bundled demo)"]
    shown = float(said[0].split("NDCG@10 ")[1].split(" ")[0].replace("−", "-"))
    assert shown == pytest.approx(gap, abs=1e-4)
    # MS-LI against the two-tower model: what its closed slots could add on this data, counted before
    # training (the sample: 123 of 300 test users have a closed slot; no test item's interest is only there)
    reach = [c.value for c in at.caption if c.value.startswith("What the closed slots can add")]
    assert len(reach) == 1 and "MS-LI K=4: 123 of 300 test users (41.0%) have closed slots" in reach[0]
    assert "only in those older events for 0 of them (in the window: 115;" in reach[0]
    # another pair: the earlier sentence goes, until this pair is compared
    at.selectbox(key="train_compare_against").set_value("item-kNN (bundled demo)").run()
    assert not [m for m in [*at.info, *at.success] if "MS-LI K=4 (bundled demo) − " in m.value]
    at.button(key="train_compare_go").click().run()
    assert any("MS-LI K=4 (bundled demo) − item-kNN" in m.value for m in [*at.info, *at.success])
    assert not [c for c in at.caption if c.value.startswith("What the closed slots can add")]  # not this pair
    # each model is ranked once per session; the cache holds only models still listed
    cached = at.session_state["lab_held_out_ranks"]
    names = ["MS-LI K=4 (bundled demo)", "item-kNN (bundled demo)", "two-tower (bundled demo)"]
    assert sorted(cached) == names
