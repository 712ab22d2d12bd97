"""How MS-LI trains: stop-gradient through closed segments, and the co-occurrence start of the item table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msli_core.errors import MsliError
from msli_core.models.baselines import ItemKNN, ItemKNNConfig, cooccurrence_embeddings
from msli_core.models.msli import MSLIConfig, MSLIModel


def _encoder_grads(closed_gradient: bool) -> list:
    torch.manual_seed(0)
    config = MSLIConfig(n_items=30, n_genres=1, dim=8, segments=3, max_len=6, segment_len=4, layers=1,
                        heads=2, dropout=0.0, closed_gradient=closed_gradient)  # fmt: skip
    model = MSLIModel(config).train()
    segments = torch.tensor([[[1, 2, 3, 4], [5, 6, 0, 0]]])  # (B=1, K'=2, S=4)
    vectors, _ = model.encode_segments(segments)  # (1, 2, 8)
    encoder = list(model.encoder.parameters())
    pooling = [model.pool.weight, model.segment_out.weight]
    grads = torch.autograd.grad(vectors.sum(), encoder + pooling, allow_unused=True)
    return grads[: len(encoder)], grads[len(encoder) :]


def test_the_recency_path_starts_as_item_knn_vote():
    """m and the starting weights r_j are item-kNN's: its newest ``history_items`` items at decay^j."""
    knn = ItemKNNConfig()
    model = MSLIModel(MSLIConfig(n_items=10, dim=8, layers=1))
    assert model.config.recent_items == knn.history_items == 5
    expected = [1.0, 0.7, 0.49, 0.343, 0.2401]
    assert model.recent_weights.detach().tolist() == pytest.approx(expected, rel=1e-6)
    shorter = MSLIModel(MSLIConfig(n_items=10, dim=8, layers=1, recent_items=2))
    assert shorter.recent_weights.tolist() == pytest.approx([1.0, 0.7])
    assert MSLIModel(MSLIConfig(n_items=10, dim=8, layers=1, recent_items=0)).recent_weights.numel() == 0


def test_without_closed_gradient_closed_segments_train_pooling_but_not_the_encoder():
    encoder_grads, pooling_grads = _encoder_grads(closed_gradient=False)
    assert all(g is None for g in encoder_grads)  # the encoder pass over closed segments is forward only
    assert all(g is not None and g.abs().sum() > 0 for g in pooling_grads)  # p and W_s still learn
    encoder_grads, _ = _encoder_grads(closed_gradient=True)  # the default
    assert any(g is not None and g.abs().sum() > 0 for g in encoder_grads)
    assert MSLIConfig().closed_gradient


def test_stop_gradient_does_not_change_the_forward_values():
    torch.manual_seed(0)
    config = dict(n_items=30, n_genres=1, dim=8, segments=3, max_len=6, segment_len=4, layers=1, heads=2,
                  dropout=0.0)  # fmt: skip
    a = MSLIModel(MSLIConfig(**config, closed_gradient=False)).train()
    b = MSLIModel(MSLIConfig(**config, closed_gradient=True)).train()
    b.load_state_dict(a.state_dict())
    segments = torch.tensor([[[1, 2, 3, 4], [5, 6, 0, 0]]])
    torch.testing.assert_close(a.encode_segments(segments)[0], b.encode_segments(segments)[0])


def test_cooccurrence_embeddings_reproduce_item_knn_similarity():
    # two item groups that co-occur only within themselves: {1, 2, 3} and {4, 5, 6}
    sequences = [np.array([1, 2, 3, 1, 2, 3]), np.array([4, 5, 6, 4, 5, 6]), np.array([2, 1, 3])]
    n_items, dim = 8, 6
    table = cooccurrence_embeddings(sequences, n_items, dim, window=1)  # (9, 6)
    assert table.shape == (n_items + 1, dim) and np.all(table[0] == 0)
    knn = ItemKNN(ItemKNNConfig(n_items=n_items, neighbors=n_items, window=1)).fit(sequences)
    sim = np.zeros((n_items + 1, n_items + 1))
    for i in range(n_items + 1):
        sim[i, knn.neighbor_ids[i].numpy()] += knn.neighbor_sims[i].numpy()
    sim = (sim + sim.T) / 2
    sim[:, 0] = sim[0, :] = 0
    gram = table.astype(np.float64) @ table.T.astype(np.float64)  # (9, 9)
    # off the diagonal the rank-6 fit of the positive part matches where it matters: within a group
    # items are similar, across groups (which never co-occur) they are not
    within, across = gram[1, 2], gram[1, 4]
    assert within > 0.2 and abs(across) < 1e-6
    assert (
        np.corrcoef(gram[1:, 1:][~np.eye(n_items, dtype=bool)], sim[1:, 1:][~np.eye(n_items, dtype=bool)])[
            0, 1
        ]
        > 0.9
    )
    # items 7 and 8 never occur: zero vectors
    assert np.allclose(table[7:], 0, atol=1e-6)


def test_cooccurrence_embeddings_refuse_what_cannot_be_factored():
    assert cooccurrence_embeddings([np.array([1, 2])], 3, 8) is None  # catalog smaller than dim + 2
    assert cooccurrence_embeddings([np.array([1]), np.array([2])], 40, 8) is None  # nothing co-occurs


@pytest.mark.parametrize("init", ["cooccurrence", "random"])
def test_the_model_starts_from_cooccurrence_only_when_asked(init):
    sequences = [np.array([1, 2, 3, 4, 5] * 3), np.array([6, 7, 8, 9, 10] * 3)] * 4
    torch.manual_seed(0)
    model = MSLIModel(MSLIConfig(n_items=12, n_genres=1, dim=4, segments=2, max_len=8, layers=1, heads=2,
                                 item_init=init, item_init_scale=2.0))  # fmt: skip
    before = model.items.ids.weight.detach().clone()
    applied = model.init_items_from_cooccurrence(sequences)
    after = model.items.ids.weight.detach()
    if init == "random":
        assert not applied and torch.equal(before, after)
    else:
        expected = torch.as_tensor(cooccurrence_embeddings(sequences, 12, 4)) * 2.0
        assert applied
        torch.testing.assert_close(after, expected)  # a dense solver: the same table every time
        assert float(after[1] @ after[2]) > 0 and abs(float(after[1] @ after[7])) < 1e-4


def test_bad_item_init_is_refused():
    with pytest.raises(ValueError, match="item_init"):
        MSLIConfig(item_init="svd")
    with pytest.raises(ValueError, match="item_init_scale"):
        MSLIConfig(item_init_scale=0.0)


def test_cooccurrence_counts_are_the_same_in_chunks(monkeypatch):
    import msli_core.models.baselines as baselines

    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 60, size=rng.integers(1, 40)) for _ in range(50)]
    whole, counts = baselines.cooccurrence_counts(sequences, 60, 3)
    monkeypatch.setattr(baselines, "COOCCURRENCE_CHUNK", 7)  # a chunk every sequence or so
    chunked, chunked_counts = baselines.cooccurrence_counts(sequences, 60, 3)
    assert (whole != chunked).nnz == 0 and np.array_equal(counts, chunked_counts)
    # by hand: the pair (a, b) at distance <= 3 in both orders, so C is symmetric
    assert (whole != whole.T).nnz == 0 and whole.diagonal().sum() == 0


def test_the_serving_item_table_keeps_the_model_dtype():
    # eval mode without grad builds the table chunk by chunk; a float64 model gets a float64 table
    torch.manual_seed(0)
    model = MSLIModel(MSLIConfig(n_items=30, n_genres=1, dim=8, max_len=6)).double().eval()
    with torch.no_grad():
        chunked = model.item_table()
    assert chunked.dtype == torch.float64
    torch.testing.assert_close(chunked, model.items().detach(), rtol=1e-12, atol=0.0)


def _state_dropout_model(p: float) -> MSLIModel:
    torch.manual_seed(0)
    config = MSLIConfig(n_items=30, n_genres=1, dim=8, segments=1, max_len=6, layers=1, heads=2, dropout=0.0,
                        state_dropout=p)  # fmt: skip
    return MSLIModel(config)


def test_state_dropout_picks_rows_in_training_only():
    model = _state_dropout_model(0.5)
    torch.manual_seed(1)
    kept = model.train().state_dropout_rows(400)  # (400,) bool
    assert kept.dtype == torch.bool and kept.shape == (400,)
    assert 150 < int(kept.sum()) < 250  # about half (p = 0.5)
    assert model.eval().state_dropout_rows(400) is None  # inference never drops
    assert _state_dropout_model(0.0).train().state_dropout_rows(400) is None


def test_a_dropped_row_is_the_recency_path_alone_and_a_kept_row_scales_the_share():
    model = _state_dropout_model(0.5).train()
    window = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 0, 0]])  # (B=3, T=6)
    table = model.item_table().detach()
    kept = torch.tensor([True, False, True])
    with torch.no_grad():
        recency = model.recent_path(window, table)  # (3, 6, 8)
        share = model.open_out(model.encoder(table[window]))  # (3, 6, 8): W_o h_t (encoder dropout 0)
        trained = model.open_vectors(window, table, kept)[:, :, 0]  # (3, 6, 8): the one open slot
        served = model.eval().open_vectors(window, table)[:, :, 0]
    torch.testing.assert_close(trained[1], recency[1])  # dropped: the recency path alone
    torch.testing.assert_close(trained[[0, 2]], (recency + 2 * share)[[0, 2]])  # kept: 1/(1-p) = 2
    torch.testing.assert_close(served, recency + share)  # inference: the share, unscaled


def test_state_dropout_of_one_is_refused():
    with pytest.raises(MsliError, match="state_dropout"):
        MSLIConfig(state_dropout=1.0)
    assert MSLIConfig().state_dropout == 0.0  # an option, off by default


@pytest.mark.parametrize("rank", [2, 8])
def test_query_codes_and_attention_keys_give_the_logits_of_the_full_queries(rank):
    """``<W u, e> = <query_codes(u), attention_keys(e)>``: training's logits (r per pair) are the ones
    serving computes from the full queries; rank 8 = d is a plain (d, d) W."""
    torch.manual_seed(0)
    model = MSLIModel(MSLIConfig(n_items=30, n_genres=1, dim=8, segments=4, attention_rank=rank))
    assert isinstance(model.query, torch.nn.Linear) == (rank == 8)
    vectors, items = torch.randn(5, 8, dtype=torch.float64), torch.randn(30, 8, dtype=torch.float64)
    model = model.double()
    full = model.query(vectors) @ items.T  # (5, 30)
    codes, keys = model.query_codes(vectors), model.attention_keys(items)  # (5, r), (30, r)
    assert codes.shape == (5, rank) and keys.shape == (30, rank)
    torch.testing.assert_close(codes @ keys.T, full, rtol=1e-12, atol=1e-12)


def test_the_attention_rank_defaults_to_d_and_is_checked():
    assert MSLIConfig(dim=8).attention_rank == 8
    assert MSLIConfig(dim=64, attention_rank=64).attention_rank == 64
    for bad in (0, 9):
        with pytest.raises((MsliError, ValueError), match="attention_rank"):
            MSLIConfig(dim=8, attention_rank=bad)
