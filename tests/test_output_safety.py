"""The CLI never overwrites what it did not write, refuses implausible calibration constants, and says
truly why an output cannot be created (exit 2, one `msli: error:` line, nothing written).

- ``msli export`` replaces an ONNX file only when it carries msli's mark (a user's model is kept);
- ``msli costmodel calibrate`` and ``msli bench --save-calibration`` replace the calibration file under
  MSLI_CACHE_DIR only when it is a calibration file msli wrote;
- ``msli costmodel predict`` never uses a stored calibration with a value out of its plausible range (msli's
  own file is measured again and replaced, with a note);
- ``--out /proc/x`` (and MSLI_CACHE_DIR=/proc/x) names /proc as not writable, not as missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from hardware_fixture import made_up_hardware

from msli_core.cli import main
from msli_core.serving import calibrate, costmodel
from msli_core.serving import onnx_export as ox

HW = made_up_hardware("round")
HAS_PROC = os.path.isdir("/proc/self")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(calibrate, "measure", lambda *_, **__: HW)  # no seconds-long micro-benchmarks


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("msli: error: ")]
    assert "Traceback" not in err and len(lines) <= 1, err
    return code, lines[0].removeprefix("msli: error: ") if lines else ""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, sample_data_dir) -> Path:
    from msli_core.data import load_dataset
    from msli_core.models.registry import build_model, save_model

    data = load_dataset(sample_data_dir)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("saved") / "model"
    save_model(build_model("msli", data, dim=8, segments=2, layers=1, max_len=6), folder, data=data)
    return folder


def _users_model(path: Path) -> bytes:
    from onnx import TensorProto, helper, save

    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y"))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "mine", [x], [y])
    save(helper.make_model(graph), str(path))
    return path.read_bytes()


@pytest.mark.parametrize("sibling", ["", ".segment_encoder", ".open_encoder", ".catalog.int8"])
def test_export_keeps_a_users_onnx_model(tmp_path, capsys, model_dir, sibling):
    out = tmp_path / "FILE.onnx"
    theirs = tmp_path / f"FILE{sibling}.onnx"
    mine = _users_model(theirs)
    code, message = run_cli(["export", "--model", str(model_dir), "--out", str(out), "--int8"], capsys)
    assert code == 2
    assert message == (
        f"{theirs} is an ONNX model without the mark msli export writes into its files, so msli will not "
        "replace it; choose another --out or move that file away."
    )
    assert theirs.read_bytes() == mine and sorted(p.name for p in tmp_path.iterdir()) == [theirs.name]


def test_export_replaces_its_own_earlier_export(tmp_path, capsys, model_dir):
    out = tmp_path / "FILE.onnx"
    assert run_cli(["export", "--model", str(model_dir), "--out", str(out)], capsys) == (0, "")
    assert run_cli(["export", "--model", str(model_dir), "--out", str(out)], capsys) == (0, "")
    assert all(ox.carries_mark(p) for p in tmp_path.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "FILE.onnx",
        "FILE.open_encoder.onnx",
        "FILE.segment_encoder.onnx",
    ]


@pytest.mark.parametrize("text", ['{"mine":1}', "notes"])
def test_calibrate_keeps_a_foreign_file_in_the_cache(tmp_path, capsys, text):
    path = tmp_path / "cache" / costmodel.CALIBRATION_FILE
    path.parent.mkdir()
    path.write_text(text)
    code, message = run_cli(["costmodel", "calibrate"], capsys)
    assert code == 2 and message.startswith(f"{path} (the calibration file under MSLI_CACHE_DIR) is a file")
    assert message.endswith("move that file away or set MSLI_CACHE_DIR to another folder.")
    assert path.read_text() == text
    path.write_text(json.dumps({**HW.as_dict(), "bandwidth": 1e-300}))  # msli's, tampered: replaced
    assert run_cli(["costmodel", "calibrate"], capsys) == (0, "")
    assert costmodel.load_hardware() == HW


def test_a_foreign_calibration_file_is_refused_before_any_measurement(tmp_path, capsys, monkeypatch):
    from msli_core.serving import bench, calibrate

    def measured(*_args, **_kwargs):
        raise AssertionError("the refusal must come before the measurement")

    monkeypatch.setattr(calibrate, "calibrate", measured)
    monkeypatch.setattr(bench, "run_bench", measured)
    path = tmp_path / "cache" / costmodel.CALIBRATION_FILE
    path.parent.mkdir()
    path.write_text('{"mine":1}')
    assert run_cli(["costmodel", "calibrate"], capsys)[0] == 2
    assert run_cli(["costmodel", "calibrate", "--out", str(path)], capsys)[0] == 2
    assert run_cli(["bench", "--save-calibration", "--no-calibrate"], capsys)[0] == 2  # the flag conflict
    assert run_cli(["bench", "--save-calibration", "--ann", "none"], capsys)[0] == 2
    assert path.read_text() == '{"mine":1}'


def test_bench_save_calibration_keeps_a_foreign_file_in_the_cache(tmp_path, capsys):
    path = tmp_path / "cache" / costmodel.CALIBRATION_FILE
    path.parent.mkdir()
    path.write_text('{"mine":1}')
    tiny = ["--segments", "1", "--candidates", "10", "--history", "6", "--repeats", "3", "--budget-s", "0.01",
            "--cross-budget-s", "0.5", "--dim", "8", "--layers", "1", "--request-candidates", "5",
            "--ann", "none", "--passes", "1", "--models", "msli"]  # fmt: skip
    code, message = run_cli(["bench", *tiny, "--save-calibration"], capsys)
    assert code == 2 and "MSLI_CACHE_DIR" in message and "msli did not write" in message
    assert path.read_text() == '{"mine":1}'


@pytest.mark.parametrize(("field", "value"), [("call_s", {"torch": 1e300}), ("bandwidth", 1e-300)])
def test_predict_never_uses_a_tampered_calibration(tmp_path, capsys, field, value):
    """msli's own file with a constant out of range is measured again and replaced, with a note naming
    the field (as `msli costmodel calibrate` would); the prediction uses the new constants."""
    path = tmp_path / "cache" / costmodel.CALIBRATION_FILE
    costmodel.save_hardware(HW)
    path.write_text(json.dumps({**HW.as_dict(), field: value}))
    assert main(["costmodel", "predict", "--model", "msli", "--json"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("msli: note: ")]
    assert (
        len(notes) == 1 and f"{path} (the calibration file under MSLI_CACHE_DIR) is a calibration" in notes[0]
    )
    assert f"({field}" in notes[0] and notes[0].endswith(
        "so msli measures this machine again and replaces it."
    )
    assert costmodel.load_hardware() == HW


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc")
@pytest.mark.parametrize(
    ("argv", "target", "fix"),
    [
        (["train", "--data", "{data}", "--model", "popularity", "--out", "/proc/x"], "/proc/x", "--out"),
        (["quality", "--data", "{data}", "--out", "/proc/x"], "/proc/x", "--out"),
        (["bench", "--out", "/proc/x"], "/proc/x", "--out"),
        (["export", "--model", "{model}", "--out", "/proc/x.onnx"], "/proc/x.onnx", "--out"),
        (["costmodel", "calibrate", "--out", "/proc/x.json"], "/proc/x.json", "--out"),
    ],
)
def test_an_unwritable_out_names_the_folder_that_refuses(
    capsys, monkeypatch, sample_data_dir, model_dir, argv, target, fix
):
    from msli_core.serving import bench

    monkeypatch.setattr(bench, "run_bench", lambda *_, **__: pytest.fail("benchmarked before the check"))
    argv = [a.format(data=sample_data_dir, model=model_dir) for a in argv]
    code, message = run_cli(argv, capsys)
    assert code == 2 and message.startswith(f"Cannot create {target}: /proc is not writable (")
    assert message.endswith(f"; choose a writable {fix} path.")


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc")
def test_an_unwritable_msli_cache_dir_is_named(capsys, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", "/proc/x")
    code, message = run_cli(["costmodel", "calibrate"], capsys)
    assert code == 2 and message.startswith("Cannot create /proc/x/hardware.json: /proc is not writable (")
    assert message.endswith("; MSLI_CACHE_DIR chose that path, so set MSLI_CACHE_DIR to a writable folder.")


def test_a_path_behind_a_folder_that_refuses_entry_is_a_sentence(tmp_path, monkeypatch):
    """As a non-root user, Path.exists() under a folder without search permission raises PermissionError
    (Python 3.11); simulated here, since the tests may run as root."""
    from pathlib import Path

    from msli_core import outputs, workspace
    from msli_core.errors import MsliError

    locked = tmp_path / "locked"
    locked.mkdir()
    real = {name: getattr(Path, name) for name in ("exists", "is_symlink", "is_file", "is_dir")}

    def refusing(name):
        def check(self):
            if locked in self.parents:
                raise PermissionError(13, "Permission denied", str(self))
            return real[name](self)

        return check

    for name in real:
        monkeypatch.setattr(Path, name, refusing(name))
    assert outputs.nearest_existing(locked / "ws" / "models") == locked  # the folder that refuses
    problem = workspace.problem(locked / "ws")
    assert problem.startswith(f"The workspace {locked / 'ws'} cannot be read (Permission denied)")
    with pytest.raises(MsliError, match="cannot be checked \\(Permission denied\\)"):
        costmodel.check_calibration_target(locked / "hw.json")
