"""The cost model: phases and FLOP counts by hand, exact seconds on round-number hardware, calibration
files (round trip, corrupt, oversized), calibration on first use, presets only by name."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from msli_core.errors import MsliError
from msli_core.serving import calibrate
from msli_core.serving import costmodel as cm

# round numbers: 1e11 FLOP/s square, 2.5e10 attention, 4e10 skinny at 8 rows (1e10 bytes/s of table),
# 1e10 bytes/s streaming, 1e9 gathered, 1 µs per torch call, 0.5 µs per numpy call
HW = cm.Hardware(
    "round",
    gemm_flops={
        "torch": {"square": 1e11, "skinny": 4e10, "attention": 2.5e10},
        "numpy": {"square": 1e11, "skinny": 2e10},
    },
    bandwidth=1e10,
    gather_bandwidth=1e9,
    call_s={"torch": 1e-6, "numpy": 5e-7},
    source="test",
)


def test_a_phase_of_known_work_takes_the_roofline_seconds():
    compute = cm.Phase("mm", flops=1e9, bytes=1e6, calls=3)
    assert cm.phase_seconds(compute, HW, "torch") == pytest.approx(1e9 / 1e11 + 3e-6)
    memory = cm.Phase("copy", bytes=1e9, calls=1)
    assert cm.phase_seconds(memory, HW, "numpy") == pytest.approx(0.1 + 5e-7)
    skinny = cm.Phase("scores", flops=2 * 8 * 64 * 1e6, wide=64 * 4 * 1e6)  # (8, 64)·(64, 1M)
    assert HW.skinny_stream("torch") == pytest.approx(4e10 * 4 / 16)  # 1e10 bytes/s of table
    assert cm.phase_seconds(skinny, HW, "torch") == pytest.approx(256e6 / 1e10)
    attention = cm.Phase("attn", flops=1e9, attention=1e9)
    assert cm.phase_seconds(attention, HW, "torch") == pytest.approx(0.01 + 0.04)
    assert cm.phase_seconds(attention, HW, "numpy") == pytest.approx(0.01 + 0.01)  # no kernel of its own
    gather = cm.Phase("rows", gather=1e8, bytes=1e8)
    assert cm.phase_seconds(gather, HW, "numpy") == pytest.approx(0.1)  # the larger of 0.01 and 0.1
    auto = cm.Phase("scores", wide=1e9, backend="auto")  # the engine multiplies with the faster library
    assert cm.phase_seconds(auto, HW, "torch") == pytest.approx(0.1)


def test_encoder_flops_by_hand():
    # d = 4, T = 3: products 24·3·16 = 1152 per layer, attention 4·9·4 = 144 per layer
    assert cm.layer_flops(3, 4) == (1152, 144)
    shape = cm.ModelShape(kind="msli", dim=4, layers=2, history=3, segments=1)
    window = cm.encoder_phases(3, 1, shape, "torch", "window", cm.CALLS_OPEN)
    assert window[0].flops == 2 * 1152 and window[0].attention == 2 * 144
    assert window[0].calls == 2 * cm.CALLS_LAYER and window[1].calls == cm.CALLS_OPEN
    # the cross-encoder: N pairs of L + 1 tokens, bidirectional
    ce = cm.ModelShape(kind="cross-encoder", dim=4, layers=1, history=2, candidates=10)
    layers = cm.cross_encoder_phases(ce, "torch")[0]
    assert layers.flops == 10 * 1152 and layers.attention == 10 * 144


def test_online_phases_by_hand():
    shape = cm.ModelShape(kind="msli", segments=8, dim=64, candidates=10_000)
    scores, bound, exact = cm.online_phases(shape, "torch")
    assert scores.flops == 2 * 8 * 64 * 10_000 and scores.wide == 10_000 * 64 * 4 and scores.bytes == 0
    assert scores.calls == 3 * cm.CALLS_BLOCK  # ceil(10000 / 4096) blocks
    assert bound.elements == 10 * 10_000 and bound.bytes == 0  # the max over K rows, the compare (in cache)
    assert exact.flops == 2 * 8 * 64 * cm.PASSING  # the few columns that pass the bound
    # the first block's scout, then per passing column its K scores, d row values and ~9 passes over K
    assert exact.elements == 4096 + cm.PASSING * (10 * 8 + 64)
    assert exact.bytes == 10_001  # the request's seen byte table
    hw = replace(HW, elementwise_rate=2e9)
    assert cm.phase_terms(exact, hw, "torch")["elementwise"] == pytest.approx(exact.elements / 2e9)
    assert cm.phase_terms(exact, replace(HW, elementwise_rate=None), "torch")["elementwise"] == (
        pytest.approx(exact.elements / (HW.bandwidth / 8))  # not measured: 8 bytes an element
    )
    one = cm.online_phases(cm.ModelShape(kind="two-tower", dim=64, candidates=10_000), "torch")[0]
    assert one.wide == 0 and one.bytes == 10_000 * 64 * 4  # one row: a matrix-vector product streams
    fresh = cm.online_phases(replace(shape, request_candidates=1000), "torch")[0]
    assert fresh.gather == 1000 * 64 * 4 and fresh.name.startswith("online: gather")


def test_stages_compose():
    shape = cm.ModelShape(kind="msli", segments=4, history=100, candidates=5000)
    p = cm.predict(shape, HW)
    assert p.seconds["end_to_end"] == pytest.approx(p.seconds["nearline"] + p.seconds["online"])
    assert p.seconds["nearline_full"] > p.seconds["nearline"] > 0
    assert p.seconds["online"] == pytest.approx(sum(ph["seconds"] for ph in p.phases["online"]))
    ff = cm.predict(cm.ModelShape(kind="full-forward", history=100, candidates=5000), HW)
    tower = cm.predict(cm.ModelShape(kind="two-tower", history=100, candidates=5000), HW)
    assert ff.seconds["online"] == pytest.approx(tower.seconds["nearline_full"] + tower.seconds["online"])
    assert ff.seconds["nearline"] == 0 and p.qps == pytest.approx(1 / p.seconds["end_to_end"])
    assert set(p.as_dict()) >= {
        "offline_s",
        "nearline_s",
        "online_s",
        "end_to_end_s",
        "qps",
        "bound",
        "phases",
    }
    ce = cm.predict(cm.ModelShape(kind="cross-encoder", history=50, candidates=2000), HW)
    half = cm.predict(cm.ModelShape(kind="cross-encoder", history=50, candidates=1000), HW)
    assert ce.seconds["online"] > 1.9 * half.seconds["online"]


def test_hardware_json_round_trip(tmp_path):
    path = cm.save_hardware(HW, tmp_path / "hw.json")
    assert cm.load_hardware(path) == HW
    assert json.loads(path.read_text())["format"] == cm.FORMAT


def _write(tmp_path: Path, **changes) -> Path:
    data = {**HW.as_dict(), **changes}
    path = tmp_path / "hardware.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"bandwidth": 0}, "bandwidth"),
        ({"gather_bandwidth": float("nan")}, "gather_bandwidth"),
        ({"call_s": {"torch": "x"}}, "call_s.torch"),
        ({"call_s": []}, "call_s"),
        ({"gemm_flops": {"torch": {"square": -1}}}, "gemm_flops.torch.square"),
        ({"gemm_flops": {}}, "gemm_flops"),
        ({"elementwise_rate": -3.0}, "elementwise_rate"),
    ],
)
def test_a_bad_calibration_file_is_one_sentence_naming_the_file(tmp_path, changes, field):
    path = _write(tmp_path, **changes)
    with pytest.raises(MsliError) as err:
        cm.load_hardware(path)
    assert str(path) in str(err.value) and field in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["[1, 2]", '"x"', "{}", "not json", "[" * 100_000, ""])
def test_a_corrupt_calibration_file_is_one_sentence(tmp_path, text):
    path = tmp_path / "hardware.json"
    path.write_text(text)
    with pytest.raises(MsliError, match=r"hardware\.json") as err:
        cm.load_hardware(path)
    assert "\n" not in str(err.value)


def test_an_oversized_calibration_file_is_refused_unread(tmp_path):
    path = tmp_path / "hardware.json"
    path.write_text(" " * (cm.MAX_CALIBRATION_BYTES + 1))
    with pytest.raises(MsliError, match="larger than"):
        cm.load_hardware(path)


def test_first_use_calibrates_and_stores_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    with pytest.raises(MsliError, match="does not exist"):  # no silent fallback
        cm.load_hardware()
    events = []
    hardware = calibrate.hardware_here(progress=events.append, budget_s=0.01)
    assert events and events[-1].done == events[-1].total and events[-1].task == "calibrate"
    assert (tmp_path / cm.CALIBRATION_FILE).is_file() and hardware.measured_at
    assert set(hardware.gemm_flops["torch"]) == {"square", "skinny", "attention"}
    assert all(0 < s < 1e-2 for s in hardware.call_s.values()) and hardware.bandwidth > 1e7
    assert hardware.elementwise_rate > 1e7  # elements/s of the scorer's in-cache numpy passes
    assert cm.Hardware.from_dict(hardware.as_dict()) == hardware
    monkeypatch.setattr(calibrate, "measure", lambda *_, **__: pytest.fail("measured again"))
    assert calibrate.hardware_here() == hardware


def test_an_older_calibration_file_is_measured_again_a_foreign_one_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    path = tmp_path / cm.CALIBRATION_FILE
    path.write_text(
        json.dumps({"name": "old", "flops": 1e11, "bandwidth": 1e10, "overhead_s": {"torch": 1e-6}})
    )
    monkeypatch.setattr(calibrate, "measure", lambda *_, **__: HW)
    assert calibrate.hardware_here() == HW and cm.load_hardware() == HW
    # a file of the previous format (no element-wise rate) is measured again, not refused
    path.write_text(json.dumps({**HW.as_dict(), "format": cm.FORMAT - 1, "name": "previous"}))
    assert calibrate.hardware_here() == HW and cm.load_hardware() == HW
    path.write_text(json.dumps({**HW.as_dict(), "format": cm.FORMAT + 1}))  # a newer tool's file: refused
    with pytest.raises(MsliError, match="newer MS-LI Lab"):
        calibrate.hardware_here()
    path.write_text(json.dumps({"my": "notes"}))
    with pytest.raises(MsliError, match="msli did not write as far as it can tell"):
        calibrate.hardware_here()


def test_presets_only_by_name():
    assert "this machine" not in cm.hardware_presets()
    assert next(iter(cm.hardware_presets(HW))) == "this machine"
    for name, preset in cm.PRESETS.items():
        assert preset.source.startswith("preset (assumption)") and preset.measured_at is None, name
    assert "TF32" in cm.PRESETS["datacenter GPU"].dtype  # a GPU preset states its dtype
    custom = cm.custom_hardware(1e12, 1e11, 5e-6)
    assert custom.rate("onnxruntime", "skinny") == 1e12 and custom.overhead("numpy") == 5e-6
    with pytest.raises(MsliError, match="flops"):
        cm.custom_hardware(0, 1e11, 5e-6)
    with pytest.raises(MsliError, match="segments"):
        cm.ModelShape(segments=0)


def test_combine_takes_each_constants_median():
    a, b, c = (replace(HW, bandwidth=x, call_s={"torch": x * 1e-16}) for x in (1e10, 3e10, 2e10))
    combined = cm.combine([a, b, c])
    assert combined.bandwidth == 2e10 and combined.call_s == {"torch": pytest.approx(2e-6)}
    assert "median of 3" in combined.source


def test_error_report_skips_floors_and_reports_median_and_worst():
    base = dict(model="msli", backend="torch", segments=4, candidates=1000, history=50, dim=64, layers=2)
    rows = [
        {**base, "stage": "online"},
        {**base, "stage": "nearline", "variant": "full"},
        {**base, "stage": "floor", "variant": "matmul", "p50_ms": 1.0},
    ]
    predicted = [cm.predict_row(r, HW) * 1e3 for r in rows[:2]]
    rows[0]["p50_ms"], rows[1]["p50_ms"] = predicted[0] / 2, predicted[1] * 4  # ratios 2 and 0.25
    report = cm.error_report(rows, HW)
    assert len(report["points"]) == 2 and cm.predict_row(rows[2], HW) is None
    assert report["median_ratio"] == pytest.approx((2 + 0.25) / 2)
    assert report["worst_ratio"] == pytest.approx(0.25) and report["within_2x"] == pytest.approx(0.5)
    assert cm.measured_ms({"p50_ms": float("nan"), "cpu_p50_ms": 2.0}) == 2.0


def test_a_request_candidates_row_is_predicted_with_its_gather():
    row = dict(model="msli", stage="online", backend="torch", segments=8, candidates=100_000, history=200)
    fresh = cm.predict_row({**row, "variant": "request_candidates", "rows": 10_000}, HW)
    cached = cm.predict_row({**row, "variant": "cached_candidates", "rows": 10_000}, HW)
    seen_tables = (100_001 - 10_001) / HW.bandwidth  # each request zeroes a seen byte per catalog row
    assert fresh - cached == pytest.approx(10_000 * 64 * 4 / 1e9 + 3 * cm.CALLS_GATHER * 5e-7 + seen_tables)


def test_calibrate_out_folder_is_a_sentence_before_measuring(tmp_path, capsys, monkeypatch):
    from msli_core.cli import main

    monkeypatch.setattr(calibrate, "calibrate", lambda **_: pytest.fail("measured before checking --out"))
    assert main(["costmodel", "calibrate", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("page", ["home", "whatif"])
def test_app_pages_show_a_refused_calibration_as_an_error_and_replace_a_damaged_one(
    tmp_path, monkeypatch, page
):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    app = str(Path(__file__).resolve().parents[1] / "app.py")

    def open_page() -> AppTest:
        at = AppTest.from_file(app, default_timeout=120)
        at.run()
        if page != "home":
            at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    path = _write(tmp_path, bandwidth=0, format=cm.FORMAT + 1)  # a newer msli's: neither read nor replaced
    at = open_page()
    assert any("hardware.json" in e.value and "newer MS-LI Lab" in e.value for e in at.error), [
        e.value for e in at.error
    ]
    monkeypatch.setattr(calibrate, "measure", lambda *_, **__: HW)
    _write(tmp_path, bandwidth=0)  # msli's, damaged: measured again and replaced, as the CLI does
    open_page()
    assert cm.load_hardware(path) == HW


def test_a_table_row_with_empty_cells_gives_the_same_shape():
    """A row read back from a table (pandas) has NaN where the bench wrote None: same shape, same cost."""
    row = dict(model="msli", stage="online", variant=None, segments=4, candidates=1000, history=50, dim=32,
               layers=1, heads=2, rows=None, segment_len=None)  # fmt: skip
    from_table = dict(row, variant=float("nan"), rows=float("nan"), segment_len=float("nan"))
    assert cm.shape_from_row(from_table) == cm.shape_from_row(row)
    assert cm.shape_from_row(row).candidates == 1000 and cm.shape_from_row(row).request_candidates is None


def test_a_gather_from_a_catalog_in_the_last_level_cache_runs_at_the_cached_rate():
    """10,000 rows of 256 bytes (2.56 MB): 2.56 ms from main memory at 1 GB/s; from a catalog that fits
    the 32 MiB cache at 4 GB/s, 0.64 ms. Without a measured cached rate, main memory's is used."""
    from dataclasses import replace

    cached = replace(HW, cached_gather_bandwidth=4e9, llc_bytes=32 * 2**20)
    phase = cm.Phase("gather", gather=10_000 * 256, gather_table=20_001 * 256)  # a 5 MB catalog
    assert cm.phase_terms(phase, cached, "numpy")["gather"] == pytest.approx(2.56e6 / 4e9)
    big = cm.Phase("gather", gather=10_000 * 256, gather_table=300_001 * 256 * 2)  # 154 MB: memory
    assert cm.phase_terms(big, cached, "numpy")["gather"] == pytest.approx(2.56e6 / 1e9)
    assert cm.phase_terms(phase, HW, "numpy")["gather"] == pytest.approx(2.56e6 / 1e9)
    assert cm.Hardware.from_dict(cached.as_dict()) == cached  # the new constants survive a round trip


def test_more_candidates_through_the_bound_cost_more():
    """The share of candidates scored exactly is an input of the online cost: the same request with
    more of them passing is predicted slower, by the query product (2·K·d FLOPs each) and the calls."""
    from dataclasses import replace

    shape = cm.ModelShape(kind="msli", segments=8, dim=64, candidates=100_000, history=50)
    few = cm.predict(replace(shape, exact_fraction=0.001), HW).seconds["online"]
    many = cm.predict(replace(shape, exact_fraction=0.5), HW).seconds["online"]
    assert many > few
    row = {"model": "msli", "stage": "online", "segments": 8, "candidates": 100_000, "history": 50,
           "dim": 64, "layers": 2, "exact_fraction": 0.5}  # fmt: skip
    assert cm.shape_from_row(row).exact_fraction == 0.5


# ------------------------------------------------------------------------ the ANN retrieval stage


def ann_shape(**kw) -> cm.ModelShape:
    base = dict(candidates=1_000_000, segments=8, history=200, index="ivf", probes=32, retrieved=300.0)
    return cm.ModelShape(**{**base, **kw})


def scan(shape: cm.ModelShape) -> cm.Phase:
    return next(p for p in cm.retrieval_phases(shape) if p.name.startswith("retrieval: scan"))


def test_ivf_scan_is_probes_times_n_over_nlist_rows_per_query():
    shape = ann_shape()
    assert shape.nlist == 4000 and shape.queries == 9  # 4·sqrt(1M) lists; 8 segments + the pooled query
    rows = 9 * 32 * 1_000_000 / 4000  # 72,000 rows of d floats and an 8-byte id
    assert scan(shape).bytes == pytest.approx(rows * (64 * 4 + 8))
    assert scan(shape).flops == pytest.approx(2 * 64 * rows)
    assert cm.phase_seconds(scan(shape), HW, "numpy") == pytest.approx(rows * 264 / 1e10)  # memory-bound
    coarse = cm.retrieval_phases(shape)[0]
    assert coarse.bytes == pytest.approx(9 * 4000 * 64 * 4)  # each query against every centroid


def test_doubling_the_probes_doubles_the_scan_and_nothing_else():
    one, two = cm.retrieval_phases(ann_shape(probes=16)), cm.retrieval_phases(ann_shape(probes=32))
    for a, b in zip(one, two, strict=True):
        factor = 2 if a.name.startswith("retrieval: scan") else 1
        assert b.bytes == pytest.approx(factor * a.bytes) and b.flops == pytest.approx(factor * a.flops)
    assert cm.phase_seconds(scan(ann_shape(probes=32)), HW, "numpy") == pytest.approx(
        2 * cm.phase_seconds(scan(ann_shape(probes=16)), HW, "numpy")
    )


def test_probes_beyond_the_lists_scan_the_whole_catalog_once_per_query():
    shape = ann_shape(candidates=10_000, lists=100, probes=500)
    assert scan(shape).bytes == pytest.approx(9 * 10_000 * 264)


def test_the_union_is_rescored_as_a_request_with_its_own_candidates():
    shape = ann_shape(retrieved=300.0)
    names = [p.name for p in cm.retrieval_phases(shape)]
    assert "re-score 300: gather M rows" in names
    gather = next(p for p in cm.retrieval_phases(shape) if p.name == "re-score 300: gather M rows")
    assert gather.gather == 300 * 64 * 4 and gather.gather_table == (1_000_000 + 1) * 64 * 4
    assert ann_shape(retrieved=None).union == 2 * 32 * 9  # k' and as many for seen items, per query


def test_ann_online_is_far_below_exhaustive_at_a_million_items_and_build_is_offline():
    ann = cm.predict(ann_shape(), HW)
    whole = cm.predict(replace(ann_shape(), index=None), HW)
    assert ann.seconds["online"] < whole.seconds["online"] / 5
    assert ann.seconds["offline"] > whole.seconds["offline"]  # the index build is offline work
    assert any(p["name"].startswith("offline: IVF training") for p in ann.phases["offline"])


def test_hnsw_walk_gathers_rows_at_random():
    shape = ann_shape(index="hnsw", probes=128)
    walk = cm.retrieval_phases(shape)[0]
    assert walk.gather == pytest.approx(9 * 128 * 64 * 64 * 4)  # 9 queries · efSearch · 2M links · d·4


def test_an_hnsw_walk_computes_at_most_one_product_per_item():
    tiny = ann_shape(index="hnsw", candidates=10, neighbours=10_000)  # k' far above N = 10
    walk = cm.retrieval_phases(tiny)[0]
    assert walk.gather == pytest.approx(9 * 10 * 64 * 4)  # 9 queries · N items · d·4: a visited set
    ann = cm.predict(tiny, HW).seconds["online"]
    whole = cm.predict(replace(tiny, index=None), HW).seconds["online"]
    assert ann < 10 * whole  # (was 4,000× when each query "visited" 2k'·2M = 1.3 M nodes of 10)


def test_a_bench_ann_row_is_predicted_with_its_index():
    row = {"model": "msli", "stage": "online", "variant": "ann", "method": "ivf", "backend": "torch",
           "segments": 8, "candidates": 1_000_000, "history": 200, "probes": 64, "lists": 4000,
           "neighbours": 32, "retrieved": 375.0, "p50_ms": 4.0}  # fmt: skip
    shape = cm.shape_from_row(row)
    assert (shape.index, shape.probes, shape.lists, shape.retrieved) == ("ivf", 64, 4000, 375.0)
    expected = sum(cm.phase_seconds(p, HW, "torch") for p in cm.retrieval_phases(shape))
    assert cm.predict_row(row, HW) == pytest.approx(expected)
    exhaustive = {**row, "variant": "ann_exhaustive", "method": "exhaustive"}
    assert cm.shape_from_row(exhaustive).index is None


@pytest.mark.parametrize(
    ("kw", "words"),
    [({"index": "flat"}, "index must be none, ivf or hnsw"), ({"probes": 0}, "probes must be a positive"),
     ({"lists": 2_000_000}, "IVF lists must be a whole number in 1..N")],
)  # fmt: skip
def test_bad_index_shapes_are_one_sentence(kw, words):
    with pytest.raises(MsliError, match=words):
        ann_shape(**kw)


def _numpy_and_torch_calls(fn) -> int:
    """Calls into numpy or torch (functions and array/tensor methods) made while ``fn`` runs."""
    import sys

    import numpy as np
    import torch

    count = 0

    def profile(_frame, event, arg):
        nonlocal count
        if event != "c_call":
            return
        owner = getattr(arg, "__self__", None)
        module = getattr(arg, "__module__", None) or ""
        numpy_method = owner is not None and type(owner).__module__.startswith("numpy")  # ufunc methods
        array_method = isinstance(owner, (np.ndarray, torch.Tensor))
        if numpy_method or array_method or module.startswith(("numpy", "torch")):
            count += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


def test_the_scorers_calls_per_block_are_the_models():
    """CALLS_BLOCK is counted on the code: a block whose bound passes nothing costs the torch product's
    calls (from_numpy, the transpose, mm), the max and flatnonzero. Only the first block can pass here."""
    import numpy as np

    from msli_core.serving import scoring

    rng = np.random.default_rng(0)
    K, d = 8, 16
    query = scoring.OnlineQuery(
        "attention", np.abs(rng.standard_normal((K, d))).astype(np.float32),
        rng.standard_normal((K, d)).astype(np.float32), np.zeros(K, np.float32), np.arange(K),
        np.array([5, 9], dtype=np.int64),
    )  # fmt: skip
    calls = {}
    for blocks in (1, 5):
        table = -np.abs(rng.standard_normal((4096 * blocks + 1, d))).astype(np.float32)
        table[1:4097] *= -1  # the first block scores above 0, every later one below
        calls[blocks] = _numpy_and_torch_calls(
            lambda table=table: scoring.top_k([query], table, 10, block=4096, backend="torch")
        )
    assert (calls[5] - calls[1]) / 4 == cm.CALLS_BLOCK


# ---- every constant within a plausible range ----------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"call_s": {"torch": 1e300, "numpy": 5e-7}}, "call_s.torch"),
        ({"call_s": {"torch": 1e-6, "numpy": 1e-12}}, "call_s.numpy"),
        ({"bandwidth": 1e-300}, "bandwidth"),
        ({"bandwidth": 1e30}, "bandwidth"),
        ({"gather_bandwidth": 10.0}, "gather_bandwidth"),
        ({"gemm_flops": {"torch": {"square": 1e19}}}, "gemm_flops.torch.square"),
        ({"gemm_flops": {"numpy": {"skinny": 999}}}, "gemm_flops.numpy.skinny"),
        ({"elementwise_rate": 1.0}, "elementwise_rate"),
        ({"cached_gather_bandwidth": 1e300}, "cached_gather_bandwidth"),
        ({"llc_bytes": 10}, "llc_bytes"),
        ({"llc_bytes": 1e15}, "llc_bytes"),
        ({"skinny_rows": 1e6}, "skinny_rows"),
    ],
)
def test_an_implausible_constant_is_refused_naming_field_and_file(tmp_path, changes, field):
    path = _write(tmp_path, **changes)
    with pytest.raises(MsliError) as err:
        cm.load_hardware(path)
    message = str(err.value)
    assert message.startswith(f"{path} is a calibration file msli wrote that it cannot use ({field} is ")
    assert "outside the plausible range" in message
    assert "msli costmodel calibrate" in message and "\n" not in message


def test_constants_at_the_edges_of_their_ranges_load(tmp_path):
    edges = {
        "gemm_flops": {"torch": {"square": 1e3, "skinny": 1e18}},
        "bandwidth": 1e18,
        "gather_bandwidth": 1e3,
        "call_s": {"torch": 1e-9, "numpy": 1.0},
        "llc_bytes": 1024,
        "skinny_rows": 1,
        "elementwise_rate": 1e3,
    }
    hardware = cm.load_hardware(_write(tmp_path, **edges))
    assert hardware.call_s == {"torch": 1e-9, "numpy": 1.0} and hardware.llc_bytes == 1024
    with pytest.raises(MsliError, match=r"skinny_rows is 8\.5, not a whole number"):
        cm.load_hardware(_write(tmp_path, skinny_rows=8.5))


def test_presets_and_a_measured_file_are_within_the_ranges():
    for name, preset in cm.PRESETS.items():
        assert cm.Hardware.from_dict(preset.as_dict()) == preset, name
    assert cm.Hardware.from_dict(HW.as_dict()) == HW


def test_a_tampered_stored_calibration_is_measured_again_and_said_so(tmp_path, monkeypatch):
    """A constant out of range is never used to predict: msli's own file is measured again, with a note."""
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibrate, "measure", lambda *_, **__: HW)
    path = _write(tmp_path, call_s={"torch": 1e300})
    notes = []
    assert calibrate.hardware_here(note=notes.append) == HW and cm.load_hardware() == HW
    assert notes == [
        f"{path} (the calibration file under MSLI_CACHE_DIR) is a calibration file msli wrote that it cannot "
        "use (call_s.torch is 1e+300, outside the plausible range 1e-09 to 1 seconds), so msli measures this "
        "machine again and replaces it."
    ]
    _write(tmp_path, call_s={"torch": 10**400})  # a 401-digit number is cut in the sentence
    calibrate.hardware_here(note=notes.append)
    assert "call_s.torch is 1000000000" in notes[-1] and len(notes[-1]) < 400


# ---- the calibration file: msli replaces only its own -------------------------------------------------


def test_the_default_path_never_replaces_a_file_msli_did_not_write(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    path = tmp_path / cm.CALIBRATION_FILE
    whose = {
        '{"mine":1}': "a JSON object with the keys 'mine', without a calibration's fields",
        "my notes": "text that is not JSON, starting 'my notes'",
        "[1, 2]": "a JSON list",
        "": "an empty file",
    }
    for text, what in whose.items():
        path.write_text(text)
        with pytest.raises(MsliError) as err:
            cm.save_hardware(HW)
        assert str(err.value) == (
            f"{path} (the calibration file under MSLI_CACHE_DIR) is a file msli did not write as far as it "
            f"can tell ({what}), so msli will not read or replace it; move that file away or set "
            "MSLI_CACHE_DIR to another folder."
        )
        assert path.read_text() == text
        # `msli costmodel calibrate` (save=True) refuses before the seconds-long measurement
        monkeypatch.setattr(calibrate, "measure", lambda *_, **__: pytest.fail("measured"))
        with pytest.raises(MsliError, match="did not write"):
            calibrate.calibrate(save=True)
        assert path.read_text() == text and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_the_default_path_replaces_msli_s_own_calibration_even_a_broken_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    path = _write(tmp_path, bandwidth=1e-300)  # msli's format fields, a value out of range
    assert cm.save_hardware(HW) == path and cm.load_hardware() == HW
    path.write_text(json.dumps({"name": "old", "flops": 1e11, "bandwidth": 1e10, "overhead_s": {"t": 1}}))
    assert cm.save_hardware(HW) == path and cm.load_hardware() == HW  # the first format is msli's too


def test_a_link_or_folder_at_the_calibration_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    real = cm.save_hardware(HW, tmp_path / "real.json")
    (tmp_path / cm.CALIBRATION_FILE).symlink_to(real)
    with pytest.raises(MsliError, match="is a symbolic link, which msli does not replace"):
        cm.save_hardware(HW)
    assert (tmp_path / cm.CALIBRATION_FILE).is_symlink()
    with pytest.raises(
        MsliError, match=r"^--out .*notes\.txt is a file msli did not write.*choose another --out"
    ):
        (tmp_path / "notes.txt").write_text("mine")
        cm.save_hardware(HW, tmp_path / "notes.txt")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(MsliError, match="is a folder or a special file"):
        cm.save_hardware(HW, tmp_path / "dir.json")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_without_msli_cache_dir_the_sentence_says_how_to_choose_another_folder(tmp_path, monkeypatch):
    import platformdirs

    monkeypatch.delenv("MSLI_CACHE_DIR", raising=False)
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda *_: str(tmp_path))
    (tmp_path / cm.CALIBRATION_FILE).write_text('{"mine": 1}')
    with pytest.raises(
        MsliError, match=r"in msli's cache folder\) is a file msli did not write.*set MSLI_CACHE_DIR"
    ):
        cm.save_hardware(HW)


def test_an_unwritable_msli_cache_dir_is_named(tmp_path, monkeypatch):
    from msli_core import outputs

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path / "file" / "cache"))
    expected = (
        f"Cannot create {tmp_path / 'file' / 'cache' / cm.CALIBRATION_FILE}: {tmp_path / 'file'} is not a "
        "folder; MSLI_CACHE_DIR chose that path, so set MSLI_CACHE_DIR to a writable folder."
    )
    with pytest.raises(MsliError) as err:
        cm.save_hardware(HW)
    assert str(err.value) == expected
    monkeypatch.setattr(calibrate, "measure", lambda *_, **__: pytest.fail("measured"))
    with pytest.raises(MsliError, match="MSLI_CACHE_DIR chose that path"):  # before measuring
        calibrate.calibrate(save=True)

    def refuse(*_, **__):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(outputs.tempfile, "mkstemp", refuse)  # the check passes, the write fails
    with pytest.raises(
        MsliError, match=rf"{tmp_path} is not writable \(Permission denied\); MSLI_CACHE_DIR chose"
    ):
        cm.save_hardware(HW)
    with pytest.raises(
        MsliError, match=r"is not writable \(Permission denied\); choose a writable --out path\.$"
    ):
        cm.save_hardware(HW, tmp_path / "x.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
