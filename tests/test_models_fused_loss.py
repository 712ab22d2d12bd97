"""The fused attention loss equals cross-entropy through the reference late_interaction (value, gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from msli_core.models import fused_loss
from msli_core.models.fused_loss import NEG, closed_statistics, fused_attention_ce
from msli_core.models.late_interaction import late_interaction


def _reference(open_u, open_q, closed_u, closed_q, valid, items, age, targets, column_bias):
    """Per position: stack [closed; open] slots, late_interaction, CE; open (B,G,S,d), closed (B,G,C,d)."""
    B, G, S, d = open_u.shape
    C = closed_u.shape[2]
    u = torch.cat([closed_u.unsqueeze(2).expand(B, G, S, C, d), open_u.unsqueeze(3)], 3).reshape(-1, C + 1, d)
    q = torch.cat([closed_q.unsqueeze(2).expand(B, G, S, C, d), open_q.unsqueeze(3)], 3).reshape(-1, C + 1, d)
    mask = torch.cat([valid.unsqueeze(2).expand(B, G, S, C), torch.ones(B, G, S, 1, dtype=torch.bool)], 3)
    y, _ = late_interaction(
        u, mask.reshape(-1, C + 1), items, aggregation="attention", attention_queries=q, age_bias=age
    )
    return F.cross_entropy(y - column_bias, targets.reshape(-1), ignore_index=-1)


# (TILE_ELEMENTS, MIN_TILE_POSITIONS), N = 7, S = 4 positions per group: the defaults (all 6 groups in
# one tile), 2 whole groups per tile, one group in slices of 1 position, of 2 positions, and the floor
# winning over a 1-position budget (5 positions: one whole group per tile)
DEFAULT_TILE = (fused_loss.TILE_ELEMENTS, fused_loss.MIN_TILE_POSITIONS)
TILES = [DEFAULT_TILE, (2 * 4 * 7, 1), (7, 1), (2 * 7 + 3, 1), (7, 5)]


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_loss_matches_the_reference_value_and_gradients(with_bias, tile, monkeypatch):
    monkeypatch.setattr(fused_loss, "TILE_ELEMENTS", tile[0])
    monkeypatch.setattr(fused_loss, "MIN_TILE_POSITIONS", tile[1])
    monkeypatch.setattr(fused_loss, "intra_op_threads", lambda: 1)  # the tile shapes named above
    torch.manual_seed(0)
    B, G, S, C, d, N = 2, 3, 4, 2, 5, 7
    leaves = [
        torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        for shape in [(B, G, S, d), (B, G, S, d), (B, G, C, d), (B, G, C, d), (N, d), (C + 1,)]
    ]
    open_u, open_q, closed_u, closed_q, items, age = leaves
    valid = torch.tensor(
        [[[True, True], [False, True], [False, False]], [[True, False], [True, True], [True, True]]]
    )
    targets = torch.randint(0, N, (B, G, S))
    targets[0, 2, 3] = -1  # an ignored position
    bias = torch.randn(N, dtype=torch.float64) if with_bias else torch.zeros(N, dtype=torch.float64)

    ref = _reference(open_u, open_q, closed_u, closed_q, valid, items, age, targets, bias)
    ref_grads = torch.autograd.grad(ref, leaves)

    log_z, mean = closed_statistics(closed_u @ items.T, closed_q @ items.T, valid, age[:C] - age[C])
    fused = fused_attention_ce(open_u, open_q, items, log_z.unsqueeze(2), mean.unsqueeze(2), targets, bias)
    grads = torch.autograd.grad(fused, leaves)
    assert fused.item() == pytest.approx(ref.item(), rel=1e-10)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def _reference_open_slots(open_u, open_q, closed_u, closed_q, valid, items, age, targets, column_bias):
    """As :func:`_reference` with O open slots per position: open (B,G,S,O,d), closed (B,G,C,d)."""
    B, G, S, O, d = open_u.shape
    C = closed_u.shape[2]
    u = torch.cat([closed_u.unsqueeze(2).expand(B, G, S, C, d), open_u], 3).reshape(-1, C + O, d)
    q = torch.cat([closed_q.unsqueeze(2).expand(B, G, S, C, d), open_q], 3).reshape(-1, C + O, d)
    mask = torch.cat([valid.unsqueeze(2).expand(B, G, S, C), torch.ones(B, G, S, O, dtype=torch.bool)], 3)
    y, _ = late_interaction(
        u, mask.reshape(-1, C + O), items, aggregation="attention", attention_queries=q, age_bias=age
    )
    return F.cross_entropy(y - column_bias, targets.reshape(-1), ignore_index=-1)


def _float64_leaves(*shapes) -> list[torch.Tensor]:
    return [torch.randn(*shape, dtype=torch.float64, requires_grad=True) for shape in shapes]


def _fused_open_slots(open_u, open_q, closed_u, closed_q, valid, items, age, targets, column_bias, keys=None):
    """The fused loss of :func:`_reference_open_slots`'s inputs: closed statistics, then the open slots
    (the logits against ``keys``, by default the item vectors)."""
    C = closed_u.shape[2]
    keys = items if keys is None else keys
    relative = age - age[-1]
    log_z, mean = closed_statistics(closed_u @ items.T, closed_q @ keys.T, valid, relative[:C])
    return fused_attention_ce(
        open_u, open_q, items, log_z.unsqueeze(2), mean.unsqueeze(2), targets, column_bias, relative[C:], keys
    )


SOME_CLOSED = torch.tensor(  # (B = 2, G = 3, C = 2): groups with both, one or no closed slot
    [[[True, True], [False, True], [False, False]], [[True, False], [True, True], [True, True]]]
)


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("open_slots", [1, 2, 3])
@pytest.mark.parametrize("with_closed", [True, False])
def test_open_slots_match_the_reference_value_and_gradients(open_slots, with_closed, tile, monkeypatch):
    """O open slots per position (the recency slot: the encoder's state and the newest events), each
    with its own age bias, against autograd through late_interaction: the loss and every gradient,
    the open slots' biases included; with closed slots in some groups, or none anywhere (O = 2: the
    two-slot gate on q_1 - q_2)."""
    monkeypatch.setattr(fused_loss, "TILE_ELEMENTS", tile[0])
    monkeypatch.setattr(fused_loss, "MIN_TILE_POSITIONS", tile[1])
    monkeypatch.setattr(fused_loss, "intra_op_threads", lambda: 1)
    torch.manual_seed(3)
    B, G, S, C, O, d, N = 2, 3, 4, 2, open_slots, 5, 7
    leaves = _float64_leaves((B, G, S, O, d), (B, G, S, O, d), (B, G, C, d), (B, G, C, d), (N, d), (C + O,))
    open_u, open_q, closed_u, closed_q, items, age = leaves
    valid = SOME_CLOSED if with_closed else torch.zeros_like(SOME_CLOSED)
    targets = torch.randint(0, N, (B, G, S))
    targets[0, 2, 3] = -1
    bias = torch.randn(N, dtype=torch.float64)

    ref = _reference_open_slots(open_u, open_q, closed_u, closed_q, valid, items, age, targets, bias)
    ref_grads = torch.autograd.grad(ref, leaves)

    fused = _fused_open_slots(open_u, open_q, closed_u, closed_q, valid, items, age, targets, bias)
    grads = torch.autograd.grad(fused, leaves)
    assert fused.item() == pytest.approx(ref.item(), rel=1e-10)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("open_slots", [1, 2, 3])
@pytest.mark.parametrize("with_closed", [True, False])
def test_attention_keys_of_lower_rank_match_the_full_queries(open_slots, with_closed, tile, monkeypatch):
    """A low-rank attention form: queries are r-dimensional codes c and the logits ``<c, B^T e>``; the
    loss and every gradient (B's included, through ``keys = E B``) equal the reference with the full
    queries ``B c`` against the item vectors."""
    monkeypatch.setattr(fused_loss, "TILE_ELEMENTS", tile[0])
    monkeypatch.setattr(fused_loss, "MIN_TILE_POSITIONS", tile[1])
    monkeypatch.setattr(fused_loss, "intra_op_threads", lambda: 1)
    torch.manual_seed(5)
    B, G, S, C, O, d, r, N = 2, 3, 4, 2, open_slots, 5, 2, 7
    leaves = _float64_leaves(
        (B, G, S, O, d), (B, G, S, O, r), (B, G, C, d), (B, G, C, r), (N, d), (d, r), (C + O,)
    )
    open_u, open_c, closed_u, closed_c, items, up, age = leaves
    valid = SOME_CLOSED if with_closed else torch.zeros_like(SOME_CLOSED)
    targets = torch.randint(0, N, (B, G, S))
    targets[1, 0, 2] = -1
    bias = torch.randn(N, dtype=torch.float64)

    full_open, full_closed = open_c @ up.T, closed_c @ up.T  # B c, (..., d)
    ref = _reference_open_slots(open_u, full_open, closed_u, full_closed, valid, items, age, targets, bias)
    ref_grads = torch.autograd.grad(ref, leaves)

    keys = items @ up  # (N, r)
    fused = _fused_open_slots(open_u, open_c, closed_u, closed_c, valid, items, age, targets, bias, keys)
    grads = torch.autograd.grad(fused, leaves)
    assert fused.item() == pytest.approx(ref.item(), rel=1e-10)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_two_open_slots_with_equal_logits_average_their_scores():
    # no closed slot, two open slots with zero queries and biases (0, log 3): weights 1/4 and 3/4, so
    # y = (s_1 + 3 s_2) / 4 for each item, by hand
    items = torch.eye(2)
    s_1, s_2 = np.array([4.0, 0.0]), np.array([0.0, 2.0])
    open_u = torch.tensor(np.stack([s_1, s_2])).float().view(1, 1, 1, 2, 2)  # (B, G, S, O, d)
    log_z = torch.full((1, 1, 1, 2), NEG)
    loss = fused_attention_ce(
        open_u, torch.zeros_like(open_u), items, log_z, torch.zeros(1, 1, 1, 2), torch.tensor([[[1]]]),
        open_bias=torch.tensor([0.0, math.log(3.0)]),
    )  # fmt: skip
    y = (s_1 + 3 * s_2) / 4  # (1.0, 1.5)
    assert loss.item() == pytest.approx(-(y[1] - np.log(np.exp(y).sum())), rel=1e-6)


def test_no_closed_slot_is_plain_cross_entropy_of_the_open_score():
    # one group with no valid closed slot: y = s_o, so the loss is CE of <u_o, e> by hand
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    open_u = torch.tensor([[[[2.0, 0.0]]]])  # scores (2, 0)
    log_z, mean = closed_statistics(
        torch.zeros(1, 1, 1, 2),
        torch.zeros(1, 1, 1, 2),
        torch.zeros(1, 1, 1, dtype=torch.bool),
        torch.zeros(1),
    )
    assert float(log_z.max()) == NEG and float(mean.abs().max()) == 0.0
    loss = fused_attention_ce(
        open_u, torch.zeros_like(open_u), items, log_z.unsqueeze(2), mean.unsqueeze(2), torch.tensor([[[1]]])
    )
    assert loss.item() == pytest.approx(math.log(1 + math.exp(2.0)))  # -log softmax(2, 0)[1]


def test_closed_slots_far_apart_keep_the_larger_one_exactly():
    # two valid closed slots whose logits differ by 300 (far below exp's floor) and an invalid one: by
    # hand, L_C = 10 (the larger logit) and y_C = its score, with no NaN or inf anywhere
    scores = torch.tensor([[[[3.0, 1.0], [7.0, 5.0], [9.0, 9.0]]]])  # (B, G, C, N)
    logits = torch.tensor([[[[10.0, -290.0], [-290.0, 10.0], [50.0, 50.0]]]])
    valid = torch.tensor([[[True, True, False]]])
    log_z, mean = closed_statistics(scores, logits, valid, torch.zeros(3))
    assert log_z.tolist() == [[[10.0, 10.0]]]
    assert mean.tolist() == [[[3.0, 5.0]]]


@pytest.mark.parametrize("spread", [1.0, 200.0])
def test_the_loss_stays_exact_when_logits_span_more_than_exps_range(spread):
    """Scores and attention logits 200 apart (every exp of the softmaxes reads a floored difference
    somewhere) give the reference loss and gradients: the floor changes nothing a float64 sum sees."""
    torch.manual_seed(7)
    B, G, S, C, d, N = 1, 2, 3, 2, 4, 6
    leaves = [
        (torch.randn(*shape, dtype=torch.float64) * spread).requires_grad_()
        for shape in [(B, G, S, d), (B, G, S, d), (B, G, C, d), (B, G, C, d)]
    ]
    items = torch.randn(N, d, dtype=torch.float64)
    age = torch.zeros(C + 1, dtype=torch.float64)
    valid = torch.tensor([[[True, True], [True, False]]])
    targets = torch.randint(0, N, (B, G, S))
    bias = torch.zeros(N, dtype=torch.float64)
    ref = _reference(*leaves, valid, items, age, targets, bias)
    ref_grads = torch.autograd.grad(ref, leaves)
    open_u, open_q, closed_u, closed_q = leaves
    log_z, mean = closed_statistics(closed_u @ items.T, closed_q @ items.T, valid, age[:C])
    fused = fused_attention_ce(open_u, open_q, items, log_z.unsqueeze(2), mean.unsqueeze(2), targets, bias)
    grads = torch.autograd.grad(fused, leaves)
    assert math.isfinite(fused.item()) and fused.item() == pytest.approx(ref.item(), rel=1e-10)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_equal_logits_average_open_and_closed_scores():
    # one closed slot, equal logits and no bias: y = (s_o + s_c) / 2 for each item
    items = torch.eye(2)
    s_o, s_c = np.array([2.0, 0.0]), np.array([0.0, 4.0])
    log_z, mean = closed_statistics(
        torch.tensor(s_c).float().view(1, 1, 1, 2),
        torch.zeros(1, 1, 1, 2),
        torch.ones(1, 1, 1, dtype=torch.bool),
        torch.zeros(1),
    )
    loss = fused_attention_ce(
        torch.tensor(s_o).float().view(1, 1, 1, 2),
        torch.zeros(1, 1, 1, 2),
        items,
        log_z.unsqueeze(2),
        mean.unsqueeze(2),
        torch.tensor([[[0]]]),
    )
    y = (s_o + s_c) / 2  # (1, 2)
    assert loss.item() == pytest.approx(-(y[0] - np.log(np.exp(y).sum())), rel=1e-6)


def _float32_case(B=3, G=2, S=5, C=3, d=4, N=11):
    torch.manual_seed(1)
    open_u, open_q = torch.randn(B, G, S, d), torch.randn(B, G, S, d)
    closed_u, closed_q, items = torch.randn(B, G, C, d), torch.randn(B, G, C, d), torch.randn(N, d)
    valid = torch.rand(B, G, C) > 0.3
    targets = torch.randint(0, N, (B, G, S))
    targets[1] = -1  # a row without any target: its tiles are skipped
    targets[0, 1, 2:] = -1  # a group's padded tail
    log_z, mean = closed_statistics(closed_u @ items.T, closed_q @ items.T, valid, torch.zeros(C))
    return open_u, open_q, items, log_z.unsqueeze(2), mean.unsqueeze(2), targets


@pytest.mark.parametrize("tile", [11, 2 * 11, 5 * 11, 2 * 5 * 11])
def test_tiles_without_targets_get_zero_gradients_and_the_loss_does_not_depend_on_tiling(tile, monkeypatch):
    open_u, open_q, items, log_z, mean, targets = _float32_case()
    leaves = [t.requires_grad_() for t in (open_u, open_q, items, log_z, mean)]
    whole = fused_attention_ce(*leaves, targets)
    whole_grads = torch.autograd.grad(whole, leaves)
    monkeypatch.setattr(fused_loss, "TILE_ELEMENTS", tile)
    monkeypatch.setattr(fused_loss, "MIN_TILE_POSITIONS", 1)
    monkeypatch.setattr(fused_loss, "intra_op_threads", lambda: 1)
    tiled = fused_attention_ce(*leaves, targets)
    grads = torch.autograd.grad(tiled * 3.0, leaves)  # the incoming gradient scales every one
    assert tiled.item() == pytest.approx(whole.item(), rel=1e-6)
    for got, want in zip(grads, whole_grads, strict=True):
        torch.testing.assert_close(got, 3.0 * want, rtol=1e-5, atol=1e-6)
    # positions without a target and the targetless row's statistics get exactly zero gradient
    assert float(grads[0][1].abs().max()) == 0.0 and float(grads[1][0, 1, 2:].abs().max()) == 0.0
    assert float(grads[3][1].abs().max()) == 0.0 and float(grads[4][1].abs().max()) == 0.0


def test_without_grad_mode_the_loss_is_the_same_and_no_gradient_is_kept():
    open_u, open_q, items, log_z, mean, targets = _float32_case()
    leaves = [t.requires_grad_() for t in (open_u, open_q, items, log_z, mean)]
    with_grad = fused_attention_ce(*leaves, targets)
    with torch.no_grad():
        without = fused_attention_ce(*leaves, targets)
    assert without.item() == pytest.approx(with_grad.item(), rel=1e-6)
    assert without.grad_fn is None


def test_a_tile_holds_its_element_budget_per_thread(monkeypatch):
    """Tiles are sized per intra-op thread (each core's share of a tile stays in its cache), with the
    floor of whole matrix products for a large catalog; the loss does not depend on the thread count."""
    per_thread = fused_loss.TILE_ELEMENTS
    assert fused_loss.tile_positions(1682, 1) == per_thread // 1682
    assert fused_loss.tile_positions(1682, 2) == 2 * per_thread // 1682
    assert fused_loss.tile_positions(10**7, 8) == fused_loss.MIN_TILE_POSITIONS
    assert fused_loss.tile_positions(1682, 0) == fused_loss.tile_positions(1682, 1)
    case = _float32_case()
    monkeypatch.setattr(fused_loss, "TILE_ELEMENTS", 11)  # 1 position per tile and thread (N = 11)
    monkeypatch.setattr(fused_loss, "MIN_TILE_POSITIONS", 1)
    losses = []
    for threads in (1, 3):
        monkeypatch.setattr(fused_loss, "intra_op_threads", lambda threads=threads: threads)
        losses.append(fused_attention_ce(*case).item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


@pytest.mark.parametrize("lanes", [2, 3])
def test_lanes_on_several_threads_give_the_reference_loss_and_gradients_and_repeat(lanes, monkeypatch):
    """On several intra-op threads the tiles run in that many lanes, each its own thread with its own
    sums: the loss and every gradient still equal the reference (closed slots in some groups, so the
    groups are reordered too), two runs agree bit for bit, and torch's thread count is restored."""
    monkeypatch.setattr(fused_loss, "TILE_ELEMENTS", 2 * 7 + 3)  # tiles of 2 positions: many per lane
    monkeypatch.setattr(fused_loss, "MIN_TILE_POSITIONS", 1)
    monkeypatch.setattr(fused_loss, "intra_op_threads", lambda: lanes)
    torch.manual_seed(4)
    B, G, S, C, O, d, N = 2, 3, 4, 2, 2, 5, 7
    leaves = _float64_leaves((B, G, S, O, d), (B, G, S, O, d), (B, G, C, d), (B, G, C, d), (N, d), (C + O,))
    open_u, open_q, closed_u, closed_q, items, age = leaves
    valid = torch.tensor(
        [[[True, True], [False, False], [False, True]], [[False, False], [True, True], [True, False]]]
    )
    targets = torch.randint(0, N, (B, G, S))
    targets[1, 1, 0] = -1
    bias = torch.randn(N, dtype=torch.float64)
    ref = _reference_open_slots(open_u, open_q, closed_u, closed_q, valid, items, age, targets, bias)
    ref_grads = torch.autograd.grad(ref, leaves)
    threads = torch.get_num_threads()
    runs = []
    for _ in range(2):
        fused = _fused_open_slots(open_u, open_q, closed_u, closed_q, valid, items, age, targets, bias)
        runs.append((fused, torch.autograd.grad(fused, leaves)))
    assert torch.get_num_threads() == threads
    fused, grads = runs[0]
    assert fused.item() == pytest.approx(ref.item(), rel=1e-10)
    for got, want, again in zip(grads, ref_grads, runs[1][1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)
        assert torch.equal(got, again)
    assert torch.equal(fused, runs[1][0])


def test_single_threaded_ops_from_two_threads_at_once_each_restore_their_own_count():
    """Two callers overlapping (two app sessions training at once): each thread is on one thread while
    inside and gets its own count back, whichever leaves first."""
    import threading

    before = torch.get_num_threads()
    entered, leave_first, first_left = threading.Event(), threading.Event(), threading.Event()
    seen, theirs = [], []

    def first():
        torch.set_num_threads(2)
        with fused_loss.single_threaded_ops():
            theirs.append(torch.get_num_threads())
            entered.set()
            leave_first.wait(10)
        theirs.append(torch.get_num_threads())
        first_left.set()

    worker = threading.Thread(target=first)
    worker.start()
    entered.wait(10)
    with fused_loss.single_threaded_ops():
        seen.append(torch.get_num_threads())
        leave_first.set()
        first_left.wait(10)
        seen.append(torch.get_num_threads())  # the other caller left; this one is still inside
    worker.join(10)
    assert seen == [1, 1] and theirs == [1, 2] and torch.get_num_threads() == before
