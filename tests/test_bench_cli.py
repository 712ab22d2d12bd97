"""`msli bench` / `msli export` / `msli costmodel`: well-formed rows, exit codes, sentences for bad flags."""

from __future__ import annotations

import json
import math

import pytest
import torch

from msli_core.cli import main
from msli_core.serving import bench, timing

TINY = [
    "--segments", "1,2", "--candidates", "10,40", "--history", "6", "--repeats", "3", "--budget-s", "0.01",
    "--cross-budget-s", "0.5", "--no-calibrate", "--dim", "8", "--layers", "1", "--request-candidates", "5",
    "--ann", "none",
]  # fmt: skip
CONTRACT = (
    "model", "stage", "backend", "segments", "candidates", "history",
    "p50_ms", "p95_ms", "p99_ms", "qps", "threads",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path / "cache"))


def test_bench_json_rows_are_well_formed(capsys, tmp_path):
    threads_before = torch.get_num_threads()
    out = tmp_path / "bench"
    assert main(["bench", *TINY, "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert "bench" in captured.err  # the progress bar goes to stderr, stdout is the JSON alone
    assert rows and all(set(CONTRACT) <= set(r) for r in rows)
    stages = {r["stage"] for r in rows}
    assert stages == {"offline", "nearline", "online", "end_to_end", "floor"}
    assert {r["model"] for r in rows} == {"msli", "two-tower", "full-forward", "cross-encoder"}  # the ladder
    full = [r for r in rows if r["model"] == "full-forward" and r["stage"] == "online" and not r["variant"]]
    assert sorted(r["candidates"] for r in full) == [10, 40] and all(r["passes"] == 3 for r in full)
    sizes = [r for r in rows if r["variant"] == "encoder_size"]  # the teaching sweep, at N=40, L=6, K=2
    measured = {(r["model"], r["layers"], r["dim"]) for r in sizes if r["method"] == "measured"}
    assert measured == {(m, a, b) for m in ("full-forward", "msli", "two-tower")
                        for a, b in ((1, 32), (2, 64), (4, 128), (4, 256))}  # fmt: skip
    assert all(r["p50_ms"] > 0 and r["candidates"] == 40 and r["history"] == 6 for r in sizes
               if r["method"] == "measured")  # fmt: skip
    estimated = [r for r in sizes if r["method"] == "cost model"]
    assert len(estimated) == 12 and all(r["p50_ms"] is None and r["estimated_ms"] > 0 for r in estimated)
    big = {r["model"]: r["estimated_ms"] for r in estimated if (r["layers"], r["dim"]) == (32, 2048)}
    assert big["full-forward"] > big["msli"] > 0  # the encoder on every request costs more than scoring
    fresh = [r for r in rows if r["variant"] == "request_candidates"]
    cached = [r for r in rows if r["variant"] == "cached_candidates"]
    assert {(r["model"], r["segments"], r["candidates"], r["rows"]) for r in fresh} == {
        (m, k, n, 5) for m, k in (("msli", 1), ("msli", 2), ("two-tower", 1)) for n in (10, 40)
    }
    assert len(cached) == len(fresh)
    assert {r["backend"] for r in rows} == {"torch", "onnxruntime", "numpy"}
    for r in rows:
        assert r["threads"] == 1
        if r["calls"] and r["variant"] != "bandwidth":  # one thread: each timed point has a CPU median
            assert r["cpu_p50_ms"] > 0, r
        if r["p50_ms"] is None:  # only a skipped cross-encoder point or an extrapolation lacks a timing
            assert (r["model"] == "cross-encoder" and r["capped"]) or r["method"] == "cost model"
            assert r["calls"] == 0 and r["estimated_ms"] > 0
            continue
        for key in ("p50_ms", "p95_ms", "p99_ms", "qps"):
            assert isinstance(r[key], float) and r[key] > 0, (key, r)
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    near = {(r["backend"], r["variant"]) for r in rows if r["stage"] == "nearline"}
    assert {("torch", "incremental"), ("torch", "full"), ("onnxruntime", "incremental")} <= near
    paired = [r for r in rows if r["variant"] == "paired"]  # MS-LI timed between cross-encoder calls
    assert paired and {r["model"] for r in paired} == {"msli"} and {r["segments"] for r in paired} == {1, 2}
    floors = {r["variant"] for r in rows if r["stage"] == "floor"}
    assert floors == {"matmul", "matmul_torch", "bandwidth", "compute"}
    written = {p.name for p in out.iterdir()}
    assert written == {"bench.csv", "bench.json", "meta.json", "costmodel_error.json", ".msli-output.json"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["threads"]["torch"] == 1 and meta["threads"]["onnxruntime_intra_op"] == 1
    assert set(meta["versions"]) == {"torch", "onnxruntime", "numpy", "faiss"} and meta["cpu"]
    memory = meta["served_memory"]  # the largest catalog's table (N=40, d=8) and what serving it grew
    assert memory["table_bytes"] == 41 * 8 * 4 and memory["resident_growth_bytes"] >= 0
    summary = bench.headline(rows, meta)
    assert summary and not any("nan" in f"{k} {v}".lower() for k, v in summary.items())
    assert any(k.startswith("MS-LI online K=2 N=40") for k in summary)  # its shapes, from this sweep
    assert json.loads((out / "bench.json").read_text()) == rows
    assert torch.get_num_threads() == threads_before  # the run's 1 thread is not left behind


def test_run_bench_reports_progress_and_caps_the_cross_encoder():
    events = []
    settings = bench.BenchSettings(
        segments=(2,), candidates=(50,), history=(8,), backends=("torch",), models=("msli", "cross-encoder"),
        repeats=1000, budget_s=0.01, cross_budget_s=1e-4, dim=8, layers=1, calibrate=False,
    )  # fmt: skip
    result = bench.run_bench(settings, events.append)
    assert events and events[-1].done == events[-1].total
    cross = [r for r in result.rows if r["model"] == "cross-encoder"]
    assert cross and all(r["capped"] for r in cross)  # the tiny budget stops (or skips) it
    assert all(r["calls"] < 1000 for r in cross)
    skipped = [r for r in cross if r["calls"] == 0]
    assert all(math.isnan(r["p50_ms"]) and r["estimated_ms"] > 0 for r in skipped)


def test_timing_helpers():
    times, capped = timing.time_calls(lambda: None, warmup=1, repeats=5, budget_s=10)
    assert len(times) == 5 and not capped
    stats = timing.summarize(times)
    assert stats["p50_ms"] <= stats["p99_ms"] and stats["qps"] > 0
    times, capped = timing.time_calls(lambda: sum(range(1000)), warmup=0, repeats=10**9, budget_s=0.01)
    assert capped and len(times) >= 3
    cpu: list[int] = []
    times, _ = timing.time_calls(lambda: sum(range(1000)), warmup=1, repeats=7, budget_s=10, cpu_ns=cpu)
    assert len(cpu) == len(times) == 7 and all(c >= 0 for c in cpu)
    stats = timing.summarize(times, cpu)
    assert stats["cpu_p50_ms"] == pytest.approx(sorted(cpu)[3] / 1e6)
    assert timing.summarize(times)["cpu_p50_ms"] is None  # no CPU times (threads > 1): no CPU median


def test_merge_passes_takes_the_median_of_each_figure():
    key = dict(
        model="msli", stage="online", variant=None, backend="torch", segments=2, candidates=10, history=6
    )
    passes = [
        [dict(key, p50_ms=3.0, p99_ms=9.0, cpu_p50_ms=2.0), dict(key, stage="offline", cpu_p50_ms=None)],
        [dict(key, p50_ms=1.5, p99_ms=4.0, cpu_p50_ms=1.2), dict(key, segments=4, p50_ms=0.1)],
        [dict(key, p50_ms=2.0, p99_ms=5.0, cpu_p50_ms=float("nan"))],
    ]
    merged = bench.merge_passes(passes)
    assert [r["stage"] for r in merged] == ["online", "offline"]  # the first pass's rows and order
    online, offline = merged
    assert online["p50_ms"] == 2.0 and online["p99_ms"] == 5.0 and online["passes"] == 3  # medians
    assert online["cpu_p50_ms"] == pytest.approx(1.6)  # NaN left out: the median of 2.0 and 1.2
    assert offline["cpu_p50_ms"] is None and offline["passes"] == 1  # a point only one pass measured
    assert passes[0][0]["p50_ms"] == 3.0  # the inputs are not modified


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--segments", "0,a"], "--segments"),
        (["--segments", "0"], "--segments"),
        (["--candidates", ""], "--candidates"),
        (["--history", "1.5"], "--history"),
        (["--backend", "tensorflow"], "--backend"),
        (["--models", "msli,bert"], "--models"),
        (["--threads", "2,3"], "--threads"),
        (["--request-candidates", "0"], "--request-candidates"),
        (["--encoder-sizes", "2by64"], "--encoder-sizes"),
        (["--encoder-sizes", "2x63"], "--encoder-sizes"),
        (["--extrapolate-sizes", "0x64"], "--extrapolate-sizes"),
        (["--extrapolate-sizes", "2x1e9"], "--extrapolate-sizes"),
        (["--request-candidates", "ten"], "--request-candidates"),
        (["--budget-s", "-1"], "--budget-s"),
        (["--passes", "9"], "--passes"),
        (["--model", "/no/such/folder"], "--model"),
        (["--ann", "flat"], "--ann takes a comma list of ivf, hnsw, or none"),
        (["--ann-probes", "0"], "--ann-probes"),
        (["--ann-probes", "8,x"], "--ann-probes"),
        (["--ann-candidates", "100"], "--ann-candidates"),
        (["--ann-candidates", "30000000"], "--ann-candidates 30,000,000 is above the limit"),
        (["--ann-neighbours", "5"], "--ann-neighbours"),
        (["--ann-table", "uniform"], "--ann-table takes clustered or gaussian"),
        # each sentence is true: the example fits the bound, the value named is the one refused
        (["--ann", "none,ivf"], "--ann none means no index, so it cannot be listed with ivf"),
        (["--ann-candidates", "5"], "at least 640, like 640,1280,2560; 5 is too small"),
        (["--training", "--history", "1"], "at least 2, like 2,4,8; 1 is too small"),
        (["--segments", "1,,2"], "--segments '1,,2' has an empty entry"),
        (["--extrapolate-sizes", "1x"], "--extrapolate-sizes takes LAYERSxWIDTH pairs"),
        # a flag the mode would ignore is refused, not dropped silently
        (["--model", ".", "--dim", "16"], "--dim cannot be used with --model"),
        (["--model", ".", "--segments", "4", "--layers", "3"], "--segments, --layers cannot be used with"),
        (["--items", "0"], "--items sets the catalog of --training only"),
        (["--no-calibrate", "--save-calibration"], "drop one of them"),
        (["--layers", "x"], "--layers takes one whole number like 2; 'x'"),  # the example fits lo = 0
        (["--layers", ""], "--layers needs a value, like 2."),
        (["--candidates", "100", "--request-candidates", "100"], "is not smaller than the largest"),
    ],
)
def test_bad_bench_flags_are_one_sentence(capsys, flags, needle):
    assert main(["bench", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_export_cli(capsys, tmp_path):
    from msli_core.models.msli import MSLIConfig, MSLIModel
    from msli_core.models.registry import save_model

    class Data:  # the few fields save_model records about the training data
        fingerprint, source, format, n_users, n_items = "f" * 16, "synthetic", "synthetic", 3, 30

    model = MSLIModel(MSLIConfig(n_items=30, n_genres=2, dim=8, segments=2, segment_len=3))
    model.kind = "msli"
    save_model(model, tmp_path / "model", data=Data())
    target = tmp_path / "out" / "scorer.onnx"
    assert main(["export", "--model", str(tmp_path / "model"), "--out", str(target), "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert paths["scorer"] == str(target) and target.exists()
    assert (tmp_path / "out" / "scorer.segment_encoder.onnx").exists()
    assert main(["export", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "x.txt")]) == 2
    assert ".onnx" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "x.txt").exists()


def test_costmodel_predict_cli(capsys):
    args = ["costmodel", "predict", "--model", "msli", "--dim", "2048", "--layers", "24", "--heads", "16",
            "--candidates", "10000", "--hardware", "server CPU", "--json"]  # fmt: skip
    assert main(args) == 0
    prediction = json.loads(capsys.readouterr().out)
    assert prediction["parameters"] > 1e9 and prediction["online_s"] > 0 and prediction["qps"] > 0
    assert main(["costmodel", "predict", "--hardware", "abacus"]) == 2
    assert "--hardware" in capsys.readouterr().err
    assert (
        main(["costmodel", "predict", "--model", "two-tower", "--segments", "4", "--hardware", "server CPU"])
        == 2
    )
    assert "--segments applies to --model msli only" in capsys.readouterr().err  # not silently K = 1
    assert main(args[:-1]) == 0  # without --json: a table, one line per stage
    text = capsys.readouterr().out
    assert not text.lstrip().startswith("{") and "bound by" in text
    assert {line.split()[0] for line in text.splitlines()[2:]} == set(prediction["flops"])


def test_training_bench_cli(capsys, tmp_path):
    args = ["bench", "--training", "--items", "50", "--history", "12", "--segments", "3", "--repeats", "1",
            "--dim", "8", "--layers", "1", "--json", "--out", str(tmp_path / "t")]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    labels = ["sasrec", "two-tower", "msli K=3", "msli K=3, closed segments without gradient",
              "msli K=3, one open slot (recency_slot=False)", "msli K=3, attention rank 2 (attention_rank=2)",
              "msli K=3, histories within the window"]  # fmt: skip
    assert [r["model"] for r in result["rows"]] == labels
    assert [r["closed_gradient"] for r in result["rows"]] == [False, False, True, False, True, True, True]
    assert [r["recency_slot"] for r in result["rows"]] == [False, False, True, True, False, True, True]
    assert [r["attention_rank"] for r in result["rows"]] == [8, 8, 8, 8, 8, 2, 8]
    assert result["rows"][0]["ratio_to_sasrec"] == 1.0 and all(r["targets_per_s"] > 0 for r in result["rows"])
    assert json.loads((tmp_path / "t" / "training.json").read_text())["meta"]["length"] == 12


def test_bench_a_trained_model_folder(capsys, tmp_path):
    from msli_core.models.msli import MSLIConfig, MSLIModel
    from msli_core.models.registry import save_model

    class Data:
        fingerprint, source, format, n_users, n_items = "f" * 16, "synthetic", "synthetic", 3, 60

    model = MSLIModel(MSLIConfig(n_items=60, n_genres=2, dim=8, segments=3, segment_len=2, layers=1))
    model.kind = "msli"
    save_model(model, tmp_path / "model", data=Data())
    args = ["bench", "--model", str(tmp_path / "model"), "--candidates", "10,60", "--history", "6",
            "--backend", "torch", "--models", "msli", "--repeats", "2", "--budget-s", "0.01",
            "--no-calibrate", "--json"]  # fmt: skip
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    timed = [r for r in rows if r["stage"] in ("online", "nearline")]
    assert timed and {r["segments"] for r in timed} == {3} and {r["dim"] for r in timed} == {8}
    too_many = ["bench", "--model", str(tmp_path / "model"), "--candidates", "100", "--no-calibrate"]
    assert main(too_many) == 2
    assert "exceeds the 60 items" in capsys.readouterr().err


def test_the_timed_msli_user_fills_every_slot(monkeypatch):
    """Every MS-LI request the bench times scores all K segment vectors (a full window plus K-1 closed
    segments), not the open slot alone: the history it loads is long enough."""
    from msli_core.serving.engine import InferenceEngine

    seen = []
    original = InferenceEngine.recommend_many

    def spy(self, users, *args, **kwargs):
        seen.extend((self.K, int(self.users[u].mask.sum())) for u in users)
        return original(self, users, *args, **kwargs)

    monkeypatch.setattr(InferenceEngine, "recommend_many", spy)
    settings = bench.BenchSettings(
        segments=(4,), candidates=(30,), history=(6,), backends=("torch",), models=("msli",), repeats=2,
        budget_s=0.001, dim=8, layers=1, calibrate=False, passes=1, request_candidates=(),
        encoder_sizes=((1, 8),), extrapolate_sizes=(),
    )  # fmt: skip
    bench.run_bench(settings)
    msli = [(k, filled) for k, filled in seen if k == 4]
    assert msli and all(filled == 4 for _, filled in msli)


def test_bench_ann_rows(capsys, tmp_path):
    """--ann ivf: per probes an ``ann`` row (recall@10 against exhaustive, candidates re-scored, the
    index's bytes and build time) beside the ``ann_exhaustive`` row of the same generated table."""
    args = ["bench", "--segments", "2", "--candidates", "50", "--history", "6", "--repeats", "3",
            "--budget-s", "0.01", "--no-calibrate", "--dim", "8", "--layers", "1", "--models", "msli",
            "--backend", "torch", "--request-candidates", "none", "--encoder-sizes", "none",
            "--extrapolate-sizes", "none", "--passes", "2", "--ann", "ivf", "--ann-candidates", "3000",
            "--ann-probes", "1,1000", "--ann-neighbours", "3000", "--json",
            "--out", str(tmp_path / "b")]  # fmt: skip
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    ann = [r for r in rows if r["variant"] == "ann"]
    whole = [r for r in rows if r["variant"] == "ann_exhaustive"]
    assert len(whole) == 1 and whole[0]["recall_at_10"] == 1.0 and whole[0]["candidates"] == 3000
    assert [r["probes"] for r in ann] == [1, 1000] and {r["method"] for r in ann} == {"ivf"}
    assert ann[0]["lists"] == round(4 * math.sqrt(3000)) and ann[0]["neighbours"] == 3000
    assert ann[1]["recall_at_10"] == 1.0  # every list probed and k' = N: every unseen item is re-scored
    assert ann[0]["recall_at_10"] <= ann[1]["recall_at_10"]
    assert all(r["passes"] == 2 and r["p50_ms"] > 0 and r["retrieved"] > 0 for r in ann)
    assert ann[0]["index_bytes"] == 3000 * (8 * 4 + 8) + ann[0]["lists"] * 8 * 4
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta["ann"]["table"] == "clustered" and meta["ann"]["search_threads"] == 1
    assert "faiss" in meta["versions"]


def test_training_bench_times_one_epoch_of_a_datasets_own_steps(capsys, tmp_path):
    """``--data``: every model runs the same epoch of the data's training batches; the targets are the
    data's training targets (every training event after a user's first)."""
    from msli_core.data.dataset import leave_one_out
    from msli_core.data.formats import load_dataset
    from msli_core.data.synth import SynthConfig, write_synthetic

    folder = tmp_path / "synth"
    write_synthetic(folder, SynthConfig(users=12, items=30, interactions=300, interests=3, min_events=8,
                                        max_events=60, seed=2))  # fmt: skip
    args = ["bench", "--training", "--items", "30", "--history", "12", "--segments", "3", "--repeats", "1",
            "--dim", "8", "--layers", "1", "--data", str(folder), "--json"]  # fmt: skip
    assert main(args) == 0
    epoch = json.loads(capsys.readouterr().out)["epoch"]
    assert [r["model"] for r in epoch["rows"]] == ["sasrec", "two-tower", "msli K=3"]
    assert [r["segments"] for r in epoch["rows"]] == [1, 1, 3]
    assert epoch["rows"][0]["ratio_to_sasrec"] == 1.0 and all(r["epoch_s"] > 0 for r in epoch["rows"])
    split = leave_one_out(load_dataset(folder))
    assert epoch["meta"]["targets"] == int((split.train_lengths() - 1).clip(min=0).sum())
    assert main(args[:-1]) == 0  # the table, the epoch's under the steps'
    assert "One epoch of" in capsys.readouterr().out
    assert main(["bench", "--data", str(folder)]) == 2
    assert "needs --training" in capsys.readouterr().err
    assert main(["bench", "--training", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
