"""Bad command-line input (issue 9 §2, §4, §5): every case ends with exit status 2 and one
``msli: error:`` sentence, never a traceback, before any work starts, and the user's files are untouched.

Table-driven over argv lists, plus hypothesis over numeric extremes of ``train`` and ``bench``: a value
is either refused with a sentence or lies within msli_core.limits. Everything here fails fast (no
training, no timing), so the file runs in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msli_core import limits
from msli_core.cli import build_parser, main
from msli_core.commands.latency import settings_from_args
from msli_core.commands.model import check_train_args
from msli_core.errors import MsliError

TRAIN = ["train", "--data", "{data}", "--model", "msli", "--out", "{new}"]
QUALITY = ["quality", "--data", "{data}", "--out", "{new}"]
SYNTH = ["data", "synth", "--out", "{new}"]
PREDICT = ["costmodel", "predict"]
MANY = ",".join(str(k) for k in range(1, 101))

CASES = [
    # ---- train: arguments at their extremes (refused before the data is read)
    ([*TRAIN, "--segments", "1e9"], "--segments"),
    ([*TRAIN, "--segments", "0"], "--segments"),
    ([*TRAIN, "--segments", "-1"], "--segments"),
    ([*TRAIN, "--segment-len", "1e9"], "--segment-len"),
    ([*TRAIN, "--segment-len", "0"], "--segment-len"),
    ([*TRAIN, "--segments", "1000", "--segment-len", "1000"], "MAX_HISTORY"),
    ([*TRAIN, "--dim", "3"], "not a multiple"),
    ([*TRAIN, "--dim", "1e9"], "--dim"),
    ([*TRAIN, "--dim", "0"], "--dim"),
    ([*TRAIN, "--dim", "nan"], "--dim"),
    ([*TRAIN, "--dim", "64.5"], "--dim"),
    ([*TRAIN, "--layers", "-1"], "--layers"),
    ([*TRAIN, "--layers", "1e6"], "--layers"),
    ([*TRAIN, "--epochs", "-1"], "--epochs"),
    ([*TRAIN, "--epochs", "1e12"], "--epochs"),
    ([*TRAIN, "--lr", "nan"], "--lr"),
    ([*TRAIN, "--lr", "inf"], "--lr"),
    ([*TRAIN, "--lr", "-inf"], "--lr"),
    ([*TRAIN, "--lr", "0"], "--lr"),
    ([*TRAIN, "--lr", "-0.1"], "--lr"),
    ([*TRAIN, "--lr", "fast"], "--lr"),
    ([*TRAIN, "--state-dropout", "1"], "--state-dropout"),
    ([*TRAIN, "--state-dropout", "-0.1"], "--state-dropout"),
    ([*TRAIN, "--state-dropout", "nan"], "--state-dropout"),
    ([*TRAIN, "--state-dropout", "half"], "--state-dropout"),
    ([*TRAIN, "--seed", "-1"], "--seed"),
    ([*TRAIN, "--seed", "1e30"], "--seed"),
    ([*TRAIN, "--seed", str(2**64)], "--seed"),
    # ---- train: --out that must not be replaced (refused before the data is read)
    (["train", "--data", "{data}", "--model", "msli", "--out", "{docs}"], "did not create"),
    (["train", "--data", "{data}", "--model", "msli", "--out", "{data}"], "--data"),
    (["train", "--data", "{data}", "--model", "msli", "--out", "{data}/model"], "--data"),
    (["train", "--data", "{data}/ratings.csv", "--model", "msli", "--out", "{data}"], "--data"),
    (["train", "--data", "{data}", "--model", "msli", "--out", "."], "current folder"),
    (["train", "--data", "{data}", "--model", "msli", "--out", ".."], "above the current"),
    (["train", "--data", "{data}", "--model", "msli", "--out", "{home}"], "home folder"),
    (["train", "--data", "{data}", "--model", "msli", "--out", "/"], "root folder"),
    (["train", "--data", "{data}", "--model", "msli", "--out", "{link}"], "symbolic link"),
    (["train", "--data", "{data}", "--model", "msli", "--out", "{file}"], "not a folder"),
    (["train", "--data", "{data}", "--model", "msli", "--out", "{quality}"], "not a model output"),
    # ---- quality, evaluate, explain
    ([*QUALITY, "--segments", "0,1"], "--segments"),
    ([*QUALITY, "--segments", "1,1e9"], "--segments"),
    ([*QUALITY, "--segments", "1,2048"], "--segments"),
    ([*QUALITY, "--segments", MANY], "--segments"),
    ([*QUALITY, "--epochs", "nan"], "--epochs"),
    ([*QUALITY, "--seed", "-1"], "--seed"),
    (["quality", "--data", "{data}", "--out", "{docs}"], "did not create"),
    (["quality", "--data", "{data}", "--out", "{data}"], "--data"),
    (["quality", "--data", "{data}", "--out", "{model}"], "not a quality output"),
    (["evaluate", "--data", "{data}", "--model", "{model}", "--cascade-top", "0"], "--cascade-top"),
    (["evaluate", "--data", "{data}", "--model", "{model}", "--cascade-top", "1e12"], "--cascade-top"),
    (["evaluate", "--data", "{data}", "--model", "{model}", "--cascade-top", "10"], "needs --cascade-from"),
    (["explain", "--data", "{data}", "--model", "{model}", "--user", "1", "--top", "0"], "--top"),
    (["explain", "--data", "{data}", "--model", "{model}", "--user", "1", "--top", "1e9"], "--top"),
    # ---- bench: refused before anything is timed
    (["bench", "--dim", "1000000"], "--dim"),
    (["bench", "--dim", "3"], "not a multiple"),
    (["bench", "--dim", "0"], "--dim"),
    (["bench", "--layers", "-1"], "--layers"),
    (["bench", "--layers", "1e9"], "--layers"),
    (["bench", "--budget-s", "inf"], "--budget-s"),
    (["bench", "--budget-s", "nan"], "--budget-s"),
    (["bench", "--budget-s", "0"], "--budget-s"),
    (["bench", "--budget-s", "-1"], "--budget-s"),
    (["bench", "--budget-s", "1e9"], "--budget-s"),
    (["bench", "--cross-budget-s", "inf"], "--cross-budget-s"),
    (["bench", "--candidates", "1e7"], "--candidates"),
    (["bench", "--candidates", "0"], "--candidates"),
    (["bench", "--candidates", "1e400"], "--candidates"),
    (["bench", "--candidates", MANY], "--candidates"),
    (["bench", "--candidates", "5000000", "--dim", "4096"], "GiB"),
    (["bench", "--history", "1e9"], "--history"),
    (["bench", "--segments", "1e9"], "--segments"),
    (["bench", "--segments", "-3"], "--segments"),
    (["bench", "--threads", "100000"], "--threads"),
    (["bench", "--threads", "0"], "--threads"),
    (["bench", "--threads", "nan"], "--threads"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--repeats", "1e12"], "--repeats"),
    (["bench", "--passes", "6"], "--passes"),
    (["bench", "--out", "{docs}"], "did not create"),
    (["bench", "--out", "{file}"], "not a folder"),
    (["bench", "--out", "."], "current folder"),
    (["bench", "--out", "{home}"], "home folder"),
    (["bench", "--model", "{model}", "--out", "{model}"], "--model"),
    # ---- export: every check before the first file
    (["export", "--model", "{model}", "--out", "{new}.txt"], ".onnx"),
    (["export", "--model", "{model}", "--out", "{docs}"], ".onnx"),
    (["export", "--model", "{model}", "--out", "{onnx_dir}"], "folder"),
    (["export", "--model", "{model}", "--out", "{new}/m.onnx", "--data", "{data}"], "--int8"),
    # ---- cost model
    ([*PREDICT, "--dim", "1e9"], "--dim"),
    ([*PREDICT, "--dim", "3"], "not a multiple"),
    ([*PREDICT, "--heads", "0"], "--heads"),
    ([*PREDICT, "--candidates", "0"], "--candidates"),
    ([*PREDICT, "--history", "inf"], "--history"),
    ([*PREDICT, "--dtype-bytes", "16"], "--dtype-bytes"),
    (["costmodel", "calibrate", "--threads", "100000"], "--threads"),
    (["costmodel", "calibrate", "--out", "{docs}"], "is a folder"),
    (["costmodel", "calibrate", "--out", "{file}"], "did not write"),  # a user's file is never overwritten
    (["costmodel", "calibrate", "--out", "{docs}/thesis.txt"], "did not write"),
    (["costmodel", "calibrate", "--threads", "nan"], "one whole number like 4"),  # not "a comma list"
    (["bench", "--threads", "nan"], "one whole number like 4"),
    (["bench", "--passes", "0"], "one whole number of at least 1"),
    (["bench", "--history", "100000"], "--history"),  # the memory sentence names the flag to lower
    # ---- data synth
    ([*SYNTH, "--users", "2000000"], "--users"),
    ([*SYNTH, "--items", str(10**8)], "--items"),
    ([*SYNTH, "--interactions", str(10**9)], "--interactions"),
    ([*SYNTH, "--interests", str(10**9)], "--interests"),
    ([*SYNTH, "--noise", "nan"], "--noise"),
    ([*SYNTH, "--noise", "inf"], "--noise"),
    ([*SYNTH, "--seed", "-1"], "--seed"),
    ([*SYNTH, "--seed", str(2**40)], "--seed"),
    (["data", "synth", "--out", "{docs}"], "did not create"),
    (["data", "synth", "--out", "{bench}"], "not a synth output"),
    (["data", "synth", "--out", "."], "current folder"),
    (["data", "synth", "--out", "{file}"], "not a folder"),
]


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a checksum of its contents (links and folders by kind)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link->" + str(path.readlink())
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A user's folders: documents, a dataset, a home, a working folder, earlier msli outputs."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.txt").write_text("four years of work\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("export PS1='$ '\n")
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "notes.md").write_text("todo\n")
    (tmp_path / "file.txt").write_text("a plain file\n")
    (tmp_path / "link").symlink_to(docs)
    model = tmp_path / "model"  # an earlier `msli train` output (recognised by its config.json)
    model.mkdir()
    (model / "config.json").write_text('{"format": "msli-model/2", "kind": "msli"}')
    (model / "model.safetensors").write_bytes(b"\0" * 8)
    for kind in ("quality", "bench"):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / f"{kind}.csv").write_text("a\n1\n")
        (folder / ".msli-output.json").write_text(
            f'{{"tool": "msli", "kind": "{kind}", "files": ["{kind}.csv"]}}'
        )
    (tmp_path / "onnx_dir.onnx").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(cwd)
    names = {
        "docs": docs, "data": data, "home": home, "file": tmp_path / "file.txt", "link": tmp_path / "link",
        "model": model, "quality": tmp_path / "quality", "bench": tmp_path / "bench",
        "onnx_dir": tmp_path / "onnx_dir.onnx", "new": tmp_path / "new",
    }  # fmt: skip
    return tmp_path, {k: str(v) for k, v in names.items()}


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
        usage = False
    except SystemExit as exc:  # argparse's usage error: usage lines, then one `msli: error:` line
        code = exc.code
        usage = True
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("msli: error: "), err
    assert sum(line.startswith("msli: error") for line in lines) == 1, err
    if not usage:
        assert len(lines) == 1, err
    return code, lines[-1]


@pytest.mark.parametrize(("argv", "needle"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_sentence_and_touches_nothing(world, capsys, argv, needle):
    root, names = world
    before = _tree(root)
    argv = [a.format(**names) for a in argv]
    code, message = run_cli(argv, capsys)
    assert code == 2
    assert needle in message, message
    assert _tree(root) == before  # nothing written, replaced or deleted


def test_export_int8_with_a_model_for_other_data_writes_nothing(world, capsys, sample_data_dir):
    from msli_core.models.msli import MSLIConfig, MSLIModel
    from msli_core.models.registry import save_model

    root, _ = world

    class OtherData:  # the few fields save_model records about the training data
        fingerprint, source, format, n_users, n_items = "f" * 16, "synthetic", "synthetic", 3, 30

    model = MSLIModel(MSLIConfig(n_items=30, n_genres=2, dim=8, segments=2, segment_len=3))
    model.kind = "msli"
    save_model(model, root / "m8", data=OtherData())
    before = _tree(root)
    out = root / "onnx" / "m.onnx"
    argv = [
        "export",
        "--model",
        str(root / "m8"),
        "--out",
        str(out),
        "--int8",
        "--data",
        str(sample_data_dir),
    ]
    code, _ = run_cli(argv, capsys)
    assert code == 2
    assert _tree(root) == before and not out.parent.exists()


# ---- hypothesis: numeric extremes of train and bench arguments ----------------------------------------
EXTREMES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["nan", "inf", "-inf", "1e9", "1e400", "-0", "0", "1", "2", "3", "4096", "0x10", "", " "]
    ),
)
TRAIN_LIMITS = {
    "--segments": (1, limits.scaled(limits.MAX_SEGMENTS)),
    "--segment-len": (1, limits.scaled(limits.MAX_SEGMENT_LEN)),
    "--dim": (1, limits.scaled(limits.MAX_DIM)),
    "--layers": (0, limits.scaled(limits.MAX_LAYERS)),
    "--epochs": (0, limits.scaled(limits.MAX_EPOCHS)),
    "--seed": (0, limits.MAX_SEED),
    "--lr": (0, math.inf),
    "--state-dropout": (0, math.nextafter(1.0, 0.0)),
}
QUIET = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _parse(argv: list[str]) -> argparse.Namespace | None:
    """Parsed arguments, or None when argparse refused them (exit 2 with a `msli: error:` line)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2 and "msli: error: " in err.getvalue() and "Traceback" not in err.getvalue()
        return None


@QUIET
@given(flag=st.sampled_from(sorted(TRAIN_LIMITS)), value=EXTREMES)
def test_train_arguments_are_refused_or_within_the_limits(tmp_path, flag, value):
    argv = ["train", "--data", str(tmp_path / "data"), "--model", "msli", "--out", str(tmp_path / "m")]
    args = _parse([*argv, f"{flag}={value}"])
    if args is None:
        return
    parsed = getattr(args, flag[2:].replace("-", "_"))
    lo, hi = TRAIN_LIMITS[flag]
    assert math.isfinite(parsed) and lo <= parsed <= hi and (flag != "--lr" or parsed > 0)
    try:
        config = check_train_args(args)
    except MsliError as err:
        assert "\n" not in str(err)
        return
    assert config.get("dim", 2) % 2 == 0


BENCH_FLAGS = (
    "--segments", "--candidates", "--history", "--threads", "--repeats", "--budget-s", "--cross-budget-s",
    "--passes", "--dim", "--layers",
)  # fmt: skip


@QUIET
@given(flag=st.sampled_from(BENCH_FLAGS), value=EXTREMES)
def test_bench_arguments_are_refused_or_within_the_limits(flag, value):
    args = _parse(["bench", f"{flag}={value}"])
    if args is None:
        return
    try:
        s = settings_from_args(args)
    except MsliError as err:
        assert "\n" not in str(err) and str(err).strip()
        return
    assert 1 <= s.threads <= limits.max_threads() and 1 <= s.dim <= limits.scaled(limits.MAX_DIM)
    assert s.dim % s.heads == 0 and 0 <= s.layers <= limits.scaled(limits.MAX_LAYERS)
    assert max(s.candidates) <= limits.scaled(limits.MAX_CANDIDATES) and min(s.candidates) >= 1
    assert max(s.segments) <= limits.scaled(limits.MAX_SEGMENTS) and max(s.history) <= limits.scaled(
        limits.MAX_HISTORY
    )
    for budget in (s.budget_s, s.cross_budget_s):
        assert math.isfinite(budget) and 0 < budget <= limits.MAX_BUDGET_S
    assert 1 <= s.passes <= 5 and 1 <= s.repeats <= limits.scaled(limits.MAX_REPEATS)


def test_export_never_overwrites_a_file_that_is_not_onnx(world, capsys):
    root, names = world
    user = Path(names["docs"]) / "mine.onnx"
    user.write_text("my notes, named .onnx\n")
    before = _tree(root)
    code, message = run_cli(["export", "--model", names["model"], "--out", str(user)], capsys)
    assert code == 2 and "not an ONNX model" in message, message
    assert _tree(root) == before
