"""``msli train --ddp``: data-parallel training in 2 processes launched by torchrun (gloo, CPU).

The 2-process runs (torchrun, ~15 s each here: mostly three Python + torch start-ups) are marked slow:
``make test`` runs them, ``-m "not slow"`` leaves them out. The bad-input cases and the helpers run in
the fast set.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import json
import os
import socket
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from _ddp_worker import run as run_worker
from tiny_data import make_tiny_dataset

from msli_core import distributed
from msli_core.cli import main
from msli_core.data import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.data.synth import SynthConfig, write_synthetic
from msli_core.errors import MsliError
from msli_core.evaluate import evaluate
from msli_core.models.registry import load_model
from msli_core.serving.engine import InferenceEngine
from msli_core.train import training_rows

TESTS = Path(__file__).parent
TORCHRUN_TIMEOUT_S = 300  # a hung run fails the test instead of hanging it
CLI_FLAGS = ["--model", "msli", "--segments", "2", "--dim", "16", "--layers", "1", "--epochs", "2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env() -> dict[str, str]:
    """This process's environment without any torchrun variables (a test runner under torchrun...)."""
    names = (*distributed.ENV, "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")
    return {k: v for k, v in os.environ.items() if k not in names}


def _torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), *args,
    ]  # fmt: skip
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=TORCHRUN_TIMEOUT_S,
        env=_clean_env(),
        cwd=TESTS.parent,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp") / "synth"
    cfg = SynthConfig(users=60, items=60, interactions=1800, interests=4, min_events=8, max_events=60, seed=1)
    write_synthetic(folder, cfg)
    return folder


# ---- the helpers -----------------------------------------------------------------------------------
def test_docstring_examples():
    result = doctest.testmod(distributed, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_environment_names_what_is_missing_and_how_to_launch():
    with pytest.raises(MsliError) as err:
        distributed.from_environment({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    text = str(err.value)
    assert "MASTER_ADDR, MASTER_PORT are not set" in text and "RANK," not in text.split("and ")[1]
    assert "torchrun --nproc-per-node P -m msli_core train ... --ddp" in text and "\n" not in text
    with pytest.raises(MsliError, match="whole numbers"):
        distributed.from_environment(dict.fromkeys(distributed.ENV, "x"))
    env = {"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    with pytest.raises(MsliError, match="RANK 2, LOCAL_RANK 0 and WORLD_SIZE 2"):
        distributed.from_environment(env)


def test_shards_cover_the_users_once_in_order():
    users = np.arange(1, 8)
    for size in (1, 2, 3, 8):
        parts = [distributed.shard(users, distributed.World(r, size, r, size, "h:1")) for r in range(size)]
        assert np.concatenate(parts).tolist() == users.tolist()  # disjoint, complete, in rank order
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_peer_errors_are_told_apart_from_bugs():
    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer")
    assert distributed.peer_error(gloo) and distributed.peer_error(torch.distributed.DistStoreError("t"))
    assert not distributed.peer_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    world = distributed.World(1, 2, 1, 2, "h:1", timeout_s=5)
    lost = r"^process 1 of 2 lost the other training processes while training \("
    with pytest.raises(MsliError, match=lost), distributed.collective(world, "training"):
        raise gloo
    with pytest.raises(RuntimeError, match="shapes"), distributed.collective(world, "training"):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")  # a bug keeps its traceback


# ---- bad input: one sentence, exit 2, nothing written ------------------------------------------------
def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("msli: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_ddp_without_torchrun_says_how_to_launch(data_dir, tmp_path, capsys, monkeypatch):
    for name in distributed.ENV:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "m"
    err = _one_line_error(capsys, ["train", "--data", str(data_dir), *CLI_FLAGS, "--out", str(out), "--ddp"])
    assert "RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not set" in err
    assert "`torchrun --nproc-per-node P -m msli_core train ... --ddp`" in err
    assert not out.exists()


def test_several_torchrun_processes_without_ddp_are_refused(data_dir, tmp_path, capsys, monkeypatch):
    """Without --ddp, each of P processes would train alone and race to write the same --out."""
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "m"
    err = _one_line_error(capsys, ["train", "--data", str(data_dir), *CLI_FLAGS, "--out", str(out)])
    assert "one of 2 torchrun processes but without --ddp" in err and err.endswith("add --ddp.")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["popularity", "item-knn", "cross-encoder"])
def test_ddp_refuses_kinds_it_does_not_train(data_dir, tmp_path, capsys, kind):
    out = tmp_path / "m"
    err = _one_line_error(
        capsys, ["train", "--data", str(data_dir), "--model", kind, "--out", str(out), "--ddp"]
    )
    assert "--ddp trains msli and two-tower models" in err and "train it without --ddp" in err
    assert not out.exists()


def test_ddp_timeout_must_be_positive(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as code:
        main(
            ["train", "--data", str(data_dir), *CLI_FLAGS, "--out", str(tmp_path / "m"), "--ddp-timeout", "0"]
        )
    assert code.value.code == 2 and "positive number of seconds" in capsys.readouterr().err


def test_rank_other_than_0_writes_and_prints_nothing(data_dir, tmp_path, capsys, monkeypatch):
    """The CLI's save step on rank 1 (training replaced by a stand-in): no folder, no output."""
    from msli_core.commands import model as commands
    from msli_core.train import TrainSettings

    called = []
    monkeypatch.setattr("msli_core.train.train", lambda *_, **k: called.append(k["distributed"]))
    out = tmp_path / "m"
    args = Namespace(out=str(out), model="msli", json=True, data=str(data_dir))
    world = distributed.World(1, 2, 1, 2, "h:1")
    assert commands._train_and_save(args, None, TrainSettings(), {}, world) == 0
    assert called == [world] and not out.exists() and capsys.readouterr().out == ""


@pytest.mark.parametrize("rank", [0, 1])
def test_a_process_whose_peers_never_come_stops_with_one_sentence(data_dir, tmp_path, rank):
    """WORLD_SIZE 2 but only one process is started: it waits --ddp-timeout, then exits 2 (not forever)
    with one sentence: rank 0 (the store's host) waits for rank 1; rank 1 finds no store to connect to,
    which c10d itself would log with a C++ backtrace."""
    env = {**_clean_env(), "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}  # fmt: skip
    out = tmp_path / "m"
    argv = ["train", "--data", str(data_dir), *CLI_FLAGS, "--out", str(out), "--ddp", "--ddp-timeout", "2"]
    start = time.monotonic()
    msli = [sys.executable, "-m", "msli_core", *argv]
    proc = subprocess.run(msli, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and time.monotonic() - start < 120
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"process {rank} of 2 could not join the others at 127.0.0.1:" in lines[0]
    assert "--ddp-timeout 2 s" in lines[0] and not out.exists()


@pytest.mark.slow
def test_a_peer_that_fails_after_joining_ends_the_others(data_dir, tmp_path):
    """Rank 1 joins and dies (no torchrun to stop rank 0): rank 0 learns it at its next collective and
    exits 2 with one sentence, well before --ddp-timeout, and writes nothing."""
    port = str(_free_port())
    base = {**_clean_env(), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port}  # fmt: skip
    dying = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import torch.distributed as d; d.init_process_group('gloo'); raise SystemExit(1)",
        ],
        env={**base, "RANK": "1", "LOCAL_RANK": "1"},
    )
    out = tmp_path / "m"
    argv = ["train", "--data", str(data_dir), *CLI_FLAGS, "--out", str(out), "--ddp", "--ddp-timeout", "200"]
    start = time.monotonic()
    msli = [sys.executable, "-m", "msli_core", *argv]
    env = {**base, "RANK": "0", "LOCAL_RANK": "0"}
    proc = subprocess.run(msli, env=env, capture_output=True, text=True, timeout=150)
    dying.wait(timeout=60)
    assert proc.returncode == 2 and time.monotonic() - start < 150
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("train [")]
    assert len(lines) == 1 and "process 0 of 2 lost the other training processes while" in lines[0]
    assert not out.exists()


# ---- two processes against one -------------------------------------------------------------------------
def _batch_with_one_row_left(data, max_len: int) -> int:
    """A batch size whose last step has one row, so with 2 processes one rank has none (the padded step)."""
    split = leave_one_out(data)
    rows = sum(
        len(training_rows(split.train_sequence(u), max_len, 3))
        for u in range(1, data.n_users + 1)
        if len(split.train_sequence(u)) >= 2
    )
    return next(b for b in range(5, 40) if rows % b == 1)


EXACT_CASES = {
    "msli-attention": ("msli", {"segments": 3, "segment_len": 6, "aggregation": "attention"}),
    "msli-max": ("msli", {"segments": 3, "segment_len": 6, "aggregation": "max"}),
    "two-tower": ("two-tower", {}),
}


def _exact_spec(kind: str, config: dict) -> dict:
    data_spec = {"users": 40, "items": 60, "events": 24}
    batch = _batch_with_one_row_left(make_tiny_dataset(**data_spec), 12)
    return {
        "data": data_spec,
        "kind": kind,
        "config": {"dim": 16, "layers": 1, "max_len": 12, "dropout": 0.0, "state_dropout": 0.0, **config},
        "settings": {"epochs": 3, "seed": 3, "batch_size": batch},
    }


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory) -> dict:
    """Every case of EXACT_CASES trained by 2 processes, in one torchrun launch."""
    folder = tmp_path_factory.mktemp("exact")
    specs = [_exact_spec(*case) for case in EXACT_CASES.values()]
    (folder / "specs.json").write_text(json.dumps(specs))
    failures = []
    for _attempt in range(2):  # one relaunch (on a new port) when the launch itself fails: a full suite
        # on a shared CI machine once failed here with no numeric difference in play (the runs agree
        # to 5e-7); a real fault fails both launches and shows both outputs
        proc = _torchrun(str(TESTS / "_ddp_worker.py"), str(folder / "out.json"), str(folder / "specs.json"))
        if proc.returncode == 0:
            return dict(zip(EXACT_CASES, json.loads((folder / "out.json").read_text()), strict=True))
        failures.append(f"exit {proc.returncode}: {proc.stderr[-3000:]}")
    pytest.fail("torchrun failed twice:\n" + "\n---\n".join(failures))


@pytest.mark.slow
@pytest.mark.parametrize("case", list(EXACT_CASES))
def test_two_processes_train_the_single_process_model_without_dropout(two_process_runs, case):
    """With dropout off, nothing random differs between 1 and 2 processes (the epoch plans come from
    the shared seed; sampled softmax is not in play on 60 items), so the runs must agree up to float
    summation order: per-epoch losses within 1e-5 relative, weights within 1e-4 (max abs; 2e-5 for the
    norm of the difference, relative), and the same validation and test metrics. Measured: losses
    within 5e-8 relative, weights within 1.5e-5 (2.6e-6 relative norm: AdamW's normalised update
    magnifies round-off on a parameter whose gradient is near 0), metrics equal. A loss normalised per
    rank (each rank's mean, averaged by DDP) instead of by the step's targets moved the weights by 0.07
    (0.2 relative norm) and the test NDCG@10 by 0.005-0.006 here, so this test sees it.
    The histories (max_len 12) are longer than the window, so closed segments are trained, and the
    batch size leaves a last step of one row, so one rank runs a padded step."""
    two = two_process_runs[case]
    one = run_worker(_exact_spec(*EXACT_CASES[case]), None)
    assert two["weights_norm_per_rank"][0] == two["weights_norm_per_rank"][1]  # the ranks stayed in step
    assert len(two["history"]) == len(one["history"]) == 3
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["valid_NDCG@10"] == pytest.approx(a["valid_NDCG@10"], abs=1e-6)
    w1, w2 = np.array(one["weights"]), np.array(two["weights"])
    assert np.abs(w2 - w1).max() <= 1e-4 and np.linalg.norm(w2 - w1) <= 2e-5 * np.linalg.norm(w1)
    for name in ("NDCG@10", "HR@10", "MRR", "Coverage@10"):
        assert two["metrics"][name] == pytest.approx(one["metrics"][name], abs=1e-6)
    assert two["best_epoch"] == one["best_epoch"]


NDCG_TOLERANCE = 0.03  # see the docstring of the test below
LOSS_RELATIVE_TOLERANCE = 0.01  # likewise


@pytest.mark.slow
def test_cli_ddp_run_matches_single_process_and_its_model_loads(data_dir, tmp_path, capsys):
    """The CLI under torchrun (2 processes) against the CLI in one process, same seed: test NDCG@10
    within NDCG_TOLERANCE, per-epoch training loss within LOSS_RELATIVE_TOLERANCE; its folder is an
    ordinary model folder (loads with the registry, evaluates to the reported metrics, serves
    recommendations) that says it was trained by 2 processes, and only rank 0 printed.

    Tolerances of the CLI run with the default dropout (0.3), measured on this fixture (60 users, msli
    K=2, d=16, 1 layer, 2 epochs, seeds 0-5): |test NDCG@10(2 processes) - NDCG@10(1 process)| was 0.004
    to 0.011 (the single-process NDCG@10 itself ranges over 0.459-0.490 across those seeds), and the
    per-epoch mean training loss differed by at most 0.17% relative; with the random item-table start
    the models had before the co-occurrence start, up to 0.021 and 0.19%. Why they differ at all:
    dropout draws different masks in 2 processes (each rank masks its own rows from its own stream: a
    different but equally likely run), and the gradients' float sums run in another order (1 thread per
    process here, against 2 in the single process). The test allows about 3x the worst difference seen
    with the current model for NDCG@10 (0.03) and 5x for the loss (1%), so another machine's thread
    count does not make it flake. It checks that the 2-process run is a run of the same model and
    quality (on this small fixture the co-occurrence start alone scores 0.45, so NDCG@10 cannot tell
    much more); the arithmetic of a DDP step is checked exactly by the dropout-free test above, which a
    wrong loss normalisation fails."""
    flags = [*CLI_FLAGS, "--seed", "2"]
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    assert main(["train", "--data", str(data_dir), *flags, "--out", str(one_dir), "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    argv = ["train", "--data", str(data_dir), *flags, "--out", str(two_dir), "--json", "--ddp"]
    proc = _torchrun("-m", "msli_core", *argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout)  # one JSON document: only rank 0 prints
    assert two["processes"] == 2 and one["processes"] == 1
    assert two["users"] == one["users"] > 0 and two["epochs"] == one["epochs"] == 2
    assert abs(two["NDCG@10"] - one["NDCG@10"]) <= NDCG_TOLERANCE
    history = [json.loads((d / "config.json").read_text())["training"]["history"] for d in (one_dir, two_dir)]
    for a, b in zip(*history, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=LOSS_RELATIVE_TOLERANCE)

    # one folder, as any msli train writes it, and it says how it was trained
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    assert sorted(p.name for p in two_dir.iterdir()) == ["config.json", "model.safetensors"]
    data = load_dataset(str(data_dir))
    loaded = load_model(two_dir, data)
    assert loaded.kind == "msli" and loaded.config.segments == 2
    assert loaded.training["processes"] == 2
    assert loaded.training["distributed"] == {"backend": "gloo", "world_size": 2}
    again = evaluate(loaded, data)  # the saved weights give the metrics the run reported
    assert again["NDCG@10"] == pytest.approx(two["NDCG@10"], abs=1e-6)
    engine = InferenceEngine(loaded.model)
    engine.offline()
    engine.load_history("u", data.sequences[1])
    rec = engine.recommend("u", top_k=5)
    assert len(rec.items) == 5 and not set(rec.items.tolist()) & set(data.sequences[1].tolist())
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["evaluate", "--data", str(data_dir), "--model", str(two_dir)]) == 0
