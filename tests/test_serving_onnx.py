"""ONNX export: checker-valid graphs whose ONNX Runtime outputs equal torch (atol 1e-4), incl. N = 1."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from msli_core.errors import MsliError
from msli_core.models.msli import MSLIConfig, MSLIModel
from msli_core.serving import onnx_export as ox

N_ITEMS = 200


def make_model(aggregation: str = "attention", segments: int = 4) -> MSLIModel:
    torch.manual_seed(0)
    model = MSLIModel(
        MSLIConfig(
            n_items=N_ITEMS, n_genres=3, dim=16, segments=segments, segment_len=6, aggregation=aggregation
        )
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.kind = "msli"
    return model


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


def test_segment_encoder_parity_open_and_full():
    model = make_model()
    session = ox.OrtSegmentEncoder(ox.segment_encoder_onnx(model), threads=1)
    rng = np.random.default_rng(1)
    with torch.no_grad():
        table = model.item_table()
    for B, S, filled in ((1, 6, 1), (1, 6, 6), (4, 6, 3), (2, 4, 4)):  # S below the model's S works too
        items = np.zeros((B, S), dtype=np.int64)
        items[:, :filled] = rng.integers(1, N_ITEMS + 1, size=(B, filled))
        vectors, weights = session.encode(items)
        with torch.no_grad():
            ref_v, ref_w = model.encode_segments(torch.as_tensor(items).unsqueeze(1), table)
        np.testing.assert_allclose(vectors, ref_v[:, 0].numpy(), atol=1e-4)
        np.testing.assert_allclose(weights, ref_w[:, 0].numpy(), atol=1e-4)


def test_export_files_and_quantized_models(tmp_path):
    model = make_model()
    paths = ox.export_model(model, tmp_path / "m.onnx", quantize=True)
    assert paths["segment_encoder"].endswith("m.segment_encoder.onnx")
    for p in paths.values():
        if p.endswith(".onnx"):
            onnx.checker.check_model(p)
    int8 = ox.OrtSession(tmp_path / "m.catalog.int8.onnx")
    vectors = np.random.default_rng(2).normal(size=(1, 4, 16)).astype(np.float32)
    mask = np.ones((1, 4), dtype=bool)
    (scores,) = int8.run(vectors, mask)
    with torch.no_grad():
        ref, _ = model.score(torch.as_tensor(vectors), torch.as_tensor(mask), model.item_table())
    # int8 weights: the scores move by about 1% of their spread; the ranking stays close
    spread = float(ref.std())
    assert np.abs(scores - ref.numpy()).max() < 0.1 * spread
    top_float = set(torch.topk(ref[0, 1:], 20).indices.tolist())
    top_int8 = set(np.argsort(-scores[0, 1:])[:20].tolist())
    assert len(top_float & top_int8) >= 10
    enc8 = ox.OrtSegmentEncoder(tmp_path / "m.segment_encoder.int8.onnx")
    vec8, _ = enc8.encode(np.array([[5, 6, 7, 0, 0, 0]]))
    assert vec8.shape == (1, 16) and np.isfinite(vec8).all()


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
    model = build_model("msli", data, dim=16, segments=4, layers=1).eval()
    users = leave_one_out(data).eval_users[:40]
    report = ox.quantized_quality(model, data, users=users)
    reference = evaluate(model, data, users=users)
    # the float32 graphs rank exactly like the torch model (up to float ties)
    assert report["float32"]["NDCG@10"] == pytest.approx(reference["NDCG@10"], abs=0.02)
    for label in ("float32", "int8"):
        assert 0.0 <= report[label]["NDCG@10"] <= 1.0 and report[label]["users"] == 40
        assert report[label]["online_p50_ms"] > 0 and report[label]["nearline_p50_ms"] > 0
    assert report["int8"]["bytes"] < report["float32"]["bytes"]  # int8 weights and item table
    assert report["NDCG@10_change"] == pytest.approx(report["int8"]["NDCG@10"] - report["float32"]["NDCG@10"])
