"""Training: the all-positions batch matches inference, losses by hand, determinism, progress events."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from tiny_data import make_tiny_dataset

from msli_core import train as tr
from msli_core.data.dataset import leave_one_out
from msli_core.models.registry import build_model


@pytest.fixture(scope="module")
def tiny():
    data = make_tiny_dataset(users=30, items=36, events=20)
    return data, leave_one_out(data)


def test_full_softmax_loss_by_hand():
    scores = torch.tensor([[50.0, 1.0, 1.0, 1.0]])  # padding column 0 is ignored however large
    assert tr.full_softmax_loss(scores, torch.tensor([2])).item() == pytest.approx(np.log(3))


def test_sampled_softmax_log_q_correction_by_hand():
    # equal scores; the frequent candidate (q = e) is corrected down: p(target) = 1 / (1 + 1/e)
    scores = torch.zeros(1, 2)
    loss = tr.sampled_softmax_loss(scores, torch.tensor([0]), torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx(np.log(1 + np.exp(-1)))


@pytest.mark.parametrize(
    ("segments", "segmenter", "aggregation"),
    [(1, "fixed", "attention"), (3, "fixed", "attention"), (3, "session", "attention"), (3, "fixed", "max"),
     (4, "recency", "attention"), (2, "recency", "attention"), (4, "recency", "max")],
)  # fmt: skip
def test_every_position_sees_what_inference_sees(tiny, segments, segmenter, aggregation):
    """The one-pass training loss equals the mean CE of scoring each target's history from scratch
    ("recency": the fixed segmenter and the newest events as their own slot)."""
    data, split = tiny
    torch.manual_seed(0)
    recency = {"recency_slot": True} if segmenter == "recency" else {}
    segmenter = "fixed" if recency else segmenter
    model = build_model(
        "two-tower" if segments == 1 else "msli",
        data=data,
        dim=16,
        segment_len=4,
        segmenter=segmenter,
        session_gap=400,
        aggregation=aggregation,
        **({} if segments == 1 else {"segments": segments, "closed_segments": "recent", **recency}),
    )  # "recent": whole rows from event 0 have closed slots (with "older" only past the window)
    model.eval()
    users = [1, 2, 3]
    seqs = [split.train_sequence(u) for u in users]
    stamps = [data.timestamps[u][: len(s)] for u, s in zip(users, seqs, strict=True)]
    ranges = [(0, len(s)) for s in seqs]  # whole sequences (shorter than L_max + 1)
    c = model.config
    batch = tr.row_batch(seqs, stamps, ranges, segments=c.closed_slots + 1, segment_len=c.S,
                         window_len=c.max_len, segmenter=segmenter, session_gap=400,
                         closed=c.closed_segments)  # fmt: skip
    with torch.no_grad():
        loss = tr.late_interaction_loss(model, batch)
        histories = [s[:t] for s in seqs for t in range(1, len(s))]
        hstamps = [ts[:t] for s, ts in zip(seqs, stamps, strict=True) for t in range(1, len(s))]
        targets = torch.as_tensor([int(s[t]) for s in seqs for t in range(1, len(s))])
        scores = model.score_histories(histories, hstamps)  # (P, N+1)
        reference = tr.full_softmax_loss(scores, targets)
    assert batch.targets[batch.targets > 0].tolist() == targets.tolist()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def _float64_model(data, closed, max_len, recency_slot=False, attention_rank=None):
    """K = 3, or K = 4 with the recency slot: two closed slots either way (the :func:`_row_batch`'s);
    d = 8, the attention form W of rank ``attention_rank`` (None: the default, full rank at d = 8)."""
    torch.manual_seed(0)
    model = build_model("msli", data=data, dim=8, segments=4 if recency_slot else 3, segment_len=3,
                        max_len=max_len, closed_segments=closed, recency_slot=recency_slot,
                        attention_rank=attention_rank)  # fmt: skip
    with torch.no_grad():  # logits far from flat, so a wrong slot or weight would show in the loss
        model.items.ids.weight.mul_(50.0)
    return model.double().eval()


def _loss_and_grads(loss, model):
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.item(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _row_batch(seqs, stamps, rows, closed, window_len):
    """(sequence index, [r0, r1)) rows -> their RowBatch, K = 3, fixed segments of 3 events."""
    options = dict(segments=3, segment_len=3, window_len=window_len, segmenter="fixed", session_gap=400,
                   closed=closed)  # fmt: skip
    picked = [seqs[b] for b, _ in rows], [stamps[b] for b, _ in rows], [r for _, r in rows]
    return tr.row_batch(*picked, **options)


def _assert_same(got, want):
    assert got[0] == pytest.approx(want[0], rel=1e-10)
    for a, b in zip(got[1], want[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("tile", [None, 2 * 36 + 5])  # default tiles; slices of 2 positions (N = 36)
@pytest.mark.parametrize("closed", ["recent", "older"])
@pytest.mark.parametrize("recency_slot", [False, True])
@pytest.mark.parametrize("rank", [None, 3])
def test_the_fused_loss_and_gradients_equal_the_reference_path(
    tiny, closed, tile, recency_slot, rank, monkeypatch
):
    """The fused attention loss (tile by tile) and every parameter's gradient equal the reference path
    (each position's K slots through late_interaction, autograd) on rows that start early and late,
    with one open slot or two (the recency slot: its age bias and r_j get their gradients too), and
    with a full-rank attention form W or one of rank 3 (its factors get their gradients too)."""
    from msli_core.models import fused_loss

    if tile is not None:
        monkeypatch.setattr(fused_loss, "TILE_ELEMENTS", tile)
        monkeypatch.setattr(fused_loss, "MIN_TILE_POSITIONS", 1)
        monkeypatch.setattr(fused_loss, "intra_op_threads", lambda: 1)
    data, split = tiny
    model = _float64_model(data, closed, max_len=6, recency_slot=recency_slot, attention_rank=rank)
    assert (model.config.attention_rank < 8) == (rank == 3)
    users = list(range(1, 9))
    seqs = [split.train_sequence(u) for u in users]
    stamps = [data.timestamps[u][: len(s)] for u, s in zip(users, seqs, strict=True)]
    rows = [(b, r) for b, s in enumerate(seqs) for r in tr.training_rows(s, 6, 3)]
    batch = _row_batch(seqs, stamps, rows, closed, window_len=6)
    assert batch.groups * batch.group_len > 1 and bool((batch.closed_index >= 0).any())
    fused = _loss_and_grads(tr.late_interaction_loss(model, batch), model)
    reference = _loss_and_grads(tr.late_interaction_loss(model, batch, reference=True), model)
    _assert_same(fused, reference)


@pytest.mark.parametrize("max_len", [200, 1])  # whole rows from event 0; rows of 2 events (one target)
@pytest.mark.parametrize("recency_slot", [False, True])
@pytest.mark.parametrize("rank", [None, 3])
def test_the_fused_loss_gradients_equal_scoring_each_history_from_scratch(tiny, max_len, recency_slot, rank):
    """Where every training position is exactly an inference request ("recent" closed slots), the fused
    loss and its gradients equal autograd through scoring each target's history on its own (which
    computes each query ``W u`` in full, as serving does)."""
    data, split = tiny
    model = _float64_model(data, "recent", max_len=max_len, recency_slot=recency_slot, attention_rank=rank)
    seqs = [split.train_sequence(u) for u in (1, 2, 3, 4)]
    stamps = [data.timestamps[u][: len(s)] for u, s in zip((1, 2, 3, 4), seqs, strict=True)]
    if max_len == 1:
        rows = [(b, (t, t + 2)) for b, s in enumerate(seqs) for t in range(len(s) - 1)]
    else:
        rows = [(b, (0, len(s))) for b, s in enumerate(seqs)]
    batch = _row_batch(seqs, stamps, rows, "recent", window_len=max_len)
    cut = [(b, t) for b, (r0, r1) in rows for t in range(r0, r1 - 1)]  # history seqs[b][: t + 1]
    scores = model.score_histories([seqs[b][: t + 1] for b, t in cut], [stamps[b][: t + 1] for b, t in cut])
    reference = tr.full_softmax_loss(scores, torch.as_tensor([int(seqs[b][t + 1]) for b, t in cut]))
    fused = _loss_and_grads(tr.late_interaction_loss(model, batch), model)
    _assert_same(fused, _loss_and_grads(reference, model))


def _closed_events(batch, row, position):
    """Sorted event ids (item id - 1 in these tests) in the closed slots of ``position`` of ``row``."""
    group = int(batch.group_position[row, position]) // batch.group_len
    slots = batch.closed_index[row, group][batch.closed_index[row, group] >= 0]
    items = batch.closed_items[row, slots]
    return sorted((items[items > 0] - 1).tolist())


def test_no_position_sees_its_future_in_an_older_closed_slot():
    """A row that starts inside a segment (events 60..260 of 300, segments of 50, window 200): segment
    [50, 100) runs past its first positions into their targets; it joins a position's closed slots only
    once it is closed and older than that position's inference window, never earlier."""
    seq = np.arange(1, 301)  # item id = event + 1
    batch = tr.row_batch([seq], [np.arange(300.0)], [(60, 261)], segments=4, segment_len=50, window_len=200,
                         segmenter="fixed", session_gap=3600.0, closed="older")  # fmt: skip
    newest_seen = [max(_closed_events(batch, 0, p), default=-1) for p in range(batch.window.shape[1])]
    assert all(newest <= 60 + p for p, newest in enumerate(newest_seen))
    # events 60..199: their 200-event windows start at event 0, so no closed segment; events 200..249:
    # [0, 50) starts before the window; events 250..259: [50, 100) does too
    assert newest_seen == [-1] * 140 + [49] * 50 + [99] * 10


@pytest.mark.parametrize("segmenter", ["fixed", "session"])
def test_every_position_of_a_long_row_has_the_closed_slots_inference_picks(segmenter):
    """The last 201-event row of a 520-event history (window 200, K = 4, S = 50): at every position each
    closed slot holds exactly the events inference puts in that slot for the history up to that event,
    even at the row's first positions, whose open vector reads only the row (so no closed slot sits
    right before a short window there: it is as old as inference makes it). The row encodes only its
    last position's K-1 segments: an earlier position's slot that inference fills with an older
    segment is empty, never filled with another one."""
    from msli_core.models.segmenter import segment

    n, K, S, W = 520, 4, 50, 200
    seq = np.arange(1, n + 1)  # item id = event + 1
    stamps = np.cumsum(np.where(np.arange(n) % 37 == 0, 5000.0, 10.0))  # sessions of about 37 events
    r0 = n - W - 1
    batch = tr.row_batch([seq], [stamps], [(r0, n)], segments=K, segment_len=S, window_len=W,
                         segmenter=segmenter, session_gap=3600.0, closed="older")  # fmt: skip
    assert batch.groups > 2  # the closed slots move with the window along the row

    def inference_slots(t):
        slots = segment(seq[: t + 1], stamps[: t + 1], segments=K, segment_len=S, window_len=W,
                        segmenter=segmenter, session_gap=3600.0, closed="older")  # fmt: skip
        return [(row[row > 0] - 1).tolist() for row in slots.items[: K - 1]]  # events per slot

    budget = [events for events in inference_slots(n - 2) if events]  # the last position's segments
    oldest_event = min(min(events) for events in budget)
    emptied = 0
    for p in range(W):
        group = int(batch.group_position[0, p]) // batch.group_len
        for k, want in enumerate(inference_slots(r0 + p)):
            at = int(batch.closed_index[0, group, k])
            got = [] if at < 0 else (batch.closed_items[0, at][batch.closed_items[0, at] > 0] - 1).tolist()
            if want and min(want) < oldest_event:  # older than the row's budget: left empty
                assert got == [], f"position {p}, slot {k}"
                emptied += 1
            else:
                assert got == want, f"position {p}, slot {k}"
    assert emptied > 0  # the budget was exercised


def test_a_group_longer_than_a_segment_takes_several_grid_rows_with_the_same_closed_slots():
    """A row that fits in the window (200 positions, no closed slot: one group) beside a long user's row
    (groups of S = 50 positions): the grid is G × M with M = S, not 200, each position has a cell of its
    own, and a group cut into chunks keeps its closed slots in each."""
    K, S, W = 4, 50, 200
    short, long_ = np.arange(1, W + 2), np.arange(1, 521)
    ranges = [(0, W + 1), (520 - W - 1, 520)]
    batch = tr.row_batch([short, long_], [np.arange(W + 1.0), np.arange(520.0)], ranges, segments=K - 1,
                         segment_len=S, window_len=W, segmenter="fixed", session_gap=1.0,
                         closed="older")  # fmt: skip
    assert batch.group_len == S and batch.groups == 5  # the long row spans 5 groups of at most S
    cells = batch.group_position.numpy()
    for row in cells:
        assert len(set(row.tolist())) == W and row.max() < batch.groups * batch.group_len
    assert np.unique(cells[0] // S).tolist() == [0, 1, 2, 3]  # the short row's one group, in 4 chunks
    assert bool((batch.closed_index[0] < 0).all())  # ... all without closed slots
    slots = {tuple(batch.closed_index[1, g].tolist()) for g in np.unique(cells[1] // S)}
    assert (4, 5) in slots  # the long row's last group has both closed slots (its budget)


@pytest.mark.parametrize("closed", ["recent", "older"])
@pytest.mark.parametrize("segmenter", ["fixed", "session"])
def test_rows_that_start_late_see_the_inference_window_and_closed_slots(tiny, closed, segmenter):
    """Rows of 2 events with a 1-event window: each row's one target is exactly an inference request,
    whose closed slots (recent or older than the window) must be the ones inference picks."""
    data, split = tiny
    torch.manual_seed(0)
    model = build_model("msli", data=data, dim=16, segments=3, segment_len=3, max_len=1, segmenter=segmenter,
                        session_gap=400, closed_segments=closed)  # fmt: skip
    model.eval()
    seqs = [split.train_sequence(u) for u in (1, 2, 3, 4)]
    stamps = [data.timestamps[u][: len(s)] for u, s in zip((1, 2, 3, 4), seqs, strict=True)]
    picks = [(b, t) for b, s in enumerate(seqs) for t in range(0, len(s) - 1)]
    rows = [(t, t + 2) for _, t in picks]
    batch = tr.row_batch([seqs[b] for b, _ in picks], [stamps[b] for b, _ in picks], rows,
                         segments=model.config.closed_slots + 1, segment_len=3, window_len=1,
                         segmenter=segmenter, session_gap=400, closed=closed)  # fmt: skip
    with torch.no_grad():
        loss = tr.late_interaction_loss(model, batch)
        prefixes = [seqs[b][: t + 1] for b, t in picks]
        scores = model.score_histories(prefixes, [stamps[b][: t + 1] for b, t in picks])
        targets = torch.as_tensor([int(seqs[b][t + 1]) for b, t in picks])
        reference = tr.full_softmax_loss(scores, targets)
        has_closed = model.segment_batch(prefixes, [stamps[b][: t + 1] for b, t in picks]).mask[:, :2].any()
    assert has_closed  # the case is not trivial
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_training_rows_cover_every_target_once():
    seq = np.arange(1, 12)  # 11 events, 10 targets
    rows = tr.training_rows(seq, 4, 10)
    targets = [t for r0, r1 in rows for t in range(r0 + 1, r1)]
    assert sorted(targets) == list(range(1, 11)) and rows[0] == (6, 11)
    assert tr.training_rows(seq, 4, 1) == [(6, 11)]  # rows_per_user caps the rows, newest first


def _tiny_train(data, split, seed, **kw):
    settings = tr.TrainSettings.for_kind("msli", epochs=2, seed=seed)
    config = {"dim": 16, "segments": 2, "segment_len": 6, "layers": 1}
    return tr.train(data, "msli", settings, config, split=split, **kw)


def test_same_seed_same_metrics(tiny):
    data, split = tiny
    a, b = _tiny_train(data, split, 3), _tiny_train(data, split, 3)
    assert a.metrics == {**b.metrics, "seconds": a.metrics["seconds"]}
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    c = _tiny_train(data, split, 4)
    assert [h["loss"] for h in c.history] != [h["loss"] for h in a.history]


def _row_gather_gradients(runs: int) -> int:
    """Distinct gradients of ``(table[ids] * g).sum()`` over ``runs`` repeats (the backward of gathering
    item rows, as every model's forward does)."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(2000, 64, generator=gen, requires_grad=True)
    ids = torch.randint(0, 2000, (64, 200), generator=gen)
    weights = torch.randn(64, 200, 64, generator=gen)
    seen = set()
    for _ in range(runs):
        table.grad = None
        (table[ids] * weights).sum().backward()
        seen.add(table.grad.numpy().tobytes())
    return len(seen)


def test_seeding_makes_multi_threaded_training_repeat_bit_for_bit(tiny):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: every kernel runs in one thread and repeats anyway")
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(2)
    try:
        torch.use_deterministic_algorithms(False)
        if _row_gather_gradients(20) == 1:
            pytest.skip("this machine's default kernels already add the gathered rows in a fixed order")
        tr.seed_everything(0)  # what train() does first
        assert torch.are_deterministic_algorithms_enabled()
        assert _row_gather_gradients(20) == 1
        data, split = tiny
        runs = [_tiny_train(data, split, 3) for _ in range(2)]
        states = [{k: v.clone() for k, v in r.model.state_dict().items()} for r in runs]
        assert states[0].keys() == states[1].keys()
        assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # same machine, same run
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def test_progress_events_carry_loss_and_validation_metrics(tiny):
    data, split = tiny
    events = []
    result = _tiny_train(data, split, 0, progress=events.append)
    steps = [e for e in events if "loss" in e.metrics]
    epochs = [e for e in events if "valid_NDCG@10" in e.metrics]
    assert steps and all(np.isfinite(e.metrics["loss"]) for e in steps)
    assert [e.metrics["epoch"] for e in epochs] == [1, 2] == [h["epoch"] for h in result.history]
    assert events[-1].done == events[-1].total
    assert result.parameters > 0 and result.epochs == 2


def test_sampled_softmax_path_trains(tiny, monkeypatch):
    data, split = tiny
    monkeypatch.setattr(tr, "SAMPLED_SOFTMAX_ABOVE", 10)
    settings = tr.TrainSettings.for_kind("msli", epochs=1, sampled_negatives=20)
    result = tr.train(data, "msli", settings, {"dim": 16, "segments": 2, "layers": 1}, split=split)
    assert np.isfinite(result.history[0]["loss"]) and result.metrics["users"] == len(split.eval_users)


def test_baselines_and_cross_encoder_train(tiny):
    data, split = tiny
    pop = tr.train(data, "popularity", split=split)
    knn = tr.train(data, "item-knn", split=split)
    settings = tr.TrainSettings.for_kind("cross-encoder", epochs=1)
    cross = tr.train(data, "cross-encoder", settings, {"dim": 16, "layers": 1, "max_len": 8}, split=split)
    for r in (pop, knn, cross):
        assert 0.0 <= r.metrics["NDCG@10"] <= 1.0 and r.metrics["users"] == len(split.eval_users)
    assert cross.metrics["evaluation"] == "full ranking" and cross.epochs == 1


def test_the_re_ranking_cross_encoder_starts_from_its_first_stage(tiny):
    """Untrained (head 0, α = 1), the residual re-ranker orders the first stage's top-M exactly as the
    first stage does; trained, that ranking is epoch 0 of its curve, and the result is its best trained
    epoch (never the first stage alone, whose validation figure is biased by its own epoch choice)."""
    from msli_core.evaluate import evaluate

    data, split = tiny
    first = tr.train(
        data, "two-tower", tr.TrainSettings(epochs=1), {"dim": 16, "layers": 1}, split=split
    ).model
    fresh = build_model("cross-encoder", data=data, dim=16, layers=1, max_len=8)
    cascade = evaluate(fresh, data, split, "test", cascade_from=first, cascade_top=10)
    alone = evaluate(first, data, split, "test")
    assert cascade["NDCG@10"] == pytest.approx(alone["NDCG@10"], abs=1e-12)
    assert cascade["MRR"] == pytest.approx(alone["MRR"], abs=1e-12)
    settings = tr.TrainSettings.for_kind("cross-encoder", epochs=2, valid_cascade_top=10, cascade_top=10)
    config = {"dim": 16, "layers": 1, "max_len": 8}
    trained = tr.train(data, "cross-encoder", settings, config, split=split, cascade_from=first)
    assert trained.history[0]["epoch"] == 0  # the first stage's own validation NDCG@10
    assert trained.history[0]["valid_NDCG@10"] == pytest.approx(
        evaluate(first, data, split, "valid")["NDCG@10"], abs=1e-12
    )
    trained_rows = trained.history[1:]
    assert trained.best_epoch >= 1 and [r["epoch"] for r in trained_rows] == [1, 2]
    assert trained.valid_metrics["NDCG@10"] == max(r["valid_NDCG@10"] for r in trained_rows)
    assert trained.metrics["evaluation"].startswith("cascade")


def test_early_stopping_restores_the_best_epoch(tiny):
    data, split = tiny
    settings = tr.TrainSettings(epochs=6, patience=1, lr=0.3)  # silly lr: validation soon stops improving
    result = tr.train(data, "msli", settings, {"dim": 16, "segments": 2, "layers": 1}, split=split)
    best = max(h["valid_NDCG@10"] for h in result.history)
    assert result.valid_metrics["NDCG@10"] == best
    assert result.history[result.best_epoch - 1]["valid_NDCG@10"] == best


def test_shards_weighted_by_the_whole_steps_targets_add_up_to_the_step(tiny):
    """What one --ddp step relies on, in one process: the rows of a step cut into shards of unequal
    target counts (two rows and the rest; one row and the rest), each shard's loss weighted by its
    share of the *whole* step's targets, give summed gradients equal to the whole step's (a mean of
    the shards' own means would not: their target counts differ)."""
    data, split = tiny
    torch.manual_seed(0)
    shape = {
        "dim": 16,
        "layers": 1,
        "segments": 3,
        "segment_len": 4,
        "max_len": 10,
        "dropout": 0.0,
        "state_dropout": 0.0,
    }  # no randomness: the shards must add up to the whole step exactly
    model = build_model("msli", data=data, **shape)
    settings = tr.TrainSettings(rows_per_user=3)
    rows = [(u, r) for u in (1, 2, 3, 4, 5) for r in tr.training_rows(split.train_sequence(u), 10, 3)]
    targets = sum(r1 - r0 - 1 for _, (r0, r1) in rows)
    rng = np.random.default_rng(0)

    def gradients(shards, targets_total):
        model.zero_grad(set_to_none=True)
        loss = sum(
            tr._late_interaction_step(model, split, s, settings, rng, None, targets_total=targets_total)
            for s in shards
        )
        return loss, torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])

    whole_loss, whole = gradients([rows], None)
    for shards in ([rows[:2], rows[2:]], [rows[:1], rows[1:]]):
        assert len({sum(r1 - r0 - 1 for _, (r0, r1) in s) for s in shards}) == 2  # unequal target counts
        loss, summed = gradients(shards, targets)
        assert loss == pytest.approx(whole_loss, rel=1e-6)
        torch.testing.assert_close(summed, whole, rtol=1e-4, atol=1e-7)
        _, averaged_means = gradients(shards, None)  # each shard's own mean: not the step's gradient
        assert not torch.allclose(averaged_means / 2, whole, rtol=1e-3, atol=1e-6)


def test_a_row_dropped_by_state_dropout_is_trained_on_the_recency_path_alone(tiny, monkeypatch):
    """State dropout: a dropped row's loss ignores the encoder's share and the row's closed slots."""
    data, split = tiny
    model = _float64_model(data, "older", max_len=6).train()
    seqs = [split.train_sequence(u) for u in range(1, 9)]
    stamps = [data.timestamps[u][: len(s)] for u, s in zip(range(1, 9), seqs, strict=True)]
    rows = [(b, r) for b, s in enumerate(seqs) for r in tr.training_rows(s, 6, 3)]
    batch = _row_batch(seqs, stamps, rows, "older", window_len=6)
    assert bool((batch.closed_index >= 0).any())  # some positions do have closed slots
    monkeypatch.setattr(model, "state_dropout_rows", lambda n: torch.zeros(n, dtype=torch.bool))
    table = model.item_table()
    recency = model.recent_path(batch.window, table)  # (B, T, d)
    scores = (recency @ table[1:].T).reshape(-1, table.shape[0] - 1)  # (B·T, N)
    targets = torch.where(batch.targets > 0, batch.targets - 1, -1).reshape(-1)
    expected = torch.nn.functional.cross_entropy(scores, targets, ignore_index=-1)
    assert tr.late_interaction_loss(model, batch).item() == pytest.approx(expected.item(), rel=1e-10)
    monkeypatch.setattr(model, "state_dropout_rows", lambda n: torch.ones(n, dtype=torch.bool))
    assert tr.late_interaction_loss(model, batch).item() != pytest.approx(expected.item(), rel=1e-3)
