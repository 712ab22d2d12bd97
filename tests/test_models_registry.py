"""Save/load: identical scores after a round trip; every bad folder is one MsliError sentence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_data import make_tiny_dataset

from msli_core.data.audience import app_user
from msli_core.data.dataset import leave_one_out
from msli_core.errors import MsliError
from msli_core.models.registry import KINDS, SECTION_FIELDS, build_model, load_model, save_model


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


def test_an_older_format_is_refused_with_a_sentence(saved):
    payload = json.loads((saved / "config.json").read_text())
    payload["format"] = "msli-model/1"
    (saved / "config.json").write_text(json.dumps(payload))
    _refused(saved, match="format msli-model/1.*retrain it")


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

    monkeypatch.setattr(safetensors.torch, "save", broken)
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


# ---- absurd, mistyped or broken model folders: refused before anything is allocated -----------------
def _edit_config(folder, **changes):
    payload = json.loads((folder / "config.json").read_text())
    payload["config"].update(changes)
    (folder / "config.json").write_text(json.dumps(payload))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n_items": "abc"}, "n_items is 'abc'"),
        ({"n_items": -5}, "n_items"),
        ({"n_items": 8_000_000_000}, "n_items"),
        ({"dim": 64.5}, "dim is 64.5"),
        ({"dim": 10**9}, "dim"),
        ({"heads": 0}, "heads"),
        ({"heads": 3}, "multiple"),
        ({"mlp_hidden": -1}, "mlp_hidden"),
        ({"segments": 10**9}, "segments"),
        ({"segment_len": 10**9}, "segment_len"),
        ({"dropout": float("nan")}, "dropout"),
        ({"dropout": 1.5}, "dropout"),
        ({"aggregation": 3}, "aggregation"),
        ({"age_bias": "yes"}, "age_bias"),
        ({"layers": -1}, "layers"),
    ],
)
def test_absurd_or_mistyped_configs_are_refused_with_the_setting_named(saved, changes, match):
    _edit_config(saved, **changes)
    _refused(saved, match=match)


def test_a_huge_item_knn_config_is_refused_before_allocating(tiny, tmp_path):
    data, split = tiny
    folder = tmp_path / "knn"
    save_model(_model("item-knn", data, split), folder, data=data)
    _edit_config(folder, n_items=8_000_000)
    _refused(folder, match="GiB|n_items")


def test_weights_declared_larger_than_the_config_are_refused_from_the_header(saved, monkeypatch):
    import safetensors.torch

    _edit_config(saved, dim=32, heads=2)

    def forbidden(*_args, **_kwargs):
        raise AssertionError("the weights must not be read when the header does not match")

    monkeypatch.setattr(safetensors.torch, "load_file", forbidden)
    _refused(saved, match="shape of|does not match")


def test_deeply_nested_or_oversized_config_json_is_refused(saved):
    (saved / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    _refused(saved, match="nested too deeply|lacks")
    (saved / "config.json").write_text(" " * (2 << 20) + "{}")
    _refused(saved, match="bytes")


def test_non_finite_weights_are_refused(tiny, tmp_path):
    data, split = tiny
    model = _model("msli", data, split)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    folder = tmp_path / "nan"
    save_model(model, folder, data=data)
    _refused(folder, match="non-finite")


def test_diverged_training_stops_with_a_sentence_and_returns_nothing(tiny):
    from msli_core.train import TrainSettings, train

    data, split = tiny
    config = {"dim": 8, "heads": 2, "layers": 1}
    with pytest.raises(
        MsliError,
        match=r"training diverged at epoch 1, step \d+: loss is (NaN|infinite); train again with another "
        r"seed or a lower learning rate",
    ):
        train(data, "msli", TrainSettings(epochs=2, lr=1e6), {**config, "segments": 2}, split=split)
    for lr in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(MsliError, match="learning rate"):
            train(data, "msli", TrainSettings(epochs=1, lr=lr), config, split=split)


def test_zip_roundtrip_in_memory_and_bad_zips(tiny, tmp_path):
    import io
    import zipfile

    from msli_core.models.registry import load_zip, save_zip

    data, split = tiny
    model = _model("msli", data, split)
    payload = save_zip(model, "m", data=data)
    loaded = load_zip("m.zip", payload, data)
    hist = [split.train_sequence(1)]
    assert torch.allclose(loaded.model.score_histories(hist), model.eval().score_histories(hist))
    assert not any(p.name.startswith("msli-model") for p in tmp_path.iterdir())

    def zipped(members: dict) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, blob in members.items():
                archive.writestr(name, blob)
        return buffer.getvalue()

    members = {
        n: zipfile.ZipFile(io.BytesIO(payload)).read(n)
        for n in zipfile.ZipFile(io.BytesIO(payload)).namelist()
    }
    weights, config = members["m/model.safetensors"], members["m/config.json"]
    bomb = b"\0" * (64 << 20)  # 64 MiB of zeros: a ~64 KB member that claims to be the weights
    cases = [
        (b"not a zip", "not a zip archive"),
        (zipped({"m/config.json": config}), "0 model.safetensors"),
        (zipped({"m/config.json": config, "m/model.safetensors": weights, "m/model.pt": b"x"}), "pickle"),
        (zipped({"m/config.json": b"[" * 100_000, "m/model.safetensors": weights}), "nested|JSON"),
        (zipped({"m/config.json": config, "m/model.safetensors": weights[:8] + bomb}), "safetensors|expands"),
        (zipped({"m/config.json": config, "m/model.safetensors": weights + bomb}), "expands"),
    ]
    for blob, match in cases:
        with pytest.raises(MsliError, match=match) as err:
            load_zip("upload.zip", blob, data)
        assert "upload.zip" in str(err.value) and "\n" not in str(err.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(
        [
            "n_items",
            "dim",
            "heads",
            "layers",
            "segments",
            "segment_len",
            "max_len",
            "dropout",
            "mlp_hidden",
            "n_genres",
            "session_gap",
            "aggregation",
        ]
    ),
    value=st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=5),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    ),
)
def test_any_config_value_is_loaded_or_refused_with_a_sentence(saved, field, value):
    original = (saved / "config.json").read_text()
    try:
        _edit_config(saved, **{field: value})
        try:
            loaded = load_model(saved)
        except MsliError as err:
            assert "\n" not in str(err)
        else:
            assert getattr(loaded.config, field) == value
    finally:
        (saved / "config.json").write_text(original)


def test_a_low_rank_attention_form_round_trips_and_a_config_without_one_reads_as_full_rank(tiny, tmp_path):
    """``attention_rank`` is saved with the model; a config.json written before the option existed (no
    such key) held a full-rank W, and loads as one; a low-rank folder whose key was removed no longer
    matches its weights, which is refused with a sentence."""
    data, split = tiny
    torch.manual_seed(0)
    low = build_model("msli", data=data, dim=16, layers=1, attention_rank=4).eval()
    histories = split.histories("test")[:3]
    save_model(low, tmp_path / "low", data=data)
    loaded = load_model(tmp_path / "low", data)
    assert loaded.config.attention_rank == 4
    with torch.no_grad():
        assert torch.equal(loaded.model.score_histories(histories), low.score_histories(histories))
    full = build_model("msli", data=data, dim=16, layers=1, attention_rank=16).eval()
    save_model(full, tmp_path / "full", data=data)
    for name in ("low", "full"):
        payload = json.loads((tmp_path / name / "config.json").read_text())
        del payload["config"]["attention_rank"]
        (tmp_path / name / "config.json").write_text(json.dumps(payload))
    assert load_model(tmp_path / "full", data).config.attention_rank == 16
    _refused(tmp_path / "low", data, match="query")


def test_a_config_without_recent_items_was_written_at_the_old_default_of_three(tiny, tmp_path):
    """Until the recency path took item-kNN's 5 newest events, its default was 3: a config.json without
    the key loads with 3 (its scores as saved); a folder of m = 5 without the key no longer matches its
    weights, which is refused with a sentence."""
    data, split = tiny
    torch.manual_seed(0)
    histories = split.histories("test")[:3]
    models = {
        m: build_model("msli", data=data, dim=16, layers=1, segments=2, recent_items=m).eval() for m in (3, 5)
    }
    for m, model in models.items():
        save_model(model, tmp_path / f"m{m}", data=data)
        assert load_model(tmp_path / f"m{m}", data).config.recent_items == m
        payload = json.loads((tmp_path / f"m{m}" / "config.json").read_text())
        del payload["config"]["recent_items"]
        (tmp_path / f"m{m}" / "config.json").write_text(json.dumps(payload))
    loaded = load_model(tmp_path / "m3", data)
    assert loaded.config.recent_items == 3
    with torch.no_grad():
        assert torch.equal(loaded.model.score_histories(histories), models[3].score_histories(histories))
    _refused(tmp_path / "m5", data, match="recent_weights")


def test_a_two_tower_config_with_several_segments_is_a_damaged_file(saved):
    payload = json.loads((saved / "config.json").read_text())
    payload["kind"] = "two-tower"  # an msli K>1 folder relabelled: the file contradicts itself
    (saved / "config.json").write_text(json.dumps(payload))
    _refused(saved, match="says kind two-tower with segments")
    with pytest.raises(MsliError) as err:
        load_model(saved)
    assert "--segments" not in str(err.value)  # a file problem, not a flag to drop


# ---- config.json's metrics / training / dataset sections: checked at load, in one place -----------------
def _edit_section(folder, section, key, value):
    payload = json.loads((folder / "config.json").read_text())
    if key is None:
        payload[section] = value
    else:
        payload.setdefault(section, {})[key] = value
    (folder / "config.json").write_text(json.dumps(payload))


BAD_SECTION_VALUES = [
    ("training", "seconds", "abc"),  # the audit's crash in trained.from_loaded
    ("training", "seconds", -1.0),
    ("training", "parameters", "many"),  # the audit's crash in trained.model_row
    ("training", "parameters", 2.5),
    ("training", "epochs", True),
    ("training", "name", ""),
    ("training", "name", "x" * 500),
    ("training", "name", 7),
    ("training", "history", [1]),
    ("training", "history", [{"epoch": "one", "loss": 1.0}]),
    ("training", "history", [{"epoch": 1, "loss": "low"}]),
    ("training", "settings", "fast"),
    ("metrics", "NDCG@10", "great"),  # the audit's crash in ladder_note and Home's max()
    ("metrics", "NDCG@10", 1.5),
    ("metrics", "NDCG@10", True),
    ("metrics", "HR@10", [1]),  # the audit's junk in the table
    ("metrics", "MRR", {"a": 1}),
    ("metrics", "users", -3),
    ("metrics", "evaluation", 5),
    ("dataset", "fingerprint", 12),
    ("dataset", "items", "many"),
    ("metrics", None, [1, 2]),
    ("training", None, "fast"),
    ("dataset", None, 3),
]


@pytest.mark.parametrize(("section", "key", "value"), BAD_SECTION_VALUES)
def test_a_bad_metrics_training_or_dataset_field_is_refused_naming_it(saved, section, key, value):
    _edit_section(saved, section, key, value)
    message = _refused(saved, match="edited or damaged")
    assert (f"{section}.{key} = " if key else f"a {section} entry") in message
    assert "retrain it with `msli train`" in message  # the CLI's fix


def test_the_same_check_runs_for_a_zip_with_the_apps_fix(tiny):
    """The audit's case: a zip whose training.seconds is "abc" is one sentence saying the file was edited
    or damaged, with what an app user can do (no CLI command)."""
    import io
    import zipfile

    from msli_core.models.registry import load_zip, save_zip

    data, split = tiny
    payload = save_zip(_model("popularity", data, split), "m", data=data, extra={"seconds": 1.0})
    members = {
        n: zipfile.ZipFile(io.BytesIO(payload)).read(n) for n in ("m/config.json", "m/model.safetensors")
    }
    config = json.loads(members["m/config.json"])
    config["training"]["seconds"] = "abc"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("m/config.json", json.dumps(config))
        archive.writestr("m/model.safetensors", members["m/model.safetensors"])
    with pytest.raises(MsliError) as err, app_user():
        load_zip("edited.zip", buffer.getvalue(), data)
    message = str(err.value)
    assert message.startswith('edited.zip: config.json has training.seconds = "abc"')
    assert "edited or damaged" in message and "Train page" in message and "msli train" not in message
    assert "\n" not in message


def test_null_metrics_read_as_nan_and_unknown_fields_are_carried(saved):
    import math

    _edit_section(saved, "metrics", "NDCG@10", None)  # how to_jsonable writes a NaN
    _edit_section(saved, "training", "seconds", None)
    _edit_section(saved, "training", "my_note", {"any": ["thing"]})
    loaded = load_model(saved)
    assert math.isnan(loaded.metrics["NDCG@10"]) and loaded.training["seconds"] is None
    assert loaded.training["my_note"] == {"any": ["thing"]}


SECTION_PLACES = [(s, k) for s, fields in SECTION_FIELDS.items() for k in fields] + [
    ("metrics", None),
    ("training", None),
    ("dataset", None),
]
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    place=st.sampled_from(SECTION_PLACES),
    value=_JSON_VALUES,
)
def test_any_section_value_is_refused_or_every_page_computation_works(saved, place, value):
    """Whatever a config.json section holds: a sentence, or a model the Train and Home pages can show
    (table row, ladder note, best model, curves, name and seconds of a loaded zip)."""
    from msli_core import trained

    original = (saved / "config.json").read_text()
    try:
        _edit_section(saved, *place, value)
        try:
            loaded = load_model(saved)
        except MsliError as err:
            assert "\n" not in str(err)
            return
        data = type("D", (), {"fingerprint": loaded.fingerprint})()
        model = trained.from_loaded("m.zip", loaded, data)
        model.history = loaded.training.get("history") or []
        row = trained.model_row(model)
        assert isinstance(row["parameters"], int) and isinstance(model.seconds, float)
        trained.ladder_note({"a": model, "b": model})
        trained.best_model({"a": model})
        trained.curve_rows(model)
    finally:
        (saved / "config.json").write_text(original)


# ---- integer tensors and counts: checked against their valid range at load ----------------------------
def _edit_tensor(folder, name, value, dtype=None):
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    tensor = state[name].clone()
    tensor.view(-1)[-1] = value
    state[name] = tensor if dtype is None else tensor.to(dtype)
    save_file(state, str(folder / "model.safetensors"))


@pytest.mark.parametrize(
    ("kind", "config", "name", "value"),
    [
        ("msli", {}, "items.year_features", 2**40),  # the audit's IndexError in Explain
        ("msli", {}, "items.year_features", -5),
        ("two-tower", {}, "items.year_features", 27),
        ("item-knn", {}, "neighbor_ids", 41),  # 40 items: ids 0..40
        ("item-knn", {}, "neighbor_ids", -1),
        ("item-knn", {}, "counts", -2.0),
        ("popularity", {}, "counts", -1.0),
        ("cross-encoder", {"cooccurrence": True}, "cooc_ids", 10**6),
        ("cross-encoder", {"cooccurrence": True}, "item_counts", -4.0),
        ("cross-encoder", {"cooccurrence": True}, "items.year_features", 99),
    ],
)
def test_an_index_or_count_out_of_range_is_refused(tiny, tmp_path, kind, config, name, value):
    data, split = tiny
    torch.manual_seed(0)
    small = {"dim": 16, "layers": 1, "max_len": 8} if kind == "cross-encoder" else {}
    small |= {"dim": 16, "layers": 1} if kind in ("msli", "two-tower") else {}
    model = build_model(kind, data=data, **small, **config)
    if kind == "cross-encoder":
        model.fit_cooccurrence(split.train_sequences())
    elif hasattr(model, "fit"):
        model.fit(split.train_sequences())
    folder = tmp_path / "m"
    save_model(model.eval(), folder, data=data)
    load_model(folder, data)  # as saved: loads
    _edit_tensor(folder, name, value)
    message = _refused(folder, match=f"holds {name} = ")
    assert "outside" in message and "edited or damaged" in message


def test_a_tensor_stored_with_another_dtype_is_refused(saved):
    _edit_tensor(saved, "items.year_features", 3, dtype=torch.float32)
    _refused(saved, match="stores items.year_features as float32, not int64")


@pytest.mark.parametrize(
    ("kind", "config"),
    [("msli", {}), ("two-tower", {}), ("cross-encoder", {"cooccurrence": True}),
     ("cross-encoder", {"cooccurrence": False}), ("popularity", {}), ("item-knn", {})],
)  # fmt: skip
def test_every_integer_tensor_of_every_model_has_a_valid_range(kind, config):
    from msli_core.models.registry import tensor_ranges

    model = build_model(kind, n_items=10, **config)
    integers = {k for k, v in model.state_dict().items() if not v.is_floating_point()}
    assert integers <= set(tensor_ranges(kind, model.config))
    assert integers or kind == "popularity"  # every other model has an integer tensor
    optional = {"cooc_ids", "cooc_counts", "item_counts"}  # a cross-encoder without co-occurrence
    assert set(tensor_ranges(kind, model.config)) - set(model.state_dict()) <= optional


def test_non_finite_weights_tell_an_app_user_what_to_do_in_the_app(tiny, tmp_path):
    data, split = tiny
    model = _model("msli", data, split)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    save_model(model, tmp_path / "nan", data=data)
    with pytest.raises(MsliError, match="lower --lr"):
        load_model(tmp_path / "nan")
    with pytest.raises(MsliError) as err, app_user():
        load_model(tmp_path / "nan")
    assert "Train page" in str(err.value) and "--lr" not in str(err.value)


@pytest.mark.parametrize("problem", ["missing", "file", "pickle", "no-config", "old-format"])
def test_app_sentences_name_no_cli_flag_or_command(saved, tmp_path, problem):
    folder = {"missing": tmp_path / "nope", "file": tmp_path / "f"}.get(problem, saved)
    if problem == "file":
        folder.write_text("x")
    elif problem == "pickle":
        (saved / "model.pt").write_bytes(b"x")
    elif problem == "no-config":
        (saved / "config.json").unlink()
    elif problem == "old-format":
        _edit_section(saved, "format", None, "msli-model/1")
    with pytest.raises(MsliError) as cli:
        load_model(folder)
    with pytest.raises(MsliError) as app, app_user():
        load_model(folder)
    assert "msli train" in str(cli.value)
    assert "msli train" not in str(app.value) and "--out" not in str(app.value) and "--" not in str(app.value)
