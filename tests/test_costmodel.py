"""The cost model: FLOP counts checked by hand, the fit recovers known constants, presets and errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from msli_core.errors import MsliError
from msli_core.serving import costmodel as cm

HW = cm.Hardware("test", flops=1e11, bandwidth=1e10, overhead_s={"torch": 1e-6}, source="test")


def test_online_flops_by_hand():
    # attention, K = 8, d = 64, N = 1000: one (2K, d) @ (d, N) product = 2·16·64·1000 FLOPs
    shape = cm.ModelShape(kind="msli", segments=8, dim=64, candidates=1000)
    interaction = cm.online_phases(shape)[0]
    assert interaction.flops == 2 * 16 * 64 * 1000 == 2_048_000
    assert interaction.bytes == 1000 * 64 * 4 + 16 * 1000 * 4  # table read + (2K, N) written
    # two-tower: one row; max: K rows
    assert (
        cm.online_phases(cm.ModelShape(kind="two-tower", dim=64, candidates=1000))[0].flops == 2 * 64 * 1000
    )
    assert (
        cm.online_phases(cm.ModelShape(segments=8, aggregation="max", candidates=1000))[0].flops
        == 2 * 8 * 64 * 1000
    )


def test_encoder_flops_by_hand():
    # one block, d = 4, f = 4, T = 3 tokens, 1 sequence:
    # dense (8 + 4·4)·3·16 = 1152; attention 4·3²·4 = 144
    shape = cm.ModelShape(kind="msli", dim=4, layers=1, heads=1, history=3, segments=1)
    phases = {p.name: p for p in cm.encoder_phases(3, 1, shape)}
    assert phases["layer0.dense"].flops == 1152
    assert phases["layer0.attention"].flops == 144
    assert phases["layer0.dense"].bytes >= (4 + 2 * 4) * 16 * 4  # at least the weights once
    # the cross-encoder runs it per candidate over L + 1 tokens: N times the per-pair cost
    ce = cm.ModelShape(kind="cross-encoder", dim=4, layers=1, heads=1, history=2, candidates=10)
    dense = next(p for p in cm.cross_encoder_phases(ce) if p.name == "layer0.dense")
    assert dense.flops == 10 * 1152


def test_parameters_of_a_billion_parameter_encoder():
    shape = cm.ModelShape(
        kind="msli", dim=2048, layers=24, heads=16, history=200, segments=8, candidates=10_000
    )
    assert 1.2e9 < shape.parameters() < 1.22e9  # 24 · 12 · 2048² ≈ 1.21 B
    pred = cm.predict(shape, cm.PRESETS["datacenter GPU"])
    assert pred.seconds["nearline_full"] > pred.seconds["nearline"] > 0
    assert pred.qps == pytest.approx(1 / pred.seconds["end_to_end"])
    assert set(pred.as_dict()) >= {"offline_s", "nearline_s", "online_s", "end_to_end_s", "qps", "bound"}


def test_roofline_by_hand():
    compute_bound = cm.Phase("mm", flops=1e9, bytes=1e6, ops=2)
    assert cm.phase_seconds(compute_bound, HW) == pytest.approx(1e9 / 1e11 + 2e-6)
    memory_bound = cm.Phase("copy", flops=0, bytes=1e9, ops=1)
    assert cm.phase_seconds(memory_bound, HW) == pytest.approx(0.1 + 1e-6)


def test_cross_encoder_costs_grow_with_n_and_l():
    def online(n, length):
        shape = cm.ModelShape(kind="cross-encoder", history=length, candidates=n)
        return cm.predict(shape, HW).seconds["online"]

    assert online(2000, 50) > 1.9 * online(1000, 50)
    assert online(1000, 200) > 3 * online(1000, 50)


def test_fit_recovers_known_constants():
    truth = cm.Hardware("truth", 5e10, 2e10, {"torch": 3e-6, "onnxruntime": 1e-5}, "synthetic")
    samples = []
    for flops, nbytes, ops, backend in [
        (1e9, 1e6, 1, "torch"), (1e8, 1e5, 1, "torch"), (0, 1e8, 1, "torch"), (0, 1e7, 1, "torch"),
        (10, 10, 1, "torch"), (10, 10, 20, "torch"), (10, 10, 1, "onnxruntime"), (1e9, 1e6, 3, "onnxruntime"),
    ]:  # fmt: skip
        t = cm.phase_seconds(cm.Phase("s", flops, nbytes, ops), truth, backend)
        samples.append(cm.Sample(flops, nbytes, ops, t, backend))
    fitted = cm.fit(samples)
    assert fitted.flops == pytest.approx(truth.flops, rel=1e-3)
    assert fitted.bandwidth == pytest.approx(truth.bandwidth, rel=1e-3)
    assert fitted.overhead("torch") == pytest.approx(3e-6, rel=1e-3)
    assert fitted.overhead("onnxruntime") == pytest.approx(1e-5, rel=1e-3)


def test_error_report_median_and_worst():
    shape = dict(
        model="msli", segments=8, candidates=1000, history=200, dim=64, layers=2, heads=2, backend="torch"
    )
    predicted = cm.predict_row({**shape, "stage": "online"}, HW)
    rows = [
        {**shape, "stage": "online", "p50_ms": predicted * 1e3},  # exact: ratio 1
        {**shape, "stage": "online", "p50_ms": predicted * 1e3 / 3},  # measured 3× faster: ratio 3
        {**shape, "stage": "floor", "variant": "bandwidth", "p50_ms": 1.0},  # computed, not timed: skipped
        {**shape, "stage": "online", "p50_ms": float("nan")},  # skipped point: ignored
    ]
    report = cm.error_report(rows, HW)
    assert len(report["points"]) == 2
    assert report["median_ratio"] == pytest.approx(2.0)
    assert report["worst_ratio"] == pytest.approx(3.0)
    assert report["within_2x"] == pytest.approx(0.5)


def test_presets_custom_and_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    assert cm.load_hardware() is cm.FALLBACK  # never calibrated: the bundled preset
    for name, preset in cm.PRESETS.items():
        assert preset.source.startswith("assumption"), name
    custom = cm.custom_hardware(1e12, 1e11, 5e-6)
    assert custom.overhead("onnxruntime") == 5e-6
    path = cm.save_hardware(custom)
    assert path == tmp_path / cm.CALIBRATION_FILE
    assert cm.load_hardware() == custom
    assert "this machine" in cm.hardware_presets()
    with pytest.raises(MsliError, match="flops"):
        cm.custom_hardware(0, 1e11, 5e-6)
    path.write_text(json.dumps({"name": "x"}))
    with pytest.raises(MsliError, match="hardware"):
        cm.load_hardware()
    with pytest.raises(MsliError, match="segments"):
        cm.ModelShape(segments=0)


def test_calibrate_measures_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    hardware = cm.calibrate(threads=1, budget_s=0.01)
    assert hardware.flops > 1e8 and hardware.bandwidth > 1e7
    assert {"torch", "numpy", "onnxruntime"} <= set(hardware.overhead_s)
    assert all(0 < v < 1e-2 for v in hardware.overhead_s.values())
    assert math.isfinite(hardware.details["fit_rms_log_error"])
    assert cm.load_hardware().flops == hardware.flops  # stored in the cache dir


def test_combine_is_a_geometric_mean():
    a = cm.Hardware("a", 1e10, 1e9, {"torch": 1e-6, "numpy": 1e-6}, "x", cache_bandwidth=4e9, cache_bytes=1e6)
    b = cm.Hardware("b", 4e10, 4e9, {"torch": 4e-6}, "x", cache_bandwidth=1e10, cache_bytes=1e6)
    both = cm.combine([a, b])
    assert both.flops == pytest.approx(2e10) and both.bandwidth == pytest.approx(2e9)
    assert both.overhead_s == pytest.approx({"torch": 2e-6})  # keys common to all
    assert both.cache_bandwidth == pytest.approx((4e9 * 1e10) ** 0.5)


def test_refined_roofline_terms_by_hand():
    hw = cm.Hardware(
        "t", flops=1e11, bandwidth=1e10, overhead_s={"torch": 1e-6, "numpy": 2e-6}, source="test",
        cache_bandwidth=4e10, cache_bytes=1e6, llc_bandwidth=2e10, llc_bytes=1e8,
        skinny_passes={"numpy": 1.0, "torch": 0.0}, elementwise_bandwidth=5e9, fault_bandwidth=2e9,
    )  # fmt: skip
    # cache tiers: 1 MB from L2, 10 MB from the last-level cache, 1 GB from memory
    assert hw.bandwidth_for(1e6) == 4e10 and hw.bandwidth_for(1e7) == 2e10 and hw.bandwidth_for(1e9) == 1e10
    # element-wise: 10 MB at min(2e10, 5e9) = 5e9 B/s -> 2 ms, plus one call
    ew = cm.Phase("ln", 0, 1e7, 1, kind="elementwise")
    assert cm.phase_seconds(ew, hw) == pytest.approx(2e-3 + 1e-6)
    # skinny product on numpy: 10 MB table packed once more at 2e10 B/s -> +0.5 ms; torch does not pack
    mm = cm.Phase("mm", 1e6, 1e7, 1, wide_bytes=1e7)
    assert cm.phase_seconds(mm, hw, "numpy") == pytest.approx(1e7 / 2e10 * 2 + 2e-6)
    assert cm.phase_seconds(mm, hw, "torch") == pytest.approx(1e7 / 2e10 + 1e-6)
    # only fresh output blocks above glibc's 32 MiB mmap threshold fault (at 2e9 B/s), and not on ORT
    small = cm.Phase("small", 0, 1e7, 0, fresh=(4e6,))
    big = cm.Phase("big", 0, 1e9, 0, fresh=(30 * 2**20, 4e8, 4e8))  # 30 MiB recycled, 2 x 400 MB fault
    assert cm.phase_seconds(small, hw) == pytest.approx(1e7 / 2e10)
    assert cm.phase_seconds(big, hw) == pytest.approx(1e9 / 1e10 + 8e8 / 2e9)
    assert cm.phase_seconds(big, hw, "onnxruntime") == pytest.approx(1e9 / 1e10)


def test_three_constants_imply_the_rest():
    hw = cm.custom_hardware(1e12, 1e11, 5e-6)
    assert hw.packing("numpy") == cm.DEFAULT_SKINNY_PASSES
    assert hw.elementwise() == pytest.approx(cm.DEFAULT_ELEMENTWISE_RATIO * 1e11)
    assert hw.faults() == pytest.approx(cm.DEFAULT_FAULT_RATIO * 1e11)
    assert hw.bandwidth_for(1e3) == 1e11  # no cache tiers unless measured
    assert hw.overhead("torch_kv") == 5e-6
    older = cm.Hardware("old", 1e11, 1e10, {"torch": 2e-6}, "file")
    assert older.overhead("torch_kv") == pytest.approx(cm.TORCH_KV_RATIO * 2e-6)
    # a billion-parameter encoder still gets finite, positive, ordered predictions
    shape = cm.ModelShape(dim=2048, layers=24, heads=16, history=1000, segments=8, candidates=1_000_000)
    pred = cm.predict(shape, hw)
    assert all(math.isfinite(t) and t > 0 for t in pred.seconds.values())
    assert pred.seconds["nearline_full"] > pred.seconds["nearline_open_segment"]


def test_online_phases_packing_and_k1_path():
    # K = 8 attention: a (16, 64) @ (64, 1000) product whose 256 kB table is packed
    interaction = cm.online_phases(cm.ModelShape(segments=8, dim=64, candidates=1000))[0]
    assert interaction.wide_bytes == 1000 * 64 * 4 and interaction.fresh_bytes == 16 * 1000 * 4
    # K = 1 on torch: the engine multiplies one row (a GEMV: no packing) and picks it (one call)
    one = cm.online_phases(cm.ModelShape(segments=1, dim=64, candidates=1000))
    assert one[0].wide_bytes == 0 and one[0].flops == 2 * 64 * 1000 and one[1].ops == 1
    # the KV-cached update is charged the torch_kv overhead, its block steps the torch_kv_layer one
    phases = cm.kv_step_phases(cm.ModelShape(segments=8, history=200, layers=3))
    assert [p.path for p in phases] == ["kv", "kv_layer", "kv_layer", "kv_layer", "kv"]
    # end to end on torch: the same phases, charged the update-then-request per-call costs
    stages = cm.stage_phases(cm.ModelShape(segments=8, history=200))
    assert [p.name for p in stages["end_to_end"]] == [p.name for p in stages["nearline"] + stages["online"]]
    assert {p.path for p in stages["end_to_end"]} == {"e2e"}
    # a user whose history fills the window: each event re-encodes the window, L positions, once
    window = cm.encoder_phases(200, 1, cm.ModelShape(segments=8, history=200))
    assert [p.name for p in stages["nearline"]][: len(window)] == [p.name for p in window]
    hw = cm.Hardware("t", 1e11, 1e10, {"torch": 1e-6, "torch_kv": 2e-6, "torch_e2e": 3e-6}, "test")
    e2e = cm.predict(cm.ModelShape(segments=8, history=200), hw).seconds["end_to_end"]
    calls = sum(p.ops for p in stages["end_to_end"])
    assert e2e == pytest.approx(sum(cm.phase_seconds(p, hw) for p in stages["end_to_end"]))
    assert e2e > calls * 3e-6  # without a per-layer split, the layers pay the pair's per-call cost


def test_per_layer_and_gemm_call_costs():
    hw = cm.Hardware(
        "t", 1e11, 1e10, {"torch": 1e-6, "torch_kv": 2e-6, "torch_kv_layer": 10e-6, "numpy": 1e-6}, "test"
    )
    one, two = (cm.ModelShape(segments=8, history=200, layers=n) for n in (1, 2))
    # a KV-cached block step (a history shorter than the window): its roofline plus OPS_KV_LAYER calls
    step = cm.kv_step_phases(two)[2]
    assert cm.predict(two, hw).seconds["nearline"] > cm.predict(one, hw).seconds["nearline"]
    assert cm.phase_seconds(step, hw) == pytest.approx(
        max(step.flops / 1e11, step.bytes / 1e10) + cm.OPS_KV_LAYER * 10e-6
    )
    # a numpy product pays the numpy_gemm call cost (2.5x a numpy call when not measured)
    floor = cm.floor_phase("matmul", 1, 64, 100)  # (1, 64) @ (64, 100): 12.8 kFLOP, 25.6 kB table + 400 B out
    assert cm.phase_seconds(floor, hw, "numpy") == pytest.approx(26_000 / 1e10 + 2.5e-6)
    assert cm.phase_seconds(floor, hw, "torch") == pytest.approx(26_000 / 1e10 + 1e-6)
    measured = cm.Hardware("m", 1e11, 1e10, {"torch": 5e-6, "torch_gemm": 2e-6}, "test", cache_bytes=1e6,
                           cache_bandwidth=4e10, skinny_passes={"torch": 1.0})  # fmt: skip
    assert cm.phase_seconds(floor, measured, "torch") == pytest.approx(26_000 / 4e10 + 2e-6)
    # a (4, 64) @ (64, N) product packs its table only when the table does not fit in the L2 (1 MB)
    small, big = cm.floor_phase("matmul", 4, 64, 1000), cm.floor_phase("matmul", 4, 64, 10_000)
    assert cm.phase_seconds(small, measured, "torch") == pytest.approx(small.bytes / 4e10 + 2e-6)
    assert cm.phase_seconds(big, measured, "torch") == pytest.approx(
        2 * 2_560_000 / 1e10 + 160_000 / 1e10 + 2e-6
    )


def test_torch_attention_runs_at_the_attention_rate_and_addmm_copies_the_bias():
    d, T, B = 64, 50, 10
    shape = cm.ModelShape(dim=d, layers=1, heads=2)
    hw = cm.Hardware("t", 1e11, 1e10, {"torch": 0.0, "torch_module": 0.0, "onnxruntime": 0.0}, "test",
                     attention_flops=1e10)  # fmt: skip
    torch_phases = {p.name: p for p in cm.encoder_phases(T, B, shape, backend="torch")}
    ort_phases = {p.name: p for p in cm.encoder_phases(T, B, shape, backend="onnxruntime")}
    attention = torch_phases["layer0.attention"]
    assert attention.kind == "attention" and ort_phases["layer0.attention"].kind == "gemm"
    # 4·B·T²·d FLOPs at 1e10 FLOP/s (compute-bound: 6.4 MFLOP vs 0.3 MB)
    assert attention.flops == 4 * B * T * T * d
    assert cm.phase_seconds(attention, hw) == pytest.approx(4 * B * T * T * d / 1e10)
    # each query row of each head pays attention_row_s on top: B·h·T = 10·2·50 rows at 1 us
    assert attention.attention_rows == B * 2 * T
    with_rows = cm.replace(hw, attention_row_s=1e-6)
    assert cm.phase_seconds(attention, with_rows) == pytest.approx(4 * B * T * T * d / 1e10 + 1000 * 1e-6)
    # unmeasured: DEFAULT_ATTENTION_RATIO of the matmul rate
    assert cm.custom_hardware(1e12, 1e11, 1e-6).attention() == pytest.approx(
        cm.DEFAULT_ATTENTION_RATIO * 1e12
    )
    # torch's addmm writes the bias into each of the 9 (B·T, d) outputs, then reads and rewrites it
    unit = B * T * d * 4
    extra = torch_phases["layer0.dense"].bytes - ort_phases["layer0.dense"].bytes
    assert extra == 2 * 9 * unit


def test_fit_recovers_known_overheads_per_path():
    truth = cm.Hardware("truth", 8e10, 1e10, {"torch": 4e-6, "torch_kv": 9e-6, "numpy": 1e-6}, "synthetic")
    samples = []
    for flops, nbytes, ops, backend in [
        (1e9, 1e6, 1, "torch"), (2e8, 2e5, 1, "torch"), (0, 1e8, 1, "torch"), (0, 3e7, 1, "torch"),
        (10, 10, 18, "torch"), (10, 10, 35, "torch_kv"), (10, 10, 24, "torch_kv"), (10, 10, 5, "numpy"),
    ]:  # fmt: skip
        t = cm.phase_seconds(cm.Phase("s", flops, nbytes, ops), truth, backend)
        samples.append(cm.Sample(flops, nbytes, ops, t, backend))
    fitted = cm.fit(samples)
    for key in ("torch", "torch_kv", "numpy"):
        assert fitted.overhead(key) == pytest.approx(truth.overhead_s[key], rel=1e-3)
    assert fitted.flops == pytest.approx(8e10, rel=1e-3) and fitted.bandwidth == pytest.approx(1e10, rel=1e-3)


def test_hardware_round_trip_and_best_of_calibrations(tmp_path):
    a = cm.Hardware("a", 1e11, 1e10, {"torch": 2e-6}, "x", llc_bandwidth=2e10, llc_bytes=3e7,
                    skinny_passes={"numpy": 1.2}, elementwise_bandwidth=6e9, fault_bandwidth=2e9)  # fmt: skip
    b = cm.Hardware("b", 2e11, 5e9, {"torch": 4e-6}, "x", llc_bandwidth=1e10, llc_bytes=5e7,
                    skinny_passes={"numpy": 0.8}, elementwise_bandwidth=3e9, fault_bandwidth=4e9)  # fmt: skip
    path = cm.save_hardware(a, tmp_path / "hw.json")
    assert cm.load_hardware(path) == a
    best = cm.combine([a, b], how="best")
    assert best.flops == 2e11 and best.bandwidth == 1e10 and best.overhead("torch") == 2e-6
    # differences of two timings have no quieter side: their geometric mean (passes offset by 0.05)
    assert best.skinny_passes["numpy"] == pytest.approx((1.25 * 0.85) ** 0.5 - 0.05)
    assert best.fault_bandwidth == pytest.approx((2e9 * 4e9) ** 0.5)
    assert best.llc_bytes == 3e7  # the smaller tier, to be safe
    c = cm.Hardware("c", 4e11, 2e10, {"torch": 1e-6}, "x", skinny_passes={"numpy": 2.95})
    middle = cm.combine([a, b, c], how="median")  # the bench: before, between and after its passes
    assert middle.flops == pytest.approx(2e11) and middle.bandwidth == pytest.approx(1e10)
    assert middle.overhead("torch") == pytest.approx(2e-6)
    assert middle.skinny_passes["numpy"] == pytest.approx(1.2)
    assert middle.llc_bytes == pytest.approx(4e7)  # median of the tiers measured (3e7, 5e7)
    with pytest.raises(ValueError):
        cm.combine([a], how="mode")


def test_error_report_uses_the_cpu_median_when_there_is_one():
    row = dict(model="msli", stage="online", segments=8, candidates=1000, history=200, backend="torch")
    assert cm.measured_ms({**row, "p50_ms": 2.0, "cpu_p50_ms": 1.5}) == 1.5
    assert cm.measured_ms({**row, "p50_ms": 2.0, "cpu_p50_ms": None}) == 2.0
    assert cm.measured_ms({**row, "p50_ms": float("nan")}) is None
    report = cm.error_report([{**row, "p50_ms": 2.0, "cpu_p50_ms": 1.0}], HW)
    (point,) = report["points"]
    assert point["measured_ms"] == 1.0 and point["wall_ms"] == 2.0 and point["measured_on"] == "cpu"


# ---- broken calibration files: a sentence naming the file and the field, never a traceback -----------
def _calibration(tmp_path, **changes):
    data = {**cm.FALLBACK.as_dict(), **changes}
    path = tmp_path / "hardware.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"flops": 0}, "flops"),
        ({"flops": -1e9}, "flops"),
        ({"flops": float("nan")}, "flops"),
        ({"flops": float("inf")}, "flops"),
        ({"flops": "fast"}, "flops"),
        ({"flops": True}, "flops"),
        ({"bandwidth": 0}, "bandwidth"),
        ({"bandwidth": None}, "bandwidth"),
        ({"overhead_s": -1e-6}, "overhead_s"),
        ({"overhead_s": {"torch": float("nan")}}, "overhead_s.torch"),
        ({"overhead_s": {"torch": "x"}}, "overhead_s.torch"),
        ({"overhead_s": []}, "overhead_s"),
        ({"cache_bandwidth": -5}, "cache_bandwidth"),
        ({"attention_flops": float("nan")}, "attention_flops"),
        ({"select_rate": "x"}, "select_rate"),
        ({"llc_bytes": -1}, "llc_bytes"),
        ({"skinny_passes": {"numpy": -1}}, "skinny_passes.numpy"),
        ({"skinny_passes": [1]}, "skinny_passes"),
        ({"attention_row_s": float("inf")}, "attention_row_s"),
    ],
)
def test_bad_calibration_file_names_the_file_and_the_field(tmp_path, changes, field):
    path = _calibration(tmp_path, **changes)
    with pytest.raises(MsliError) as err:
        cm.load_hardware(path)
    message = str(err.value)
    assert str(path) in message and field in message and "\n" not in message


@pytest.mark.parametrize(
    "text", ["[1, 2]", '"x"', "{}", '{"name": "x", "flops": 1}', "not json", "[" * 100_000, ""]
)
def test_calibration_file_that_is_not_an_object_is_a_sentence(tmp_path, text):
    path = tmp_path / "hardware.json"
    path.write_text(text)
    with pytest.raises(MsliError, match=r"hardware\.json"):
        cm.load_hardware(path)


def test_calibration_path_that_is_a_folder_is_a_sentence(tmp_path):
    with pytest.raises(MsliError, match="not a file"):
        cm.load_hardware(tmp_path)


def test_calibrate_out_folder_is_a_sentence_before_measuring(tmp_path, capsys, monkeypatch):
    from msli_core.cli import main

    monkeypatch.setattr(cm, "calibrate", lambda **_: pytest.fail("measured before checking --out"))
    assert main(["costmodel", "calibrate", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("page", ["home", "whatif"])
def test_app_pages_show_a_broken_calibration_as_an_error(tmp_path, monkeypatch, page):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    _calibration(tmp_path, flops=0)
    app = str(Path(__file__).resolve().parents[1] / "app.py")
    at = AppTest.from_file(app, default_timeout=120)
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("hardware.json" in e.value and "flops" in e.value for e in at.error), [
        e.value for e in at.error
    ]
