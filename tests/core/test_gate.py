import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphsparse.core import SparseGate, init_beta, pnorm_penalty, sparse_gate
from graphsparse.testing import devices


def reference_gate(alpha, beta, normalization="sum", activation="sigmoid"):
    """Straightforward loop over groups of a [G, n] tensor, written from the paper."""
    out = torch.zeros_like(alpha)
    for g in range(alpha.shape[0]):
        gamma = [math.exp(v) if activation == "exp" else 1 / (1 + math.exp(-v))
                 for v in alpha[g].tolist()]
        t = 1 / (1 + math.exp(-float(beta[g]))) * sum(gamma)
        tilde = [max(x - t, 0.0) for x in gamma]
        if normalization == "none":
            out[g] = torch.tensor(tilde)
            continue
        denom = sum(tilde)
        if normalization == "null":
            denom += sum(min(x, t) for x in gamma)
        out[g] = torch.tensor([x / denom if denom > 0 else 0.0 for x in tilde])
    return out


@pytest.mark.parametrize("normalization", ["sum", "null", "none"])
@pytest.mark.parametrize("activation", ["sigmoid", "exp"])
def test_dense_matches_reference(normalization, activation):
    alpha = torch.randn(6, 5, dtype=torch.float64) * 2
    beta = torch.randn(6, dtype=torch.float64) - 1.5
    out = sparse_gate(alpha, beta, normalization=normalization, activation=activation)
    ref = reference_gate(alpha, beta, normalization, activation)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("normalization", ["sum", "null", "none"])
def test_ragged_matches_reference(normalization):
    sizes = [1, 4, 2, 7, 3]
    index = torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])
    perm = torch.randperm(index.numel())
    index = index[perm]
    alpha = torch.randn(index.numel(), dtype=torch.float64) * 2
    beta = torch.randn(len(sizes), dtype=torch.float64) - 1.0
    out = sparse_gate(alpha, beta, index, len(sizes), normalization=normalization)
    for g, n in enumerate(sizes):
        m = index == g
        ref = reference_gate(alpha[m][None], beta[g:g + 1], normalization)[0]
        torch.testing.assert_close(out[m], ref)


def test_ragged_with_equal_groups_equals_dense():
    alpha = torch.randn(8, 6)
    beta = torch.randn(8) - 2
    index = torch.arange(8).repeat_interleave(6)
    for norm in ["sum", "null", "none"]:
        dense = sparse_gate(alpha, beta, normalization=norm)
        ragged = sparse_gate(alpha.reshape(-1), beta, index, 8, normalization=norm)
        torch.testing.assert_close(ragged.view(8, 6), dense)


def test_exact_zeros_and_sums():
    alpha = torch.tensor([[3.0, 2.5, -3.0, -4.0, -5.0]])
    beta = torch.tensor([-1.0])
    a = sparse_gate(alpha, beta)
    assert (a[0, 2:] == 0).all() and (a[0, :2] > 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(1))
    a_null = sparse_gate(alpha, beta, normalization="null")
    gamma, t = torch.sigmoid(alpha), torch.sigmoid(beta) * torch.sigmoid(alpha).sum()
    tilde = (gamma - t).clamp_min(0)
    null = torch.minimum(gamma, t).sum()
    share = null / (tilde.sum() + null)
    torch.testing.assert_close(a_null.sum(), 1 - share)
    assert (a_null[0, 2:] == 0).all()


@pytest.mark.parametrize("n", [1, 2, 3, 10, 64])
def test_initial_equal_share_with_null(n):
    gate = SparseGate(n, num_groups=2, normalization="null")
    a = gate()
    null_share = 1 - a.sum(-1)
    torch.testing.assert_close(a, torch.full_like(a, 1 / (n + 1)))
    torch.testing.assert_close(null_share, torch.full((2,), 1 / (n + 1)))
    # Eq. 4 splits equally among the n components
    torch.testing.assert_close(SparseGate(n)(), torch.full((1, n), 1 / n))


def test_init_beta_values():
    sizes = torch.tensor([0, 1, 2, 5])
    expected = torch.tensor([0.0, 0.0, -math.log(5), -math.log(29)])
    torch.testing.assert_close(init_beta(sizes), expected)


def test_ragged_module_init_and_alive():
    index = torch.tensor([2, 0, 0, 2, 2, 1])
    gate = SparseGate(index=index, num_groups=4)
    a = gate()
    torch.testing.assert_close(a, torch.tensor([1 / 3, 0.5, 0.5, 1 / 3, 1 / 3, 1.0]))
    assert gate.num_alive().tolist() == [2, 1, 3, 0]


def test_dead_group_all_zero_no_nan():
    alpha = torch.zeros(3, 4, requires_grad=True)
    beta = torch.tensor([5.0, -3.0, 5.0], requires_grad=True)  # threshold >= every gamma
    for norm in ["sum", "null"]:
        a = sparse_gate(alpha, beta, normalization=norm)
        assert (a[0] == 0).all() and (a[2] == 0).all() and (a[1] > 0).all()
        loss = (a * torch.arange(4.0)).sum() + pnorm_penalty(a)
        alpha.grad = beta.grad = None
        loss.backward()
        assert torch.isfinite(alpha.grad).all() and torch.isfinite(beta.grad).all()


def test_single_component_groups_finite_gradients():
    gate = SparseGate(1, num_groups=3, normalization="null")
    (gate() * torch.tensor([[1.0], [2.0], [3.0]])).sum().backward()
    assert torch.isfinite(gate.alpha.grad).all() and torch.isfinite(gate.beta.grad).all()
    # 'null' gives 1 - sigmoid(beta), a learnable scale; 'sum' is constantly one
    torch.testing.assert_close(gate(), 1 - torch.sigmoid(gate.beta)[:, None])
    torch.testing.assert_close(SparseGate(1, num_groups=3)(), torch.ones(3, 1))


def test_penalty_matches_reference_and_gradient_finite_at_zero():
    a = torch.tensor([[0.25, 0.0, 0.75], [0.0, 0.0, 0.0]], requires_grad=True)
    r = pnorm_penalty(a, p=0.5)
    expected = (0.25 ** 0.5 + 0.75 ** 0.5) ** 2
    torch.testing.assert_close(r, torch.tensor(expected))
    r.backward()
    assert torch.isfinite(a.grad).all()
    # the naive formula is NaN here: the test guards the safe one
    b = a.detach().clone().requires_grad_()
    (b.pow(0.5).sum(-1).pow(2).sum()).backward()
    assert torch.isnan(b.grad).any() or torch.isinf(b.grad).any()
    # ragged
    idx = torch.tensor([0, 0, 1, 1, 1])
    v = torch.tensor([0.5, 0.5, 0.1, 0.0, 0.9])
    torch.testing.assert_close(pnorm_penalty(v, idx, 2, p=0.5),
                               torch.tensor((2 * 0.5 ** 0.5) ** 2 + (0.1 ** 0.5 + 0.9 ** 0.5) ** 2))
    torch.testing.assert_close(pnorm_penalty(v, idx, 2, p=1.0), torch.tensor(2.0))


@pytest.mark.parametrize("p", [0.5, 0.75, 1.0])
def test_ragged_penalty_equals_the_dense_one_with_gradients(p):
    """The fused ragged form (which keeps only ``a`` for backward) against
    the dense autograd form on the same groups, zeros and negatives included."""
    g = torch.Generator().manual_seed(3)
    a = torch.rand(4, 5, generator=g, dtype=torch.float64) - 0.3
    a[1] = 0.0                                              # a dead group
    a[2, :2] = 0.0
    a[3, 0] = 1e-13                                         # below eps: the linear piece
    dense = a.clone().requires_grad_()
    ragged = a.reshape(-1).clone().requires_grad_()
    index = torch.arange(4).repeat_interleave(5)
    want = pnorm_penalty(dense, p=p)
    got = pnorm_penalty(ragged, index, 4, p=p)
    torch.testing.assert_close(got, want)
    want.backward()
    got.backward()
    torch.testing.assert_close(ragged.grad, dense.grad.reshape(-1))
    assert torch.isfinite(ragged.grad).all()
    v = (torch.rand(12, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    idx = torch.tensor([0, 2, 2, 1, 0, 2, 1, 1, 0, 2, 2, 0])
    assert torch.autograd.gradcheck(lambda t: pnorm_penalty(t, idx, 3, p=p), (v,))


@pytest.mark.parametrize("p", [0.5, 0.75, 1.0])
def test_ragged_penalty_over_two_groupings_is_the_sum_of_each(p):
    """Rows and columns in one pass (|a|^p and its slope shared) equal the two
    single-grouping penalties, values and gradients, zeros and tiny values in."""
    from graphsparse.core.penalty import ragged_pnorm_penalty
    g = torch.Generator().manual_seed(4)
    a = torch.rand(30, generator=g, dtype=torch.float64) - 0.2
    a[::7] = 0.0
    a[3] = 1e-13
    rows, cols = torch.randint(0, 6, (2, 30), generator=g)
    one, two = a.clone().requires_grad_(), a.clone().requires_grad_()
    got = ragged_pnorm_penalty(one, (rows, cols), 6, p)
    want = pnorm_penalty(two, rows, 6, p=p) + pnorm_penalty(two, cols, 6, p=p)
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    torch.testing.assert_close(one.grad, two.grad)
    v = (torch.rand(30, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ragged_pnorm_penalty(t, (rows, cols), 6, p), (v,))


def test_penalty_prefers_sparse():
    dense = torch.full((1, 4), 0.25)
    sparse = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert pnorm_penalty(dense) > pnorm_penalty(sparse)


def test_thousand_sgd_steps_large_penalty_stay_finite():
    gate = SparseGate(8, num_groups=4)
    w = torch.randn(4, 8)
    opt = torch.optim.SGD(gate.parameters(), lr=1.0)
    for _ in range(1000):
        a = gate()
        loss = (a * w).sum() + 100.0 * gate.penalty()
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(gate.alpha.grad).all() and torch.isfinite(gate.beta.grad).all()
        opt.step()
    a = gate()
    assert torch.isfinite(a).all()
    assert (a == 0).any(), "a large penalty must kill components"


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 12), seed=st.integers(0, 2**31 - 1),
       norm=st.sampled_from(["sum", "null", "none"]))
def test_permutation_equivariance(n, seed, norm):
    g = torch.Generator().manual_seed(seed)
    alpha = torch.randn(3, n, generator=g, dtype=torch.float64) * 3
    beta = torch.randn(3, generator=g, dtype=torch.float64) - 1
    perm = torch.randperm(n, generator=g)
    out = sparse_gate(alpha, beta, normalization=norm)
    out_perm = sparse_gate(alpha[:, perm], beta, normalization=norm)
    torch.testing.assert_close(out_perm, out[:, perm])
    # ragged: permuting components (with their group labels) permutes the outputs
    index = torch.randint(0, 3, (n,), generator=g)
    flat = alpha[0]
    ragged = sparse_gate(flat, beta, index, 3, normalization=norm)
    p = torch.randperm(n, generator=g)
    torch.testing.assert_close(sparse_gate(flat[p], beta, index[p], 3, normalization=norm), ragged[p])


def test_learns_two_of_ten_inputs():
    """Only inputs 2 and 7 carry signal: plain SGD with the penalty must keep
    exactly them and drive the other eight to exact zero."""
    torch.manual_seed(0)
    x = torch.randn(512, 10)
    y = 2 * x[:, 2] - 3 * x[:, 7] + 0.1 * torch.randn(512)
    gate = SparseGate(10)
    w = torch.nn.Parameter(0.1 * torch.randn(10))
    opt = torch.optim.SGD([*gate.parameters(), w], lr=0.1)
    for _ in range(1000):
        a = gate()[0]
        loss = ((x @ (a * w) - y) ** 2).mean() + 0.1 * gate.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
    a = gate()[0]
    assert (a > 0).nonzero().flatten().tolist() == [2, 7]


@pytest.mark.parametrize("device", devices())
def test_runs_on_device(device):
    index = torch.tensor([0, 1, 1, 2, 2, 2], device=device)
    gate = SparseGate(index=index).to(device)
    a = gate()
    assert a.device.type == device
    gate.penalty().backward()
    assert torch.isfinite(gate.alpha.grad).all()


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="beta"):
        sparse_gate(torch.zeros(3, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="index"):
        sparse_gate(torch.zeros(4), torch.zeros(2), torch.tensor([0, 1, 2, 1]), 2)
    with pytest.raises(ValueError, match="index"):
        sparse_gate(torch.zeros(4), torch.zeros(2), torch.tensor([0, -1, 1, 1]), 2)
    with pytest.raises(ValueError, match="index.*dtype"):
        sparse_gate(torch.zeros(4), torch.zeros(2), torch.tensor([0.0, 1.0, 1.0, 0.0]), 2)
    with pytest.raises(ValueError, match="index"):
        sparse_gate(torch.zeros(4), torch.zeros(2), torch.tensor([0, 1, 1]), 2)
    with pytest.raises(ValueError, match="'p'"):
        pnorm_penalty(torch.rand(3), p=1.5)
    with pytest.raises(ValueError, match="'p'"):
        pnorm_penalty(torch.rand(3), p=0.0)
    with pytest.raises(ValueError, match="alpha"):
        sparse_gate(torch.tensor([[0.0, float("nan")]]), torch.zeros(1))
    with pytest.raises(ValueError, match="beta"):
        sparse_gate(torch.zeros(1, 2), torch.tensor([float("inf")]))
    with pytest.raises(ValueError, match="normalization"):
        SparseGate(3, normalization="softmax")
    with pytest.raises(ValueError, match="num_components"):
        SparseGate(0)
    with pytest.raises(ValueError, match="num_components.*index"):
        SparseGate()
    gate = SparseGate(3)
    with torch.no_grad():
        gate.alpha[0, 0] = float("nan")
    with pytest.raises(ValueError, match="alpha"):
        gate()
