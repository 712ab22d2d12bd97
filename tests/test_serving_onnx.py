"""ONNX export: checker-valid graphs whose ONNX Runtime outputs equal torch (atol 1e-4), incl. N = 1.

The three graphs (scorer, closed-segment encoder, open-window encoder) are checked one by one, then
end to end: :class:`OrtMSLI` must score histories exactly as :meth:`MSLIModel.score_histories` does.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
import torch

from msli_core.errors import MsliError
from msli_core.models.msli import MSLIConfig, MSLIModel
from msli_core.serving import onnx_export as ox

N_ITEMS = 200
MAX_LEN = 9  # small, so that histories longer than it slide the window
S = 4  # closed-segment length; 9 = 2·4 + 1, so a closed slot can overlap the window


def make_model(aggregation: str = "attention", segments: int = 4, **kw) -> MSLIModel:
    """A small model with perturbed weights (every parameter away from its initial value)."""
    torch.manual_seed(0)
    config = {"n_genres": 3, "dim": 16, "segment_len": S, "max_len": MAX_LEN, "heads": 2, **kw}
    model = MSLIModel(MSLIConfig(n_items=N_ITEMS, segments=segments, aggregation=aggregation, **config))
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.kind = "msli"
    return model


def histories(lengths, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, N_ITEMS + 1, size=n).astype(np.int64) for n in lengths]


def float_ort(model) -> ox.OrtMSLI:
    with torch.no_grad():
        table = model.item_table()
    return ox.OrtMSLI(
        model,
        ox.segment_encoder_onnx(model, table),
        ox.open_encoder_onnx(model, table),
        ox.catalog_scorer_onnx(model, table),
    )


@pytest.mark.parametrize("aggregation", ["attention", "max", "sum"])
def test_scorer_parity_several_shapes(aggregation):
    model = make_model(aggregation)
    data = ox.scorer_onnx(model)
    onnx.checker.check_model(onnx.load_from_string(data))
    session = ox.OrtScorer(data, threads=1)
    rng = np.random.default_rng(0)
    for B, N in ((1, 1), (1, 37), (3, 200), (2, 1)):
        vectors = rng.normal(size=(B, 4, 16)).astype(np.float32)
        mask = rng.random((B, 4)) > 0.3
        mask[:, -1] = True
        if B > 1:
            mask[1] = False  # an all-empty user scores 0
        items = rng.normal(size=(N, 16)).astype(np.float32)
        scores, contributions = session.score(vectors, mask, items.T)
        with torch.no_grad():
            ref, ref_c = model.score(torch.as_tensor(vectors), torch.as_tensor(mask), torch.as_tensor(items))
        assert scores.shape == (B, N) and contributions.shape == (B, 4, N)
        np.testing.assert_allclose(scores, ref.numpy(), atol=1e-4)
        np.testing.assert_allclose(contributions, ref_c.numpy(), atol=1e-4)


def test_segment_encoder_parity_closed_segments():
    model = make_model()
    session = ox.OrtSegmentEncoder(ox.segment_encoder_onnx(model), threads=1)
    rng = np.random.default_rng(1)
    with torch.no_grad():
        table = model.item_table()
    for B, width, filled in ((1, S, 1), (1, S, S), (4, S, 3), (2, 3, 3)):  # S below the model's S works too
        items = np.zeros((B, width), dtype=np.int64)
        items[:, :filled] = rng.integers(1, N_ITEMS + 1, size=(B, filled))
        items[-1, 1:] = 0  # rows of different lengths in one batch
        vectors, weights = session.encode(items)
        with torch.no_grad():
            ref_v, ref_w = model.encode_segments(torch.as_tensor(items).unsqueeze(1), table)
        assert vectors.shape == (B, 16) and weights.shape == (B, width)
        np.testing.assert_allclose(vectors, ref_v[:, 0].numpy(), atol=1e-4)
        np.testing.assert_allclose(weights, ref_w[:, 0].numpy(), atol=1e-4)
        np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)  # a softmax over each segment's events
    # an all-padding segment (an empty slot) gets a zero vector and zero weights, as in torch
    vectors, weights = session.encode(np.zeros((2, S), dtype=np.int64))
    assert not vectors.any() and not weights.any()


@pytest.mark.parametrize("recency_slot", [False, True])
def test_open_encoder_parity_every_window_length(recency_slot):
    model = make_model(recency_slot=recency_slot)
    O = 2 if recency_slot else 1  # open slots: the encoder's state (and the newest events)
    data = ox.open_encoder_onnx(model)
    graph = onnx.load_from_string(data)
    assert [i.name for i in graph.graph.input] == ["window_items"]
    assert [o.name for o in graph.graph.output] == ["open_vectors"]
    session = ox.OrtOpenEncoder(data, threads=1)
    rng = np.random.default_rng(2)
    with torch.no_grad():
        table = model.item_table()
    for T in (1, 4, MAX_LEN):  # T is dynamic, up to max_len
        window = rng.integers(1, N_ITEMS + 1, size=(T + 1, T)).astype(np.int64)
        for row in range(T + 1):  # every fill from empty to full, left-aligned
            window[row, row:] = 0
        vectors = session.encode(window)
        with torch.no_grad():
            ref = model.open_vector(torch.as_tensor(window), table)
        assert vectors.shape == (T + 1, O, 16)
        np.testing.assert_allclose(vectors, ref.numpy(), atol=1e-4)
        assert not vectors[0].any() and (np.abs(vectors[1:]).sum(2) > 0).all()  # only the empty row is 0


@pytest.mark.parametrize(
    ("segments", "aggregation", "segmenter"),
    [(1, "attention", "fixed"), (3, "attention", "fixed"), (4, "max", "fixed"), (3, "sum", "session"),
     (4, "attention", "recency"), (2, "attention", "recency")],
)  # fmt: skip
def test_ort_msli_scores_like_the_torch_model(segments, aggregation, segmenter):
    recency_slot = segmenter == "recency"  # the fixed segmenter, with the newest events as their own slot
    segmenter = "fixed" if recency_slot else segmenter
    model = make_model(
        aggregation, segments, segmenter=segmenter, session_gap=10.0, recency_slot=recency_slot
    )
    # empty, shorter than the window, exactly the window, sliding windows; with K > 1 the short ones
    # have empty closed slots and the long ones all K-1 filled
    lengths = (0, 1, 3, 5, 8, MAX_LEN, MAX_LEN + 1, 13, 17, 30)
    hist = histories(lengths)
    rng = np.random.default_rng(4)
    times = [np.cumsum(rng.choice([1, 50], size=len(h))) for h in hist] if segmenter == "session" else None
    batch = model.segment_batch(hist, times)
    assert batch.window.shape[1] == MAX_LEN  # the longest window is full: the others slide
    if model.config.closed_slots:
        closed = batch.mask[:, : model.config.closed_slots]
        assert not closed[1].any() and closed[-1].all()  # some users with empty closed slots, some full
    served = float_ort(model)
    got = served.score_histories(hist, times)
    with torch.no_grad():
        ref = model.score_histories(hist, times)
    assert got.shape == ref.shape == (len(lengths), N_ITEMS + 1)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-4, rtol=0)
    assert not ref[0].any()  # an empty history scores 0 everywhere
    assert float(ref[1:, 1:].std(dim=1).min()) > 0.1  # the scores carry signal, so 1e-4 means something
    # the slot vectors agree too (the open slot and each closed one)
    vectors, mask = served.slot_vectors(hist, times)
    with torch.no_grad():
        ref_v, ref_mask, _ = model.slot_vectors(batch, model.item_table())
    np.testing.assert_array_equal(mask, ref_mask.numpy())
    np.testing.assert_allclose(vectors, ref_v.numpy(), atol=1e-4)


def test_ort_msli_open_slot_follows_the_window():
    """Appending events past max_len changes only the open slots' vectors (closed ones are cached)."""
    model = make_model(segments=4)  # 2 closed slots, the window, its newest events
    served = float_ort(model)
    base = histories([14])[0]  # segments [0, 4) [4, 8) [8, 12) [12, 14): the closed slots hold 1 and 2
    longer = np.concatenate([base, [7]])  # the window (9 events) slides by one; segment 3 is still open
    (v1, _), (v2, _) = served.slot_vectors([base]), served.slot_vectors([longer])
    np.testing.assert_allclose(v1[0, :2], v2[0, :2], atol=1e-6)
    assert np.abs(v1[0, 2] - v2[0, 2]).max() > 1e-3 and np.abs(v1[0, 3] - v2[0, 3]).max() > 1e-3
    with torch.no_grad():
        ref = model.score_histories([base, longer])
    np.testing.assert_allclose(served.score_histories([base, longer]).numpy(), ref.numpy(), atol=1e-4)


def _op_types(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_export_files_and_quantized_models(tmp_path):
    model = make_model()
    paths = ox.export_model(model, tmp_path / "m.onnx", quantize=True)
    assert paths == {
        "scorer": str(tmp_path / "m.onnx"),
        "segment_encoder": str(tmp_path / "m.segment_encoder.onnx"),
        "open_encoder": str(tmp_path / "m.open_encoder.onnx"),
        "m.segment_encoder.int8.onnx": str(tmp_path / "m.segment_encoder.int8.onnx"),
        "m.open_encoder.int8.onnx": str(tmp_path / "m.open_encoder.int8.onnx"),
        "m.catalog.int8.onnx": str(tmp_path / "m.catalog.int8.onnx"),
    }
    assert ox.open_encoder_path_for(tmp_path / "m.onnx") == tmp_path / "m.open_encoder.onnx"
    assert ox.encoder_path_for(tmp_path / "m.onnx") == tmp_path / "m.segment_encoder.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.rsplit("/", 1)[-1] for p in paths.values()
    )  # no temporary files left
    for p in paths.values():
        onnx.checker.check_model(p)
    for name in ("segment_encoder", "open_encoder", "catalog"):  # really quantized: integer MatMuls
        assert {"MatMulInteger", "DynamicQuantizeLinear"} & _op_types(tmp_path / f"m.{name}.int8.onnx"), name
    # the float files are the graphs themselves: the written open encoder matches torch
    hist = histories([5, 12])
    batch = model.segment_batch(hist)
    with torch.no_grad():
        table = model.item_table()
        ref_open = model.open_vector(torch.as_tensor(batch.window), table).numpy()
    np.testing.assert_allclose(
        ox.OrtOpenEncoder(paths["open_encoder"]).encode(batch.window), ref_open, atol=1e-4
    )

    int8 = ox.OrtSession(tmp_path / "m.catalog.int8.onnx")
    vectors = np.random.default_rng(2).normal(size=(1, 4, 16)).astype(np.float32)
    mask = np.ones((1, 4), dtype=bool)
    (scores,) = int8.run(vectors, mask)
    with torch.no_grad():
        ref, _ = model.score(torch.as_tensor(vectors), torch.as_tensor(mask), table)
    # int8 weights: the scores move by a few % of their spread at most; the ranking stays close
    spread = float(ref.std())
    assert 0 < np.abs(scores - ref.numpy()).max() < 0.1 * spread
    top_float = set(torch.topk(ref[0, 1:], 20).indices.tolist())
    top_int8 = set(np.argsort(-scores[0, 1:])[:20].tolist())
    assert len(top_float & top_int8) >= 10
    # the int8 encoders stay close to the float ones
    open8 = ox.OrtOpenEncoder(tmp_path / "m.open_encoder.int8.onnx").encode(batch.window)
    assert open8.shape == ref_open.shape
    assert np.linalg.norm(open8 - ref_open) < 0.1 * np.linalg.norm(ref_open)
    closed = batch.items[1, :3]  # the 12-event user's two closed segments and an empty slot
    with torch.no_grad():
        ref_closed, _ = model.encode_segments(torch.as_tensor(closed)[None], table)
    vec8, _ = ox.OrtSegmentEncoder(tmp_path / "m.segment_encoder.int8.onnx").encode(closed)
    assert vec8.shape == (3, 16)
    assert np.linalg.norm(vec8 - ref_closed[0].numpy()) < 0.1 * float(ref_closed.norm())


def test_export_replaces_its_own_files_only(tmp_path):
    model = make_model(segments=2)
    ox.export_model(model, tmp_path / "m.onnx")
    first = (tmp_path / "m.open_encoder.onnx").read_bytes()
    ox.export_model(model, tmp_path / "m.onnx")  # an earlier export may be replaced
    assert (tmp_path / "m.open_encoder.onnx").read_bytes() == first
    # a user's file where the open encoder (or its int8 variant) would go is never overwritten
    for name in ("n.open_encoder.onnx", "n.open_encoder.int8.onnx"):
        (tmp_path / name).write_text("my notes\n")
        with pytest.raises(MsliError, match="not an ONNX model"):
            ox.export_model(model, tmp_path / "n.onnx", quantize=True)
        assert (tmp_path / name).read_text() == "my notes\n"
        assert not (tmp_path / "n.onnx").exists() and not (tmp_path / "n.segment_encoder.onnx").exists()
        (tmp_path / name).unlink()
    (tmp_path / "n.open_encoder.onnx").mkdir()
    with pytest.raises(MsliError, match="folder"):
        ox.export_paths(tmp_path / "n.onnx")
    (tmp_path / "n.open_encoder.onnx").rmdir()
    (tmp_path / "n.open_encoder.onnx").symlink_to(tmp_path / "m.open_encoder.onnx")
    with pytest.raises(MsliError, match="symbolic link"):
        ox.export_paths(tmp_path / "n.onnx")


def test_export_refuses_bad_targets(tmp_path):
    model = make_model()
    with pytest.raises(MsliError, match=r"\.onnx"):
        ox.export_model(model, tmp_path / "m.txt")
    with pytest.raises(MsliError, match="does not exist"):
        ox.export_folder(tmp_path / "nowhere", tmp_path / "m.onnx")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"kind": "msli"}))
    with pytest.raises(MsliError):
        ox.export_folder(tmp_path / "bad", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_int8_quality_report_on_sample_data(sample_data_dir):
    from msli_core.data import load_dataset
    from msli_core.data.dataset import leave_one_out
    from msli_core.evaluate import evaluate
    from msli_core.models.registry import build_model

    data = load_dataset(sample_data_dir)
    torch.manual_seed(0)
    model = build_model("msli", data, dim=16, segments=4, layers=1, max_len=MAX_LEN).eval()
    users = leave_one_out(data).eval_users[:40]
    report = ox.quantized_quality(model, data, users=users)
    reference = evaluate(model, data, users=users)
    # the float32 graphs score like the torch model, so every metric (MRR: the target's exact rank over
    # the whole catalog) is the torch model's
    for metric in ("NDCG@10", "HR@10", "MRR"):
        assert report["float32"][metric] == pytest.approx(reference[metric], abs=1e-6), metric
    assert reference["MRR"] > 0
    for label in ("float32", "int8"):
        assert 0.0 <= report[label]["NDCG@10"] <= 1.0 and report[label]["users"] == 40
        assert report[label]["online_p50_ms"] > 0 and report[label]["nearline_p50_ms"] > 0
    assert report["int8"]["bytes"] < report["float32"]["bytes"]  # int8 weights and item table
    assert report["NDCG@10_change"] == pytest.approx(report["int8"]["NDCG@10"] - report["float32"]["NDCG@10"])


# ---- export replaces only files that carry msli's mark ------------------------------------------------


def _identity_model(path) -> bytes:
    """A valid ONNX model a user made (y = x), saved at ``path``; returns its bytes."""
    from onnx import TensorProto, helper

    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "mine", info[:1], info[1:])
    onnx.save(helper.make_model(graph), str(path))
    return path.read_bytes()


GRAPH_FILES = (
    "n.onnx",
    "n.segment_encoder.onnx",
    "n.open_encoder.onnx",
    "n.segment_encoder.int8.onnx",
    "n.open_encoder.int8.onnx",
    "n.catalog.int8.onnx",
)


@pytest.mark.parametrize("name", GRAPH_FILES)
def test_export_never_overwrites_a_users_onnx_model(tmp_path, name):
    model = make_model(segments=2)
    mine = _identity_model(tmp_path / name)
    assert not ox.carries_mark(tmp_path / name)
    with pytest.raises(MsliError) as err:
        ox.export_model(model, tmp_path / "n.onnx", quantize=True)
    assert str(err.value) == (
        f"{tmp_path / name} is an ONNX model without the mark msli export writes into its files, so msli "
        "will not replace it; choose another --out or move that file away."
    )
    assert (tmp_path / name).read_bytes() == mine
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written


def test_exported_files_carry_the_mark_and_are_replaced(tmp_path):
    model = make_model(segments=2)
    paths = ox.export_model(model, tmp_path / "m.onnx", quantize=True)
    labels = {}
    for path in paths.values():
        assert ox.carries_mark(path)
        props = {p.key: p.value for p in onnx.load(path).metadata_props}
        labels[path.rsplit("/", 1)[-1]] = props[ox.MARK_KEY]
    assert labels == {
        "m.onnx": "scorer",
        "m.segment_encoder.onnx": "segment_encoder",
        "m.open_encoder.onnx": "open_encoder",
        "m.segment_encoder.int8.onnx": "segment_encoder.int8",
        "m.open_encoder.int8.onnx": "open_encoder.int8",
        "m.catalog.int8.onnx": "catalog.int8",
    }
    before = {p: (tmp_path / p).stat().st_ino for p in labels}
    assert ox.export_model(model, tmp_path / "m.onnx", quantize=True) == paths  # msli's own: replaced
    assert all((tmp_path / p).stat().st_ino != ino for p, ino in before.items())  # new files, renamed in
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(labels)


def test_carries_mark_reads_only_what_msli_wrote(tmp_path):
    model = make_model(segments=2)
    marked = ox.mark(ox.scorer_onnx(model), "scorer")
    onnx.checker.check_model(onnx.load_from_string(marked))  # the mark keeps the model valid
    cases = {
        "marked.onnx": marked,
        "plain.onnx": ox.scorer_onnx(model),
        "other_key.onnx": _with_props(ox.scorer_onnx(model), {"author": "me", "msli": "export"}),
        "truncated.onnx": marked[: len(marked) - 5],  # the mark's entry cut short
        "empty.onnx": b"",
        "text.onnx": b"my notes\n",
        "varint.onnx": b"\x08" + b"\xff" * 20,  # a varint that never ends
        "random.onnx": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert {n for n in cases if ox.carries_mark(tmp_path / n)} == {"marked.onnx"}
    assert not ox.carries_mark(tmp_path / "missing.onnx")


def _with_props(data: bytes, props: dict) -> bytes:
    model = onnx.load_from_string(data)
    onnx.helper.set_model_props(model, props)
    return model.SerializeToString()


def test_a_file_put_in_the_way_during_the_build_is_not_replaced(tmp_path, monkeypatch):
    model = make_model(segments=2)
    built = ox.open_encoder_onnx

    def build_while_a_user_saves(*args, **kwargs):
        _identity_model(tmp_path / "m.onnx")
        return built(*args, **kwargs)

    monkeypatch.setattr(ox, "open_encoder_onnx", build_while_a_user_saves)
    with pytest.raises(MsliError, match="without the mark"):
        ox.export_model(model, tmp_path / "m.onnx")
    assert not ox.carries_mark(tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no sibling written either


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_export_to_an_unwritable_folder_is_refused_before_building():
    with pytest.raises(
        MsliError, match=r"^Cannot create /proc/x\.onnx: /proc is not writable \(.+\); choose a"
    ):
        ox.export_paths("/proc/x.onnx")
