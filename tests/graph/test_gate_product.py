"""The fused row x column gate against the composition of the core gate it
replaces: values, exact zeros, gradients (float64 gradcheck), and the
memory it saves."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from graphsparse.core import sparse_gate
from graphsparse.graph._gate import gate_product

FLOOR = -15.0


def composed(alpha, prior, groups, n):
    z = alpha if prior is None else alpha + prior
    z = FLOOR + F.softplus(z - FLOOR)
    out = None
    for beta, index in groups:
        g = sparse_gate(z, beta, index, n, "none", "sigmoid", validate=False)
        out = g if out is None else out * g
    return out


def problem(n=9, e=50, seed=0, kinds=2, with_prior=True, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    row = torch.randint(0, n, (e,), generator=g)
    col = torch.randint(0, n, (e,), generator=g)
    alpha = (2 * torch.randn(e, generator=g, dtype=dtype)).requires_grad_()
    prior = torch.randn(e, generator=g, dtype=dtype) if with_prior else None
    betas = [(torch.randn(n, generator=g, dtype=dtype) - 2).requires_grad_()
             for _ in range(kinds)]
    groups = list(zip(betas, [row, col][:kinds], strict=True))
    return alpha, prior, groups


@pytest.mark.parametrize("kinds", [1, 2])
@pytest.mark.parametrize("with_prior", [False, True])
def test_equals_the_composed_gate_with_gradients(kinds, with_prior):
    alpha, prior, groups = problem(kinds=kinds, with_prior=with_prior)
    n = 9
    out = gate_product(alpha, prior, FLOOR, n, groups)
    ref = composed(alpha, prior, groups, n)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-15)
    assert torch.equal(out == 0, ref == 0)
    assert 0 < int((out == 0).sum()) < out.numel()      # some zeros, not all
    inputs = [alpha] + [b for b, _ in groups]
    w = torch.randn_like(out)
    got = torch.autograd.grad((out * w).sum(), inputs)
    want = torch.autograd.grad((ref * w).sum(), inputs)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_gradcheck():
    alpha, prior, groups = problem(n=6, e=24, seed=1)
    betas = [b for b, _ in groups]

    def f(a, b1, b2):
        return gate_product(a, prior, FLOOR, 6, [(b1, groups[0][1]), (b2, groups[1][1])])
    assert torch.autograd.gradcheck(f, (alpha, *betas))


def test_prior_receives_the_logit_gradient():
    alpha, prior, groups = problem(seed=2)
    prior = prior.clone().requires_grad_()
    out = gate_product(alpha, prior, FLOOR, 9, groups)
    ga, gp = torch.autograd.grad(out.sum(), (alpha, prior))
    torch.testing.assert_close(ga, gp)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 7), e=st.integers(1, 40), seed=st.integers(0, 10_000),
       kinds=st.integers(1, 2))
def test_random_layouts_match(n, e, seed, kinds):
    g = torch.Generator().manual_seed(seed)
    alpha, prior, groups = problem(n, e, seed, kinds)
    groups = [(b, torch.randint(0, n, (e,), generator=g)) for b, _ in groups]
    out = gate_product(alpha, prior, FLOOR, n, groups)
    ref = composed(alpha, prior, groups, n)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-15)
    got = torch.autograd.grad(out.sum(), alpha)[0]
    want = torch.autograd.grad(ref.sum(), alpha)[0]
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)
    assert torch.isfinite(got).all()


def test_keeps_only_its_inputs_for_backward():
    alpha, prior, groups = problem(e=5000, n=50, dtype=torch.float32)
    saved = []

    def pack(t):
        saved.append(t)
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        gate_product(alpha, prior, FLOOR, 50, groups)
    fresh = [t for t in saved if t is not None and t.numel() == alpha.numel()
             and t.untyped_storage().data_ptr() not in
             {alpha.untyped_storage().data_ptr(), prior.untyped_storage().data_ptr(),
              groups[0][1].untyped_storage().data_ptr(),
              groups[1][1].untyped_storage().data_ptr()}]
    assert fresh == []
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        saved.clear()
        composed(alpha, prior, groups, 50)
    assert sum(t.numel() == alpha.numel() and t.is_floating_point() for t in saved) >= 6


def test_infinite_gradient_on_a_zero_output_stays_out():
    """Where the product is zero no gradient passes, even an infinite one
    (kept zeros reach the gate with the product's, possibly huge, gradients)."""
    alpha, prior, groups = problem(seed=4)
    out = gate_product(alpha, prior, FLOOR, 9, groups)
    zero = out == 0
    assert zero.any() and (~zero).any()
    g = torch.where(zero, torch.full_like(out, float("inf")), torch.ones_like(out))
    grads = torch.autograd.grad(out, [alpha] + [b for b, _ in groups], g, retain_graph=True)
    want = torch.autograd.grad(out, [alpha] + [b for b, _ in groups], torch.where(
        zero, torch.zeros_like(out), torch.ones_like(out)))
    for a, b in zip(grads, want, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)
