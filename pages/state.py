"""Per-browser-session state shared by the pages, and the sidebar that shows it.

Everything a user makes (the loaded dataset, trained models, benchmark rows) lives in
``st.session_state``, so two browser sessions never see each other's work. Only read-only things
(the bundled sample dataset) are shared through ``st.cache_resource``.
Keys are prefixed ``lab_`` here; page-local widget keys are prefixed by their page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from msli_core import kinds
from msli_core.errors import MsliError

BUNDLED_SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


def sample_data_dir() -> Path:
    """The default dataset: the bundled sample, or the folder named by ``MSLI_SAMPLE_DATA`` (a demo
    machine's own data, or a smaller synthetic set for fast tests)."""
    return Path(os.environ.get("MSLI_SAMPLE_DATA") or BUNDLED_SAMPLE_DIR)


@dataclass
class TrainedModel:
    """A model trained (or loaded) in this session, and what it was trained on."""

    name: str  # label shown in tables, e.g. "MS-LI K=4 attention"
    loaded: Any  # msli_core.models.registry.LoadedModel
    metrics: dict[str, float]
    seconds: float
    dataset_fingerprint: str
    history: list[dict] = field(default_factory=list)  # per-epoch loss / validation metrics


@st.cache_resource(show_spinner="Loading the bundled sample data…")
def _bundled_sample(path: str):  # shared read-only by all sessions (InteractionData is frozen)
    from msli_core.data import load_dataset

    return load_dataset(path)


def dataset():
    """The dataset of this session; the bundled sample unless the user loaded another."""
    if "lab_dataset" not in st.session_state:
        use_bundled_sample()
    return st.session_state["lab_dataset"]


def use_bundled_sample() -> None:
    set_dataset(_bundled_sample(str(sample_data_dir())), "bundled sample (synthetic)")


def dataset_label() -> str:
    dataset()
    return st.session_state["lab_dataset_label"]


def set_dataset(data, label: str) -> None:
    """Replace this session's dataset. Models trained on another dataset stay listed but are refused."""
    st.session_state["lab_dataset"] = data
    st.session_state["lab_dataset_label"] = label


def models() -> dict[str, TrainedModel]:
    return st.session_state.setdefault("lab_models", {})


def usable_models() -> dict[str, TrainedModel]:
    """Models trained on the dataset loaded now (the others are refused with a sentence)."""
    fp = dataset().fingerprint
    return {name: m for name, m in models().items() if m.dataset_fingerprint == fp}


def refused_models_note() -> str | None:
    stale = [name for name, m in models().items() if m.dataset_fingerprint != dataset().fingerprint]
    if not stale:
        return None
    return (
        f"{len(stale)} model(s) were trained on another dataset and cannot be used with the one loaded now "
        f"({', '.join(stale)}); reload that dataset or train again."
    )


def bench_rows() -> list[dict]:
    return st.session_state.setdefault("lab_bench_rows", [])


def show_error(err: MsliError) -> None:
    st.error(str(err), icon=":material/error:")


def upload_file_name(name: str) -> str:
    """The name an uploaded file is saved under on the server: the client's name when it is one plain
    file name; anything else (empty, ``.``, ``..``, a path such as ``/`` or ``a/../b``, a control
    character, over 200 characters) is refused with a sentence, never used as a path."""
    shown = name if len(name) <= 60 else name[:57] + "…"
    plain = name.strip()
    if (
        not plain
        or plain in (".", "..")
        or any(c in plain for c in "/\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in plain)
        or len(plain) > 200
    ):
        raise MsliError(
            f"The uploaded file's name {shown!r} is not a plain file name; rename the file (for example "
            "ratings.csv or ml-100k.zip) and upload it again."
        )
    return plain


# Widgets whose values survive a visit to another page (Streamlit forgets the state of widgets that were
# not drawn in the last run). Only widgets whose options never change are listed, so a kept value is
# always valid; buttons and file uploaders cannot be set and are not listed.
KEPT_WIDGETS = (
    "data_source", "data_min_rating", "data_k_core", "data_col_user", "data_col_item", "data_col_timestamp",
    "data_col_rating", "data_path", "data_movielens", "data_synth_users", "data_synth_items",
    "data_synth_interactions", "data_synth_noise", "data_synth_seed",
    "train_kinds", "train_segments", "train_aggregation", "train_dim", "train_layers", "train_epochs",
    "train_seed",
    "explain_top_n", "explain_stage",
    "latency_segments", "latency_candidates", "latency_history", "latency_backends", "latency_models",
    "latency_budget", "latency_cross_budget", "latency_passes", "latency_calibrate", "latency_dim",
    "latency_layers",
    "whatif_hardware", "whatif_tflops", "whatif_gbps", "whatif_overhead", "whatif_history", "whatif_segments",
    "whatif_dim", "whatif_layers", "whatif_candidates", "whatif_dtype", "whatif_backend",
)  # fmt: skip


def keep_widget_state() -> None:
    """Called by app.py before a page runs: re-assigning a widget's key keeps its value across pages."""
    for key in KEPT_WIDGETS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def render_sidebar() -> None:
    with st.sidebar:
        st.markdown("### This session")
        try:
            data = dataset()
        except MsliError as err:
            show_error(err)
            return
        st.caption(
            f"**Data:** {dataset_label()}  \n{data.n_users:,} users · {data.n_items:,} items · "
            f"{data.n_interactions:,} interactions"
        )
        trained = usable_models()
        st.caption(f"**Models trained:** {len(trained)}" + (f" ({', '.join(trained)})" if trained else ""))
        if bench_rows():
            st.caption(f"**Latency rows measured:** {len(bench_rows())}")


def for_dataset(name: str, build):
    """``build(dataset)`` computed once per loaded dataset and kept in this session (charts, tables).

    Keyed by the dataset object itself, so loading another dataset recomputes; nothing is shared between
    sessions (an upload's statistics stay with the user who uploaded it).
    """
    data = dataset()
    store = st.session_state.setdefault("lab_per_dataset", {})
    key = (id(data), name)
    if store.get("_owner") is not data:  # another dataset is loaded: drop what belonged to the old one
        store.clear()
        store["_owner"] = data
    if key not in store:
        store[key] = build(data)
    return store[key]


class LiveProgress:
    """A ProgressCallback drawing ``st.progress`` and live line charts of the numbers events carry.

    ``charts`` is a list of (x key, y key, title): every event whose ``metrics`` hold both keys adds a
    point to that chart. Streamlit repaints the placeholders in place while the core call runs, so the
    user sees the bar move and the curves grow without the script rerunning.
    """

    def __init__(
        self, label: str, charts: tuple[tuple[str, str, str], ...] = (), min_interval_s: float = 0.25
    ):
        self.label = label
        self.bar = st.progress(0.0, text=label)
        self.charts = charts
        self.points: list[list[dict]] = [[] for _ in charts]
        columns = st.columns(len(charts)) if charts else []
        self.slots = [col.empty() for col in columns]
        self.min_interval_s = min_interval_s
        self._last = 0.0

    def __call__(self, event) -> None:
        import time

        for points, (x, y, _title) in zip(self.points, self.charts, strict=True):
            if x in event.metrics and y in event.metrics:
                points.append({x: event.metrics[x], y: event.metrics[y]})
        now = time.monotonic()
        final = event.total is not None and event.done >= event.total
        if not final and now - self._last < self.min_interval_s:
            return
        self._last = now
        frac = event.fraction
        self.bar.progress(
            frac if frac is not None else 0.0, text=f"{self.label}: {event.message}".rstrip(": ")
        )
        import pandas as pd

        for slot, points, (x, _y, title) in zip(self.slots, self.points, self.charts, strict=True):
            if points:
                with slot.container():
                    st.caption(title)
                    st.line_chart(pd.DataFrame(points).set_index(x), height=200)

    def done(self, text: str) -> None:
        self.bar.progress(1.0, text=text)


def chart(key: str, fig, *, caption: str | None = None, widget_key: str | None = None) -> None:
    """Show a plotly figure with the sentence that says how to read it (msli_core.viz.HOW_TO_READ)."""
    from msli_core.viz import HOW_TO_READ

    st.plotly_chart(fig, width="stretch", key=widget_key or f"chart_{key}", config={"displaylogo": False})
    st.caption(caption or HOW_TO_READ.get(key, ""))


def hardware_here():
    """This machine's cost-model constants: measured in this session, else the stored calibration, else
    measured now (first use: a few seconds, with a progress bar) and stored."""
    from msli_core.serving import calibrate

    if st.session_state.get("whatif_measured_hw") is None:
        bar = None

        def progress(event) -> None:
            nonlocal bar
            bar = bar or st.progress(0.0, text="Measuring this machine for the cost model (first use)…")
            bar.progress(event.fraction or 0.0, text=f"Measuring this machine: {event.message}")

        st.session_state["whatif_measured_hw"] = calibrate.hardware_here(progress=progress)
        if bar is not None:
            bar.empty()
    return st.session_state["whatif_measured_hw"]


def home_latency_budget(**shape):
    """Home's "where the latency goes" figure: the cost model's per-part prediction of one request."""
    from msli_core import viz
    from msli_core.serving import costmodel

    hardware = hardware_here()
    predictions = {
        viz.MODEL_LABELS[kind]: costmodel.predict(
            costmodel.ModelShape(kind=kind, **shape), hardware
        ).as_dict()
        for kind in kinds.NEURAL
    }
    return viz.latency_budget(predictions)


# ------------------------------------------------------------------------ trained models as zip files
def model_zip_bytes(trained: TrainedModel, data) -> bytes:
    """The model folder (config.json + model.safetensors) packed as a zip in memory, by the core."""
    import re

    from msli_core.models.registry import save_zip

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", trained.name).strip("-.") or "model"
    return save_zip(
        trained.loaded.model,
        slug,
        data=data,
        metrics=trained.metrics,
        extra={**trained.loaded.training, "name": trained.name, "seconds": trained.seconds},
    )


def load_model_zip(filename: str, payload: bytes, data):
    """Load an uploaded model zip in memory with the core (which refuses pickles, broken or oversized
    members, absurd configs, non-finite weights and models made for other data, each with a sentence)."""
    from msli_core.models.registry import load_zip

    return load_zip(filename, payload, data=data)


# -------------------------------------------------------------------------------- trained models
def add_trained(name: str, result, data) -> TrainedModel:
    """Keep a ``msli_core.train.TrainResult`` in this session, tied to the dataset it was trained on."""
    from msli_core.models.registry import LoadedModel

    loaded = LoadedModel(
        kind=result.kind,
        config=result.model.config,
        model=result.model,
        metrics=result.metrics,
        fingerprint=data.fingerprint,
        training={
            "settings": result.settings,
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            "parameters": result.parameters,
        },
        dataset={"fingerprint": data.fingerprint, "source": str(data.source), "format": data.format},
    )
    trained = TrainedModel(
        name, loaded, result.metrics, result.seconds, data.fingerprint, list(result.history)
    )
    models()[name] = trained
    st.session_state.pop("lab_model_zips", None)
    return trained


def add_loaded(filename: str, loaded, data) -> str:
    """Keep a model loaded from a zip (the core already checked it belongs to ``data``)."""
    base = loaded.training.get("name") or Path(filename).stem
    name = f"{base} (loaded)"
    seconds = float(loaded.training.get("seconds", 0.0) or 0.0)
    models()[name] = TrainedModel(name, loaded, dict(loaded.metrics), seconds, data.fingerprint, [])
    return name


def model_row(m: TrainedModel) -> dict:
    """One row of the Train page's comparison table."""
    config = m.loaded.config
    segments = getattr(config, "segments", None) if kinds.is_late_interaction(m.loaded.kind) else None
    parameters = m.loaded.training.get("parameters")
    if parameters is None:
        parameters = sum(p.numel() for p in m.loaded.model.parameters())
    return {
        "name": m.name,
        "kind": m.loaded.kind,
        "segments": segments,
        "aggregation": getattr(config, "aggregation", None) if segments is not None else None,
        "NDCG@10": m.metrics.get("NDCG@10"),
        "HR@10": m.metrics.get("HR@10"),
        "MRR": m.metrics.get("MRR"),
        "training s": m.seconds,
        "parameters": int(parameters),
        "evaluation": m.metrics.get("evaluation", ""),
    }


def curve_rows(m: TrainedModel) -> list[dict]:
    """Per-epoch rows for viz.training_curves: loss and validation NDCG@10."""
    return [
        {"epoch": r["epoch"], "loss": r.get("loss"), "NDCG@10": r.get("valid_NDCG@10")} for r in m.history
    ]


def quality_latency_points(trained: dict[str, TrainedModel]) -> list[dict]:
    """Each trained model with the online p50 the last sweep measured for its shape: same kind and K,
    then the closest width and depth, then the candidate count nearest this dataset's catalog (torch)."""
    import math

    rows = [
        r
        for r in bench_rows()
        if r.get("stage") == "online"
        and not r.get("variant")  # the catalog request, not paired or per-request candidate lists
        and r.get("backend", "torch") == "torch"
        and r.get("p50_ms") is not None
        and math.isfinite(float(r["p50_ms"]))
    ]
    if not rows:
        return []
    n_items = dataset().n_items
    points = []
    for m in trained.values():
        kind, config = m.loaded.kind, m.loaded.config
        k = getattr(config, "segments", 1) if kinds.is_late_interaction(kind) else None
        same = [
            r
            for r in rows
            if (r.get("model") == kind or (kind == "two-tower" and r.get("model") == "msli"))
            and (k is None or r.get("segments") == k)
        ]
        if not same:
            continue

        def distance(r, config=config):
            shape_off = (r.get("dim") != getattr(config, "dim", None)) + (
                r.get("layers") != getattr(config, "layers", None)
            )
            return shape_off, abs(math.log(max(1, int(r["candidates"])) / max(1, n_items)))

        best = min(distance(r) for r in same)
        p50s = sorted(float(r["p50_ms"]) for r in same if distance(r) == best)
        example = next(r for r in same if distance(r) == best)
        points.append(
            {
                **model_row(m),
                "p50_ms": p50s[len(p50s) // 2],
                "measured_candidates": int(example["candidates"]),
                "measured_dim": example.get("dim"),
            }
        )
    return points


def model_zip_cached(trained: TrainedModel, data) -> bytes:
    """The zip of a trained model, built once per model and session (reruns do not re-pack it)."""
    store = st.session_state.setdefault("lab_model_zips", {})
    if trained.name not in store:
        store[trained.name] = model_zip_bytes(trained, data)
    return store[trained.name]


# ------------------------------------------------------------------------------------- latency sweeps
def set_bench(result) -> None:
    """Keep a ``msli_core.serving.bench.BenchResult``: its rows feed the Latency, What-if and Train pages.
    When the sweep calibrated the cost model, this session's What-if uses those measured constants."""
    from msli_core.serving import costmodel

    st.session_state["lab_bench_rows"] = list(result.rows)
    st.session_state["lab_bench_meta"] = dict(result.meta)
    st.session_state.pop("lab_bench_csv", None)
    if (result.meta.get("settings") or {}).get("calibrate") and result.meta.get("hardware"):
        st.session_state["whatif_measured_hw"] = costmodel.Hardware.from_dict(result.meta["hardware"])


def bench_meta() -> dict:
    return st.session_state.get("lab_bench_meta", {})


def bench_csv() -> bytes:
    """The last sweep's rows as CSV (the columns of `msli bench`), built once per sweep."""
    if "lab_bench_csv" not in st.session_state:
        import pandas as pd

        from msli_core.serving.bench import ROW_KEYS

        frame = pd.DataFrame(bench_rows())
        columns = [c for c in ROW_KEYS if c in frame.columns] + [
            c for c in frame.columns if c not in ROW_KEYS
        ]
        st.session_state["lab_bench_csv"] = frame[columns].to_csv(index=False).encode()
    return st.session_state["lab_bench_csv"]


def whatif_curve(rows: list[dict], hardware):
    """The What-if page's "predicted vs measured against K": MS-LI online rows of the last sweep at its
    largest N (first L, torch when measured), and the cost model's prediction for K = 1..64 there."""
    import pandas as pd

    from msli_core.serving import costmodel

    frame = pd.DataFrame(rows)
    online = frame[(frame["model"] == "msli") & (frame["stage"] == "online")].dropna(subset=["p50_ms"])
    online = online[online["variant"].isna() | (online["variant"] == "")]  # the catalog request
    if online.empty:
        return pd.DataFrame(), pd.DataFrame(), {}
    backend = "torch" if (online["backend"] == "torch").any() else str(online["backend"].iloc[0])
    online = online[online["backend"] == backend]
    n, length = int(online["candidates"].max()), int(online["history"].min())
    measured = online[(online["candidates"] == n) & (online["history"] == length)]
    measured = measured.groupby("segments", as_index=False)[["p50_ms", "p95_ms"]].median()
    template = online.iloc[0].to_dict()
    ks = [1, 2, 4, 8, 16, 32, 64]
    predicted = [
        costmodel.predict_row({**template, "segments": k, "candidates": n, "history": length}, hardware) * 1e3
        for k in ks
    ]
    curve = pd.DataFrame({"segments": ks, "predicted_ms": predicted})
    return curve, measured, {"candidates": n, "history": length, "backend": backend}


# ------------------------------------------------------------------------------------------ explain
EXPLAINABLE_KINDS = kinds.LATE_INTERACTION


def explainable_models() -> dict[str, TrainedModel]:
    """Usable models whose scores decompose into per-segment contributions (late interaction)."""
    return {name: m for name, m in usable_models().items() if m.loaded.kind in EXPLAINABLE_KINDS}


def explanation(model_name: str, user_id: str, top_n: int, stage: str | None) -> dict:
    """``msli_core.explain.explain(...).to_dict()``, kept per (model, user, n, stage) in this session,
    so a rerun caused by another widget does not recompute it."""
    from msli_core.explain import explain

    store = st.session_state.setdefault("explain_cache", {})
    key = (model_name, dataset().fingerprint, user_id, top_n, stage)
    if key not in store:
        trained = models()[model_name]
        store[key] = explain(trained.loaded, dataset(), user_id, top_n, stage=stage).to_dict()
    return store[key]


def segment_vectors(model_name: str, explanation_dict: dict) -> tuple:
    """For the PCA map: the item table E (N+1, d) from the model's offline stage, and the segment
    vectors u_k (K, d) the explanation already computed."""
    import numpy as np
    import torch

    model = models()[model_name].loaded.model
    with torch.inference_mode():
        table = model.item_table()  # (N+1, d)
    return table.numpy(), np.asarray(explanation_dict["segment_vectors"], dtype=np.float32)


def score_path(explanation_dict: dict, rank: int, aggregation: str):
    """For one recommendation, the path history items → segment vector → contribution → score, per
    segment: its three heaviest items, s_k = <u_k, e_c>, the weight a_k = c_k / s_k the aggregation gave
    it (attention, sum; for max the winner takes s_k), c_k, and its share of the score."""
    import numpy as np
    import pandas as pd

    rec = explanation_dict["recommendations"][rank]
    rows = []
    for seg in explanation_dict["segments"]:
        k = seg["index"]
        s_k = float(rec["segment_scores"][k])  # <u_k, e_c>, computed by the core
        c_k = float(rec["contributions"][k])
        heavy = np.argsort(-np.asarray(seg["weights"]))[:3]
        a_k = c_k / s_k if aggregation in ("attention", "sum", "max") and abs(s_k) > 1e-12 else float("nan")
        rows.append(
            {
                "segment": k,
                "events": f"{seg['start']}–{seg['end'] - 1}",
                "heaviest items (pooling weight)": "; ".join(
                    f"{seg['titles'][i]} ({seg['weights'][i]:.2f})" for i in heavy
                ),
                "s_k = ⟨u_k, e_c⟩": s_k,
                "a_k": a_k,
                "c_k": c_k,
                "share of score": c_k / rec["score"] if rec["score"] else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def internal_item(original_id: str) -> int:
    return dataset().item_index[str(original_id)]


def explanation_accuracy_cached(model_name: str, compute: bool = False) -> dict | None:
    """``msli_core.explain.explanation_accuracy`` of a model on the loaded data, kept in this session;
    None until computed (it is a pass over every user, so it runs on a button)."""
    store = st.session_state.setdefault("explain_accuracy_cache", {})
    key = (model_name, dataset().fingerprint)
    if key not in store and compute:
        from msli_core.explain import explanation_accuracy

        with st.spinner("Explaining every user's held-out item…"):
            store[key] = explanation_accuracy(models()[model_name].loaded, dataset())
    return store.get(key)
