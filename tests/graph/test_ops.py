"""The sparse-product aggregation (CSR forward, transposed product and SDDMM
backward) against a dense reference and the edge-list path, and the one- and
two-factor edge scaling."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.profiler import ProfilerActivity, profile

from graphsparse.graph._ops import linear_aggregate, scale_edges, weighted_aggregate
from graphsparse.graph.conv import GatedGCNConv
from graphsparse.testing import devices

PATHS = ["auto", "chunked", "edge_list"]


def dense_aggregate(h, edge_index, w):
    a = w.new_zeros(h.size(0), h.size(0))
    a = a.index_put((edge_index[1].long(), edge_index[0].long()), w, accumulate=True)
    return a @ h


def awkward_graph(n=12, e=60, seed=0, dtype=torch.float64):
    """Unsorted edges with duplicates, exact zeros, an empty row (node 3
    receives nothing) and an empty column (node 5 sends nothing)."""
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei = torch.cat([ei, ei[:, :7]], 1)                       # duplicate edges
    ei = ei[:, (ei[1] != 3) & (ei[0] != 5)]
    w = torch.rand(ei.size(1), generator=g, dtype=dtype) + 0.1
    w[::4] = 0.0                                              # exact zeros
    return ei, w


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("order", ["coalesced", "unsorted"])
@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32])
def test_matches_dense_forward_and_gradients(path, order, index_dtype):
    n = 12
    ei, w = awkward_graph(n)
    if order == "coalesced":
        key = ei[0] * n + ei[1]
        perm = torch.argsort(key, stable=True)
        ei, w = ei[:, perm], w[perm]
    ei = ei.to(index_dtype)
    h = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
    w.requires_grad_()
    out = weighted_aggregate(h, ei, w, path)
    h_ref, w_ref = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = dense_aggregate(h_ref, ei, w_ref)
    torch.testing.assert_close(out, ref)
    assert (out[3] == 0).all()                               # the empty row
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(h.grad, h_ref.grad)
    torch.testing.assert_close(w.grad, w_ref.grad)
    assert (h.grad[5] == 0).all()                            # the empty column
    torch.autograd.gradcheck(lambda a, b: weighted_aggregate(a, ei, b, path),
                             (h.detach().requires_grad_(), w.detach().requires_grad_()))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 15), e=st.integers(0, 60), c=st.integers(1, 4),
       seed=st.integers(0, 2**16), sort=st.booleans())
def test_random_graphs_equal_the_edge_list_path(n, e, c, seed, sort):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    if sort:
        ei = ei[:, torch.argsort(ei[0], stable=True)]
    w = torch.rand(e, generator=g, dtype=torch.float64)
    w[torch.rand(e, generator=g) < 0.3] = 0.0
    h = torch.randn(n, c, generator=g, dtype=torch.float64)
    outs, grads = [], []
    for path in PATHS:
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        out = weighted_aggregate(hh, ei, ww, path)
        out.pow(2).sum().backward()
        outs.append(out)
        grads.append((hh.grad, ww.grad))
    for out, (gh, gw) in zip(outs[:-1], grads[:-1], strict=True):
        torch.testing.assert_close(out, outs[-1])
        torch.testing.assert_close(gh, grads[-1][0])
        torch.testing.assert_close(gw, grads[-1][1])


def test_float32_and_only_one_input_requiring_grad():
    ei, w = awkward_graph(dtype=torch.float32)
    h = torch.randn(12, 8)
    for needs in ("h", "w"):
        hh = h.clone().requires_grad_(needs == "h")
        ww = w.clone().requires_grad_(needs == "w")
        out = weighted_aggregate(hh, ei, ww)
        ref = dense_aggregate(h, ei, w)
        torch.testing.assert_close(out, ref)
        out.sum().backward()
        assert (hh.grad is None) == (needs == "w") and (ww.grad is None) == (needs == "h")


def test_pattern_cache_follows_in_place_changes():
    ei, w = awkward_graph()
    h = torch.randn(12, 3, dtype=torch.float64)
    first = weighted_aggregate(h, ei, w)
    torch.testing.assert_close(weighted_aggregate(h, ei, w), first)   # cached pattern
    ei[1] = (ei[1] + 1) % 12                                          # version bump
    torch.testing.assert_close(weighted_aggregate(h, ei, w), dense_aggregate(h, ei, w))


def test_unsupported_dtypes_take_the_edge_list_path():
    ei, w = awkward_graph(dtype=torch.float32)
    h = torch.randn(12, 4, dtype=torch.bfloat16)
    out = weighted_aggregate(h, ei, w.bfloat16())
    ref = dense_aggregate(h.float(), ei, w.bfloat16().float())
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("path", ["auto", "chunked"])
def test_no_edge_by_channel_allocation(path, monkeypatch):
    # The largest single allocation of forward + backward: an [E, C] message
    # tensor on the edge-list path, O(E + N C) on the product path.
    import graphsparse.graph._ops as ops
    monkeypatch.setattr(ops, "_CHUNK_VALUES", 4096)
    torch.manual_seed(0)
    n, e, c = 200, 20000, 64
    ei = torch.randint(0, n, (2, e))
    h = torch.randn(n, c, requires_grad=True)
    w = torch.rand(e, requires_grad=True)

    def largest(p):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            weighted_aggregate(h, ei, w, p).square().sum().backward()
        return max(evt.cpu_memory_usage for evt in prof.events())

    assert largest("edge_list") >= e * c * 4                   # the test can see it
    assert largest(path) <= e * 16 + n * c * 4


@pytest.mark.parametrize("weighted", ["none", "fixed", "learned"])
def test_conv_uses_the_product_and_equals_propagate(weighted):
    torch.manual_seed(0)
    ei, w = awkward_graph(dtype=torch.float32)
    x = torch.randn(12, 6)
    conv = GatedGCNConv(6, 4)
    w = {"none": None, "fixed": w, "learned": w.clone().requires_grad_()}[weighted]
    calls = []

    def forward(*args, **kwargs):     # the edge-list path would call propagate
        calls.append(1)
        return GatedGCNConv.propagate(conv, *args, **kwargs)

    conv.propagate = forward
    out = conv(x, ei, w)
    assert not calls
    ref = GatedGCNConv.propagate(conv, ei, x=conv.lin(x), edge_weight=w) + conv.bias
    torch.testing.assert_close(out, ref)


def test_conv_with_hooks_uses_propagate():
    ei, w = awkward_graph(dtype=torch.float32)
    conv = GatedGCNConv(6, 4)
    seen = []
    conv.register_message_forward_hook(lambda module, inputs, out: seen.append(out.shape))
    out = conv(torch.randn(12, 6), ei, w.requires_grad_())
    assert seen == [torch.Size([ei.size(1), 4])] and out.shape == (12, 4)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path", ["auto", "chunked"])
def test_runs_on_device(device, dtype, path):
    ei, w = awkward_graph(dtype=dtype)
    ei, w = ei.to(device), w.to(device).requires_grad_()
    h = torch.randn(12, 5, dtype=dtype, device=device, requires_grad=True)
    out = weighted_aggregate(h, ei, w, path)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    h_ref = h.detach().cpu().double().requires_grad_()
    w_ref = w.detach().cpu().double().requires_grad_()
    ref = dense_aggregate(h_ref, ei.cpu(), w_ref)
    (ref * g.cpu().double()).sum().backward()
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else {}
    assert out.device.type == device
    torch.testing.assert_close(out.cpu().double(), ref.detach(), **tol)
    torch.testing.assert_close(h.grad.cpu().double(), h_ref.grad, **tol)
    torch.testing.assert_close(w.grad.cpu().double(), w_ref.grad, **tol)


def test_two_factor_scaling_equals_two_chained_ones():
    torch.manual_seed(0)
    n, e = 8, 30
    i, j = torch.randint(0, n, (e,)), torch.randint(0, n, (e,))
    a = torch.rand(e, dtype=torch.float64)
    a[::3] = 0.0
    s, t = torch.rand(n, dtype=torch.float64) + 0.5, torch.rand(n, dtype=torch.float64) + 0.5
    args = [v.clone().requires_grad_() for v in (a, s, t)]
    ref_args = [v.clone().requires_grad_() for v in (a, s, t)]
    out = scale_edges(args[0], args[1], i, args[2], j)
    ref = scale_edges(scale_edges(ref_args[0], ref_args[1], i), ref_args[2], j)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(out, a * s[i] * t[j])
    gout = torch.randn(e, dtype=torch.float64)
    (out * gout).sum().backward()
    (ref * gout).sum().backward()
    for x, y in zip(args, ref_args, strict=True):
        torch.testing.assert_close(x.grad, y.grad)
    assert (args[0].grad[a == 0] == 0).all()                 # zeros get no gradient of their own
    with pytest.raises(ValueError, match="index2"):
        scale_edges(a, s, i, t)


def test_pattern_cache_drops_the_patterns_of_dead_edge_lists():
    # a regression: a cached pattern that held a view of its edge_index kept it
    # alive, and every training step (a new edge list) leaked one pattern
    import gc

    from graphsparse.graph import _ops
    torch.manual_seed(0)
    n, h = 30, torch.randn(30, 4)
    gc.collect()                       # earlier tests' garbage (and its patterns) first
    before = len(_ops._PATTERNS)
    for sort in (True, False):                      # coalesced (sorted by source) or not
        for _ in range(5):
            ei = torch.randint(0, n, (2, 100))
            if sort:
                ei = ei[:, torch.argsort(ei[0] * n + ei[1])]
            _ops.weighted_aggregate(h, ei, torch.rand(100))
            sub = _ops.select_edges(ei, torch.rand(100) > 0.5, n)     # a derived pattern
            _ops.weighted_aggregate(h, sub, torch.rand(sub.size(1)))
            del ei, sub
    gc.collect()
    # <=: a pattern of an earlier test's graph may be released meanwhile
    assert len(_ops._PATTERNS) <= before


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("order", ["coalesced", "unsorted"])
@pytest.mark.parametrize("c_in,c_out", [(5, 7), (7, 3)])        # both associations
@pytest.mark.parametrize("learned", [True, False])
def test_linear_aggregate_matches_dense_and_keeps_no_output(path, order, c_in, c_out, learned):
    """A X W^T with duplicates, zeros, an empty row and column; autograd keeps
    W, the weights and one [N, C] tensor (X, or A X in the first order with
    fixed weights), not the [N, C_out] product X W^T."""
    n = 12
    ei, w = awkward_graph(n)
    if order == "coalesced":
        perm = torch.argsort(ei[0] * n + ei[1], stable=True)
        ei, w = ei[:, perm], w[perm]
    x = torch.randn(n, c_in, dtype=torch.float64, requires_grad=True)
    lin = torch.randn(c_out, c_in, dtype=torch.float64, requires_grad=True)
    w.requires_grad_(learned)
    saved = []

    def pack(t):
        saved.append(t)
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = linear_aggregate(x, lin, ei, w, path)
    ref = dense_aggregate(x, ei, w) @ lin.t()
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    inputs = (x, lin, w) if learned else (x, lin)
    for a, b in zip(torch.autograd.grad((out * g).sum(), inputs),
                    torch.autograd.grad((ref * g).sum(), inputs), strict=True):
        torch.testing.assert_close(a, b)
    if path == "auto":
        assert not any(t is not None and t.shape == (n, c_out) for t in saved)
        # one [N, C] tensor in all: X (learned weights: A X is recomputed) or A X
        assert sum(t is not None and t.dim() == 2 and t.size(0) == n for t in saved) == 1
        torch.autograd.gradcheck(lambda *a: linear_aggregate(a[0], a[1], ei, a[2] if learned
                                                             else w, path), inputs)


def test_conv_under_autocast_and_with_linear_hooks_takes_the_plain_path():
    ei, w = awkward_graph(dtype=torch.float32)
    conv = GatedGCNConv(6, 4)
    x = torch.randn(12, 6)
    w = w.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):       # bf16 features: the edge list
        out = conv(x, ei, w)
    out.float().sum().backward()
    assert torch.isfinite(w.grad).all()
    ref = dense_aggregate(x.double(), ei, w.detach().double()) @ conv.lin.weight.double().t()
    torch.testing.assert_close(out.double(), ref + conv.bias.double(), atol=0.1, rtol=0.05)
    seen = []
    conv.lin.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    conv(x, ei, w)
    assert seen == [torch.Size([12, 4])]                    # the hook on lin ran


def test_square_layer_writes_the_input_gradient_over_its_buffer_by_blocks(monkeypatch):
    """A (X W^T) with a square W: dL/dX = (A^T G) W is written over A^T G by
    blocks of rows (here 5 of 12), equal to the dense reference and gradcheck."""
    from graphsparse.graph import _ops
    monkeypatch.setattr(_ops, "_CHUNK_ROWS", 5)
    n = 12
    ei, w = awkward_graph(n)
    x = torch.randn(n, 6, dtype=torch.float64, requires_grad=True)
    lin = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    w.requires_grad_()
    out = linear_aggregate(x, lin, ei, w)
    ref = dense_aggregate(x, ei, w) @ lin.t()
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad((out * g).sum(), (x, lin, w)),
                    torch.autograd.grad((ref * g).sum(), (x, lin, w)), strict=True):
        torch.testing.assert_close(a, b)
    torch.autograd.gradcheck(lambda *a: linear_aggregate(a[0], a[1], ei, a[2]), (x, lin, w))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_edge_cosine_equals_gathered_cosine(dtype):
    from graphsparse.graph import edge_cosine
    g = torch.Generator().manual_seed(0)
    n, c = 30, 7
    h = torch.randn(n, c, generator=g, dtype=dtype)
    h[3] = 0.0                                  # a zero row: cosine 0, no NaN
    h[4] *= 1e-12                               # below eps: clamped like F.cosine_similarity
    ei = torch.randint(0, n, (2, 200), generator=g)
    ei = torch.cat([ei, ei[:, :20], torch.arange(n).repeat(2, 1),      # duplicates, self-loops
                    torch.tensor([[3, 4, 3], [5, 4, 4]])], 1)
    ei = ei[:, torch.randperm(ei.size(1), generator=g)]                  # unsorted
    ref = F.cosine_similarity(h[ei[0]], h[ei[1]], dim=-1)
    out = edge_cosine(h, ei)
    assert out.dtype == dtype and out.shape == (ei.size(1),)
    torch.testing.assert_close(out, ref)
    # sparse CSR features (bag-of-words) give the same values
    torch.testing.assert_close(edge_cosine(h.to_sparse_csr(), ei), ref)


def test_edge_cosine_chunked_path_matches(monkeypatch):
    import graphsparse.graph._ops as ops
    from graphsparse.graph import edge_cosine
    g = torch.Generator().manual_seed(1)
    h, ei = torch.randn(25, 5, generator=g), torch.randint(0, 25, (2, 120), generator=g)
    ref = F.cosine_similarity(h[ei[0]], h[ei[1]], dim=-1)
    monkeypatch.setattr(ops, "_CHUNK_VALUES", 10)     # chunks of 2 edges
    sddmm = ops._sddmm
    monkeypatch.setattr(ops, "_sddmm", lambda *a, **k: sddmm(*a, **dict(k, chunked=True)))
    torch.testing.assert_close(edge_cosine(h, ei), ref)


def _edges_with_duplicates(n, e, g):
    ei = torch.randint(0, n, (2, e), generator=g)
    ei = torch.cat([ei, ei[:, : e // 5], torch.arange(n).repeat(2, 1)], 1)   # duplicates, loops
    return ei[:, torch.randperm(ei.size(1), generator=g)]                    # unsorted


def test_edge_dot_values_and_gradients_equal_the_gathered_form():
    from graphsparse.graph import edge_dot
    g = torch.Generator().manual_seed(2)
    n, c = 12, 3
    ei = _edges_with_duplicates(n, 40, g)
    a = torch.randn(n, c, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n, c, generator=g, dtype=torch.float64, requires_grad=True)

    def gathered(a, b):
        return (a[ei[1]] * b[ei[0]]).sum(-1)
    out = edge_dot(a, b, ei)
    torch.testing.assert_close(out, gathered(a, b))
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ga = torch.autograd.grad((edge_dot(a, b, ei) * w).sum(), (a, b))
    gr = torch.autograd.grad((gathered(a, b) * w).sum(), (a, b))
    for x, y in zip(ga, gr):
        torch.testing.assert_close(x, y)
    torch.autograd.gradcheck(lambda a, b: edge_dot(a, b, ei), (a, b))
    # one tensor on both sides (the dot scorer): both gradients add up
    torch.autograd.gradcheck(lambda a: edge_dot(a, a, ei), (a,))
    # one side only requiring a gradient
    for i in (0, 1):
        args = [a.detach(), b.detach()]
        args[i].requires_grad_()
        grad = torch.autograd.grad((edge_dot(*args, ei) * w).sum(), args[i])[0]
        torch.testing.assert_close(grad, gr[i])
    # edges sorted by source (coalesced, as GatedAdjacency stores them): the
    # SDDMM's own order, no permutation; the result is a plain tensor
    # (in-place ops under autograd work)
    order = torch.sort(ei[0] * n + ei[1]).indices
    es, ws = ei[:, order], w[order]
    out = edge_dot(a, b, es)
    assert out._base is None
    torch.testing.assert_close(out, gathered(a, b)[order])
    ga = torch.autograd.grad((edge_dot(a, b, es).mul_(1.0) * ws).sum(), (a, b))
    for x, y in zip(ga, gr):
        torch.testing.assert_close(x, y)
    torch.autograd.gradcheck(lambda a, b: edge_dot(a, b, es), (a, b))
    # isolated nodes (empty rows and columns of the pattern) and no edges at all
    sparse_ei = torch.tensor([[0, 0, 5], [5, 2, 0]])
    torch.autograd.gradcheck(lambda a, b: edge_dot(a, b, sparse_ei), (a, b))
    empty = edge_dot(a, b, torch.zeros(2, 0, dtype=torch.long))
    assert empty.shape == (0,)
    # half precision takes the gathered form
    ah, bh = a.detach().half(), b.detach().half()
    torch.testing.assert_close(edge_dot(ah, bh, ei), gathered(ah, bh))


def test_dot_scorer_equals_the_gathered_formula():
    import math

    from graphsparse.graph import EdgeScorer
    g = torch.Generator().manual_seed(3)
    n = 15
    ei = _edges_with_duplicates(n, 50, g)
    x = torch.randn(n, 6, generator=g)
    scorer = EdgeScorer(6, 4, kind="dot")
    with torch.no_grad():
        scorer.scale.fill_(0.7)
        scorer.bias.fill_(-0.2)
    out = scorer(x, ei)
    h = scorer.lin(x)
    ref = (h[ei[1]] * h[ei[0]]).sum(-1) * (scorer.scale / math.sqrt(4)) + scorer.bias
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.square().sum(), list(scorer.parameters()))
    refs = torch.autograd.grad(ref.square().sum(), list(scorer.parameters()))
    for x1, y1 in zip(grads, refs):
        torch.testing.assert_close(x1, y1)


@pytest.mark.parametrize("bad", [[[0, 7], [1, 2]], [[0, -1], [1, 2]], [[0, 1], [1, 9]],
                                 [[0, 1], [-1, 2]]])
def test_sparse_products_refuse_node_ids_out_of_range(bad):
    from graphsparse.graph import edge_dot
    h, ei = torch.randn(5, 3), torch.tensor(bad)
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        edge_dot(h, h, ei)
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        weighted_aggregate(h, ei, torch.ones(2))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 20), e=st.integers(0, 80), seed=st.integers(0, 10**6),
       sort=st.booleans(), drop=st.sampled_from([0.0, 0.3, 0.9, 1.0]))
def test_subset_pattern_equals_a_fresh_one(n, e, seed, sort, drop):
    # select_edges derives a subset's CSR pattern from the parent's without a
    # sort; it must be the very pattern _pattern builds for the subset
    from graphsparse.graph._ops import _cached_pattern, _pattern, select_edges
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    if sort:
        ei = ei[:, torch.argsort(ei[0] * n + ei[1])]
    keep = torch.rand(e, generator=g) >= drop
    sub = select_edges(ei, keep, n)
    assert torch.equal(sub, ei[:, keep])
    got, ref = _cached_pattern(sub, n), _pattern(sub[0], sub[1], n)
    for name, a, b in zip(ref._fields, got, ref):
        if name == "perm_t" and (a is None) != (b is None):
            # a subset of an unsorted list may be sorted: the identity either way
            t = b if a is None else a
            assert torch.equal(t.long(), torch.arange(t.numel()))
            continue
        if a is None:
            continue
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_products_on_a_selected_subset_match_dense():
    from graphsparse.graph._ops import select_edges
    ei, w = awkward_graph()
    keep = w > 0
    sub = select_edges(ei, keep, 12)
    h = torch.randn(12, 3, dtype=torch.float64, requires_grad=True)
    ws = w[keep].clone().requires_grad_()
    torch.autograd.gradcheck(lambda h, ws: weighted_aggregate(h, sub, ws), (h, ws))
    out = weighted_aggregate(h, sub, ws)
    ref = dense_aggregate(h, sub, ws)
    assert torch.allclose(out, ref)
