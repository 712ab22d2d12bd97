"""Every way the app loads data or a model speaks to the app's user (``msli_core.data.audience``): an error
raised on any of them names what the app's user can do (a page's box, “Upload files”, the Train page)
and never a CLI flag, an environment variable or an ``msli`` command. The ways: the bundled sample (the
first page of a session, through app.py), its reload with the filters, the generator, an upload, a typed
path, a MovieLens download, a model zip on the Train page, and the workspace's saved models.

AppTest runs app.py on a session's first run only (after ``switch_page`` it runs the page file alone, as a
pages/ folder app), so the first-run tests check app.py's ``app_user()`` and the page tests the pages' own.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import zipfile
from pathlib import Path

import pytest
from _fixtures import FIXTURES
from streamlit.testing.v1 import AppTest
from test_app_pages import (
    APP,
    _no_bundled_demo,  # noqa: F401 - autouse: an empty session and a temporary workspace
    error_texts,
    goto,
    new_app,
    tiny_sample_dir,  # noqa: F401 - the small synthetic set (fixture)
)

pytestmark = pytest.mark.slow  # AppTest runs


def assert_app_words(message: str) -> None:
    """One sentence with nothing an app user cannot use: no flag, no msli command, no traceback."""
    assert "\n" not in message and "Traceback" not in message, message
    assert not re.search(r"(?<![\w-])--[a-z]", message), message
    assert not re.search(r"`msli |\bmsli (train|data|bench|export|evaluate|explain)\b", message), message
    assert "MSLI_" not in message and "environment variable" not in message, message


def first_run(monkeypatch, sample: Path) -> AppTest:
    """A new session's first run (app.py, then Home) on ``sample`` as the bundled sample."""
    monkeypatch.setenv("MSLI_SAMPLE_DATA", str(sample))
    at = AppTest.from_file(APP, default_timeout=180)
    return at.run()


# ------------------------------------------------------------------------- app.py: the first run


def test_a_bundled_sample_that_does_not_load_is_an_error_in_the_apps_words(tmp_path, monkeypatch):
    sample = tmp_path / "sample"  # a path of its own: st.cache_resource keeps any sample that loaded
    shutil.copytree(FIXTURES / "layout-latest", sample)
    monkeypatch.setenv("MSLI_MAX_METADATA_MB", "0.00001")
    at = first_run(monkeypatch, sample)
    assert not at.exception, [e.value for e in at.exception]  # app.py shows a refusal no page caught
    errors = error_texts(at)
    assert errors, "the sidebar and the page say why nothing is loaded"
    for message in errors:
        assert message.startswith(f"{sample / 'movies.csv'} holds "), message
        assert message.endswith(
            "ask whoever runs the app to raise its limit on an item metadata file's size to 1 MB."
        )
        assert_app_words(message)


def test_a_workspace_model_that_does_not_load_is_a_warning_in_the_apps_words(tmp_path, monkeypatch):
    models = tmp_path / "workspace" / "models"  # MSLI_WORKSPACE (test_app_pages' autouse fixture)
    (models / "broken").mkdir(parents=True)
    (models / "broken" / "config.json").write_text("{not json")
    (models / "broken" / "model.safetensors").write_bytes(b"")
    (models / "empty").mkdir()
    at = first_run(monkeypatch, FIXTURES / "layout-latest")
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning]
    broken = [w for w in warnings if str(models / "broken") in w]
    empty = [w for w in warnings if str(models / "empty") in w]
    assert len(broken) == 1 and broken[0].endswith("; train it again on the Train page."), warnings
    assert len(empty) == 1 and empty[0].endswith(
        "the app skips it, so move that folder out of the workspace."
    )
    for message in broken + empty:
        assert_app_words(message)


# -------------------------------------------------------------------------------- the Data page


def _unreachable_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _sample_with_k_core(at: AppTest, _tmp: Path) -> str:
    at.number_input(key="data_k_core").set_value(100).run()
    at.button(key="data_load_sample").click().run()
    return "lower “k-core” under “Optional filters and column mapping”."


def _generate_with_k_core(at: AppTest, _tmp: Path) -> str:
    at.number_input(key="data_k_core").set_value(100).run()
    at.radio(key="data_source").set_value("Generate synthetic").run()
    at.button(key="data_generate").click().run()
    return "lower “k-core” under “Optional filters and column mapping”."


_NO_COLUMNS = b"who,what,when\n1,2,3\n1,3,4\n2,2,5\n"


def _upload_unknown_columns(at: AppTest, _tmp: Path) -> str:
    at.radio(key="data_source").set_value("Upload files").run()
    at.file_uploader(key="data_upload").set_value(("log.csv", _NO_COLUMNS, "text/csv"))
    at.run()
    at.button(key="data_load_upload").click().run()
    return "under “Optional filters and column mapping”."


def _path_unknown_columns(at: AppTest, tmp: Path) -> str:
    (tmp / "log.csv").write_bytes(_NO_COLUMNS)
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(str(tmp / "log.csv")).run()
    at.button(key="data_load_path").click().run()
    return "under “Optional filters and column mapping”."


def _download_unreachable(at: AppTest, _tmp: Path) -> str:
    at.radio(key="data_source").set_value("Download MovieLens").run()
    at.selectbox(key="data_movielens").set_value("ml-100k").run()
    at.button(key="data_fetch").click().run()
    return "load it with “Upload files”."


@pytest.mark.parametrize(
    "way",
    [_sample_with_k_core, _generate_with_k_core, _upload_unknown_columns, _path_unknown_columns,
     _download_unreachable],
    ids=["bundled-sample-filtered", "generate", "upload", "local-path", "download"],
)  # fmt: skip
def test_each_data_page_way_in_names_the_apps_way(way, tiny_sample_dir, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MSLI_MOVIELENS_BASE_URL", _unreachable_url())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MSLI_SAMPLE_DATA", str(tiny_sample_dir))
    at = goto(new_app(), "data")
    ending = way(at, tmp_path)
    assert not at.exception, [e.value for e in at.exception]
    errors = error_texts(at)
    assert len(errors) == 1 and errors[0].endswith(ending), errors
    assert_app_words(errors[0])


# ------------------------------------------------------------------------------- the Train page


def test_a_model_zip_that_does_not_load_names_the_train_page(tiny_sample_dir, monkeypatch):  # noqa: F811
    from msli_core.data import load_dataset
    from msli_core.models.registry import build_model, save_zip

    monkeypatch.setenv("MSLI_SAMPLE_DATA", str(tiny_sample_dir))
    data = load_dataset(tiny_sample_dir)  # the app's dataset: a zip of a model made for it
    payload = save_zip(build_model("popularity", data), "pop", data=data, metrics={"NDCG@10": 0.1})
    edited = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(payload)) as source, zipfile.ZipFile(edited, "w") as out:
        for name in source.namelist():
            blob = source.read(name)
            if name.endswith("config.json"):
                meta = json.loads(blob)
                meta["metrics"]["NDCG@10"] = "great"
                blob = json.dumps(meta).encode()
            out.writestr(name, blob)
    at = goto(new_app(), "train")
    at.file_uploader(key="train_upload").set_value(("pop.zip", edited.getvalue(), "application/zip"))
    at.run()
    at.button(key="train_load").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = error_texts(at)
    assert errors == [
        'pop.zip: config.json has metrics.NDCG@10 = "great", which must be a number from 0 to 1 (or null); '
        "the file was edited or damaged, so train it again on the Train page."
    ], errors


def test_a_downloaded_zip_over_the_expanded_limit_names_no_environment_variable(tmp_path, monkeypatch):
    """The Download path's zip-size refusal, end to end: a loopback server (no internet) serves a
    fixture archive whose published checksum is patched in (the app passes no checksums of its own), and
    a member of it expands past MSLI_MAX_EXPANDED_MB."""
    from _loopback import Route, serve
    from test_data_download import _sha256, _zip_of

    from msli_core.data import download

    big = _zip_of(FIXTURES / "layout-100k", extra={"ml-100k/big.csv": bytes(range(256)) * 8192})  # 2 MiB
    monkeypatch.setitem(download.MOVIELENS_CHECKSUMS, "ml-100k", _sha256(big))
    monkeypatch.setenv("MSLI_MAX_EXPANDED_MB", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    at = goto(first_run(monkeypatch, FIXTURES / "layout-latest"), "data")
    with serve({"/ml-100k.zip": Route(big)}) as server:
        monkeypatch.setenv("MSLI_MOVIELENS_BASE_URL", server.base_url)
        _download_unreachable(at, tmp_path)  # the same clicks, now answered
        assert server.hits == ["/ml-100k.zip"]
    assert not at.exception, [e.value for e in at.exception]
    errors = error_texts(at)
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        "ml-100k.zip:ml-100k/big.csv would expand to 2 MB, above the limit of 1 MB"
    ), errors
    assert errors[0].endswith(
        "ask whoever runs the app to raise its limit on a zip member's expanded size to 3 MB, or unpack the "
        "archive and load its folder with “Local path”."
    ), errors
    assert_app_words(errors[0])
    movielens = tmp_path / "cache" / "msli-lab" / "movielens"
    assert not [p for p in movielens.rglob("*") if p.is_file()], "nothing half-downloaded kept"
