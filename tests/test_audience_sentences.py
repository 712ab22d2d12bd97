"""Sentences outside the fix table that an app user can reach, worded for their reader (audience.words):
a diverged training, a ground truth that does not match its ratings, explanation accuracy on data
without ground truth. In the app they name the app's own boxes and sources, never a flag or a command;
on the command line they keep naming the flag or command."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from msli_core.data import load_dataset
from msli_core.data.audience import app_user
from msli_core.errors import MsliError
from msli_core.train import TrainingDiverged

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
CLI_ONLY = re.compile(r"(?<![\w-])--[a-z]|MSLI_|\bmsli (train|data)\b")


def test_a_diverged_training_names_the_seed_box_in_the_app_and_the_flag_on_the_command_line():
    with app_user():
        app = str(TrainingDiverged(2, 7, float("nan"), 0.004))
    cli = str(TrainingDiverged(2, 7, float("nan"), 0.004))
    assert app.startswith("training diverged at epoch 2, step 7: loss is NaN; ")
    assert "“Seed” box" in app and not CLI_ONLY.search(app), app
    assert cli.endswith("a lower learning rate (msli train --lr; it was 0.004)"), cli


def test_a_ground_truth_that_does_not_match_names_the_generator_in_the_app(tmp_path):
    folder = tmp_path / "sample"
    shutil.copytree(SAMPLE, folder)
    truth = (folder / "ground_truth.csv").read_text().splitlines()
    (folder / "ground_truth.csv").write_text("\n".join(truth[:-5]) + "\n")  # rows missing
    with app_user(), pytest.raises(MsliError) as app:
        load_dataset(folder)
    with pytest.raises(MsliError) as cli:
        load_dataset(folder)
    assert "“Generate synthetic” source" in str(app.value) and not CLI_ONLY.search(str(app.value))
    assert str(cli.value).endswith("regenerate both with msli data synth."), str(cli.value)


def test_explanation_accuracy_without_ground_truth_names_the_data_page_in_the_app(tmp_path):
    import torch

    from msli_core.explain import explanation_accuracy
    from msli_core.train import TrainSettings, train

    folder = tmp_path / "plain"
    folder.mkdir()
    lines = (SAMPLE / "ratings.csv").read_text().splitlines()
    (folder / "ratings.csv").write_text("\n".join(lines[:3001]) + "\n")  # the first ratings, no ground truth
    shutil.copy(SAMPLE / "movies.csv", folder / "movies.csv")
    data = load_dataset(folder)
    torch.manual_seed(0)
    config = {"dim": 8, "heads": 2, "layers": 1, "segments": 2}
    model = train(data, "msli", TrainSettings(epochs=1), config).model
    with app_user(), pytest.raises(MsliError) as app:
        explanation_accuracy(model, data)
    with pytest.raises(MsliError) as cli:
        explanation_accuracy(model, data)
    assert "“Bundled sample”" in str(app.value) and not CLI_ONLY.search(str(app.value)), str(app.value)
    assert "(msli data synth)" in str(cli.value)


def test_a_misconfigured_setting_is_named_to_whoever_runs_the_app(monkeypatch):
    """A bad environment variable is the server's configuration: the app names it, addressed to whoever
    runs the app (the user cannot fix it in a page); the command line names it to its user."""
    from msli_core.limits import env_positive

    monkeypatch.setenv("MSLI_TEST_SECONDS", "soon")
    with app_user(), pytest.raises(MsliError) as app:
        env_positive("MSLI_TEST_SECONDS", 30.0, " of seconds")
    with pytest.raises(MsliError) as cli:
        env_positive("MSLI_TEST_SECONDS", 30.0, " of seconds")
    assert str(app.value) == (
        "The app's setting MSLI_TEST_SECONDS (an environment variable) is 'soon', not a positive number of "
        "seconds; ask whoever runs the app to unset it or set it to e.g. 30, and restart it."
    )
    assert str(cli.value).startswith("The environment variable MSLI_TEST_SECONDS='soon' is not a positive")


def test_a_calibration_file_msli_will_not_replace_asks_whoever_runs_the_app(tmp_path, monkeypatch):
    from msli_core.serving import costmodel as cm

    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    cm.calibration_path().write_text("my notes, not msli's")
    with app_user():
        app = cm.classify_calibration().refusal
    cli = cm.classify_calibration().refusal
    assert app.endswith(
        "ask whoever runs the app to move that file away or set MSLI_CACHE_DIR to another folder and restart "
        "it; until then, pick a preset in the What-if page's “Hardware” box, or run a sweep on the Latency "
        "page with “Also calibrate the cost model on this machine” ticked."
    ), app
    assert cli.endswith("; move that file away or set MSLI_CACHE_DIR to another folder."), cli


def test_a_workspace_the_app_cannot_write_is_named_to_whoever_runs_it(tmp_path):
    from msli_core import workspace

    (tmp_path / "file").write_text("not a folder")
    sentence = workspace.problem(tmp_path / "file" / "workspace")
    assert sentence and sentence.endswith(
        "ask whoever runs the app to restart it with MSLI_WORKSPACE set to a folder it can write."
    ), sentence


def test_a_badly_set_load_memory_limit_is_the_one_setting_sentence(monkeypatch):
    from msli_core.data import arrowread

    monkeypatch.setenv(arrowread.MAX_LOAD_MB_ENV, "lots")
    with app_user(), pytest.raises(MsliError) as app:
        arrowread.available_memory_bytes()
    with pytest.raises(MsliError) as cli:
        arrowread.available_memory_bytes()
    assert "ask whoever runs the app" in str(app.value) and "restart it" in str(app.value), str(app.value)
    assert str(cli.value).startswith("The environment variable MSLI_MAX_LOAD_MB='lots' is not a positive")
    monkeypatch.setenv(arrowread.MAX_LOAD_MB_ENV, "2")
    assert arrowread.available_memory_bytes() == 2 << 20


def test_a_user_without_a_held_out_item_is_told_the_explain_pages_choice_in_the_app(tmp_path):
    from msli_core.explain import explain
    from msli_core.train import TrainSettings, train

    folder = tmp_path / "plain"
    folder.mkdir()
    lines = (SAMPLE / "ratings.csv").read_text().splitlines()
    short_user = ["99999,1,4.0,1600000000", "99999,2,4.0,1600000100"]  # 2 events: no held-out item
    (folder / "ratings.csv").write_text("\n".join(lines[:3001] + short_user) + "\n")
    shutil.copy(SAMPLE / "movies.csv", folder / "movies.csv")
    data = load_dataset(folder)
    model = train(data, "msli", TrainSettings(epochs=1), {"dim": 8, "heads": 2, "layers": 1, "segments": 2})
    with app_user(), pytest.raises(MsliError) as app:
        explain(model.model, data, "99999", stage="test")
    with pytest.raises(MsliError) as cli:
        explain(model.model, data, "99999", stage="test")
    assert "(“Recommend”: after the whole history)" in str(app.value) and "--" not in str(app.value)
    assert "(--stage all)" in str(cli.value)
