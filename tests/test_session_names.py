"""A model's name in a session is the same whether the Train page just placed it or the workspace gave it
back after a reload (trained.session_name, one rule for both): a model saved as X comes back as X; the
same name saved on two datasets comes back told apart by its dataset's label, as the Train page tells
them apart; a retrain replaces its earlier self, however that was told apart, in the session and in the
workspace."""

from __future__ import annotations

import dataclasses
import json

import pytest
from tiny_data import make_tiny_dataset

from msli_core import workspace
from msli_core.train import TrainSettings, train
from msli_core.trained import TrainedModel, from_result, session_name


@pytest.fixture(scope="module")
def datasets():
    """Two datasets (different items, so different fingerprints) read from two folders named alike."""
    a = dataclasses.replace(make_tiny_dataset(users=20, items=30, events=15), source="/data/a/ml-mini")
    b = dataclasses.replace(
        make_tiny_dataset(users=20, items=36, events=15, seed=3), source="/data/b/ml-mini"
    )
    c = dataclasses.replace(make_tiny_dataset(users=20, items=42, events=15, seed=4), source="/data/ml-tiny")
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    return a, b, c


def popularity(data) -> TrainedModel:
    result = train(data, "popularity", TrainSettings.for_kind("popularity", epochs=0), {})
    return from_result("popularity", result, data)


# What pages/state.py does with these functions (its _place and models(), without the bundled demo):
def place(store: dict, model: TrainedModel, label: str, root) -> str:
    """The Train page keeps a model it trained: its session name, then the workspace save."""
    model.name = session_name(model.name, model.dataset_fingerprint, store, label)
    store[model.name] = model
    workspace.save_model(model, _data_of[model.dataset_fingerprint], root=root)
    return model.name


def reload(root) -> dict:
    """A new session starts from the workspace's models."""
    store: dict = {}
    saved, problems = workspace.load_models(root)
    assert problems == []
    for m in saved:
        m.name = session_name(m.name, m.dataset_fingerprint, store)
        store[m.name] = m
    return store


_data_of: dict = {}


@pytest.fixture(autouse=True)
def _register(datasets):
    _data_of.update({d.fingerprint: d for d in datasets})


def folders(root) -> list[str]:
    return sorted(p.name for p in (root / "models").iterdir())


def names(store) -> dict[str, str]:
    return {name: m.dataset_fingerprint for name, m in store.items()}


def test_a_model_saved_as_x_comes_back_as_x(tmp_path, datasets):
    a, b, _ = datasets
    session = {}
    assert place(session, popularity(a), "/data/a/ml-mini", tmp_path) == "popularity"
    assert place(session, popularity(b), "bundled sample (synthetic)", tmp_path) == (
        "popularity · bundled sample (synthetic)"
    )
    assert names(reload(tmp_path)) == names(session)


def test_one_name_saved_by_two_tabs_on_two_datasets_comes_back_told_apart_by_its_dataset(tmp_path, datasets):
    """Two tabs, each with its own dataset, both train "popularity" and both save it under that name (in
    neither tab does the other's model hold it). After a reload the second is told apart by its dataset's
    label, as the Train page tells a model apart ("popularity · ml-tiny"), not by a fingerprint; a retrain
    there replaces it in the session and in its own folder."""
    a, _, c = datasets
    first_tab, second_tab = {}, {}
    assert place(first_tab, popularity(a), "/data/a/ml-mini", tmp_path) == "popularity"
    assert place(second_tab, popularity(c), "/data/ml-tiny", tmp_path) == "popularity"
    assert folders(tmp_path) == ["popularity", "popularity-2"]

    session = reload(tmp_path)
    assert names(session) == {"popularity": a.fingerprint, "popularity · ml-tiny": c.fingerprint}
    assert session_name("popularity", c.fingerprint, session, "/data/ml-tiny") == "popularity · ml-tiny"
    retrained = popularity(c)
    assert place(session, retrained, "/data/ml-tiny", tmp_path) == "popularity · ml-tiny"
    assert session["popularity · ml-tiny"] is retrained and len(session) == 2
    assert folders(tmp_path) == ["popularity", "popularity-2"]  # its own folder replaced, no third one
    assert names(reload(tmp_path)) == names(session)


def test_a_retrain_replaces_its_earlier_self_whatever_it_was_told_apart_as(tmp_path, datasets):
    """The earlier self was saved as "popularity · ml-tiny" while another dataset's model held
    "popularity"; that model is gone now (its folder moved away), and the Data page's label is another
    one: the retrain still takes its earlier self's name and folder instead of "popularity"."""
    a, _, c = datasets
    session = {}
    place(session, popularity(a), "/data/a/ml-mini", tmp_path)
    assert place(session, popularity(c), "/data/ml-tiny", tmp_path) == "popularity · ml-tiny"
    (tmp_path / "models" / "popularity").rename(tmp_path / "elsewhere")

    session = reload(tmp_path)
    assert names(session) == {"popularity · ml-tiny": c.fingerprint}
    assert place(session, popularity(c), "upload: ratings.csv", tmp_path) == "popularity · ml-tiny"
    assert list(session) == ["popularity · ml-tiny"] and folders(tmp_path) == ["popularity-ml-tiny"]


def test_two_datasets_of_one_label_are_told_apart_by_fingerprint_without_stacking(tmp_path, datasets):
    """Both tabs named their model "popularity · ml-mini" (each of their datasets is read from a folder
    called ml-mini): the second comes back as "popularity · data <fp>", as the Train page would name it
    next to the first, not "popularity · ml-mini · ml-mini"."""
    a, b, c = datasets
    first_tab = {}
    assert place(first_tab, popularity(c), "/data/ml-tiny", tmp_path) == "popularity"
    second_tab = dict(first_tab)  # opened now: it starts with that model
    assert place(first_tab, popularity(a), "/data/a/ml-mini", tmp_path) == "popularity · ml-mini"
    assert place(second_tab, popularity(b), "/data/b/ml-mini", tmp_path) == "popularity · ml-mini"
    session = reload(tmp_path)
    assert names(session) == {
        "popularity": c.fingerprint,
        "popularity · ml-mini": a.fingerprint,
        f"popularity · data {b.fingerprint[:8]}": b.fingerprint,
    }


def test_a_save_of_a_release_without_base_name_is_still_its_earlier_self(tmp_path, datasets):
    a, _, c = datasets
    session = {}
    place(session, popularity(a), "/data/a/ml-mini", tmp_path)
    place(session, popularity(c), "/data/ml-tiny", tmp_path)
    config_path = tmp_path / "models" / "popularity-ml-tiny" / "config.json"
    config = json.loads(config_path.read_text())
    del config["training"]["base_name"]  # as the previous release wrote it
    config_path.write_text(json.dumps(config))

    session = reload(tmp_path)
    assert names(session) == {"popularity": a.fingerprint, "popularity · ml-tiny": c.fingerprint}
    assert session["popularity · ml-tiny"].base_name == "popularity"
    assert place(session, popularity(c), "/data/ml-tiny", tmp_path) == "popularity · ml-tiny"
    assert folders(tmp_path) == ["popularity", "popularity-ml-tiny"]


def test_a_loaded_zip_is_not_the_earlier_self_of_a_trained_model(datasets):
    """A model loaded from a zip is asked to be called "<name> (loaded)", so retraining <name> on the same
    data keeps it beside the new one (as before)."""
    from msli_core.trained import from_loaded

    a, _, _ = datasets
    zipped = from_loaded("popularity.zip", popularity(a).loaded, a)
    store = {zipped.name: zipped}
    assert zipped.name == "popularity (loaded)"
    assert session_name("popularity", a.fingerprint, store, "x") == "popularity"
    assert session_name("popularity (loaded)", a.fingerprint, store, "x") == "popularity (loaded)"


def test_a_recorded_data_page_label_tells_the_model_apart_on_a_reload(tmp_path, datasets):
    """When the save is told the Data page's label (``label=``), a reload tells the model apart by that
    label, exactly as the Train page would have, rather than by the folder its source names."""
    a, _, c = datasets
    first_tab, second_tab = {}, {}
    place(first_tab, popularity(a), "/data/a/ml-mini", tmp_path)
    model = popularity(c)
    model.name = session_name(model.name, model.dataset_fingerprint, second_tab, "bundled sample (synthetic)")
    second_tab[model.name] = model
    workspace.save_model(model, c, root=tmp_path, label="bundled sample (synthetic)")
    assert names(reload(tmp_path)) == {
        "popularity": a.fingerprint,
        "popularity · bundled sample (synthetic)": c.fingerprint,
    }
