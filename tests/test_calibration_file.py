"""One rule for "is this a calibration file msli wrote" (costmodel.classify_calibration), and the same
sentence for the same file from every entry point: is_calibration_file, check_calibration_target,
calibrate.hardware_here, `msli costmodel calibrate`, `msli bench --save-calibration` and
`msli costmodel predict` (which calibrates on first use).

Every test keeps the cache under tmp_path (MSLI_CACHE_DIR), never the user's, and replaces the
seconds-long measurement with constants of its own (MEASURED), so "measured again" is visible.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hardware_fixture import made_up_hardware

from msli_core.cli import main
from msli_core.errors import MsliError
from msli_core.serving import bench, calibrate
from msli_core.serving import costmodel as cm

S = cm.CalibrationState
HW = made_up_hardware("stored")
MEASURED = cm.Hardware(**{**HW.__dict__, "name": "measured now"})
SAVED = json.dumps(HW.as_dict(), indent=2)  # what save_hardware writes

# name -> (the file's text, its class)
FILES = {
    "missing": (None, S.MISSING),
    "current": (SAVED, S.CURRENT),
    "first format": (
        json.dumps({"name": "old", "flops": 1e11, "bandwidth": 1e10, "overhead_s": {"torch": 1e-6}}),
        S.OLDER,
    ),
    "previous format": (json.dumps({**HW.as_dict(), "format": cm.FORMAT - 1}), S.OLDER),
    "newer format": (json.dumps({**HW.as_dict(), "format": cm.FORMAT + 1}), S.NEWER),
    "a constant out of range": (json.dumps({**HW.as_dict(), "bandwidth": 1e-300}), S.DAMAGED),
    "a field missing": (
        json.dumps({k: v for k, v in HW.as_dict().items() if k != "gather_bandwidth"}),
        S.DAMAGED,
    ),
    "a format no msli writes": (json.dumps({**HW.as_dict(), "format": "3"}), S.DAMAGED),
    "truncated": (SAVED[:60], S.DAMAGED),  # at msli's own path, starting as msli's JSON does
    "a user's JSON": ('{"mine": 1}', S.FOREIGN),
    "a user's text": ("my notes\nline 2", S.FOREIGN),
    "empty": ("", S.FOREIGN),
    "a JSON list": ("[1, 2]", S.FOREIGN),
    "a newer-looking JSON without msli's fields": ('{"format": 99}', S.FOREIGN),
}
MSLI_S = {S.CURRENT, S.OLDER, S.DAMAGED, S.NEWER}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    measured = []
    monkeypatch.setattr(calibrate, "measure", lambda *_, **__: measured.append(1) or MEASURED)
    return measured


def _put(text: str | None) -> Path:
    path = cm.calibration_path()
    if text is not None:
        path.write_text(text)
    return path


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, the `msli: error:` sentence, the `msli: note:` sentence)."""
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    found = {}
    for kind in ("error", "note"):
        lines = [
            x.removeprefix(f"msli: {kind}: ") for x in err.splitlines() if x.startswith(f"msli: {kind}: ")
        ]
        assert len(lines) <= 1, err
        found[kind] = lines[0] if lines else ""
    return code, found["error"], found["note"]


def _stored() -> str | None:
    path = cm.calibration_path()
    return path.read_text() if path.exists() else None


@pytest.mark.parametrize("name", FILES)
def test_each_file_has_one_class(name):
    text, state = FILES[name]
    path = _put(text)
    found = cm.classify_calibration()
    assert found.state is state and found.path == path
    assert cm.is_calibration_file(path) is (state in MSLI_S)
    assert (found.hardware == HW) is (state is S.CURRENT)
    assert (found.note is not None) is (state in (S.OLDER, S.DAMAGED))
    assert (found.refusal is not None) is (state in (S.NEWER, S.FOREIGN))
    for sentence in filter(None, (found.note, found.refusal)):
        assert (
            sentence.startswith(f"{path} (the calibration file under MSLI_CACHE_DIR) ")
            and "\n" not in sentence
        )


@pytest.mark.parametrize("name", FILES)
def test_every_entry_point_says_the_same_sentence_and_does_the_same_thing(name, capsys, monkeypatch, _cache):
    text, state = FILES[name]
    found = cm.classify_calibration(None) if _put(text) else None
    refusal, note = found.refusal, found.note
    replaced = json.dumps(MEASURED.as_dict(), indent=2)

    # check_calibration_target: a refusal is the exception, a note comes with the classification
    if refusal:
        with pytest.raises(MsliError) as err:
            cm.check_calibration_target()
        assert str(err.value) == refusal
    else:
        assert cm.check_calibration_target().note == note

    # hardware_here: a usable file is read; missing, older and damaged are measured and replaced (noted)
    notes = []
    if refusal:
        with pytest.raises(MsliError) as err:
            calibrate.hardware_here(note=notes.append)
        assert str(err.value) == refusal and _stored() == text and not _cache
    else:
        got = calibrate.hardware_here(note=notes.append)
        assert got == (HW if state is S.CURRENT else MEASURED)
        assert _stored() == (text if state is S.CURRENT else replaced)
    assert notes == ([note] if note else [])

    # msli costmodel predict: the same, through the CLI
    _put(text) if text is not None else cm.calibration_path().unlink(missing_ok=True)
    code, error, said = _cli(["costmodel", "predict", "--model", "msli", "--json"], capsys)
    assert (code, error, said) == ((2, refusal, "") if refusal else (0, "", note or ""))
    assert _stored() == (text if refusal or state is S.CURRENT else replaced)

    # msli costmodel calibrate and msli bench --save-calibration: refuse, or replace (saying so)
    run = SimpleNamespace(rows=[], meta={"hardware": MEASURED.as_dict()})
    monkeypatch.setattr(bench, "run_bench", lambda *_, **__: run)
    for argv in (["costmodel", "calibrate", "--json"], ["bench", "--save-calibration", "--json"]):
        _put(text) if text is not None else cm.calibration_path().unlink(missing_ok=True)
        _cache.clear()
        code, error, said = _cli(argv, capsys)
        assert (code, error, said) == ((2, refusal, "") if refusal else (0, "", note or "")), argv
        assert _stored() == (text if refusal else replaced), argv
        if refusal:  # refused before the (seconds-long) measurement
            assert not _cache


def test_the_sentences_say_what_the_file_is_and_how_to_pick_another_path():
    path = cm.calibration_path()
    named = f"{path} (the calibration file under MSLI_CACHE_DIR)"
    other = "set MSLI_CACHE_DIR to another folder"

    def sentence(text: str) -> str:
        _put(text)
        found = cm.classify_calibration()
        return found.refusal or found.note

    assert sentence(FILES["newer format"][0]) == (
        f"{named} was written by a newer MS-LI Lab (calibration format {cm.FORMAT + 1}; this version reads "
        f"{cm.FORMAT}), so msli will not read or replace it; upgrade msli, or {other}."
    )
    assert sentence(FILES["previous format"][0]) == (
        f"{named} was written by an older MS-LI Lab (calibration format {cm.FORMAT - 1}; this version writes "
        f"{cm.FORMAT}), so msli measures this machine again and replaces it."
    )
    assert sentence(FILES["a constant out of range"][0]) == (
        f"{named} is a calibration file msli wrote that it cannot use (bandwidth is 1e-300, outside the "
        "plausible range 1000 to 1e+18 bytes/s), so msli measures this machine again and replaces it."
    )
    assert sentence(FILES["a field missing"][0]).startswith(
        f"{named} is a calibration file msli wrote that it cannot use (the field 'gather_bandwidth' "
    )
    assert sentence(FILES["truncated"][0]).startswith(
        f"{named} is a calibration file msli wrote that it cannot use (its JSON breaks off: "
    )
    foreign = {
        '{"mine": 1}': "a JSON object with the keys 'mine', without a calibration's fields",
        "my notes\nline 2": "text that is not JSON, starting 'my notes'",
        "": "an empty file",
        "[1, 2]": "a JSON list",
    }
    for text, what in foreign.items():
        assert sentence(text) == (
            f"{named} is a file msli did not write as far as it can tell ({what}), so msli will not read or "
            f"replace it; move that file away or {other}."
        )


def test_a_truncated_file_is_msli_s_only_at_msli_s_own_path(tmp_path, capsys):
    """The same cut-off bytes are damaged (replaced) at the cache path, foreign (kept) anywhere else:
    an --out file, a file of another name in the cache folder, msli's file name in another folder."""
    cut = FILES["truncated"][0]
    for elsewhere in (
        tmp_path / "hw.json",
        tmp_path / "cache" / "hw.json",
        tmp_path / "other" / cm.CALIBRATION_FILE,  # msli's name, another folder
    ):
        elsewhere.parent.mkdir(exist_ok=True)
        elsewhere.write_text(cut)
        found = cm.classify_calibration(elsewhere)
        assert found.state is S.FOREIGN and not cm.is_calibration_file(elsewhere)
        assert found.refusal.startswith(
            f"--out {elsewhere} is a file msli did not write as far as it can tell"
        )
        assert "broken JSON outside msli's cache folder" in found.refusal
        assert found.refusal.endswith("move that file away or choose another --out path.")
        code, error, _ = _cli(["costmodel", "calibrate", "--out", str(elsewhere)], capsys)
        assert (code, error) == (2, found.refusal) and elsewhere.read_text() == cut
    # the cache path, also when --out names it
    path = _put(cut)
    assert cm.classify_calibration(path).state is S.DAMAGED and cm.is_calibration_file(path)
    assert _cli(["costmodel", "calibrate", "--out", str(path)], capsys)[0] == 0
    assert cm.load_hardware(path) == MEASURED
    # text that does not start as msli's JSON is foreign at msli's path too
    _put('{"format": 3, "name": "x", "gemm')
    assert cm.classify_calibration().state is S.FOREIGN


def test_load_hardware_names_the_class_and_how_to_measure_again(tmp_path):
    path = tmp_path / "hw.json"
    path.write_text(FILES["a constant out of range"][0])
    with pytest.raises(MsliError) as err:
        cm.load_hardware(path)
    assert str(err.value) == (
        f"{path} is a calibration file msli wrote that it cannot use (bandwidth is 1e-300, outside the "
        f"plausible range 1000 to 1e+18 bytes/s); run `msli costmodel calibrate --out {path}` to measure "
        "this machine again."
    )
    path.write_text(FILES["newer format"][0])
    with pytest.raises(MsliError, match=r"hw\.json was written by a newer MS-LI Lab .*upgrade msli, or pass"):
        cm.load_hardware(path)
    path.write_text(FILES["current"][0])
    assert cm.load_hardware(path) == HW


def test_a_link_is_read_through_but_never_replaced(tmp_path, capsys):
    real = tmp_path / "real.json"
    real.write_text(SAVED)
    cm.calibration_path().symlink_to(real)
    assert cm.classify_calibration().state is S.LINK and not cm.is_calibration_file(cm.calibration_path())
    assert calibrate.hardware_here() == HW  # a link to a usable file is read
    code, error, _ = _cli(["costmodel", "calibrate"], capsys)
    assert code == 2 and "is a symbolic link, which msli does not replace" in error
    real.write_text(FILES["a constant out of range"][0])  # a link to a damaged file: never replaced
    with pytest.raises(MsliError) as err:
        calibrate.hardware_here()
    assert str(err.value) == (
        f"{cm.calibration_path()} (the calibration file under MSLI_CACHE_DIR) is a symbolic link to {real} "
        "(damaged), which msli does not replace; move it away or set MSLI_CACHE_DIR to another folder."
    )
    assert real.read_text() == FILES["a constant out of range"][0]


def test_without_a_note_callback_the_first_progress_event_says_so():
    path = _put(FILES["previous format"][0])
    events = []
    assert calibrate.hardware_here(progress=events.append) == MEASURED
    assert events[0].message == (
        f"{path} (the calibration file under MSLI_CACHE_DIR) was written by an older MS-LI Lab (calibration "
        f"format {cm.FORMAT - 1}; this version writes {cm.FORMAT}), so msli measures this machine again and "
        "replaces it."
    )


@pytest.mark.parametrize("content", [b"\x1c", "\u0085".encode(), "\u2028\n".encode(), b" \t\n"])
def test_a_file_of_only_unicode_spaces_is_foreign_and_empty_not_a_crash(tmp_path, monkeypatch, content):
    """bytes.strip() keeps Unicode spaces that str.strip() removes: the description took the first of no
    lines (IndexError) for such a file at the cache path."""
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    cm.calibration_path().write_bytes(content)
    refusal = cm.classify_calibration().refusal
    assert refusal and "an empty file" in refusal, refusal
    with pytest.raises(MsliError, match="an empty file"):
        cm.check_calibration_target()
