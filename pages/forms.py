"""Forms of the pages that are long lists of widgets: each returns what the page's one core call needs
(or None until it is submitted), so the page itself reads widgets → call → render."""

from __future__ import annotations

import streamlit as st

from msli_core import kinds
from pages import state


def latency_sweep_form():
    """The Latency page's sweep form: a ``BenchSettings`` when submitted with every list filled, else
    None (an empty list is an error sentence on the page)."""
    from msli_core.serving.bench import BenchSettings

    with st.form("latency_form"):
        models = st.multiselect(  # full width: the four rungs' names fit on one line
            "Models (the serving ladder)",
            list(kinds.LADDER),
            default=list(kinds.LADDER),
            key="latency_models",
        )
        c1, c2, c3 = st.columns(3)
        segments = c1.multiselect(
            "Segments K", [1, 2, 4, 8, 16, 32], default=[1, 4, 16], key="latency_segments"
        )
        candidates = c1.multiselect(
            "Candidates N", [100, 1_000, 10_000, 100_000], default=[1_000, 10_000], key="latency_candidates"
        )
        history = c2.multiselect("History length L", [50, 200], default=[50], key="latency_history")
        backends = c2.multiselect(
            "Backends", ["torch", "onnxruntime"], default=["torch", "onnxruntime"], key="latency_backends"
        )
        w1, w2 = c2.columns(2)
        dim = w1.select_slider("Width d", [16, 32, 64, 128, 256], value=64, key="latency_dim")
        layers = w2.select_slider("Depth", [1, 2, 4, 8], value=2, key="latency_layers")
        request_candidates = c1.multiselect(
            "Per-request candidate lists M (fresh random ids, where M < N)",
            [1_000, 10_000],
            default=[1_000],
            key="latency_request_candidates",
        )
        budget = c3.select_slider(
            "Time budget per point (s)", [0.02, 0.05, 0.1, 0.2, 0.5], value=0.05, key="latency_budget"
        )
        cross_budget = c3.select_slider(
            "Cross-encoder budget per point (s)",
            [0.2, 0.5, 1.0, 2.0, 5.0],
            value=2.0,
            key="latency_cross_budget",
        )
        passes = c3.select_slider(
            "Passes (each figure is their median)", [1, 2, 3, 4, 5], value=3, key="latency_passes"
        )
        calibrate = st.checkbox(
            "Also calibrate the cost model on this machine (a few seconds; the What-if page then uses it)",
            value=True,
            key="latency_calibrate",
        )
        ann = st.checkbox(
            "Also time an IVF first stage (faiss) at N = 100,000 beside exhaustive scoring: recall@10 and "
            "p50 for 8, 16, 32 and 64 probes (about 20 s more)",
            value=False,
            key="latency_ann",
        )
        run = st.form_submit_button("Run the sweep", type="primary")

    empty = [name for name, chosen in (("segment count", segments), ("candidate count", candidates),
                                       ("history length", history), ("backend", backends), ("model", models))
             if not chosen]  # fmt: skip
    if not run:
        return None
    if empty:
        st.error(f"Choose at least one {', one '.join(empty)} for the sweep.", icon=":material/error:")
        return None
    return BenchSettings(
        segments=tuple(sorted(segments)),
        candidates=tuple(sorted(candidates)),
        history=tuple(sorted(history)),
        request_candidates=tuple(sorted(request_candidates)),
        encoder_sizes=((1, 32), (2, 64), (4, 128)),  # measured; the larger ones from the cost model
        backends=tuple(backends),
        models=tuple(models),
        budget_s=float(budget),
        cross_budget_s=float(cross_budget),
        passes=int(passes),
        dim=int(dim),
        layers=int(layers),
        calibrate=calibrate,
        ann=("ivf",) if ann else (),
    )


def data_filters() -> tuple:
    """The Data page's optional filters and column mapping: ``(min_rating, k_core, column_map)``, the
    column map None when no name is typed (MovieLens layouts are detected by themselves). The labels
    begin with ``audience.APP_NAMES``, the names the data layer's error sentences use for these boxes."""
    from msli_core.data.audience import APP_NAMES, FILTERS_PANEL

    with st.expander(FILTERS_PANEL):
        f1, f2 = st.columns(2)
        min_rating = f1.number_input(
            APP_NAMES["min_rating"], min_value=0.0, max_value=10.0, value=None, step=0.5,
            key="data_min_rating", help="Empty: every rating counts as an interaction (the default).",
        )  # fmt: skip
        k_core = f2.number_input(
            f"{APP_NAMES['k_core']} (every user and item keeps ≥ k events)", min_value=0, max_value=100,
            value=0, step=1, key="data_k_core", help="0 or 1: no k-core filter.",
        )  # fmt: skip
        st.caption(
            "Column mapping, only for a plain interactions CSV/TSV/Parquet loaded with “Upload files” or "
            "“Local path” (MovieLens layouts are detected by themselves): the names of the columns holding "
            "each field."
        )
        m1, m2, m3, m4 = st.columns(4)
        column_names = {
            "user": m1.text_input(APP_NAMES["user"], key="data_col_user"),
            "item": m2.text_input(APP_NAMES["item"], key="data_col_item"),
            "timestamp": m3.text_input(APP_NAMES["timestamp"], key="data_col_timestamp"),
            "rating": m4.text_input(f"{APP_NAMES['rating']} (optional)", key="data_col_rating"),
        }
    column_map = {field: name.strip() for field, name in column_names.items() if name.strip()} or None
    return min_rating, k_core, column_map


def synth_settings(default) -> dict:
    """The generator's five settings (users, items, interactions, noise, seed), from ``default`` (a
    ``SynthConfig``: the bundled sample's). The boxes' bounds are the generator's own: at least twice as
    many items as the ``default.interests`` interests it plants, at least ``default.min_events`` events
    per user; what depends on two boxes (interactions between users × min_events and users × min(max_events,
    items)) is said under them, and a value outside it is refused by the generator naming these boxes."""
    from msli_core.data.audience import APP_NAMES
    from msli_core.data.sources import synth_interactions_range

    g = st.columns(5)
    least_users, least_items = 10, 2 * default.interests
    synth = dict(
        users=g[0].number_input(
            APP_NAMES["users"], least_users, 20_000, default.users, step=50, key="data_synth_users"
        ),
        items=g[1].number_input(
            APP_NAMES["items"], least_items, 50_000, default.items, step=100, key="data_synth_items"
        ),
        interactions=g[2].number_input(
            APP_NAMES["interactions"],
            least_users * default.min_events,
            2_000_000,
            default.interactions,
            step=5_000,
            key="data_synth_interactions",
        ),
        noise=g[3].slider(APP_NAMES["noise"], 0.0, 0.9, default.noise, step=0.05, key="data_synth_noise"),
        seed=g[4].number_input(APP_NAMES["seed"], 0, 2**31 - 1, default.seed, key="data_synth_seed"),
    )
    least, most = synth_interactions_range(int(synth["users"]), int(synth["items"]), default)
    st.caption(
        f"With {synth['users']:,} users and {synth['items']:,} items the generator takes between {least:,} "
        f"and {most:,} interactions: every user makes at least {default.min_events} events and at most "
        f"{min(default.max_events, synth['items'])} (never the same item twice)."
    )
    return synth


def explain_picker(data, model_names: list[str], stages: list[str], max_users: int) -> tuple:
    """The Explain page's choices: ``(model name, user id, top n, stage label)``. With at most
    ``max_users`` users the user is picked from a list that shows each one's hit or miss (optionally
    hits only; the longest-history hit first), else typed."""
    import numpy as np

    from msli_core import explain_view

    c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
    model_name = c1.selectbox("Model", model_names, key="explain_model")
    if data.n_users <= max_users:
        lengths = state.for_dataset("user_lengths", lambda d: np.array([len(s) for s in d.sequences[1:]]))
        ranks = state.test_ranks(model_name)  # (U+1,) the held-out item's rank per user, NaN = none
        hits_only = c2.toggle(
            "Only hits",
            key="explain_hits_only",
            help="List only the users whose held-out test item is in the model's top 10.",
        )
        users, default = explain_view.picker_users(ranks, lengths, hits_only)
        uid = c2.selectbox(
            "User (type to search)",
            users.tolist(),
            index=default,
            key="explain_user",
            format_func=lambda u: explain_view.user_label(data.user_ids[u], lengths[u - 1], ranks[u]),
        )
        user_id = data.user_ids[uid]
    else:
        # the default is the first user with a held-out item (3 or more events), so the default stage
        # (the held-out event) has something to explain; ids are short, the box takes at most 200 chars
        first = next((u for u in range(1, data.n_users + 1) if len(data.sequences[u]) >= 3), 1)
        user_id = c2.text_input(
            "User id (as written in the data file)",
            value=str(data.user_ids[first]),
            max_chars=200,
            key="explain_user",
        )
    top_n = c3.slider("Top n", 3, 20, 10, key="explain_top_n")
    stage_label = c4.radio("Recommend", stages, key="explain_stage")
    return model_name, user_id, top_n, stage_label


def train_form() -> tuple:
    """The Train page's form: ``(kinds, segment counts, aggregation, dim, layers, epochs, seed,
    submitted)``."""
    from msli_core import trained as trained_models
    from msli_core.models.late_interaction import AGGREGATIONS
    from msli_core.train import TrainSettings

    # set before the form's widgets exist in this run, so they show the preset
    if st.button(
        "Demo preset: MS-LI K=4 and popularity in about a minute (d = 32, 1 layer, 8 epochs)",
        key="train_demo_preset",
        help="Measured on the bundled sample, a quiet 2-core machine: 16 s of training for test NDCG@10 "
        "0.270 (the full defaults: 0.280, in about a minute).",
    ):
        st.session_state.update(train_kinds=["msli", "popularity"], train_segments=[4], train_dim=32,
                                train_layers=1, train_epochs=8)  # fmt: skip
    with st.form("train_form"):
        chosen_kinds = st.multiselect(
            "Models",
            list(trained_models.KIND_CHOICES),
            default=["msli", "two-tower", "popularity"],
            format_func=trained_models.KIND_CHOICES.get,
            key="train_kinds",
        )
        c1, c2, c3 = st.columns(3)
        segment_counts = c1.multiselect(
            "Segments K (MS-LI; one model per value)", [2, 4, 8, 16], default=[4], key="train_segments"
        )
        aggregation = c1.selectbox(
            "Aggregation",
            AGGREGATIONS,
            key="train_aggregation",
            help="How the K segment scores combine (docs/design.md §2).",
        )
        dim = c2.select_slider("Width d", [8, 16, 32, 64, 128], value=64, key="train_dim")
        layers = c2.slider("Depth (transformer layers)", 1, 4, 2, key="train_layers")
        epochs = c3.number_input(
            "Epochs (at most; early stopping on validation NDCG@10)",
            1,
            100,
            TrainSettings().epochs,
            key="train_epochs",
        )
        seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")
        submitted = st.form_submit_button("Train", type="primary")
        st.caption(
            "Time grows with users × epochs × width × depth. Measured on a quiet 2-core machine, two "
            "threads: an epoch over the bundled sample (d = 64, 2 layers, with its validation) takes about "
            "3.8 s for MS-LI K=4 and 2.2 s for the two-tower model (make quality's run), so the default "
            "20 epochs take about 75 s (early stopping may end sooner; the bundled demo "
            "models' own times are in the table below); width 16 and 1 layer are several times faster. "
            "The cross-encoder is by far the slowest to train and to evaluate."
        )
    return chosen_kinds, segment_counts, aggregation, dim, layers, epochs, seed, submitted


def retrieval_stage_form(candidates: int) -> dict:
    """The What-if page's first stage: index type (none, IVF, HNSW), probes, IVF lists (0 = 4·sqrt(N)) and
    k' per query. Returns ``{}`` for none, else ModelShape's ``index``, ``probes``, ``lists``,
    ``neighbours``."""
    from msli_core.serving.retrieval import default_lists

    r1, r2, r3, r4 = st.columns(4)
    index = r1.selectbox("Retrieval stage", ["none (score all N)", "IVF", "HNSW"], key="whatif_index")
    if index.startswith("none"):
        return {}
    label = "Probes (IVF nprobe)" if index == "IVF" else "efSearch (HNSW)"
    probes = r2.select_slider(label, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], value=64,
                              key="whatif_probes")  # fmt: skip
    lists = r3.number_input(f"IVF lists (0 = 4·√N = {default_lists(candidates):,})", 0, max(1, candidates),
                            0, key="whatif_lists", disabled=index != "IVF")  # fmt: skip
    most = max(10, min(10_000, candidates))  # a query cannot return more neighbours than there are items
    neighbours = r4.number_input("k' neighbours per query", 10, most, min(32, most), key="whatif_neighbours")
    return {"index": index.lower(), "probes": int(probes), "lists": int(lists) or None,
            "neighbours": int(neighbours)}  # fmt: skip
