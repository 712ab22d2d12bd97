"""Per-browser-session state shared by the pages.

Everything a user makes (the loaded dataset, trained models, benchmark rows) lives in
``st.session_state``; what a user trains and measures is also written to the local workspace
(``msli_core.workspace``), and a new session starts from it (and from the bundled demo). Only read-only things
(the bundled sample dataset) are shared through ``st.cache_resource``.
Keys are prefixed ``lab_`` here; page-local widget keys are prefixed by their page. What is computed
from this state lives in msli_core (``trained``, ``serving.report``, ``explain_view``); the shared
widgets (errors, charts, progress, the sidebar) are in ``pages/widgets.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from msli_core import kinds, trained
from msli_core.trained import TrainedModel

BUNDLED_SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


def sample_data_dir() -> Path:
    """The default dataset: the bundled sample, or the folder named by ``MSLI_SAMPLE_DATA`` (a demo
    machine's own data, or a smaller synthetic set for fast tests)."""
    return Path(os.environ.get("MSLI_SAMPLE_DATA") or BUNDLED_SAMPLE_DIR)


def demo_dir() -> Path:
    """Where the bundled demo models (``models/``) and latency sweep (``bench/``) are read: the sample
    data folder, or the folder named by ``MSLI_DEMO_DIR`` (an empty one starts the app without them)."""
    return Path(os.environ.get("MSLI_DEMO_DIR") or sample_data_dir())


# ------------------------------------------------------------------------------------------- dataset
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


# -------------------------------------------------------------------------------- trained models
def models() -> dict[str, TrainedModel]:
    """This session's models, keyed by a name unique in the session (``trained.session_name``: models
    of different datasets never replace each other); a new session starts with the bundled demo models
    when its dataset is the bundled sample (``sample_data/models/``), so Explain and Train have something
    on first load, and with the models of the workspace."""
    if "lab_models" not in st.session_state:
        from msli_core import workspace

        demo = _bundled_models(str(demo_dir()), str(sample_data_dir()))
        saved, problems = workspace.load_models()  # what this user trained before: a reload finds it
        store: dict[str, TrainedModel] = {m.name: m for m in demo}
        for m in saved:  # two saved models of one name (two tabs, two datasets) are both kept
            m.name = trained.session_name(m.name, m.dataset_fingerprint, store)
            store[m.name] = m
        st.session_state["lab_models"] = store
        _note_workspace_problems(problems)
    return st.session_state["lab_models"]


@st.cache_resource(show_spinner="Loading the bundled demo models…")
def _bundled_models(demo: str, sample: str) -> list[TrainedModel]:  # shared read-only (never trained)
    return trained.bundled_models(demo, _bundled_sample(sample))


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
        f"({', '.join(stale)}); load that dataset on the Data page to use them, or train again here."
    )


def _place(model: TrainedModel) -> str | None:
    """Put ``model`` in this session under ``trained.session_name`` and return a sentence for the Train
    page when that name says something the user did not ask for: an earlier model of the same name and
    dataset was replaced, or a model of another dataset held the name (it is kept; this one is renamed)."""
    store = models()
    asked = model.name
    model.name = trained.session_name(asked, model.dataset_fingerprint, store, dataset_label())
    note = None
    if model.name != asked:
        note = f"A model named {asked} trained on another dataset is kept, so this one is named {model.name}."
    elif model.name in store:
        note = f"{model.name} replaces the model of that name trained earlier on this dataset."
    store[model.name] = model
    st.session_state.get("lab_model_zips", {}).pop(model.name, None)
    for cache in ("explain_ranks", "explain_cache", "explain_accuracy_cache"):  # keyed (name, ...)
        kept = st.session_state.get(cache, {})
        for key in [k for k in kept if k[0] == model.name]:
            del kept[key]  # what was computed for the model this one replaces
    return note


def add_trained(name: str, result, data) -> TrainedModel:
    """Keep a ``msli_core.train.TrainResult`` in this session, tied to the dataset it was trained on, and
    save it in the workspace. What the Train page should say about it (a renamed or replaced model, a
    failed save) is kept for :func:`take_page_notes`, since the page reruns after training."""
    model = trained.from_result(name, result, data)
    if note := _place(model):
        _page_note("train", "info", note)
    label = dataset_label()  # recorded, so a reload names the model as this page does
    _keep_in_workspace("train", lambda ws: ws.save_model(model, data, label=label))
    return model


def _page_note(page: str, kind: str, text: str) -> None:
    st.session_state.setdefault("lab_page_notes", {}).setdefault(page, []).append((kind, text))


def warn_on(page: str):
    """A ``note`` callback for msli_core calls (e.g. ``run_bench(note=...)``): each sentence becomes a
    warning that ``page`` shows after its rerun (:func:`take_page_notes`)."""
    return lambda text: _page_note(page, "warning", text)


def take_page_notes(page: str) -> list[tuple[str, str]]:
    """``(kind, sentence)`` of what the last action on ``page`` ("train", "latency") said, each returned
    once (``kind``: "info" or "warning", a failed workspace save among them): the page that ran the
    action shows them after its rerun."""
    return st.session_state.get("lab_page_notes", {}).pop(page, [])


def _keep_in_workspace(page: str, write) -> None:
    """``write(workspace)``; a workspace that cannot be written (a file, read-only, disk full) is a
    warning on ``page``, where it happened (:func:`take_page_notes`), and on Home, never a lost run."""
    from msli_core import workspace
    from msli_core.errors import MsliError

    try:
        write(workspace)
    except MsliError as err:
        sentence = str(err)
    except OSError as err:  # the workspace changed under the checks (workspace.save_* word the others)
        sentence = (
            f"Could not save to the workspace {workspace.workspace_dir()} ({err.strerror or err}); restart "
            f"the app with {workspace.ENV} set to a folder you can write."
        )
    else:
        return
    _page_note(page, "warning", sentence)
    _note_workspace_problems([sentence])


def _note_workspace_problems(problems: list[str]) -> None:
    st.session_state.setdefault("lab_workspace_problems", []).extend(problems)


def add_loaded(filename: str, loaded, data) -> str:
    """Keep a model loaded from a zip (the core already checked it belongs to ``data``); its name as kept
    (a note is left for :func:`take_page_notes` when it replaced or stepped around another)."""
    model = trained.from_loaded(filename, loaded, data)
    if note := _place(model):
        _page_note("train", "info", note)
    return model.name


def model_zip_cached(model: TrainedModel, data) -> bytes:
    """The zip of a trained model, built once per model and session (reruns do not re-pack it)."""
    store = st.session_state.setdefault("lab_model_zips", {})
    if model.name not in store:
        store[model.name] = trained.zip_bytes(model, data)
    return store[model.name]


def held_out_ranks_cached(usable: dict[str, TrainedModel], name: str, data):
    """Each test user's rank under ``usable[name]`` (``trained.held_out_ranks``), computed once per model
    object and session: a model replaced under the same name is ranked again, and the ranks of models
    no longer in ``usable`` (or replaced) are dropped, so the cache never keeps an old model alive."""
    store = st.session_state.setdefault("lab_held_out_ranks", {})
    for old in [k for k, (loaded, _) in store.items() if k not in usable or usable[k].loaded is not loaded]:
        del store[old]
    if name not in store:
        store[name] = (usable[name].loaded, trained.held_out_ranks(usable[name], data))
    return store[name][1]


def quality_latency_points(usable: dict[str, TrainedModel]) -> list[dict]:
    """Each model with the online p50 the last sweep measured for its shape (``trained``)."""
    return trained.quality_latency_points(usable, bench_rows(), dataset().n_items)


# ------------------------------------------------------------------------------------- latency sweeps
def bench_rows() -> list[dict]:
    """The last sweep of this session, else the bundled sweep (``bench_is_bundled()`` says which)."""
    rows = st.session_state.get("lab_bench_rows")
    if rows:
        return rows
    _restore_sweep()
    if st.session_state.get("lab_bench_rows"):
        return st.session_state["lab_bench_rows"]
    bundled = _bundled_sweep(str(demo_dir()))
    return bundled[0] if bundled else []


def _restore_sweep() -> None:
    """A new session starts from the workspace's newest sweep (this user's own, on this machine)."""
    if st.session_state.get("lab_sweep_restored"):
        return
    st.session_state["lab_sweep_restored"] = True
    from msli_core import workspace

    saved, problems = workspace.latest_sweep()  # a bad sweep folder is skipped with a sentence
    _note_workspace_problems(problems)
    if saved:
        st.session_state["lab_bench_rows"], st.session_state["lab_bench_meta"] = saved


def bench_meta() -> dict:
    if bench_rows() and st.session_state.get("lab_bench_rows"):
        return st.session_state.get("lab_bench_meta", {})
    bundled = _bundled_sweep(str(demo_dir()))
    return bundled[1] if bundled else {}


def bench_is_bundled() -> bool:
    """True while the rows shown are the bundled sweep (measured on another machine), not this session's."""
    return bool(bench_rows()) and not st.session_state.get("lab_bench_rows")


@st.cache_resource(show_spinner=False)
def _bundled_sweep(path: str):
    from msli_core.serving.report import bundled_sweep

    return bundled_sweep(path)


def set_bench(result) -> None:
    """Keep a ``msli_core.serving.bench.BenchResult``: its rows feed the Latency, What-if and Train pages.
    When the sweep calibrated the cost model, this session's What-if uses those measured constants."""
    from msli_core.serving import costmodel

    st.session_state["lab_bench_rows"] = list(result.rows)
    st.session_state["lab_bench_meta"] = dict(result.meta)
    _keep_in_workspace("latency", lambda ws: ws.save_sweep(result))
    st.session_state.pop("lab_bench_csv", None)
    if (result.meta.get("settings") or {}).get("calibrate") and result.meta.get("hardware"):
        st.session_state["whatif_measured_hw"] = costmodel.Hardware.from_dict(result.meta["hardware"])


def bench_csv() -> bytes:
    """The last sweep's rows as CSV (the columns of `msli bench`), built once per sweep."""
    if "lab_bench_csv" not in st.session_state:
        from msli_core.serving.report import rows_csv

        st.session_state["lab_bench_csv"] = rows_csv(bench_rows())
    return st.session_state["lab_bench_csv"]


def hardware_here():
    """This machine's cost-model constants: measured in this session, else the stored calibration, else
    measured now (first use: a few seconds, with a progress bar) and stored.

    When the stored file is one msli wrote but cannot use (an older format, damaged), the core's note
    saying it is measured again and replaced is a warning box where the page called this, drawn before
    the measurement and left there after it (the progress bar is removed once done), not a passing
    progress message."""
    from msli_core.serving import calibrate

    if st.session_state.get("whatif_measured_hw") is None:
        bar = None

        def progress(event) -> None:
            nonlocal bar
            bar = bar or st.progress(0.0, text="Measuring this machine for the cost model (first use)…")
            bar.progress(event.fraction or 0.0, text=f"Measuring this machine: {event.message}")

        def note(sentence: str) -> None:
            st.warning(sentence, icon=":material/build:")

        st.session_state["whatif_measured_hw"] = calibrate.hardware_here(progress=progress, note=note)
        if bar is not None:
            bar.empty()
    return st.session_state["whatif_measured_hw"]


def home_latency_budget(**shape):
    """Home's "where the latency goes" figure: the cost model's per-part prediction of one request."""
    from msli_core import viz
    from msli_core.serving.report import ladder_predictions

    _, predictions = ladder_predictions(hardware_here(), models=kinds.NEURAL, **shape)
    return viz.latency_budget(predictions)


# ------------------------------------------------------------------------------------------ explain
def explainable_models() -> dict[str, TrainedModel]:
    """Usable models whose scores decompose into per-segment contributions (late interaction)."""
    return {name: m for name, m in usable_models().items() if kinds.is_late_interaction(m.loaded.kind)}


def test_ranks(model_name: str):
    """(U+1,) the held-out test item's rank per user under ``model_name`` (NaN: not evaluated), computed
    once per model and dataset in this session (one batched pass: the Explain page's hit/miss picker)."""
    from msli_core.explain_view import test_ranks as ranks_of

    store = st.session_state.setdefault("explain_ranks", {})
    key = (model_name, dataset().fingerprint)
    if key not in store:
        store[key] = ranks_of(models()[model_name].loaded, dataset())
    return store[key]


def explanation(model_name: str, user_id: str, top_n: int, stage: str | None) -> dict:
    """``msli_core.explain.explain(...).to_dict()``, kept per (model, user, n, stage) in this session,
    so a rerun caused by another widget does not recompute it."""
    from msli_core.explain import explain

    store = st.session_state.setdefault("explain_cache", {})
    key = (model_name, dataset().fingerprint, user_id, top_n, stage)
    if key not in store:
        store[key] = explain(models()[model_name].loaded, dataset(), user_id, top_n, stage=stage).to_dict()
    return store[key]


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


# ---------------------------------------------------------------------------------------- workspace
def workspace_contents() -> dict:
    """``workspace.contents()``: its path, msli's models and sweeps there, and why it cannot be written
    (None when it can)."""
    from msli_core import workspace

    return workspace.contents()


def clear_workspace() -> int:
    """Remove the workspace's saved models and sweeps (msli's own folders only)."""
    from msli_core import workspace

    return workspace.clear()


def workspace_problems() -> list[str]:
    """Sentences about saved folders that were skipped, or writes that failed, in this session (each
    once)."""
    models()
    bench_rows()  # restores the workspace's sweep, noting the folders it skipped
    return list(dict.fromkeys(st.session_state.get("lab_workspace_problems", [])))
