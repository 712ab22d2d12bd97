"""The ANN first stage on the app's pages (AppTest): the Latency page's recall/latency chart and table
from a sweep's ANN rows, and the What-if page's retrieval stage."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from msli_core.serving.bench import BenchSettings, run_bench

pytestmark = pytest.mark.slow
APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def _no_bundled_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_DEMO_DIR", str(tmp_path / "no-demo"))
    monkeypatch.setenv("MSLI_WORKSPACE", str(tmp_path / "workspace"))


def page(name: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(f"pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def ann_sweep():
    """A real, tiny sweep with an ANN point: K = 2, d = 16, a 2,000-item clustered table, probes 2 and 8."""
    settings = BenchSettings(segments=(2,), candidates=(100,), history=(20,), request_candidates=(),
                             backends=("torch",), models=("msli",), budget_s=0.01, passes=1, dim=16, layers=1,
                             calibrate=False, encoder_sizes=(), extrapolate_sizes=(), ann=("ivf",),
                             ann_candidates=(2000,), ann_probes=(2, 8), ann_users=4)  # fmt: skip
    result = run_bench(settings)
    return result.rows, result.meta


def test_latency_page_draws_the_ann_tradeoff_from_the_sweep(ann_sweep):
    rows, meta = ann_sweep
    ann = [r for r in rows if r["variant"] == "ann"]
    assert [r["probes"] for r in ann] == [2, 8] and all(0 <= r["recall_at_10"] <= 1 for r in ann)
    at = page("latency", lab_bench_rows=rows, lab_bench_meta=meta)
    assert not at.error, [e.value for e in at.error]
    titles = [s.proto.spec for s in at.get("plotly_chart")]
    assert any("ANN first stage" in t for t in titles)
    table = next(d.value for d in at.dataframe if "recall@10" in d.value.columns)
    assert list(table["index"]) == ["none (exhaustive)", "IVF-Flat", "IVF-Flat"]
    assert list(table["probes"].dropna()) == [2, 8] and (table["speed-up"] > 0).all()
    assert any("mixture of 1,024 Gaussians" in c.value for c in at.caption)
    # the K charts still offer only the catalog sweep's N (the ANN point has its own table)
    assert at.selectbox(key="latency_show_n").options == ["100"]


def test_whatif_prices_an_ivf_first_stage_against_scoring_everything():
    at = page("whatif")
    at.select_slider(key="whatif_candidates").set_value(10_000_000).run()
    at.selectbox(key="whatif_index").set_value("IVF").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert "MS-LI, whole catalog" in list(table["model"])
    ms = dict(zip(table["model"], table["online ms (per request)"], strict=True))
    assert ms["MS-LI"] < ms["MS-LI, whole catalog"] / 10  # 64 probes of 12,649 lists against 10M items
    caption = next(c.value for c in at.caption if "first stage an MS-LI request" in c.value)
    assert "10,000,000 items" in caption
    at.select_slider(key="whatif_probes").set_value(256).run()
    slower = dict(
        zip(at.dataframe[0].value["model"], at.dataframe[0].value["online ms (per request)"], strict=True)
    )
    assert slower["MS-LI"] > ms["MS-LI"]  # more probes scan more rows
    at.selectbox(key="whatif_index").set_value("HNSW").run()
    assert not at.exception and not at.error
    assert at.number_input(key="whatif_lists").disabled
