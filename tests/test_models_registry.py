"""Save/load: identical scores after a round trip; every bad folder is one MsliError sentence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_data import make_tiny_dataset

from msli_core.data.dataset import leave_one_out
from msli_core.errors import MsliError
from msli_core.models.registry import KINDS, build_model, load_model, save_model


@pytest.fixture(scope="module")
def tiny():
    data = make_tiny_dataset(users=20, items=40)
    return data, leave_one_out(data)


def _model(kind, data, split):
    torch.manual_seed(0)
    small = {"dim": 16, "layers": 1} if kind in ("msli", "two-tower", "cross-encoder") else {}
    if kind == "cross-encoder":
        small["max_len"] = 8
    model = build_model(kind, data=data, **small)
    if hasattr(model, "fit"):
        model.fit(split.train_sequences())
    return model.eval()


@pytest.mark.parametrize("kind", KINDS)
def test_roundtrip_gives_identical_scores(tiny, tmp_path, kind):
    data, split = tiny
    model = _model(kind, data, split)
    histories = split.histories("test")[:4]
    with torch.no_grad():
        before = model.score_histories(histories)
    save_model(model, tmp_path / "m", data=data, metrics={"NDCG@10": 0.5}, extra={"epochs": 1})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(tmp_path / "m", data)
    assert (
        loaded.kind == kind and loaded.fingerprint == data.fingerprint and loaded.metrics == {"NDCG@10": 0.5}
    )
    with torch.no_grad():
        after = loaded.model.score_histories(histories)
    assert torch.equal(before, after)
    payload = json.loads((tmp_path / "m" / "config.json").read_text())
    for key in ("kind", "config", "dataset", "n_items", "metrics", "training", "versions"):
        assert key in payload


def test_models_build_without_data():
    model = build_model("msli", n_items=5000, n_genres=20, segments=8, dim=32)
    assert model.item_table().shape == (5001, 32)
    cross = build_model("cross-encoder", n_items=100, dim=16)
    with torch.no_grad():
        scores = cross.score(torch.randint(1, 100, (2, 7)), torch.randint(1, 100, (2, 5)))
    assert scores.shape == (2, 5)
    two = build_model("two-tower", n_items=50)
    assert two.config.segments == 1 and type(two) is type(model)


@pytest.fixture()
def saved(tiny, tmp_path):
    data, split = tiny
    folder = tmp_path / "model"
    save_model(_model("msli", data, split), folder, data=data)
    return folder


def _refused(folder, data=None, match=None):
    with pytest.raises(MsliError, match=match) as err:
        load_model(folder, data)
    message = str(err.value)
    assert "\n" not in message and str(folder) in message
    return message


def test_missing_folder(tmp_path):
    _refused(tmp_path / "nope", match="does not exist")


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    _refused(tmp_path / "f", match="not a model folder")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_missing_file(saved, name):
    (saved / name).unlink()
    _refused(saved, match=f"no {name}")


def test_corrupted_json(saved):
    (saved / "config.json").write_text("{not json")
    _refused(saved, match="not valid JSON")


def test_json_without_kind(saved):
    (saved / "config.json").write_text(json.dumps({"hello": 1}))
    _refused(saved, match="lacks")


def test_unknown_kind(saved):
    payload = json.loads((saved / "config.json").read_text())
    payload["kind"] = "gpt"
    (saved / "config.json").write_text(json.dumps(payload))
    _refused(saved, match="unknown model kind")


def test_corrupted_safetensors(saved):
    (saved / "model.safetensors").write_bytes(b"\x00\x01garbage")
    _refused(saved, match="safetensors")


def test_weights_that_do_not_match_the_config(saved):
    payload = json.loads((saved / "config.json").read_text())
    payload["config"]["dim"] = 32
    (saved / "config.json").write_text(json.dumps(payload))
    _refused(saved, match="does not match")


@pytest.mark.parametrize("name", ["model.pt", "weights.pkl", "pytorch_model.bin"])
def test_pickles_are_refused_and_never_opened(saved, name, monkeypatch):
    (saved / name).write_bytes(b"\x80\x04 not opened")

    def forbidden(*_args, **_kwargs):
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", forbidden)
    _refused(saved, match="pickle")


def test_other_dataset_is_refused(saved):
    other = make_tiny_dataset(users=21, items=40, seed=1)
    message = _refused(saved, other, match="trained on")
    assert "retrain" in message


def test_save_is_all_or_nothing(tiny, tmp_path, monkeypatch):
    import safetensors.torch

    data, split = tiny

    def broken(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError):
        save_model(_model("popularity", data, split), tmp_path / "out", data=data)
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_bad_config_names_the_setting():
    with pytest.raises(MsliError, match="no setting"):
        build_model("msli", n_items=10, depth=3)
    with pytest.raises(MsliError, match="two-tower"):
        build_model("two-tower", n_items=10, segments=4)
    assert np.isfinite(build_model("item-knn", n_items=10).neighbor_sims.numpy()).all()
