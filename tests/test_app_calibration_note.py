"""The app says so, in a box that stays, when the stored calibration file is one msli wrote but cannot
use and is measured again (pages/state.hardware_here passes ``note=`` to calibrate.hardware_here).

Before, the sentence was only the first message of the progress bar, which is removed when the
measurement ends. The cache is under tmp_path (MSLI_CACHE_DIR), never the user's, and the seconds-long
measurement is replaced by fixed constants that still report progress, so the bar is drawn and removed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hardware_fixture import made_up_hardware
from streamlit.testing.v1 import AppTest
from test_app_pages import _no_bundled_demo  # noqa: F401 - autouse: an empty session, a temp workspace

from msli_core.data.audience import app_user
from msli_core.progress import ProgressEvent
from msli_core.serving import calibrate
from msli_core.serving import costmodel as cm

pytestmark = pytest.mark.slow  # AppTest runs

APP = str(Path(__file__).resolve().parents[1] / "app.py")
STORED = made_up_hardware("stored")
MEASURED = cm.Hardware(**{**STORED.__dict__, "name": "measured in the test"})


@pytest.fixture
def measured(tmp_path, monkeypatch) -> list[int]:
    """The cache under tmp_path; each measurement appended to the list returned, MEASURED its result."""
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    calls: list[int] = []

    def measure(threads=1, budget_s=None, progress=None):  # noqa: ARG001 - measure's signature
        for step in range(3):
            if progress is not None:
                progress(ProgressEvent("calibrate", step, 3, f"step {step + 1} of 3"))
        calls.append(1)
        return MEASURED

    monkeypatch.setattr(calibrate, "measure", measure)
    return calls


@pytest.mark.parametrize(
    "stored",
    [
        json.dumps({**STORED.as_dict(), "bandwidth": 1e-300}),  # a constant out of range: damaged
        json.dumps({**STORED.as_dict(), "format": cm.FORMAT - 1}),  # an older msli's format
    ],
    ids=["damaged", "older"],
)
def test_a_file_measured_again_is_a_warning_that_stays_after_the_measurement(measured, stored):
    path = cm.calibration_path()
    path.write_text(stored)
    with app_user():  # the page's words: the app's file, not the variable that chose it
        note = cm.classify_calibration().note
    assert note and note.endswith("so msli measures this machine again and replaces it.")
    assert "(the app's cost-model calibration file)" in note and "MSLI_" not in note

    at = AppTest.from_file(APP, default_timeout=180)
    at.run()  # Home draws the latency budget from this machine's constants: measured now
    assert not at.exception, [e.value for e in at.exception]
    assert measured == [1] and cm.load_hardware() == MEASURED  # measured again and replaced
    assert note in [w.value for w in at.warning]  # still on the page after the measurement
    assert not at.get("progress")  # the bar itself is gone
    assert "measured in the test" in " ".join(c.value for c in at.caption)

    at.run()  # a rerun of the same session uses its constants: nothing is measured or said again
    assert measured == [1] and note not in [w.value for w in at.warning]


def test_a_usable_or_missing_file_gives_no_warning(measured):
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()  # no file: measured and stored, with nothing to say about a file replaced
    assert not at.exception and measured == [1] and not at.warning
    assert cm.load_hardware() == MEASURED
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()  # a new session reads the stored file
    assert not at.exception and measured == [1] and not at.warning


@pytest.mark.usefixtures("measured")  # the cache under tmp_path, never the user's
def test_a_note_from_the_latency_sweep_stays_on_the_page_after_its_rerun(monkeypatch):
    """The Latency page passes ``note=`` to run_bench; its sentence (e.g. a damaged calibration file
    measured again) is a warning drawn after the page's rerun, not lost with the progress bar."""
    from test_app_pages import new_app, run_short_sweep

    from msli_core.serving import bench

    real = bench.run_bench
    sentence = "The calibration file is damaged, so msli measures this machine again and replaces it."

    def run_bench(settings, progress=None, note=None):
        assert note is not None  # the page gives run_bench somewhere to say it
        note(sentence)
        return real(settings, progress=progress, note=note)

    monkeypatch.setattr(bench, "run_bench", run_bench)
    at = run_short_sweep(new_app(), models=("msli", "two-tower"))
    assert sentence in [w.value for w in at.warning]
