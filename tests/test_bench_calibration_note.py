"""`msli bench --no-calibrate` reads this machine's stored calibration (calibrate.hardware_here); when
msli's own file there is older or damaged it is measured again and replaced, and the bench says so on
stderr as ``msli: note: ...``, as `msli costmodel calibrate` does (before, it said nothing).

The cache is under tmp_path (MSLI_CACHE_DIR), never the user's; the seconds-long measurement is replaced
by fixed constants; the sweep itself is real and tiny (one model, one shape, a few repeats).
"""

from __future__ import annotations

import json

import pytest
from hardware_fixture import made_up_hardware

from msli_core.cli import main
from msli_core.serving import calibrate
from msli_core.serving import costmodel as cm

HW = made_up_hardware("stored")
MEASURED = cm.Hardware(**{**HW.__dict__, "name": "measured now"})
TINY = [
    "bench", "--no-calibrate", "--segments", "2", "--candidates", "20", "--history", "6", "--repeats", "2",
    "--budget-s", "0.01", "--dim", "8", "--layers", "1", "--models", "msli", "--backend", "torch",
    "--request-candidates", "none", "--encoder-sizes", "none", "--extrapolate-sizes", "none",
    "--ann", "none", "--json",
]  # fmt: skip


@pytest.fixture(autouse=True)
def measured(tmp_path, monkeypatch) -> list[int]:
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    calls: list[int] = []
    monkeypatch.setattr(calibrate, "measure", lambda *_, **__: calls.append(1) or MEASURED)
    return calls


def _run(capsys) -> tuple[int, list[str], list[str], str]:
    """(exit code, the `msli: note:` sentences, the `msli: error:` sentences, stdout)."""
    code = main(TINY)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    said = {
        kind: [x.removeprefix(f"msli: {kind}: ") for x in err.splitlines() if x.startswith(f"msli: {kind}: ")]
        for kind in ("note", "error")
    }
    return code, said["note"], said["error"], out


@pytest.mark.parametrize(
    "stored",
    [
        json.dumps({**HW.as_dict(), "bandwidth": 1e-300}),  # a constant out of range: damaged
        json.dumps({k: v for k, v in HW.as_dict().items() if k != "gather_bandwidth"}),  # a field missing
        json.dumps(HW.as_dict(), indent=2)[:60],  # JSON cut off, at msli's own path: damaged
        json.dumps({**HW.as_dict(), "format": cm.FORMAT - 1}),  # an older msli's format
    ],
    ids=["a constant out of range", "a field missing", "truncated", "older format"],
)
def test_a_file_measured_again_is_a_note_on_stderr(capsys, measured, stored):
    path = cm.calibration_path()
    path.write_text(stored)
    note = cm.classify_calibration().note
    assert note and note.endswith("so msli measures this machine again and replaces it.")
    code, notes, errors, out = _run(capsys)
    assert (code, notes, errors) == (0, [note], [])
    assert measured == [1] and cm.load_hardware() == MEASURED  # measured again and replaced
    assert json.loads(out)  # the sweep's rows


def test_a_usable_or_missing_file_says_nothing_and_a_foreign_one_is_refused(capsys, measured):
    code, notes, errors, _ = _run(capsys)  # no file: measured and stored, nothing replaced to say
    assert (code, notes, errors) == (0, [], []) and measured == [1] and cm.load_hardware() == MEASURED
    code, notes, errors, _ = _run(capsys)  # the stored file is read: nothing measured
    assert (code, notes, errors) == (0, [], []) and measured == [1]
    cm.calibration_path().write_text('{"mine": 1}')  # a file msli did not write: refused, kept
    code, notes, errors, _ = _run(capsys)
    assert (code, notes) == (2, []) and errors == [cm.classify_calibration().refusal] and measured == [1]
    assert cm.calibration_path().read_text() == '{"mine": 1}'
