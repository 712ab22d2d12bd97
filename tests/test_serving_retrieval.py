"""The ANN first stage (msli_core/serving/retrieval.py): exact scores on what it returns, recall 1.0 when
the search is exhaustive, seen items excluded, and every bad input one sentence before any allocation."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from msli_core.errors import MsliError
from msli_core.models.late_interaction import late_interaction
from msli_core.models.msli import MSLIConfig, MSLIModel
from msli_core.serving import retrieval
from msli_core.serving.engine import InferenceEngine
from msli_core.serving.retrieval import AnnSettings, build_index

N_ITEMS = 600


def make_engine(aggregation: str = "attention", segments: int = 4, clustered: bool = True) -> InferenceEngine:
    """A small engine whose table is a mixture of 12 Gaussians (or plain Gaussian), and 3 users."""
    torch.manual_seed(0)
    config = MSLIConfig(n_items=N_ITEMS, n_genres=5, dim=16, segments=segments, segment_len=5, layers=1,
                        heads=2, max_len=8, aggregation=aggregation, closed_segments="recent")  # fmt: skip
    model = MSLIModel(config).eval()
    with torch.no_grad():  # non-trivial query and age-bias weights
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.kind = "msli"
    engine = InferenceEngine(model, backend="numpy")
    engine.offline()
    rng = np.random.default_rng(3)
    if clustered:
        centres = rng.standard_normal((12, 16)).astype(np.float32)
        labels = rng.integers(0, 12, size=N_ITEMS)
        engine.table_np[1:] = centres[labels] + 0.3 * rng.standard_normal((N_ITEMS, 16)).astype(np.float32)
    for user in range(3):
        engine.load_history(user, rng.integers(1, N_ITEMS + 1, size=20))
    return engine


def test_docstring_examples():
    assert doctest.testmod(retrieval, raise_on_error=False).failed == 0


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_exhaustive_search_returns_the_exhaustive_top_k(kind):
    """Probing every list (IVF) or a beam over the whole graph (HNSW) with k' = N: the union is every
    unseen item, so the answer is exactly the whole-catalog answer: recall 1.0, same scores."""
    engine = make_engine()
    settings = AnnSettings(kind=kind, probes=N_ITEMS, neighbours=N_ITEMS, lists=16)
    index = build_index(engine.table_np, settings, build_threads=1)
    for user in range(3):
        exact = engine.recommend(user, None, top_k=10)
        ann = engine.recommend(user, top_k=10, retrieval=index)
        np.testing.assert_array_equal(ann.items, exact.items)
        np.testing.assert_allclose(ann.scores, exact.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ann.contributions, exact.contributions, rtol=1e-5, atol=1e-6)
        assert ann.retrieved == N_ITEMS - len(engine.users[user].seen)


def test_max_aggregation_is_exact_with_flat_lists():
    """MaxSim's score is a segment's product, so with every list probed (exact search) and k' >= the seen
    items, per-segment top-k' holds the true top-10 (recall 1.0) while re-scoring only a few items."""
    engine = make_engine("max")
    index = build_index(engine.table_np, AnnSettings(probes=16, neighbours=20, lists=16), build_threads=1)
    for user in range(3):
        exact = engine.recommend(user, None, top_k=10)
        ann = engine.recommend(user, top_k=10, retrieval=index)
        np.testing.assert_array_equal(ann.items, exact.items)
        assert ann.retrieved < N_ITEMS / 2


def test_rescored_contributions_are_late_interaction_on_the_candidates():
    """Whatever the first stage returns, its scores and contributions are the reference function's on
    those rows, and equal to a request that brings the same candidate list."""
    engine = make_engine()
    index = build_index(engine.table_np, AnnSettings(probes=2, neighbours=10, lists=16), build_threads=1)
    state = engine.users[0]
    ids = index.candidates(state.online, state.seen)
    ann = engine.recommend(0, top_k=10, retrieval=index)
    listed = engine.recommend(0, ids, top_k=10)
    np.testing.assert_array_equal(ann.items, listed.items)
    assert set(ann.items) <= set(ids.tolist())
    rows = engine.table[torch.as_tensor(ann.items)]
    with torch.no_grad():
        scores, shares = late_interaction(state.vectors[None], state.mask[None], rows,
                                          aggregation="attention", attention_queries=state.queries[None],
                                          age_bias=engine.model.age_bias)  # fmt: skip
    np.testing.assert_allclose(ann.scores, scores[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ann.contributions, shares[0].T.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ann.contributions.sum(1), ann.scores, rtol=1e-5, atol=1e-5)


def test_seen_items_are_never_candidates_and_never_recommended():
    engine = make_engine()
    index = build_index(engine.table_np, AnnSettings(probes=16, neighbours=30, lists=16), build_threads=1)
    for user in range(3):
        seen = engine.users[user].seen
        ids = index.candidates(engine.users[user].online, seen)
        assert not np.isin(ids, seen).any()
        assert not np.isin(engine.recommend(user, retrieval=index).items, seen).any()


def test_pooled_query_is_the_prior_weighted_mean():
    engine = make_engine()
    online = engine.users[0].online
    queries = retrieval.search_queries(online)
    assert queries.shape == (len(online.vectors) + 1, 16)
    w = np.exp(online.bias - online.bias.max())
    w /= w.sum()
    np.testing.assert_allclose(queries[-1], (w[:, None] * online.vectors).sum(0), rtol=1e-5, atol=1e-6)
    assert retrieval.search_queries(online, pooled=False).shape == online.vectors.shape


def test_a_user_without_history_gets_the_popularity_fallback():
    engine = make_engine()
    index = build_index(engine.table_np, AnnSettings(lists=8), build_threads=1)
    rec = engine.recommend("nobody", retrieval=index)
    assert rec.fallback == "popularity" and len(rec.items) == 10


def test_default_lists_and_index_bytes_are_hand_checkable():
    assert retrieval.default_lists(1_000_000) == 4000
    ivf = retrieval.index_bytes("ivf", 1_000_000, 64)
    stored = 1_000_000 * (64 * 4 + 8)
    # the vectors and ids with room for the lists' growth, centroids twice, 32 training rows per list
    # (with their ids) and one add chunk's assignment
    assert ivf == int(1.5 * stored + 2 * 4000 * 64 * 4 + 32 * 4000 * (64 * 4 + 8) + (1 << 18) * 16)
    twice = retrieval.index_bytes("ivf", 2_000_000, 64, 4000)
    assert twice > 1.9 * retrieval.index_bytes("ivf", 1_000_000, 64)


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (AnnSettings(kind="flat"), "is not an index kind"),
        (AnnSettings(probes=0), "probes must be a whole number"),
        (AnnSettings(neighbours=0), "neighbours must be a whole number"),
        (AnnSettings(lists=0), "lists must be a whole number"),
    ],
)
def test_bad_settings_are_one_sentence(settings, words):
    with pytest.raises(MsliError, match=words):
        settings.validate()


def test_an_index_that_does_not_fit_is_refused_before_allocating(monkeypatch):
    from msli_core import limits

    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 64 * 2**20)  # 64 MiB available
    with pytest.raises(MsliError, match=r"needs about .* GiB .* more than 50% of the 0\.1 GiB available"):
        retrieval.check_fits("ivf", 1_000_000, 64)
    import faiss

    def no_faiss(*_args, **_kwargs):
        raise AssertionError("faiss was asked to allocate")

    monkeypatch.setattr(faiss, "IndexIVFFlat", no_faiss)
    table = np.zeros((300_001, 64), dtype=np.float32)
    with pytest.raises(MsliError, match="IVF-Flat index over 300,000 items"):
        build_index(table)


def test_bad_requests_are_one_sentence():
    engine = make_engine()
    index = build_index(engine.table_np, AnnSettings(lists=8), build_threads=1)
    with pytest.raises(MsliError, match="either candidates or retrieval"):
        engine.recommend(0, 100, retrieval=index)
    other = build_index(engine.table_np[:301], AnnSettings(lists=8), build_threads=1)
    with pytest.raises(MsliError, match=r"covers 300 items .* rebuild the index"):
        engine.recommend(0, retrieval=other)
    with pytest.raises(MsliError, match="lists 601 exceeds the 600 items"):
        build_index(engine.table_np, AnnSettings(lists=601))
    with pytest.raises(MsliError, match="float32 array"):
        build_index(engine.table_np.astype(np.float64))
    mlp = make_engine("mlp")
    mlp_index = build_index(mlp.table_np, AnnSettings(lists=8), build_threads=1)
    with pytest.raises(MsliError, match="'mlp' aggregation has no inner-product bound"):
        mlp.recommend(0, retrieval=mlp_index)
