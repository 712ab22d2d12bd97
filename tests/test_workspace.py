"""The local workspace: models and sweeps written, read back as a new session would, and cleared
without touching anything msli did not write."""

from __future__ import annotations

import json

import pytest
from tiny_data import make_tiny_dataset

from msli_core import workspace
from msli_core.serving.bench import BenchResult
from msli_core.train import TrainSettings, train
from msli_core.trained import from_result


@pytest.fixture(scope="module")
def trained_model():
    data = make_tiny_dataset(users=30, items=36, events=20)
    result = train(data, "msli", TrainSettings.for_kind("msli", epochs=1), {"dim": 8, "layers": 1})
    return data, from_result("MS-LI K=4 (test)", result, data)


def test_a_saved_model_comes_back_with_its_name_metrics_history_and_dataset(tmp_path, trained_model):
    data, model = trained_model
    folder = workspace.save_model(model, data, root=tmp_path)
    assert folder.name == "MS-LI-K-4-test"
    models, problems = workspace.load_models(root=tmp_path)
    assert problems == [] and [m.name for m in models] == ["MS-LI K=4 (test)"]
    back = models[0]
    assert back.dataset_fingerprint == data.fingerprint  # still refused on other data
    assert back.metrics == pytest.approx(model.metrics) and len(back.history) == len(model.history)
    workspace.save_model(model, data, root=tmp_path)  # the same name again replaces it
    assert workspace.contents(tmp_path)["models"] == 1


def test_sweeps_and_clear_leave_a_users_own_files(tmp_path, trained_model):
    data, model = trained_model
    workspace.save_model(model, data, root=tmp_path)
    rows = [{"model": "msli", "stage": "online", "p50_ms": 1.0}]
    workspace.save_sweep(BenchResult(rows, {"cpu": "test"}), root=tmp_path)
    assert workspace.latest_sweep(tmp_path) == (rows, {"cpu": "test"})
    mine = tmp_path / "models" / "my-notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (tmp_path / "sweeps" / "by-hand").mkdir()  # no msli marker: not msli's
    (tmp_path / "models" / "looks-like-one").mkdir()
    (tmp_path / "models" / "looks-like-one" / "config.json").write_text(json.dumps({"format": "other"}))
    assert workspace.clear(tmp_path) == 2  # the model and the sweep msli wrote
    assert (mine / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "sweeps" / "by-hand").is_dir() and (tmp_path / "models" / "looks-like-one").is_dir()
    assert workspace.latest_sweep(tmp_path) is None
    models, problems = workspace.load_models(tmp_path)
    assert models == [] and len(problems) == 2  # the two folders that are not models say so


def test_the_workspace_folder_follows_msli_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_WORKSPACE", str(tmp_path / "ws"))
    assert workspace.workspace_dir() == tmp_path / "ws"
    monkeypatch.delenv("MSLI_WORKSPACE")
    assert workspace.workspace_dir().name == "workspace"
