import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphsparse.data.corrupt import corrupt_edges


def ring(n):
    i = torch.arange(n)
    e = torch.stack([i, (i + 1) % n])
    return torch.cat([e, e.flip(0)], 1)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(8, 60), add=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
       drop=st.sampled_from([0.0, 0.1, 0.3, 1.0]), seed=st.integers(0, 1000))
def test_counts_and_reproducible(n, add, drop, seed):
    e = ring(n)
    m = n  # undirected edges of a ring
    out, added = corrupt_edges(e, n, add=add, drop=drop, seed=seed)
    assert out.size(1) == 2 * (m - round(drop * m) + round(add * m))
    assert int(added.sum()) == 2 * round(add * m)
    assert (out[0] != out[1]).all()
    # symmetric, no duplicates
    keys = set(zip(out[0].tolist(), out[1].tolist()))
    assert len(keys) == out.size(1) and all((v, u) in keys for u, v in keys)
    # added edges are new; the kept ones are original
    orig = set(zip(e[0].tolist(), e[1].tolist()))
    assert all((u, v) not in orig for u, v in out[:, added].t().tolist())
    assert all((u, v) in orig for u, v in out[:, ~added].t().tolist())
    out2, added2 = corrupt_edges(e, n, add=add, drop=drop, seed=seed)
    assert torch.equal(out, out2) and torch.equal(added, added2)


def test_seed_changes_result_and_bad_args():
    e = ring(50)
    a, _ = corrupt_edges(e, 50, add=1.0, seed=0)
    b, _ = corrupt_edges(e, 50, add=1.0, seed=1)
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="drop"):
        corrupt_edges(e, 50, drop=1.5)
    with pytest.raises(ValueError, match="add"):
        corrupt_edges(e, 50, add=-1)
    with pytest.raises(ValueError, match="edge_index"):
        corrupt_edges(e, 10)
