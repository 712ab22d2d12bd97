"""The serving engine reproduces the training model: same scores, incremental == full re-encode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msli_core.errors import MsliError
from msli_core.models.late_interaction import late_interaction
from msli_core.models.msli import MSLIConfig, MSLIModel
from msli_core.serving import scoring
from msli_core.serving.engine import InferenceEngine

N_ITEMS = 300


def make_model(aggregation: str = "attention", segments: int = 4, segment_len: int = 5, **kw) -> MSLIModel:
    """A model with perturbed weights; closed segments "recent" unless asked (short test histories then
    have closed slots; "older" needs histories longer than max_len)."""
    kw.setdefault("closed_segments", "recent")
    torch.manual_seed(0)
    config = MSLIConfig(
        n_items=N_ITEMS, n_genres=5, dim=16, segments=segments, segment_len=segment_len, layers=2, heads=2,
        aggregation=aggregation, **kw,
    )  # fmt: skip
    model = MSLIModel(config).eval()
    with torch.no_grad():  # non-trivial pooling, query and age-bias weights (init leaves some at 0)
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def reference_scores(model: MSLIModel, history: np.ndarray, timestamps: np.ndarray | None = None):
    """Scores (N+1,) and segment vectors (K, d) of the training model over the whole history."""
    with torch.no_grad():
        out = model.score_histories_explained([history], None if timestamps is None else [timestamps])
    return out.scores[0], out.contributions[0], out.vectors[0], torch.as_tensor(out.batch.mask[0])


@pytest.mark.parametrize(
    ("aggregation", "closed"),
    [
        ("attention", "recent"),
        ("max", "recent"),
        ("sum", "recent"),
        ("mlp", "recent"),
        ("attention", "older"),
        ("attention", "recency"),
        ("max", "recency"),
    ],
)
def test_engine_scores_equal_model_scores(aggregation, closed):
    recency_slot = closed == "recency"  # closed segments "recent", the newest events as their own slot
    closed = "recent" if recency_slot else closed
    # 17 events: the window slides
    model = make_model(aggregation, closed_segments=closed, max_len=6, recency_slot=recency_slot)
    rng = np.random.default_rng(1)
    history = rng.integers(1, N_ITEMS + 1, size=17)
    engine = InferenceEngine(model)
    engine.offline()
    engine.load_history("u", history)
    ref, ref_contrib, ref_vectors, _mask = reference_scores(model, history)
    torch.testing.assert_close(engine.users["u"].vectors, ref_vectors, atol=1e-5, rtol=1e-5)
    every = engine.reference_scores("u")  # (N+1,) through the engine's stored vectors
    np.testing.assert_allclose(every[1:], ref[1:].numpy(), atol=1e-5, rtol=1e-5)
    rec = engine.recommend("u", None, top_k=20, exclude_seen=False)
    expected = torch.topk(ref[1:], 20).indices + 1
    assert rec.items.tolist() == expected.tolist()  # the same items in the same order
    np.testing.assert_allclose(rec.scores, ref[rec.items].numpy(), atol=1e-5)
    np.testing.assert_allclose(rec.contributions, ref_contrib[:, rec.items].T.numpy(), atol=1e-5)
    np.testing.assert_allclose(rec.contributions.sum(1), rec.scores, atol=1e-5)  # exact decomposition
    assert rec.contributions.shape == (20, 4) and rec.fallback is None


@pytest.mark.parametrize("aggregation", ["attention", "max"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("block", [1, 7, 4096])
@pytest.mark.parametrize("seen_lookup", ["byte table", "binary search"])
def test_blockwise_top_k_equals_reference(aggregation, backend, block, seen_lookup, monkeypatch):
    """The block-wise scorer (bound, then exact scores of the passing columns) returns the reference's
    top-k and contributions, whatever the block size, for the whole catalog, a candidate list and an id
    range, with the seen items excluded (either lookup: a byte table for catalogs up to
    SEEN_TABLE_MAX_ITEMS, binary search above); a batch of users gives each user's own answer."""
    if seen_lookup == "binary search":
        monkeypatch.setattr(scoring, "SEEN_TABLE_MAX_ITEMS", 0)
    model = make_model(aggregation, segments=4, segment_len=5, max_len=6, closed_segments="recent")
    engine = InferenceEngine(model, backend=backend, block=block)
    engine.offline()
    rng = np.random.default_rng(4)
    histories = {f"u{i}": rng.integers(1, N_ITEMS + 1, size=n) for i, n in enumerate((3, 9, 17))}
    for user, history in histories.items():
        engine.load_history(user, history)
    candidates = rng.choice(np.arange(1, N_ITEMS + 1), size=150, replace=False)
    for cand in (None, candidates, range(40, 200)):  # whole catalog, a list, a contiguous sub-catalog
        ids = np.arange(1, N_ITEMS + 1) if cand is None else np.asarray(cand)
        batch = engine.recommend_many(list(histories), cand, top_k=12)
        for (user, history), rec in zip(histories.items(), batch, strict=True):
            with torch.no_grad():
                ref, ref_contrib = engine._reference(engine.users[user], engine.table[torch.as_tensor(ids)])
            ref = np.where(np.isin(ids, history), -np.inf, ref.numpy())  # seen items never come back
            best = np.argsort(-ref, kind="stable")[:12]  # (12,) columns of the reference's top-12
            assert rec.items.tolist() == ids[best].tolist()
            np.testing.assert_allclose(rec.scores, ref[best], atol=1e-5)
            np.testing.assert_allclose(rec.contributions, ref_contrib[:, best].T.numpy(), atol=1e-5)
            assert engine.recommend(user, cand, top_k=12).items.tolist() == rec.items.tolist()


def test_fast_scorer_matches_late_interaction_with_empty_slots():
    model = make_model("attention", segments=8, segment_len=3)
    engine = InferenceEngine(model)
    engine.load_history("u", np.array([5, 6, 7, 8]))  # 3 of 8 slots used: a closed segment ("recent"),
    state = engine.users["u"]  # the window and its newest events
    assert state.mask.tolist() == [False] * 5 + [True, True, True]
    rec = engine.recommend("u", np.array([3]), top_k=1)  # N = 1
    with torch.no_grad():
        ref, contrib = late_interaction(
            state.vectors[None], state.mask[None], engine.table[[3]], aggregation="attention",
        attention_queries=state.queries[None], age_bias=model.age_bias,
    )  # fmt: skip
    assert rec.items.tolist() == [3]
    np.testing.assert_allclose(rec.scores, ref[0].numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(rec.contributions, contrib[0].T.numpy(), atol=1e-5)
    assert not rec.contributions[0, :5].any()  # empty slots contribute exactly 0


@pytest.mark.parametrize(
    ("mode", "max_len", "closed"), [("kv", 200, "recent"), ("segment", 200, "recent"), ("kv", 9, "recent"),
                                    ("kv", 9, "older"), ("kv", 9, "recency"), ("segment", 200, "recency")]
)  # fmt: skip
def test_incremental_updates_equal_full_reencode(mode, max_len, closed):
    # max_len 9: the window slides after event 9, so the KV cache gives way to window re-encodes;
    # "recency": closed segments "recent" and the newest events as their own slot (K = 4: 2 closed slots)
    recency_slot = closed == "recency"
    closed = "recent" if recency_slot else closed
    model = make_model("attention", segments=4 if recency_slot else 3, segment_len=4, max_len=max_len,
                       closed_segments=closed, recency_slot=recency_slot)  # fmt: skip
    engine = InferenceEngine(model, nearline=mode)
    rng = np.random.default_rng(2)
    events = rng.integers(1, N_ITEMS + 1, size=23)  # crosses several segment boundaries, drops old ones
    for t, item in enumerate(events):
        engine.observe("u", int(item), 100 * t)
        incremental = engine.users["u"].vectors.clone()
        _, _, ref_vectors, ref_mask = reference_scores(model, events[: t + 1])
        assert engine.users["u"].mask.tolist() == ref_mask.tolist()
        torch.testing.assert_close(incremental[ref_mask], ref_vectors[ref_mask], atol=1e-5, rtol=1e-4)
        full = engine.full_reencode("u")
        torch.testing.assert_close(incremental[ref_mask], full[ref_mask], atol=1e-5, rtol=1e-4)
    # after a full re-encode the KV cache is rebuilt from the history: still the same vectors
    engine.observe("u", 7, 10_000)
    _, _, ref_vectors, ref_mask = reference_scores(model, np.append(events, 7))
    torch.testing.assert_close(
        engine.users["u"].vectors[ref_mask], ref_vectors[ref_mask], atol=1e-5, rtol=1e-4
    )
    state = engine.users["u"]
    C = model.config.closed_slots
    closed = [w for w, m in zip(state.pooling[:C], state.mask[:C], strict=True) if m]
    assert closed and all(float(w.sum()) == pytest.approx(1.0, abs=1e-5) for w in closed)  # pooling
    recent = model.recency_weights().flip(0)  # the slot of the recency path: c·r_j on its newest events
    torch.testing.assert_close(state.pooling[-1][-len(recent) :], recent)
    assert float(state.pooling[-1][: -len(recent)].abs().sum()) == 0.0
    n = len(state.history)
    if recency_slot:  # the newest events alone in the last slot; the window's slot has no event weights
        assert state.bounds[-1] == (n - len(recent), n) and len(state.pooling[-1]) == len(recent)
        assert state.bounds[-2] == (n - min(n, max_len), n) and float(state.pooling[-2].abs().sum()) == 0.0


def test_session_segmenter_incremental():
    model = make_model("attention", segments=3, segment_len=4, segmenter="session", session_gap=50.0)
    engine = InferenceEngine(model)
    events = [3, 4, 5, 6, 7, 8, 9, 10, 11]
    times = [0, 10, 20, 200, 210, 400, 410, 420, 430]
    for item, ts in zip(events, times, strict=True):
        engine.observe("u", item, ts)
    _, _, ref_vectors, ref_mask = reference_scores(model, np.array(events), np.array(times))
    torch.testing.assert_close(
        engine.users["u"].vectors[ref_mask], ref_vectors[ref_mask], atol=1e-5, rtol=1e-4
    )


def test_cold_start_falls_back_to_popularity():
    model = make_model()
    popularity = np.zeros(N_ITEMS + 1)
    popularity[[10, 20, 30]] = [5, 9, 7]
    engine = InferenceEngine(model, popularity)
    rec = engine.recommend("new-user", None, top_k=3)
    assert rec.fallback == "popularity"
    assert rec.items.tolist() == [20, 30, 10]
    assert rec.contributions.shape == (3, 4) and not rec.contributions.any()
    rec = engine.recommend("new-user", 2, top_k=5)  # n most popular candidates
    assert rec.items.tolist() == [20, 30]


def test_exclude_seen_and_candidates():
    model = make_model()
    engine = InferenceEngine(model)
    engine.load_history("u", np.array([1, 2, 3]))
    rec = engine.recommend("u", np.array([1, 2, 3, 4, 5]), top_k=5)
    assert sorted(rec.items.tolist()) == [4, 5]
    rec = engine.recommend("u", np.array([1, 2, 3, 4, 5]), top_k=5, exclude_seen=False)
    assert sorted(rec.items.tolist()) == [1, 2, 3, 4, 5]
    with pytest.raises(MsliError, match="Candidate"):
        engine.recommend("u", np.array([0, N_ITEMS + 1]))
    with pytest.raises(MsliError, match="range"):
        engine.recommend("u", range(0, 10))
    with pytest.raises(MsliError, match="outside"):
        engine.observe("u", N_ITEMS + 5)


def test_seen_items_grow_with_updates_and_stay_excluded():
    """The sorted seen-item array grows per new event: after many updates (repeats included) it holds
    exactly the distinct items, and no request returns one of them."""
    model = make_model("attention", segments=3, segment_len=4)
    engine = InferenceEngine(model)
    engine.offline()
    engine.load_history("u", [5, 6, 5])
    rng = np.random.default_rng(3)
    events = rng.integers(1, 60, size=120)  # many repeats, several buffer doublings
    for t, item in enumerate(events):
        engine.observe("u", int(item), 1000 + t)
        if t % 17 == 0:
            rec = engine.recommend("u", None, top_k=10)
            assert not set(rec.items.tolist()) & set(engine.users["u"].seen.tolist())
    state = engine.users["u"]
    distinct = set(events.tolist()) | {5, 6}
    assert state.seen.tolist() == sorted(distinct)
    for candidates in (None, 200, np.arange(1, 80)):  # whole catalog, top-n column map, explicit ids
        rec = engine.recommend("u", candidates, top_k=15)
        assert not set(rec.items.tolist()) & distinct
    engine.full_reencode("u")  # rebuilt from the history: the same distinct items
    assert engine.users["u"].seen.tolist() == sorted(distinct)


def test_numpy_attention_step_equals_the_models_aggregate():
    """The serving engine's numpy attention step (on the columns that pass its bound) computes what the
    model's own aggregate computes, bias and all."""
    from msli_core.models.late_interaction import aggregate
    from msli_core.serving.scoring import attention_contributions

    rng = np.random.default_rng(5)
    scores, logits = rng.standard_normal((2, 5, 37)).astype(np.float32)  # (K', m) each
    bias = rng.standard_normal(5).astype(np.float32)
    total, contributions = attention_contributions(scores, logits, bias)
    ref_total, ref = aggregate(torch.from_numpy(scores)[None], torch.ones(1, 5, dtype=torch.bool),
                               aggregation="attention", logits=torch.from_numpy(logits)[None],
                               age_bias=torch.from_numpy(bias))  # fmt: skip
    np.testing.assert_allclose(contributions, ref[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(total, ref_total[0].numpy(), atol=1e-6)


def test_seen_lookups_agree_with_isin():
    """The byte table and the binary search of the sorted seen ids answer alike, ids absent or present,
    including seen ids at the table's first and last rows."""
    rng = np.random.default_rng(9)
    seen = np.unique(np.concatenate([[1, 500], rng.integers(1, 501, size=60)]))  # sorted, unique
    ids = rng.integers(1, 501, size=2_000)
    expected = np.isin(ids, seen)
    table = scoring.SeenItems(seen, table_rows=501)
    assert table.table is not None and table.contains(ids).tolist() == expected.tolist()
    assert scoring._seen_mask(seen, ids).tolist() == expected.tolist()
    assert not scoring.SeenItems(seen[:0], table_rows=501).contains(ids).any()


def test_fastest_backend_is_one_of_the_products():
    for streamed in (False, True):
        assert scoring.fastest_backend(3, 16, streamed=streamed) in scoring.BACKENDS
