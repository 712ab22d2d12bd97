"""The app's model and workspace input through AppTest (the audit's cases): an edited or damaged model
zip is one error sentence on the Train page, never an exception on any later page; a corrupt or
old-schema workspace sweep is skipped with a warning naming its folder; a workspace that cannot be
written says so where the save happens and on Home; a user's own folders are not counted; the same model
name trained on another dataset keeps both models."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app_pages import (
    _no_bundled_demo,  # noqa: F401 - autouse: an empty session and a temporary workspace
    error_texts,
    goto,
    new_app,
    tiny_sample_dir,  # noqa: F401 - the small synthetic set the app trains on (app fixture)
    train_tiny,
    write_mini_movielens,
)

pytestmark = pytest.mark.slow  # AppTest runs: a tiny training each

MSLI = "MS-LI K=2 attention d=8"
PAGES = ("home", "train", "explain", "latency", "whatif")


def visit_every_page(at: AppTest) -> None:
    """Every page renders without an exception (goto asserts it), and Home last."""
    for page in (*PAGES[1:], "home"):
        goto(at, page)


def edited_zip(payload: bytes, config=None, weights=None) -> bytes:
    """``payload`` (a model zip) with its config.json passed through ``config(dict)`` and its weights
    through ``weights(state dict)``."""
    from safetensors.torch import load, save

    source = zipfile.ZipFile(io.BytesIO(payload))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name in source.namelist():
            blob = source.read(name)
            if name.endswith("config.json") and config:
                meta = json.loads(blob)
                config(meta)
                blob = json.dumps(meta).encode()
            if name.endswith("model.safetensors") and weights:
                state = load(blob)
                weights(state)
                blob = save(state)
            out.writestr(name, blob)
    return buffer.getvalue()


def upload_model(at: AppTest, filename: str, payload: bytes) -> AppTest:
    goto(at, "train")
    at.file_uploader(key="train_upload").set_value((filename, payload, "application/zip"))
    at.run()
    at.button(key="train_load").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def set_field(section: str, key: str, value):
    def edit(meta: dict) -> None:
        meta[section][key] = value

    return edit


@pytest.fixture
def app(request, monkeypatch) -> AppTest:
    """The app on the tiny synthetic set (test_app_pages' tiny_app), so a training run takes seconds."""
    monkeypatch.setenv("MSLI_SAMPLE_DATA", str(request.getfixturevalue("tiny_sample_dir")))
    return new_app()


@pytest.fixture
def trained_zip(app) -> tuple[AppTest, bytes]:
    at = train_tiny(app, kinds=("msli",), segments=(2,))
    return at, at.session_state["lab_model_zips"][MSLI]


# ------------------------------------------------------------------------------- an edited model zip
@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("training", "seconds", "abc"),  # was: ValueError in trained.from_loaded
        ("metrics", "NDCG@10", "great"),  # was: TypeError in ladder_note, then Home's max() on every rerun
        ("training", "parameters", "many"),  # was: ValueError in model_row above the load widget
        ("metrics", "HR@10", [1]),  # was: junk in the table
    ],
)
def test_an_edited_config_is_one_error_sentence_and_every_page_still_works(trained_zip, section, key, value):
    at, payload = trained_zip
    upload_model(at, "edited.zip", edited_zip(payload, config=set_field(section, key, value)))
    errors = error_texts(at)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"edited.zip: config.json has {section}.{key} = "), errors
    assert "edited or damaged" in errors[0] and "Train page" in errors[0] and "msli train" not in errors[0]
    assert f"{MSLI} (loaded)" not in at.session_state["lab_models"]
    visit_every_page(at)


def test_a_metric_written_as_null_loads_and_home_and_train_show_it(trained_zip):
    """A NaN metric is written as null: it reads back as not measured, and no page trips over it."""
    at, payload = trained_zip
    upload_model(at, "nan.zip", edited_zip(payload, config=set_field("metrics", "NDCG@10", None)))
    assert not error_texts(at)
    loaded = at.session_state["lab_models"][f"{MSLI} (loaded)"]
    assert math.isnan(loaded.metrics["NDCG@10"])
    visit_every_page(at)
    best = {m.label: m for m in at.metric}["Best test NDCG@10"]
    assert best.value != "nan" and float(best.value) >= 0  # the trained one, not the NaN one


@pytest.mark.parametrize("value", [2**40, -5])
def test_a_year_feature_out_of_range_is_refused_before_explain_can_crash(trained_zip, value):
    def edit(state: dict) -> None:
        state["items.year_features"][1] = value

    at, payload = trained_zip
    upload_model(at, "years.zip", edited_zip(payload, weights=edit))
    errors = error_texts(at)
    assert len(errors) == 1 and "items.year_features" in errors[0] and str(value) in errors[0], errors
    assert "Train page" in errors[0]
    goto(at, "explain")  # only the model trained here is offered
    assert at.selectbox(key="explain_model").options == [MSLI]


# --------------------------------------------------------------------------- the workspace's sweeps
BAD_BENCH = {"list of ints": [1, 2], "empty row": [{}], "string p50": "strings"}


def write_bad_sweep(root: Path, case: str) -> Path:
    folder = root / "sweeps" / "20300101T000000Z"
    folder.mkdir(parents=True)
    (folder / ".msli-output.json").write_text(
        json.dumps({"tool": "msli", "kind": "bench", "files": ["bench.json", "meta.json"]})
    )
    rows = BAD_BENCH[case]
    if rows == "strings":  # an otherwise complete row whose timings are text
        rows = [{"model": "msli", "stage": "online", "backend": "torch", "segments": 2, "history": 50,
                 "candidates": 100, "calls": 5, "p50_ms": "0.1", "p95_ms": "0.2"}]  # fmt: skip
    (folder / "bench.json").write_text(json.dumps(rows))
    (folder / "meta.json").write_text(json.dumps({"cpu": "x"}))
    return folder


@pytest.mark.parametrize("case", sorted(BAD_BENCH))
def test_a_bad_workspace_sweep_is_skipped_with_a_warning_and_clear_is_reachable(tmp_path, case):
    folder = write_bad_sweep(tmp_path / "workspace", case)
    at = new_app()  # Home: restores the workspace
    warnings = [w.value for w in at.warning if str(folder) in w.value]
    assert len(warnings) == 1 and "skips it" in warnings[0] and "Clear the workspace" in warnings[0], [
        w.value for w in at.warning
    ]
    visit_every_page(at)
    assert any("0 model(s), 1 sweep(s)" in m.value for m in at.markdown)
    at.button(key="home_clear_workspace").click().run()
    assert not at.exception and any("Removed 1 saved" in s.value for s in at.success)
    assert not folder.exists()


# ------------------------------------------------------------------------- a workspace not writable
def test_a_workspace_that_is_a_file_is_a_warning_on_train_and_home(app, tmp_path, monkeypatch):
    wsfile = tmp_path / "wsfile"
    wsfile.write_text("not a folder")
    monkeypatch.setenv("MSLI_WORKSPACE", str(wsfile))
    at = train_tiny(app, kinds=("popularity",))
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and str(wsfile) in warnings[0] and "MSLI_WORKSPACE" in warnings[0], warnings
    assert "Errno" not in warnings[0] and "is a file" in warnings[0]
    assert "popularity" in at.session_state["lab_models"]  # the training run is kept in the session
    goto(at, "home")
    assert [w.value for w in at.warning] == warnings  # once, the same sentence
    assert not any("are kept in" in m.value for m in at.markdown)
    assert wsfile.read_text() == "not a folder"


def test_a_users_own_folders_in_the_workspace_are_not_counted(tmp_path):
    root = tmp_path / "workspace"
    (root / "models" / "my-notes").mkdir(parents=True)
    (root / "models" / "my-notes" / "notes.txt").write_text("keep me")
    (root / "sweeps" / "by-hand").mkdir(parents=True)
    at = new_app()
    assert any("0 model(s), 0 sweep(s)" in m.value for m in at.markdown)
    assert not at.button  # nothing of msli's to clear
    skipped = [w.value for w in at.warning]
    assert len(skipped) == 1 and "my-notes" in skipped[0] and "move that folder out" in skipped[0], skipped
    assert "--out" not in skipped[0] and "msli train" not in skipped[0]
    assert (root / "models" / "my-notes" / "notes.txt").read_text() == "keep me"


# ---------------------------------------------------------------- one model name on two datasets
def test_the_same_model_name_on_another_dataset_keeps_both(app, tmp_path):
    at = train_tiny(app, kinds=("popularity",))
    first = at.session_state["lab_models"]["popularity"]
    goto(at, "data")
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(str(write_mini_movielens(tmp_path / "ml-mini"))).run()
    at.button(key="data_load_path").click().run()
    assert not at.exception and not at.error, error_texts(at)
    at = train_tiny(at, kinds=("popularity",))
    assert list(at.dataframe[0].value["name"]) == ["popularity · ml-mini"]
    notes = [i.value for i in at.info if "kept" in i.value]
    assert notes == [
        "A model named popularity trained on another dataset is kept, so this one is named "
        "popularity · ml-mini."
    ]
    models = at.session_state["lab_models"]
    assert models["popularity"] is first and models["popularity · ml-mini"] is not first
    stale = [w.value for w in at.warning if "another dataset" in w.value]
    assert len(stale) == 1 and "(popularity)" in stale[0] and "Data page" in stale[0], stale
    saved = sorted(p.name for p in (tmp_path / "workspace" / "models").iterdir())
    assert saved == ["popularity", "popularity-ml-mini"]

    again = new_app()  # a reload finds both, each tied to its dataset
    assert {"popularity", "popularity · ml-mini"} <= set(again.session_state["lab_models"])
    at = train_tiny(again, kinds=("popularity",))  # retrain on the sample: replaces its own, says so
    assert any(i.value.startswith("popularity replaces the model") for i in at.info)
    assert sorted(p.name for p in (tmp_path / "workspace" / "models").iterdir()) == saved
