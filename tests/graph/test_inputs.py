"""What a GatedAdjacency accepts and how its outputs line up with the input
edges: ids back to the input order, input edge weights, sparse formats, NaN
refused, the penalty's size-independent mean."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphsparse.graph import GatedAdjacency


def _randomize(adj, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        adj.alpha.copy_(3 * torch.randn(adj.alpha.shape, generator=g))
        for beta in adj.threshold_parameters():
            beta.add_(1.0 + torch.rand(beta.shape, generator=g))
    return adj


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 12), e=st.integers(1, 40), seed=st.integers(0, 10_000),
       loops=st.booleans())
def test_surviving_edge_ids_map_back_to_the_input_order(n, e, seed, loops):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei = torch.cat([ei, ei[:, : e // 3]], 1)                  # duplicates
    if not loops:
        ei = ei[:, ei[0] != ei[1]]
    ei = ei[:, torch.randperm(ei.size(1), generator=g)]       # any order
    if ei.size(1) == 0:
        return
    adj = _randomize(GatedAdjacency(ei, n, normalization="row"), seed)
    edge_index, weight, edge_id = adj(return_edge_id=True)
    assert torch.equal(edge_index, adj.edge_index[:, edge_id])
    # 4-byte ids (8 bytes per edge less at scale); they index like int64 ones
    assert adj.input_id.dtype == adj.input_to_cand.dtype == torch.int32
    pos = adj.input_id[edge_id]
    real = pos >= 0                                           # added self-loops have no input
    assert torch.equal(ei[:, pos[real]], edge_index[:, real])
    assert torch.equal(edge_index[0][~real], edge_index[1][~real])   # only self-loops added
    # the dense mask over the input edges: every input edge gets its candidate's weight
    values = adj.input_values()
    assert values.shape == (ei.size(1),)
    key = {(int(a), int(b)): float(w) for (a, b), w in zip(edge_index.t(), weight.detach())}
    for (a, b), w in zip(ei.t().tolist(), values.tolist()):
        assert w == key.get((a, b), 0.0)


def test_explainer_mask_lands_on_the_right_input_edges():
    ei = torch.tensor([[0, 1, 2, 3, 1, 2], [1, 2, 3, 0, 0, 1]])
    perm = torch.tensor([4, 0, 5, 2, 1, 3])
    adj = GatedAdjacency(ei[:, perm], 4, add_self_loops=False)
    edge_index, _, edge_id = adj(return_edge_id=True)
    # an explainer scores every edge the model received: here the source id
    mask = edge_index[0].float() + 10 * edge_index[1].float()
    back = adj.input_values(mask, edge_id)
    assert torch.equal(back, ei[0, perm].float() + 10 * ei[1, perm].float())


def test_input_edge_weights_scale_the_candidates():
    ei = torch.tensor([[0, 0, 1, 2, 2], [1, 2, 2, 0, 0]])      # (2, 0) twice: weights summed
    w = torch.tensor([1.0, 3.0, 2.0, 0.5, 0.25])
    plain = GatedAdjacency(ei, 3, normalization="none", add_self_loops=False, groups="row")
    weighted = GatedAdjacency(ei, 3, edge_weight=w, normalization="none",
                              add_self_loops=False, groups="row")
    ratio = weighted.edge_values() / plain.edge_values()
    cand = weighted.edge_index
    expect = {(0, 1): 1.0, (0, 2): 3.0, (1, 2): 2.0, (2, 0): 0.75}
    for (a, b), r in zip(cand.t().tolist(), ratio.tolist()):
        assert r == pytest.approx(expect[(a, b)])
    with pytest.raises(ValueError, match="edge_weight"):
        GatedAdjacency(ei, 3, edge_weight=-w)
    with pytest.raises(ValueError, match="edge_attr"):
        GatedAdjacency(ei, 3, edge_weight=torch.rand(5, 4))    # edge features are not weights
    from torch_geometric.data import Data
    from_data = GatedAdjacency.from_data(Data(edge_index=ei, edge_weight=w, num_nodes=3),
                                         normalization="none", add_self_loops=False,
                                         groups="row")
    torch.testing.assert_close(from_data.edge_values(), weighted.edge_values())


def test_sparse_formats_and_edge_index_are_accepted():
    from torch_geometric import EdgeIndex
    from torch_geometric.utils import to_torch_coo_tensor, to_torch_csr_tensor
    ei = torch.tensor([[0, 1, 1, 2, 3], [1, 0, 2, 3, 1]])
    w = torch.tensor([0.5, 1.0, 2.0, 1.5, 1.0])
    ref = GatedAdjacency(ei, 4, edge_weight=w, normalization="row")
    for given_graph in (to_torch_coo_tensor(ei, w, size=4), to_torch_csr_tensor(ei, w, size=4)):
        adj = GatedAdjacency(given_graph, normalization="row")
        assert torch.equal(adj.edge_index, ref.edge_index)
        torch.testing.assert_close(adj.edge_values(), ref.edge_values())
    adj = GatedAdjacency(EdgeIndex(ei, sparse_size=(4, 4)), 4, edge_weight=w,
                         normalization="row")
    assert type(adj.edge_index) is torch.Tensor and torch.equal(adj.edge_index, ref.edge_index)
    with pytest.raises(ValueError, match="values are the edge weights"):
        GatedAdjacency(to_torch_coo_tensor(ei, w, size=4), edge_weight=w)


def test_non_finite_gate_inputs_raise_naming_the_tensor():
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    adj = GatedAdjacency(ei, 3)
    with torch.no_grad():
        adj.alpha[1] = float("nan")
    with pytest.raises(ValueError, match="gate logits"):
        adj()
    adj = GatedAdjacency(ei, 3)
    with pytest.raises(ValueError, match="prior"):
        adj.set_logit_prior(torch.tensor([0.0, float("inf"), 0.0, 0.0, 0.0, 0.0]))
    from graphsparse.graph import EdgeScorer
    scored = GatedAdjacency(ei, 3, scorer=EdgeScorer(2, 4))
    with pytest.raises(ValueError, match="'x'"):
        scored(torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [1.0, 1.0]]))


def test_penalty_mean_is_the_sum_over_nodes_divided_by_n():
    from torch_geometric.utils import erdos_renyi_graph
    for n in (10, 40):
        adj = _randomize(GatedAdjacency(erdos_renyi_graph(n, 0.3), n))
        torch.testing.assert_close(adj.penalty(reduction="mean"), adj.penalty() / n)
    with pytest.raises(ValueError, match="reduction"):
        adj.penalty(reduction="max")


def test_param_groups_split_logits_and_thresholds():
    adj = GatedAdjacency(torch.tensor([[0, 1], [1, 0]]), 2)
    logits, thresholds = adj.param_groups(lr=1e-3, threshold_lr=0.05)
    assert [id(p) for p in logits["params"]] == [id(adj.alpha)]
    assert {id(p) for p in thresholds["params"]} == {id(adj.beta_row), id(adj.beta_col)}
    assert (logits["lr"], thresholds["lr"]) == (1e-3, 0.05)
    with pytest.raises(ValueError, match="threshold_lr"):
        adj.param_groups(threshold_lr=-1.0)


def test_init_noise_is_part_of_reset_parameters():
    ei = torch.randint(0, 30, (2, 200))
    torch.manual_seed(5)
    a = GatedAdjacency(ei, 30, init_noise=0.5)
    torch.manual_seed(5)
    b = GatedAdjacency(ei, 30, init_noise=0.5)
    assert torch.equal(a.alpha, b.alpha) and 0.4 < float(a.alpha.std()) < 0.6
    a.reset_parameters()
    assert not torch.equal(a.alpha, b.alpha) and 0.4 < float(a.alpha.std()) < 0.6
    with pytest.raises(ValueError, match="init_noise"):
        GatedAdjacency(ei, 30, init_noise=-1.0)
