"""Which workspace folders are msli's (counted by Home, removed by Clear): a model an older msli release
saved, in an older model format, is still msli's; a folder msli did not write, or one a user added a
file to, never is."""

from __future__ import annotations

import json

import pytest
from tiny_data import make_tiny_dataset

from msli_core import workspace
from msli_core.serving.bench import BenchResult
from msli_core.serving.bench_settings import ROW_KEYS
from msli_core.train import TrainSettings, train
from msli_core.trained import from_result


@pytest.fixture(scope="module")
def saved_model():
    data = make_tiny_dataset(users=20, items=30, events=15)
    result = train(data, "popularity", TrainSettings.for_kind("popularity", epochs=0), {})
    return data, from_result("popularity", result, data)


def a_row() -> dict:
    row = dict.fromkeys(ROW_KEYS)
    row.update(model="msli", stage="online", backend="torch", segments=4, history=50, candidates=100,
               p50_ms=1.5, calls=5)  # fmt: skip
    return row


def set_format(folder, written: str | None) -> None:
    """Rewrite a saved model's config.json as an msli release of another model format wrote it."""
    config = json.loads((folder / "config.json").read_text())
    if written is None:
        config.pop("format")
    else:
        config["format"] = written
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("written", ["msli-model/1", "msli-model/3"])
def test_a_model_of_another_format_version_is_counted_cleared_and_named(tmp_path, saved_model, written):
    """An older (or newer) release's model folder: Home counts it, Clear removes it, and loading it says
    which format it is in instead of it being passed over as a user's folder."""
    data, model = saved_model
    folder = workspace.save_model(model, data, root=tmp_path)
    set_format(folder, written)
    assert workspace.is_msli_model(folder)
    assert workspace.contents(tmp_path)["models"] == 1
    models, problems = workspace.load_models(tmp_path)
    assert models == [] and len(problems) == 1 and written in problems[0] and str(folder) in problems[0]
    assert workspace.clear(tmp_path) == 1 and not folder.exists()
    assert workspace.contents(tmp_path)["models"] == 0


def test_a_retrain_replaces_its_older_format_save(tmp_path, saved_model):
    """The same name on the same data, saved by an older release: the new save replaces it (it is this
    model's earlier self), rather than stepping around it to name-2."""
    data, model = saved_model
    folder = workspace.save_model(model, data, root=tmp_path)
    set_format(folder, "msli-model/1")
    assert workspace.save_model(model, data, root=tmp_path) == folder
    assert json.loads((folder / "config.json").read_text())["format"] == "msli-model/2"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [folder.name]


@pytest.mark.parametrize("written", [None, "other", "msli-model", 2, "my-model/2"])
def test_a_config_json_that_is_not_msli_s_format_is_never_counted_or_cleared(tmp_path, saved_model, written):
    data, model = saved_model
    folder = workspace.save_model(model, data, root=tmp_path)
    set_format(folder, written)
    assert not workspace.is_msli_model(folder)
    assert workspace.contents(tmp_path)["models"] == 0
    assert workspace.clear(tmp_path) == 0 and (folder / "model.safetensors").is_file()


def test_a_file_a_user_added_keeps_a_model_or_sweep_folder_from_clear(tmp_path, saved_model):
    data, model = saved_model
    folder = workspace.save_model(model, data, root=tmp_path)
    sweep = workspace.save_sweep(BenchResult([a_row()], {}), root=tmp_path)
    assert workspace.contents(tmp_path) | {"problem": None} == {
        "path": str(tmp_path), "models": 1, "sweeps": 1, "problem": None
    }  # fmt: skip
    (folder / "notes.txt").write_text("my notes on this model")
    (sweep / "plot.png").write_bytes(b"\x89PNG mine")
    assert not workspace.is_msli_model(folder) and not workspace.is_msli_sweep(sweep)
    assert workspace.contents(tmp_path)["models"] == 0 and workspace.contents(tmp_path)["sweeps"] == 0
    assert workspace.clear(tmp_path) == 0
    assert (folder / "notes.txt").read_text() == "my notes on this model"
    assert (sweep / "plot.png").read_bytes() == b"\x89PNG mine"


def test_a_marker_nested_past_the_parser_is_not_msli_s(tmp_path):
    folder = tmp_path / "sweeps" / "deep"
    folder.mkdir(parents=True)
    (folder / ".msli-output.json").write_text("[" * 100_000 + "]" * 100_000)
    assert not workspace.is_msli_sweep(folder)
    assert workspace.contents(tmp_path)["sweeps"] == 0 and workspace.clear(tmp_path) == 0
