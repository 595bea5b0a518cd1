"""Sparse node features: the gated models give the same outputs and weight
gradients on a sparse CSR input as on the dense one, and the sparse input
dropout has dense dropout's distribution. The fused relu + dropout equals
the two functions and keeps one boolean mask."""
import pytest
import torch
import torch.nn.functional as F

import graphsparse
from graphsparse.graph import (GatedAdjacency, GatedGCN, GatedResGCN, dropout_recompute,
                               feature_dropout, relu_dropout, sparse_features)


def _bag_of_words(n=40, f=60, density=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, f, generator=g) < density).float() * torch.rand(n, f, generator=g)


@pytest.mark.parametrize("cls", [GatedGCN, GatedResGCN])
def test_sparse_input_equals_dense_input(cls):
    from torch_geometric.utils import erdos_renyi_graph
    torch.manual_seed(0)
    x = _bag_of_words()
    xs = sparse_features(x)
    assert xs.layout == torch.sparse_csr
    adj = GatedAdjacency(erdos_renyi_graph(40, 0.2), 40, normalization="row")
    model = cls(60, 8, 3, adjacency=adj).eval()        # eval: no dropout draw
    out, out_s = model(x), model(xs)
    torch.testing.assert_close(out_s, out)
    params = list(model.parameters())
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad((out * g).sum(), params),
                    torch.autograd.grad((model(xs) * g).sum(), params), strict=True):
        torch.testing.assert_close(b, a)
    model.train()                                        # a training step runs too
    model(xs).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)


def test_sparse_dropout_keeps_zeros_and_the_expectation():
    x = _bag_of_words(n=200, f=300, density=0.1, seed=1)
    xs = x.to_sparse_csr()
    torch.manual_seed(0)
    draws = torch.stack([feature_dropout(xs, 0.4, True).to_dense() for _ in range(400)])
    assert (draws[:, x == 0] == 0).all()                              # zeros stay zero
    nz = x != 0
    kept = (draws[:, nz] != 0).float().mean()
    assert abs(float(kept) - 0.6) < 0.01                               # kept with 1 - p
    vals = draws[:, nz]
    assert torch.allclose(vals[vals != 0], (x[nz] / 0.6).expand_as(vals)[vals != 0])
    assert torch.equal(feature_dropout(xs, 0.4, False).to_dense(), x)  # eval: identity
    torch.manual_seed(3)
    dense = feature_dropout(x, 0.4, True)
    torch.manual_seed(3)
    assert torch.equal(dense, torch.nn.functional.dropout(x, 0.4, True))  # dense: F.dropout


def test_sparse_features_converts_only_sparse_inputs():
    x = _bag_of_words(density=0.05)
    assert sparse_features(x).layout == torch.sparse_csr
    dense = torch.randn(10, 5)
    assert sparse_features(dense) is dense
    assert sparse_features(x.to_sparse()).layout == torch.sparse_csr
    torch.testing.assert_close(sparse_features(x.to_sparse()).to_dense(), x)
    with pytest.raises(ValueError, match="max_density"):
        sparse_features(x, max_density=2.0)
    assert graphsparse.sparse_features is sparse_features


@pytest.mark.parametrize("p", [0.5, 0.3, 0.8])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_relu_dropout_equals_relu_then_dropout(p, inplace, threads):
    """Values, gradients and the random stream after the call equal
    F.dropout(h.relu()) on the CPU bit for bit (zeros included); autograd
    keeps one boolean [N, C] mask and a scalar."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        h0 = torch.randn(3000, 37, requires_grad=True)
        with torch.no_grad():
            h0[0, :5] = 0.0
        g = torch.randn(3000, 37)
        torch.manual_seed(1)
        ref = F.dropout((h0 * 1.0).relu(), p, True)
        after_ref = torch.rand(3)
        (grad_ref,) = torch.autograd.grad((ref * g).sum(), h0)
        saved = []

        def pack(t):
            saved.append(t)
            return t
        torch.manual_seed(1)
        h = h0 * 1.0
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = relu_dropout(h, p, True, inplace=inplace)
        assert torch.equal(torch.rand(3), after_ref)          # the same random stream
        assert (out.data_ptr() == h.data_ptr()) == inplace
        assert torch.equal(out, ref)
        (grad,) = torch.autograd.grad((out * g).sum(), h0)
        assert torch.equal(grad, grad_ref)
        big = [t for t in saved if t.numel() > 1]
        assert len(big) == 1 and big[0].dtype == torch.bool and big[0].shape == h.shape
    finally:
        torch.set_num_threads(old)


def test_relu_dropout_gradcheck_eval_mode_and_bad_p():
    h = torch.randn(20, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: (torch.manual_seed(0), relu_dropout(t, 0.4, True))[1], (h,))
    assert torch.equal(relu_dropout(h, 0.4, False), h.relu())      # eval: relu alone
    assert torch.equal(relu_dropout(h, 0.0, True), h.relu())
    with pytest.raises(ValueError, match="'p' in \\[0, 1\\)"):
        relu_dropout(h, 1.0, True)
    assert graphsparse.relu_dropout is relu_dropout


def test_gcn_training_forward_is_dropout_conv_relu():
    """GatedGCN in training mode equals the textbook loop (dropout before
    every convolution, relu between them) under the same seed, values and
    gradients: the fused activation changes memory only."""
    from torch_geometric.utils import erdos_renyi_graph
    torch.manual_seed(0)
    ei = erdos_renyi_graph(30, 0.2)
    w = torch.rand(ei.size(1))
    x = torch.randn(30, 9)
    model = GatedGCN(9, 16, 3, num_layers=3, dropout=0.3).train()
    torch.manual_seed(5)
    out = model(x, ei, w)
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    torch.manual_seed(5)
    h = x
    for i, conv in enumerate(model.convs):
        h = conv(F.dropout(h, 0.3, True), ei, w)
        if i < 2:
            h = h.relu()
    ref_grads = torch.autograd.grad(h.square().sum(), list(model.parameters()))
    torch.testing.assert_close(out, h, rtol=0, atol=0)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_relu_dropout_nan_and_non_contiguous_inputs():
    """A NaN stays NaN in the output (as relu then dropout give it), and a
    transposed (non-contiguous) input, in place or not, gives the values and
    gradients of the contiguous one."""
    h = torch.randn(50, 30)
    h[3, 4] = float("nan")
    torch.manual_seed(2)
    ref = F.dropout(h.relu(), 0.5, True)
    torch.manual_seed(2)
    torch.testing.assert_close(relu_dropout(h, 0.5, True), ref, rtol=0, atol=0, equal_nan=True)
    for inplace in (False, True):
        base = torch.randn(30, 50, requires_grad=True)
        g = torch.randn(50, 30)
        torch.manual_seed(4)
        ref = F.dropout((base * 1.0).t().relu(), 0.3, True)
        (grad_ref,) = torch.autograd.grad((ref * g).sum(), base)
        torch.manual_seed(4)
        out = relu_dropout((base * 1.0).t(), 0.3, True, inplace=inplace)
        (grad,) = torch.autograd.grad((out * g).sum(), base)
        assert torch.equal(out, ref) and torch.equal(grad, grad_ref)


def test_dropout_recompute_keeps_a_mask_not_the_dropped_features():
    """fn(F.dropout(x)) with the same seed: equal values and gradients, the
    dropped-out tensor is not alive once fn returns (autograd keeps x and a
    mask and recomputes it), and an in-place change of x before backward
    raises instead of giving a wrong gradient."""
    import weakref

    from graphsparse.graph._ops import linear_aggregate
    from torch_geometric.utils import erdos_renyi_graph
    torch.manual_seed(0)
    ei = erdos_renyi_graph(40, 0.2)
    w = torch.rand(ei.size(1), dtype=torch.float64, requires_grad=True)
    lin = torch.randn(16, 9, dtype=torch.float64, requires_grad=True)
    x = torch.randn(40, 9, dtype=torch.float64)
    refs = []

    def layer(d):
        refs.append(weakref.ref(d))
        return linear_aggregate(d, lin, ei, w)
    torch.manual_seed(3)
    out = dropout_recompute(layer, x, 0.4, True)
    assert refs[0]() is None                     # not kept by autograd
    torch.manual_seed(3)
    ref = linear_aggregate(F.dropout(x, 0.4, True), lin, ei, w)
    assert torch.equal(out, ref)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad((out * g).sum(), (lin, w)),
                    torch.autograd.grad((ref * g).sum(), (lin, w)), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    out = dropout_recompute(layer, x, 0.4, True)
    x.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        out.sum().backward()
    xg = torch.randn(40, 9, dtype=torch.float64, requires_grad=True)   # x needs a gradient
    torch.manual_seed(1)
    (ga,) = torch.autograd.grad(dropout_recompute(layer, xg, 0.4, True).sum(), xg)
    torch.manual_seed(1)
    (gb,) = torch.autograd.grad(layer(F.dropout(xg, 0.4, True)).sum(), xg)
    torch.testing.assert_close(ga, gb)
    assert torch.equal(dropout_recompute(lambda d: d, x, 0.4, False), x)   # eval: identity
    with pytest.raises(ValueError, match="'p'"):
        dropout_recompute(layer, x, -0.1, True)


@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32])
def test_sparse_linear_equals_linear_on_the_dense_input(index_dtype):
    from graphsparse.graph._ops import sparse_linear
    torch.manual_seed(0)
    x = _bag_of_words().double()
    x[3] = 0.0                                       # an empty row
    x[:, 7] = 0.0                                    # an empty column
    xs = x.to_sparse_csr()
    xs = torch.sparse_csr_tensor(xs.crow_indices().to(index_dtype),
                                 xs.col_indices().to(index_dtype), xs.values(), xs.shape,
                                 check_invariants=True)
    w = torch.randn(5, 60, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda w, b: sparse_linear(xs, w, b), (w, b))
    for _ in range(2):          # dropout keeps the pattern: the cached transpose is reused
        d = feature_dropout(xs, 0.5, True)
        out = sparse_linear(d, w, b)
        assert out.grad_fn is not None and "SparseLinear" in repr(out.grad_fn.next_functions)
        ref = F.linear(d.to_dense(), w, b)
        g = torch.randn_like(ref)
        torch.testing.assert_close(out, ref)
        for a, r in zip(torch.autograd.grad(out, (w, b), g), torch.autograd.grad(ref, (w, b), g)):
            torch.testing.assert_close(a, r)


def test_sparse_linear_cache_is_bounded_and_dense_inputs_pass_through():
    from graphsparse.graph import _ops as ops
    w = torch.randn(4, 60, requires_grad=True)
    for seed in range(ops._TRANSPOSED_MAX + 3):
        xs = sparse_features(_bag_of_words(seed=seed))
        ops.sparse_linear(xs, w).sum().backward()
        del xs
    assert len(ops._TRANSPOSED) <= ops._TRANSPOSED_MAX
    x = _bag_of_words()
    torch.testing.assert_close(ops.sparse_linear(x, w), F.linear(x, w))
