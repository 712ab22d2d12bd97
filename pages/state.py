"""Per-browser-session state shared by the pages, and the sidebar that shows it.

Everything a user makes (the loaded dataset, trained models, benchmark rows) lives in
``st.session_state``, so two browser sessions never see each other's work. Only read-only things
(the bundled sample dataset) are shared through ``st.cache_resource``.
Keys are prefixed ``lab_`` here; page-local widget keys are prefixed by their page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from msli_core.errors import MsliError

SAMPLE_DATA_DIR = Path(__file__).resolve().parent.parent / "sample_data"


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
def _bundled_sample():  # shared read-only by all sessions
    from msli_core.data import load_dataset

    return load_dataset(SAMPLE_DATA_DIR)


def dataset():
    """The dataset of this session; the bundled sample unless the user loaded another."""
    if "lab_dataset" not in st.session_state:
        st.session_state["lab_dataset"] = _bundled_sample()
        st.session_state["lab_dataset_label"] = "bundled sample (synthetic)"
    return st.session_state["lab_dataset"]


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
    st.error(str(err), icon="⚠️")


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
