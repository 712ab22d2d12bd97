"""A calibration file the app will not read (one msli did not write, at the app's cache path) is an error
box in the app's words (Home, the first page, run through app.py's app_user()): the path as the app's
file, the fix addressed to whoever runs the app, and what the app's user can do meanwhile. That advice is
checked too: a Latency sweep with “Also calibrate the cost model on this machine” ticked runs without the
file and gives the What-if page this machine's constants, and the file is left as it was.

The cache is under tmp_path (MSLI_CACHE_DIR); the seconds-long measurement is replaced by constants."""

from __future__ import annotations

import pytest
from hardware_fixture import made_up_hardware
from test_app_pages import (
    _no_bundled_demo,  # noqa: F401 - autouse: an empty session and a temporary workspace
    error_texts,
    goto,
    new_app,
)

from msli_core.serving import calibrate
from msli_core.serving import costmodel as cm

pytestmark = pytest.mark.slow  # AppTest runs

MEASURED = made_up_hardware("measured in the test")


def test_a_calibration_file_the_app_will_not_read_says_what_to_do_and_that_works(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path))
    cache = tmp_path / cm.CALIBRATION_FILE
    cache.write_text('{"mine": 1}')  # a file msli did not write
    monkeypatch.setattr(calibrate, "measure", lambda *_a, **_k: MEASURED)  # instead of seconds of timing

    at = new_app()  # Home (through app.py's app_user()) draws the latency budget from them: refused
    [sentence] = [e for e in error_texts(at) if "calibration file" in e]
    assert sentence.startswith(f"{cache} (the app's cost-model calibration file) is a file msli did not")
    assert "ask whoever runs the app to move that file away or set MSLI_CACHE_DIR" in sentence
    assert sentence.endswith(
        "until then, pick a preset in the What-if page's “Hardware” box, or run a sweep on the Latency "
        "page with “Also calibrate the cost model on this machine” ticked."
    )
    assert "under MSLI_CACHE_DIR" not in sentence and "`msli" not in sentence

    goto(at, "whatif")  # (AppTest runs a page after switch_page without app.py, so in the CLI's words)
    assert any("calibration file" in e for e in error_texts(at))
    assert "this machine" not in at.selectbox(key="whatif_hardware").options and at.metric  # presets answer

    goto(at, "latency")  # the advice: a sweep that calibrates itself
    at.multiselect(key="latency_segments").set_value([1])
    at.select_slider(key="latency_dim").set_value(16)
    at.select_slider(key="latency_layers").set_value(1)
    at.multiselect(key="latency_candidates").set_value([100])
    at.multiselect(key="latency_models").set_value(["msli"])
    at.select_slider(key="latency_budget").set_value(0.02)
    at.select_slider(key="latency_passes").set_value(1)
    assert at.checkbox(key="latency_calibrate").value  # ticked by default
    at.button(key="FormSubmitter:latency_form-Run the sweep").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + error_texts(at)

    goto(at, "whatif")
    assert not at.error, error_texts(at)
    assert "this machine" in at.selectbox(key="whatif_hardware").options
    assert cache.read_text() == '{"mine": 1}'  # neither read nor replaced
