"""A Latency sweep without the msli model: the K charts cannot be drawn, which the page says in one
warning (not an error naming a backend that was never picked), and the encoder-size chart, measured for
msli whatever the models, is still drawn."""

from __future__ import annotations

from test_app_pages import (  # _no_bundled_demo: autouse, an empty session and a temporary workspace
    _no_bundled_demo,  # noqa: F401
    assert_charts_have_data,
    new_app,
    run_short_sweep,
)


def test_a_sweep_without_msli_warns_once_and_draws_what_it_can():
    at = run_short_sweep(new_app(), models=("two-tower",))
    warnings = [w.value for w in at.warning]
    assert any("no MS-LI whole-catalog requests" in w for w in warnings), warnings
    specs = assert_charts_have_data(at, 1)
    assert "encoder size" in specs[0]["layout"]["title"]["text"]
