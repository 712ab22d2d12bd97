"""The local workspace: models and sweeps written, read back as a new session would, and cleared
without touching anything msli did not write; a workspace that cannot be written is one sentence with the
fix; a bad sweep folder is skipped with a sentence naming it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from tiny_data import make_tiny_dataset

from msli_core import workspace
from msli_core.data.audience import app_user
from msli_core.errors import MsliError
from msli_core.serving.bench import BenchResult
from msli_core.serving.bench_settings import ROW_KEYS
from msli_core.serving.report import read_sweep
from msli_core.train import TrainSettings, train
from msli_core.trained import from_result

NAME = "MS-LI K=4 (test)"


@pytest.fixture(scope="module")
def trained_model():
    data = make_tiny_dataset(users=30, items=36, events=20)
    result = train(data, "msli", TrainSettings.for_kind("msli", epochs=1), {"dim": 8, "layers": 1})
    return data, from_result(NAME, result, data)


@pytest.fixture(scope="module")
def other_model():
    """A model of the same name trained on another dataset."""
    data = make_tiny_dataset(users=25, items=36, events=20, seed=3)
    result = train(data, "popularity", TrainSettings.for_kind("popularity", epochs=0), {})
    return data, from_result(NAME, result, data)


def a_row(**changes) -> dict:
    """One bench row as msli bench writes it (every column; None where it does not apply)."""
    row = dict.fromkeys(ROW_KEYS)
    row.update(model="msli", stage="online", backend="torch", segments=4, history=50, candidates=1000,
               p50_ms=1.5, calls=20, passes=1, threads=1, capped=False, dim=64, layers=2)  # fmt: skip
    row.update(changes)
    return row


def test_a_saved_model_comes_back_with_its_name_metrics_history_and_dataset(tmp_path, trained_model):
    data, model = trained_model
    folder = workspace.save_model(model, data, root=tmp_path)
    assert folder.name == "MS-LI-K-4-test"
    models, problems = workspace.load_models(root=tmp_path)
    assert problems == [] and [m.name for m in models] == [NAME]
    back = models[0]
    assert back.dataset_fingerprint == data.fingerprint  # still refused on other data
    assert back.metrics == pytest.approx(model.metrics) and len(back.history) == len(model.history)
    assert workspace.save_model(model, data, root=tmp_path) == folder  # same name, same data: replaced
    assert workspace.contents(tmp_path)["models"] == 1


def test_the_same_name_on_another_dataset_is_kept_apart(tmp_path, trained_model, other_model):
    """Retraining a model name on other data never replaces the earlier model's folder."""
    data, model = trained_model
    other_data, other = other_model
    first = workspace.save_model(model, data, root=tmp_path)
    second = workspace.save_model(other, other_data, root=tmp_path)
    assert (first.name, second.name) == ("MS-LI-K-4-test", "MS-LI-K-4-test-2")
    assert workspace.save_model(other, other_data, root=tmp_path) == second  # its own folder is replaced
    models, problems = workspace.load_models(root=tmp_path)
    assert problems == []
    assert sorted((m.name, m.dataset_fingerprint) for m in models) == sorted(  # told apart as the Train
        [(NAME, data.fingerprint), (f"{NAME} · tiny", other_data.fingerprint)]  # page does (session_name)
    )
    assert workspace.contents(tmp_path)["models"] == 2


def test_a_users_folder_with_a_models_name_is_never_overwritten(tmp_path, trained_model):
    data, model = trained_model
    mine = tmp_path / "models" / "MS-LI-K-4-test"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    folder = workspace.save_model(model, data, root=tmp_path)
    assert folder.name == "MS-LI-K-4-test-2"
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(p.name for p in mine.iterdir()) == [
        "notes.txt"
    ]


def test_sweeps_and_clear_leave_a_users_own_files(tmp_path, trained_model):
    data, model = trained_model
    workspace.save_model(model, data, root=tmp_path)
    rows = [a_row(), a_row(stage="nearline", variant="incremental", candidates=None)]
    workspace.save_sweep(BenchResult(rows, {"cpu": "test"}), root=tmp_path)
    assert workspace.latest_sweep(tmp_path) == ((rows, {"cpu": "test"}), [])
    mine = tmp_path / "models" / "my-notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (tmp_path / "sweeps" / "by-hand").mkdir()  # no msli marker: not msli's
    (tmp_path / "models" / "looks-like-one").mkdir()
    (tmp_path / "models" / "looks-like-one" / "config.json").write_text(json.dumps({"format": "other"}))
    # only what msli wrote is counted (the user's three folders are not)
    assert workspace.contents(tmp_path) | {"problem": None} == {
        "path": str(tmp_path), "models": 1, "sweeps": 1, "problem": None
    }  # fmt: skip
    assert workspace.clear(tmp_path) == 2  # the model and the sweep msli wrote
    assert (mine / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "sweeps" / "by-hand").is_dir() and (tmp_path / "models" / "looks-like-one").is_dir()
    assert workspace.latest_sweep(tmp_path) == (None, [])
    assert workspace.contents(tmp_path)["models"] == 0 and workspace.contents(tmp_path)["sweeps"] == 0
    with app_user():  # as the app runs it (app.py runs every page inside it)
        models, problems = workspace.load_models(tmp_path)
    assert models == [] and len(problems) == 2  # the two folders that are not models say so
    for sentence in problems:  # in the app's words: no CLI flag
        assert "--out" not in sentence and "msli train" not in sentence and "workspace" in sentence


def test_two_sweeps_in_one_second_are_both_kept(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(time, "gmtime", lambda *_: time.struct_time((2030, 1, 2, 3, 4, 5, 2, 2, 0)))
    first = workspace.save_sweep(BenchResult([a_row(p50_ms=1.0)], {}), root=tmp_path)
    second = workspace.save_sweep(BenchResult([a_row(p50_ms=2.0)], {}), root=tmp_path)
    assert (first.name, second.name) == ("20300102T030405Z", "20300102T030405Z-2")
    assert workspace.contents(tmp_path)["sweeps"] == 2


BAD_SWEEPS = {
    "not-rows": [1, 2],
    "empty-row": [{}],
    "string-p50": [a_row(p50_ms="1.5")],
    "no-stage": [{k: v for k, v in a_row().items() if k != "stage"}],
    "bool-segments": [a_row(segments=True)],
    "nan-text": "[NaN",
    "no-rows": [],
}


@pytest.mark.parametrize("case", sorted(BAD_SWEEPS))
def test_a_bad_sweep_is_skipped_with_a_sentence_naming_its_folder(tmp_path, case):
    """The audit's corrupt or old-schema sweeps: the newest one that the pages can show is restored, and
    each newer bad folder is one sentence naming it (Clear removes an msli-written one)."""
    good = workspace.save_sweep(BenchResult([a_row()], {"cpu": "good"}), root=tmp_path)
    bad = tmp_path / "sweeps" / "20991231T235959Z"  # newer than the good one
    bad.mkdir()
    marker = {"tool": "msli", "kind": "bench", "files": ["bench.json", "meta.json"]}
    (bad / ".msli-output.json").write_text(json.dumps(marker))
    value = BAD_SWEEPS[case]
    (bad / "bench.json").write_text(value if isinstance(value, str) else json.dumps(value))
    (bad / "meta.json").write_text("{}")
    sweep, problems = workspace.latest_sweep(tmp_path)
    assert sweep is not None and sweep[1] == {"cpu": "good"} and good.name < bad.name
    assert len(problems) == 1 and str(bad) in problems[0] and "\n" not in problems[0], problems
    assert "Clear the workspace on Home" in problems[0]
    assert workspace.clear(tmp_path) == 2  # the bad one is msli's: Clear removes it too
    assert not bad.exists()


def test_a_bad_sweep_msli_did_not_write_says_to_move_it(tmp_path):
    bad = tmp_path / "sweeps" / "mine"
    bad.mkdir(parents=True)
    (bad / "bench.json").write_text(json.dumps([a_row(p50_ms=[1])]))
    (bad / "meta.json").write_text("{}")
    sweep, problems = workspace.latest_sweep(tmp_path)
    assert sweep is None and len(problems) == 1
    assert str(bad) in problems[0] and "move that folder out of the workspace" in problems[0]
    assert workspace.clear(tmp_path) == 0 and bad.is_dir()


def test_read_sweep_fills_the_columns_an_older_sweep_lacks_and_checks_meta(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    old = {k: v for k, v in a_row().items() if k not in ("recall_at_10", "index_bytes", "table", "method")}
    (folder / "bench.json").write_text(json.dumps([old]))
    (folder / "meta.json").write_text(json.dumps({"cpu": "x", "seconds": 3.5}))
    rows, meta = read_sweep(folder)
    assert meta == {"cpu": "x", "seconds": 3.5}
    assert list(rows[0]) == list(ROW_KEYS) and rows[0]["recall_at_10"] is None and rows[0]["p50_ms"] == 1.5
    (folder / "meta.json").write_text(json.dumps({"cpu": "x", "seconds": "long"}))
    with pytest.raises(MsliError, match="seconds"):
        read_sweep(folder)
    assert read_sweep(tmp_path / "nothing") is None  # no bench.json: not a sweep


# ---- a workspace that cannot be written ---------------------------------------------------------------
def test_a_workspace_that_is_a_file_is_one_sentence_with_the_fix(tmp_path, trained_model):
    data, model = trained_model
    root = tmp_path / "wsfile"
    root.write_text("a file, not a folder")
    sentence = workspace.problem(root)
    assert sentence is not None and str(root) in sentence and "MSLI_WORKSPACE" in sentence
    assert "Errno" not in sentence and "is a file" in sentence
    with pytest.raises(MsliError) as err:
        workspace.save_model(model, data, root=root)
    assert str(err.value) == sentence
    with pytest.raises(MsliError):
        workspace.save_sweep(BenchResult([a_row()], {}), root=root)
    assert root.read_text() == "a file, not a folder"  # untouched
    assert workspace.contents(root) == {"path": str(root), "models": 0, "sweeps": 0, "problem": sentence}
    assert workspace.load_models(root) == ([], []) and workspace.latest_sweep(root) == (None, [])


def test_a_models_entry_that_is_a_file_is_named(tmp_path, trained_model):
    data, model = trained_model
    (tmp_path / "models").write_text("not a folder")
    sentence = workspace.problem(tmp_path)
    assert sentence and str(tmp_path / "models") in sentence and "MSLI_WORKSPACE" in sentence
    with pytest.raises(MsliError):
        workspace.save_model(model, data, root=tmp_path)
    assert (tmp_path / "models").read_text() == "not a folder"


def test_a_workspace_that_cannot_be_created_is_one_sentence():
    root = Path("/proc/msli-test-workspace")  # /proc takes no new folder, even for root
    sentence = workspace.problem(root)
    assert sentence is not None and str(root) in sentence and "MSLI_WORKSPACE" in sentence, sentence


def test_a_writable_workspace_has_no_problem(tmp_path):
    assert workspace.problem(tmp_path / "new" / "ws") is None
    assert not (tmp_path / "new").exists()  # the check creates nothing


def test_the_workspace_folder_follows_msli_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_WORKSPACE", str(tmp_path / "ws"))
    assert workspace.workspace_dir() == tmp_path / "ws"
    monkeypatch.delenv("MSLI_WORKSPACE")
    assert workspace.workspace_dir().name == "workspace"


def test_a_sweep_too_large_to_read_back_is_not_saved(tmp_path, monkeypatch):
    from msli_core.serving import report

    monkeypatch.setattr(report, "MAX_SWEEP_BYTES", 200)  # a real cap of 64 MiB, shrunk for the test
    with pytest.raises(MsliError, match=r"kept in this session only: its rows take .* over the 0 MiB"):
        workspace.save_sweep(BenchResult([a_row(), a_row(p50_ms=2.0)], {}), root=tmp_path)
    sweeps = tmp_path / workspace.SWEEPS
    assert not list(sweeps.iterdir())  # nothing kept, not even the hidden folder it was written in
    assert workspace.latest_sweep(tmp_path) == (None, [])


def test_clear_removes_a_save_left_half_written_by_a_stopped_process_not_one_in_progress(tmp_path):
    models = tmp_path / workspace.MODELS
    stale, fresh = models / ".saving-abc123", models / ".saving-def456"
    for folder in (stale, fresh):
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "config.json").write_text("{")  # half written
    hour_ago = time.time() - workspace.STALE_STAGING_S - 60
    os.utime(stale, (hour_ago, hour_ago))
    mine = models / ".saving-but-a-file"  # a user's file of that name is not a staging folder
    mine.write_text("mine")
    os.utime(mine, (hour_ago, hour_ago))
    workspace.clear(tmp_path)
    assert not stale.exists() and fresh.exists() and mine.read_text() == "mine"
