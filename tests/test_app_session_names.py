"""Through the app's pages (pages/state.py's own calls to trained.session_name and the workspace): two
tabs save one model name on two datasets; a new session gives the second back told apart by its dataset,
as the Train page names a model, and retraining it there replaces it in the session and in its folder."""

from __future__ import annotations

import json

import pytest
from test_app_pages import (
    _no_bundled_demo,  # noqa: F401 - autouse: an empty session and a temporary workspace
    error_texts,
    goto,
    new_app,
    tiny_sample_dir,  # noqa: F401 - the small synthetic set the app trains on
    train_tiny,
    write_mini_movielens,
)

pytestmark = pytest.mark.slow  # AppTest runs: a tiny training each


def load_local(at, folder) -> None:
    goto(at, "data")
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(str(folder)).run()
    at.button(key="data_load_path").click().run()
    assert not at.exception and not at.error, error_texts(at)


def test_two_tabs_one_name_two_datasets_then_a_reload(tmp_path, monkeypatch, tiny_sample_dir):  # noqa: F811
    monkeypatch.setenv("MSLI_SAMPLE_DATA", str(tiny_sample_dir))
    mini = write_mini_movielens(tmp_path / "ml-mini")
    models = tmp_path / "workspace" / "models"  # _no_bundled_demo's workspace

    first, second = new_app(), new_app()  # two tabs open at once
    train_tiny(first, kinds=("popularity",))
    load_local(second, mini)
    train_tiny(second, kinds=("popularity",))
    assert list(second.session_state["lab_models"]) == ["popularity"]  # in its own tab the name was free
    assert sorted(p.name for p in models.iterdir()) == ["popularity", "popularity-2"]
    labels = {  # each save records the Data page's label of its dataset, which a reload names it by
        p.name: json.loads((p / "config.json").read_text())["training"].get("dataset_label")
        for p in models.iterdir()
    }
    assert labels == {
        "popularity": first.session_state["lab_dataset_label"],
        "popularity-2": second.session_state["lab_dataset_label"],
    }

    again = new_app()  # a reload: the second tab's model is told apart by its dataset, not a fingerprint
    assert sorted(again.session_state["lab_models"]) == ["popularity", "popularity · ml-mini"]
    load_local(again, mini)
    at = train_tiny(again, kinds=("popularity",))  # a retrain on ml-mini replaces that model
    kept = at.session_state["lab_models"]
    assert sorted(kept) == ["popularity", "popularity · ml-mini"]
    assert kept["popularity · ml-mini"].dataset_fingerprint != kept["popularity"].dataset_fingerprint
    assert sorted(p.name for p in models.iterdir()) == ["popularity", "popularity-2"]  # no third folder
