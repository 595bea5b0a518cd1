import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphsparse.graph import row_norm, sinkhorn, sym_norm
from graphsparse.testing import devices


def _sums(edge_index, w, n):
    rows = torch.zeros(n, dtype=w.dtype).index_add(0, edge_index[1], w)
    cols = torch.zeros(n, dtype=w.dtype).index_add(0, edge_index[0], w)
    return rows, cols


def _random_marginals(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(2, n, generator=g, dtype=dtype) + 0.2
    m[1] *= m[0].sum() / m[1].sum()                      # equal totals
    return m


@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("marginals", [False, True])
def test_matches_dense_forward_and_gradient(balanced, marginals, dense, graph):
    n = 10
    edge_index = graph(n, 0.3)
    edge_index = edge_index[:, (edge_index != 9).all(0)]      # node 9: empty row and column
    w = torch.rand(edge_index.size(1), dtype=torch.float64) + 0.05
    w.requires_grad_()
    m = _random_marginals(n, 1) if marginals else None
    out, err = sinkhorn(edge_index, w, n, num_iters=7, balanced=balanced, return_error=True,
                        marginals=m)
    w_ref = w.detach().clone().requires_grad_()
    a = dense.sinkhorn(dense.adjacency(edge_index, w_ref, n), 7, balanced, marginals=m)
    ref = dense.entries(a, edge_index)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(w.grad, w_ref.grad)
    live = torch.arange(n) != 9
    target = torch.ones(2, n, dtype=torch.float64) if m is None else m
    dev = torch.cat([(a.sum(1) - target[0])[live], (a.sum(0) - target[1])[live]]).abs().max()
    torch.testing.assert_close(err, dev.detach())
    if marginals:        # not the uniform iterations: the marginals matter
        assert not torch.allclose(out, sinkhorn(edge_index, w.detach(), n, 7, balanced))
    torch.autograd.gradcheck(
        lambda v: sinkhorn(edge_index, v, n, num_iters=3, balanced=balanced, marginals=m),
        (w.detach().clone().requires_grad_(),))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 25), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**16),
       balanced=st.booleans())
def test_random_graphs_become_doubly_stochastic(n, p, seed, balanced):
    # Undirected support with self-loops has total support, so Sinkhorn
    # converges (linearly); the weights themselves are not symmetric.
    from torch_geometric.utils import add_remaining_self_loops, erdos_renyi_graph
    torch.manual_seed(seed)
    edge_index = erdos_renyi_graph(n, p, directed=False)
    edge_index, _ = add_remaining_self_loops(edge_index, num_nodes=n)
    w = torch.rand(edge_index.size(1)) * 0.9 + 0.1
    out, err = sinkhorn(edge_index, w, n, num_iters=1000 if balanced else 300,
                        balanced=balanced, return_error=True)
    rows, cols = _sums(edge_index, out, n)
    assert float(err) < 1e-4
    torch.testing.assert_close(rows, torch.ones(n), atol=1e-4, rtol=0)
    torch.testing.assert_close(cols, torch.ones(n), atol=1e-4, rtol=0)


@pytest.mark.parametrize("balanced", [False, True])
def test_zeros_stay_zero_and_dead_rows_have_finite_gradients(balanced, graph):
    n = 12
    edge_index = graph(n, 0.4, self_loops=False)
    edge_index = edge_index[:, (edge_index < 10).all(0)]     # nodes 10, 11 isolated
    w = torch.rand(edge_index.size(1))
    w[::3] = 0.0
    w[edge_index[1] == 4] = 0.0                               # a dead row
    w[edge_index[0] == 7] = 0.0                               # a dead column
    w.requires_grad_()
    out = sinkhorn(edge_index, w, n, num_iters=10, balanced=balanced)
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(w.grad).all()
    assert (out[w.detach() == 0] == 0).all()
    assert (out[w.detach() > 0] > 0).all()


@pytest.mark.parametrize("balanced", [False, True])
def test_subnormal_rows_are_finite(balanced):
    # Rows whose sum is far below the float32 range of 1/d^2 count as empty.
    edge_index = torch.tensor([[0, 1, 2, 0, 3], [0, 1, 2, 1, 3]])
    w = torch.tensor([1.0, 1e-30, 1e-38, 0.5, 1e-44], requires_grad=True)
    out = sinkhorn(edge_index, w, 4, num_iters=5, balanced=balanced)
    (out * torch.arange(5.0)).sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(w.grad).all()


@pytest.mark.parametrize("balanced", [False, True])
def test_edge_order_does_not_matter(balanced, graph):
    n = 15
    edge_index = graph(n, 0.3)
    w = torch.rand(edge_index.size(1), dtype=torch.float64)
    perm = torch.randperm(edge_index.size(1))
    out = sinkhorn(edge_index, w, n, balanced=balanced)
    out_perm = sinkhorn(edge_index[:, perm], w[perm], n, balanced=balanced)
    torch.testing.assert_close(out_perm, out[perm])


@pytest.mark.parametrize("balanced", [False, True])
def test_float32_is_safe_for_large_degrees_and_tiny_weights(balanced):
    # A hub row and a hub column of degree 10^4, weights log-uniform in [1e-8, 1].
    g = torch.Generator().manual_seed(0)
    n, hub = 12000, torch.arange(1, 10001)
    src = torch.cat([hub, torch.zeros_like(hub), torch.randint(0, n, (20000,), generator=g),
                     torch.arange(n)])
    dst = torch.cat([torch.zeros_like(hub), hub + 1000, torch.randint(0, n, (20000,), generator=g),
                     torch.arange(n)])
    edge_index = torch.stack([src, dst])
    w64 = 10 ** (-8 * torch.rand(edge_index.size(1), generator=g, dtype=torch.float64))
    w64.requires_grad_()
    w32 = w64.detach().float().requires_grad_()
    out64 = sinkhorn(edge_index, w64, n, num_iters=20, balanced=balanced)
    out32 = sinkhorn(edge_index, w32, n, num_iters=20, balanced=balanced)
    gout = torch.randn(edge_index.size(1), generator=g, dtype=torch.float64)
    (out64 * gout).sum().backward()
    (out32 * gout.float()).sum().backward()
    assert torch.isfinite(out32).all() and torch.isfinite(w32.grad).all()
    torch.testing.assert_close(out32.double(), out64.detach(), rtol=1e-3, atol=0)
    # Gradient relative to its scale (it grows like 1/w for the tiny weights).
    scale = w64.grad.abs().max()
    torch.testing.assert_close(w32.grad.double() / scale, w64.grad / scale, rtol=0, atol=1e-4)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("balanced", [False, True])
def test_runs_on_device(device, balanced, graph):
    edge_index = graph(20, 0.2).to(device)
    w = torch.rand(edge_index.size(1), device=device, requires_grad=True)
    out = sinkhorn(edge_index, w, 20, balanced=balanced)
    out.sum().backward()
    assert out.device.type == device and torch.isfinite(w.grad).all()


# ------------------------------------------------- prescribed marginals
@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 25), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**16),
       balanced=st.booleans())
def test_random_graphs_reach_their_marginals(n, p, seed, balanced):
    # A symmetric matrix with a positive diagonal has a (symmetric) scaling
    # to any positive row sums r = c: the minimizer of x'Ax/2 - sum r log x.
    from torch_geometric.utils import add_remaining_self_loops, erdos_renyi_graph, to_undirected
    torch.manual_seed(seed)
    edge_index = erdos_renyi_graph(n, p, directed=False)
    edge_index, _ = add_remaining_self_loops(edge_index, num_nodes=n)
    edge_index, w = to_undirected(edge_index, torch.rand(edge_index.size(1),
                                                         dtype=torch.float64) + 0.1,
                                  num_nodes=n, reduce="max")
    m = torch.rand(n, dtype=torch.float64) * 3 + 0.2
    out, err = sinkhorn(edge_index, w, n, num_iters=3000 if balanced else 1000,
                        balanced=balanced, marginals=m, return_error=True)
    rows, cols = _sums(edge_index, out, n)
    assert float(err) < 1e-6
    torch.testing.assert_close(rows, m, atol=1e-6, rtol=0)
    torch.testing.assert_close(cols, m, atol=1e-6, rtol=0)


BAD_MARGINALS = [
    torch.ones(4),                                            # N = 3
    torch.ones(3, 3),
    torch.tensor([1.0, 0.0, 1.0]),
    torch.tensor([1.0, -1.0, 3.0]),
    torch.tensor([1.0, math.nan, 1.0]),
    torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 2.0]]),        # unequal totals
    torch.tensor([1, 1, 1]),                                  # integers
]


@pytest.mark.parametrize("marginals", BAD_MARGINALS)
def test_bad_marginals_name_the_argument(marginals):
    with pytest.raises(ValueError, match="marginals"):
        sinkhorn(EI, None, 3, marginals=marginals)


FUNCTIONS = {"sinkhorn": sinkhorn, "row_norm": row_norm, "sym_norm": sym_norm}
EI = torch.tensor([[0, 1, 2], [1, 2, 0]])
BAD = [
    ("edge_index", dict(edge_index=EI.t().contiguous())),                 # [3, 2]
    ("edge_index", dict(edge_index=EI.float())),
    ("edge_index", dict(edge_index=EI[0])),
    ("edge_index", dict(edge_index=torch.tensor([[0, -1], [1, 2]]))),
    ("edge_index", dict(edge_index=EI, num_nodes=2)),
    ("edge_weight", dict(edge_weight=torch.tensor([1.0, math.nan, 1.0]))),
    ("edge_weight", dict(edge_weight=torch.tensor([1.0, math.inf, 1.0]))),
    ("edge_weight", dict(edge_weight=torch.tensor([1.0, -1.0, 1.0]))),
    ("edge_weight", dict(edge_weight=torch.ones(4))),
    ("edge_weight", dict(edge_weight=torch.ones(3, dtype=torch.long))),
    ("num_nodes", dict(num_nodes=-1)),
]


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("name,kwargs", BAD)
def test_bad_input_names_the_argument(fn, name, kwargs):
    args = dict(edge_index=EI, edge_weight=torch.ones(3), num_nodes=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        FUNCTIONS[fn](**args)


@pytest.mark.parametrize("num_iters", [0, -1, 1.5])
def test_num_iters_must_be_positive(num_iters):
    with pytest.raises(ValueError, match="num_iters"):
        sinkhorn(EI, None, 3, num_iters=num_iters)


# ------------------------------------------------- the custom backward pass
import importlib  # noqa: E402

from graphsparse.graph.sinkhorn import _sinkhorn, _sinkhorn_autograd  # noqa: E402

# The module (the package re-exports a function of the same name).
sinkhorn_module = importlib.import_module("graphsparse.graph.sinkhorn")


def _custom_vs_autograd(edge_index, w, n, num_iters, balanced, g, marginals=None):
    row, col = edge_index[1], edge_index[0]
    a, b = w.clone().requires_grad_(), w.clone().requires_grad_()
    out = _sinkhorn(row, col, a, n, num_iters, balanced, marginals=marginals)
    ref = _sinkhorn_autograd(row, col, b, n, num_iters, balanced, marginals=marginals)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    return out, ref, a.grad, b.grad


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 14), e=st.integers(0, 70), num_iters=st.integers(1, 12),
       seed=st.integers(0, 2**16), balanced=st.booleans(), store_all=st.booleans(),
       zeros=st.floats(0.0, 0.6), marginals=st.booleans())
def test_custom_backward_equals_autograd_through_the_iterations(n, e, num_iters, seed, balanced,
                                                               store_all, zeros, marginals):
    # Random graphs (duplicates, empty rows and columns, isolated nodes) with
    # exact zeros; both the stored and the checkpointed (recomputed) backward;
    # uniform or random marginals.
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    w = torch.rand(e, generator=g, dtype=torch.float64) + 0.01
    w[torch.rand(e, generator=g) < zeros] = 0.0
    gout = torch.randn(e, generator=g, dtype=torch.float64)
    stores = sinkhorn_module._stores_all
    sinkhorn_module._stores_all = lambda *args: store_all
    try:
        out, ref, grad, grad_ref = _custom_vs_autograd(
            edge_index, w, n, num_iters, balanced, gout,
            _random_marginals(n, seed) if marginals else None)
    finally:
        sinkhorn_module._stores_all = stores
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    scale = max(float(grad_ref.abs().max()) if e else 0.0, 1.0)
    torch.testing.assert_close(grad / scale, grad_ref / scale, rtol=0, atol=1e-6)
    assert torch.isfinite(grad).all()
    assert (out[w == 0] == 0).all()


@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("store_all", [False, True])
@pytest.mark.parametrize("marginals", [False, True])
def test_custom_backward_gradcheck(balanced, store_all, marginals, graph, monkeypatch):
    monkeypatch.setattr(sinkhorn_module, "_stores_all", lambda *args: store_all)
    n = 9
    edge_index = graph(n, 0.3)
    edge_index = edge_index[:, edge_index[1] != 4]            # an empty row
    w = torch.rand(edge_index.size(1), dtype=torch.float64) + 0.1
    m = _random_marginals(n, 3) if marginals else None
    # 10 iterations: checkpointed segments of 4, 4 and 2
    torch.autograd.gradcheck(
        lambda v: sinkhorn(edge_index, v, n, num_iters=10, balanced=balanced, marginals=m),
        (w.requires_grad_(),))


@pytest.mark.parametrize("balanced", [False, True])
def test_saved_memory_does_not_grow_with_the_iterations(balanced):
    # What the backward pass keeps, in values: the weights (and indices),
    # the final scalings and a fixed number of checkpoints (on ctx, as the
    # backward reuses their buffers), against E + N per half-step before.
    g = torch.Generator().manual_seed(0)
    n, e = 200, 4000
    edge_index = torch.randint(0, n, (2, e), generator=g)
    w = torch.rand(e, generator=g, requires_grad=True)

    def kept(fn, num_iters):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t,
                                                      lambda t: t):
            out = fn(edge_index[1], edge_index[0], w, n, num_iters, balanced)
        slots = getattr(out.grad_fn, "slots", None)
        return sum(sizes) + (0 if slots is None else slots.numel())

    one, many, more = kept(_sinkhorn, 1), kept(_sinkhorn, 100), kept(_sinkhorn, 1000)
    assert many == more                                      # independent of the iterations
    assert many <= one + max(e // 4, 2 * 2 * n)              # a quarter [E] vector, or 2 x 2N
    assert kept(_sinkhorn_autograd, 100) > 50 * e            # what the test would catch


@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("checkpoints", [1, 2, 3, 5])
def test_recomputed_backward_equals_autograd_for_many_iterations(balanced, checkpoints,
                                                                 monkeypatch):
    # Binomial checkpointing several levels deep (37 iterations from 1 to 5
    # checkpoints), on a graph with an empty row and exact zeros.
    monkeypatch.setattr(sinkhorn_module, "_stores_all", lambda *args: False)
    monkeypatch.setattr(sinkhorn_module, "_num_checkpoints", lambda *args: checkpoints)
    g = torch.Generator().manual_seed(checkpoints)
    n, e = 12, 60
    edge_index = torch.randint(0, n, (2, e), generator=g)
    edge_index = edge_index[:, edge_index[1] != 3]
    w = torch.rand(edge_index.size(1), generator=g, dtype=torch.float64) + 0.05
    w[::5] = 0.0
    gout = torch.randn(w.numel(), generator=g, dtype=torch.float64)
    out, ref, grad, grad_ref = _custom_vs_autograd(edge_index, w, n, 37, balanced, gout)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-8, atol=1e-10)


def test_second_backward_recomputes_the_checkpoints(monkeypatch):
    # retain_graph=True: the first backward reused the checkpoints' buffers
    monkeypatch.setattr(sinkhorn_module, "_stores_all", lambda *args: False)
    g = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 10, (2, 50), generator=g)
    w = (torch.rand(50, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    out = sinkhorn(edge_index, w, 10, num_iters=9)
    first = torch.autograd.grad(out[:7].sum(), w, retain_graph=True)[0]
    second = torch.autograd.grad(out[:7].sum(), w)[0]
    torch.testing.assert_close(first, second, rtol=0, atol=0)


@pytest.mark.parametrize("balanced", [False, True])
def test_gather_path_equals_the_sparse_products(balanced, graph):
    # bfloat16 weights have no MKL sparse product: the iterations take gathers
    # and scatter-sums (and a chunked SDDMM backward); same function.
    n = 30
    edge_index = graph(n, 0.2)
    w = torch.rand(edge_index.size(1), dtype=torch.float64) + 0.1
    w[::5] = 0.0
    wb = w.bfloat16().requires_grad_()
    w64 = wb.detach().double().requires_grad_()
    out_b = sinkhorn(edge_index, wb, n, num_iters=3, balanced=balanced)
    out_64 = sinkhorn(edge_index, w64, n, num_iters=3, balanced=balanced)
    assert out_b.dtype == torch.bfloat16 and (out_b[w == 0] == 0).all()
    torch.testing.assert_close(out_b.double(), out_64.detach(), rtol=3e-2, atol=1e-2)
    gout = torch.randn(edge_index.size(1), dtype=torch.float64)
    (out_b.double() * gout).sum().backward()
    (out_64 * gout).sum().backward()
    scale = w64.grad.abs().max()
    torch.testing.assert_close(wb.grad.double() / scale, w64.grad / scale, rtol=0, atol=5e-2)


def test_products_use_the_pattern_cached_with_the_edge_index(graph, monkeypatch):
    # Given the edge_index tensor, forward and backward take the CSR pattern
    # cached with it (the one the propagation uses): no sort per call.
    from graphsparse.graph import _ops
    n = 12
    edge_index = graph(n, 0.3)
    w = torch.rand(edge_index.size(1), dtype=torch.float64, requires_grad=True)
    calls = []
    build = _ops._pattern
    monkeypatch.setattr(_ops, "_pattern", lambda *a: calls.append(1) or build(*a))
    monkeypatch.setattr(sinkhorn_module, "_pattern", lambda *a: calls.append(1) or build(*a))
    sinkhorn(edge_index, w, n, num_iters=4).sum().backward()
    sinkhorn(edge_index, w, n, num_iters=4).sum().backward()
    assert len(calls) == 1
    _sinkhorn(edge_index[1], edge_index[0], w.detach(), n, 4, False)   # no edge_index: built
    assert len(calls) == 2
