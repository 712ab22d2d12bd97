"""late_interaction: hand-checked cases per aggregation, masking, Σc = y, one pass = naive loop."""

from __future__ import annotations

import math

import pytest
import torch

from msli_core.models.late_interaction import InteractionMLP, late_interaction

U = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, 2, 2): u_0 = x axis, u_1 = y axis
E = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])  # (3, 2): s_0 = (2, 0, 1), s_1 = (0, 3, 1)
BOTH = torch.tensor([[True, True]])


def test_attention_by_hand():
    # q_0 = (1, 0), q_1 = 0: logits_0 = (2, 0, 1), logits_1 = 0 -> a_0 = sigmoid(logit_0)
    q = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    y, c = late_interaction(U, BOTH, E, aggregation="attention", attention_queries=q)
    a0 = torch.sigmoid(torch.tensor([2.0, 0.0, 1.0]))
    expected_c = torch.stack([a0 * torch.tensor([2.0, 0.0, 1.0]), (1 - a0) * torch.tensor([0.0, 3.0, 1.0])])
    torch.testing.assert_close(c[0], expected_c)
    torch.testing.assert_close(y[0], expected_c.sum(0))
    assert y[0, 1].item() == pytest.approx(1.5)  # item 1: a = (1/2, 1/2), s = (0, 3)


def test_age_bias_shifts_weight_to_the_newest_segment():
    q = torch.zeros(1, 2, 2)
    bias = torch.tensor([0.0, math.log(3.0)])  # a = (1/4, 3/4)
    y, c = late_interaction(U, BOTH, E, aggregation="attention", attention_queries=q, age_bias=bias)
    torch.testing.assert_close(y[0], torch.tensor([0.5, 2.25, 1.0]))
    torch.testing.assert_close(c[0, 0], torch.tensor([0.5, 0.0, 0.25]))


def test_max_winner_takes_all():
    y, c = late_interaction(U, BOTH, E, aggregation="max")
    assert y.tolist() == [[2.0, 3.0, 1.0]]
    assert c.tolist() == [[[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]]]  # tie on item 2: the first segment wins


def test_masked_segment_never_wins_a_max_even_against_negative_scores():
    u = torch.tensor([[[0.0, 0.0], [-1.0, 0.0]]])  # slot 0 empty (its score would be 0 > -2)
    y, c = late_interaction(u, torch.tensor([[False, True]]), E, aggregation="max")
    assert y.tolist() == [[-2.0, 0.0, -1.0]]
    assert c[0, 0].tolist() == [0.0, 0.0, 0.0]


def test_masked_segment_gets_no_attention():
    u = torch.tensor([[[5.0, 5.0], [1.0, 0.0]]])
    q = torch.tensor([[[9.0, 9.0], [0.0, 0.0]]])  # the empty slot would dominate if not masked
    y, c = late_interaction(u, torch.tensor([[False, True]]), E, aggregation="attention", attention_queries=q)
    assert c[0, 0].abs().max().item() == 0.0
    torch.testing.assert_close(y[0], torch.tensor([2.0, 0.0, 1.0]))


def test_sum_equals_one_vector():
    w = torch.tensor([0.5, 2.0])
    y, c = late_interaction(U, BOTH, E, aggregation="sum", segment_weights=w)
    one_vector = (w.view(2, 1) * U[0]).sum(0)  # Σ w_k u_k
    torch.testing.assert_close(y[0], E @ one_vector)
    torch.testing.assert_close(c.sum(1), y)


def test_mlp_by_hand():
    g = InteractionMLP(2, hidden=1)
    with torch.no_grad():
        g.first.weight.copy_(torch.tensor([[1.0, 1.0]]))
        g.first.bias.zero_()
        g.second.weight.copy_(torch.tensor([[2.0]]))
        g.second.bias.copy_(torch.tensor([0.5]))
    q = torch.zeros(1, 2, 2)  # a = (1/2, 1/2)
    y, _ = late_interaction(U, BOTH, E, aggregation="mlp", attention_queries=q, mlp=g)
    # g(u_0 ⊙ e) = 2·relu(e_x) + 0.5 = (4.5, 0.5, 2.5); g(u_1 ⊙ e) = 2·relu(e_y) + 0.5 = (0.5, 6.5, 2.5)
    torch.testing.assert_close(y[0], torch.tensor([2.5, 3.5, 2.5]))


def test_user_without_any_segment_scores_zero():
    none = torch.tensor([[False, False]])
    for agg, kw in [
        ("attention", {"attention_queries": torch.ones(1, 2, 2)}),
        ("max", {}),
        ("sum", {"segment_weights": torch.ones(2)}),
    ]:
        y, c = late_interaction(U, none, E, aggregation=agg, **kw)
        assert y.abs().max().item() == 0.0 and c.abs().max().item() == 0.0, agg


def _naive(u, mask, e, aggregation, q=None, bias=None, g=None, w=None):
    """Per-user, per-segment loops: the definition of docs/design.md §2 written out."""
    B, K, _ = u.shape
    out_c = torch.zeros(B, K, e.shape[0])
    for b in range(B):
        valid = [k for k in range(K) if mask[b, k]]
        if not valid:
            continue
        s = torch.stack([e @ u[b, k] for k in range(K)])  # (K, N)
        if aggregation == "max":
            best = torch.stack([s[k] for k in valid]).argmax(0)
            for n in range(e.shape[0]):
                k = valid[int(best[n])]
                out_c[b, k, n] = s[k, n]
            continue
        if aggregation == "sum":
            for k in valid:
                out_c[b, k] = w[k] * s[k]
            continue
        logits = torch.stack([e @ q[b, k] + (bias[k] if bias is not None else 0.0) for k in valid])
        a = torch.softmax(logits, 0)
        for i, k in enumerate(valid):
            value = s[k] if aggregation == "attention" else g(u[b, k].view(1, -1) * e)
            out_c[b, k] = a[i] * value
    return out_c.sum(1), out_c


@pytest.mark.parametrize("aggregation", ["attention", "max", "mlp", "sum"])
def test_one_pass_equals_naive_loop(aggregation):
    gen = torch.Generator().manual_seed(0)
    B, K, d, N = 3, 4, 8, 11
    u = torch.randn(B, K, d, generator=gen)
    q = torch.randn(B, K, d, generator=gen)
    e = torch.randn(N, d, generator=gen)
    bias = torch.randn(K, generator=gen)
    w = torch.randn(K, generator=gen)
    mask = torch.tensor([[True, True, True, True], [False, True, False, True], [False, False, False, True]])
    torch.manual_seed(0)
    g = InteractionMLP(d, hidden=5)
    y, c = late_interaction(
        u, mask, e, aggregation=aggregation, attention_queries=q, age_bias=bias, mlp=g, segment_weights=w
    )
    with torch.no_grad():
        y_ref, c_ref = _naive(u, mask, e, aggregation, q, bias, g, w)
    torch.testing.assert_close(c, c_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    assert (y - c.sum(1)).abs().max().item() < 1e-5


def test_generic_callable_mlp_matches_factorised_one():
    torch.manual_seed(1)
    g = InteractionMLP(4, hidden=3)
    u, q, e = torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(5, 4)
    mask = torch.tensor([[True, False, True], [True, True, True]])
    fast = late_interaction(u, mask, e, aggregation="mlp", attention_queries=q, mlp=g)[0]
    slow = late_interaction(u, mask, e, aggregation="mlp", attention_queries=q, mlp=lambda x: g(x))[0]
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match="aggregation"):
        late_interaction(U, BOTH, E, aggregation="mean")
    with pytest.raises(ValueError, match="attention_queries"):
        late_interaction(U, BOTH, E, aggregation="attention")
    with pytest.raises(ValueError, match="segment_weights"):
        late_interaction(U, BOTH, E, aggregation="sum")
