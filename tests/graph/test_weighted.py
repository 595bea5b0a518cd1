"""Learned edge weights in stock PyG layers: outputs equal a dense reference
that multiplies every message by its learned weight, and the gate gets a
gradient."""
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import GATConv, GCNConv, GINConv, GraphConv, MessagePassing, SAGEConv

from graphsparse.graph import GatedAdjacency
from graphsparse.graph.weighted import EdgeWeighted, check_weight_consumers

N, FEAT, OUT = 9, 5, 4


def _learned(seed=0):
    from torch_geometric.utils import erdos_renyi_graph
    torch.manual_seed(seed)
    edge_index = erdos_renyi_graph(N, 0.35)
    adj = GatedAdjacency(edge_index, N, normalization="row", groups="row",
                         add_self_loops=False).double()
    with torch.no_grad():
        adj.alpha.normal_(0, 2)
        adj.beta_row.add_(1.0)                                 # some exact zeros
    ei, w = adj()
    assert (adj.edge_values() == 0).any()
    return adj, ei, w, torch.randn(N, FEAT, dtype=torch.double)


def _dense(ei, w):
    a = torch.zeros(N, N, dtype=w.dtype)
    return a.index_put((ei[1], ei[0]), w, accumulate=True)     # A[i, j] for edge j -> i


class Scaled(MessagePassing):
    """A user layer without edge weights: message = relu(W x_j) * s."""

    def __init__(self):
        super().__init__(aggr="add")
        self.lin = torch.nn.Linear(FEAT, OUT)

    def forward(self, x, edge_index):
        return self.propagate(edge_index, x=self.lin(x).relu())

    def message(self, x_j):
        return 2.0 * x_j


def _gat_reference(conv, x, ei, w):
    # heads = 1; the candidates have no self-loops and GAT adds its own, weight one
    h = conv.lin(x)
    s_src, s_dst = (h * conv.att_src[0]).sum(-1), (h * conv.att_dst[0]).sum(-1)
    eye = torch.eye(N, dtype=torch.bool)
    neighbours = (_dense(ei, torch.ones_like(w)) > 0) | eye
    logits = F.leaky_relu(s_dst[:, None] + s_src[None, :], conv.negative_slope)
    att = torch.softmax(logits.masked_fill(~neighbours, float("-inf")), -1)
    return (att * (_dense(ei, w) + eye.to(w.dtype))) @ h + conv.bias


CASES = {
    "GCNConv": (lambda: GCNConv(FEAT, OUT, normalize=False),
                lambda c, x, ei, w: _dense(ei, w) @ c.lin(x) + c.bias, False),
    "GraphConv": (lambda: GraphConv(FEAT, OUT),
                  lambda c, x, ei, w: c.lin_rel(_dense(ei, w) @ x) + c.lin_root(x), False),
    "SAGEConv": (lambda: SAGEConv(FEAT, OUT),
                 lambda c, x, ei, w: c.lin_l((_dense(ei, w) @ x)
                                            / _dense(ei, torch.ones_like(w)).sum(1, keepdim=True)
                                            .clamp_min(1)) + c.lin_r(x), True),
    "GINConv": (lambda: GINConv(torch.nn.Sequential(torch.nn.Linear(FEAT, OUT), torch.nn.Tanh())),
                lambda c, x, ei, w: c.nn((1 + c.eps) * x + _dense(ei, w) @ x), True),
    "GATConv": (lambda: GATConv(FEAT, OUT), _gat_reference, True),
    "user MessagePassing": (Scaled, lambda c, x, ei, w: _dense(ei, w) @ (2.0 * c.lin(x).relu()),
                            True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_layer_matches_dense_reference_and_feeds_the_gate(name):
    make, reference, needs_wrapper = CASES[name]
    adj, ei, w, x = _learned()
    torch.manual_seed(1)
    conv = make().double()
    model = EdgeWeighted(conv) if needs_wrapper else conv
    out = model(x, ei, w)
    torch.testing.assert_close(out, reference(conv, x, ei, w))
    out.square().sum().backward()
    assert adj.alpha.grad is not None and adj.alpha.grad.abs().sum() > 0
    assert torch.isfinite(adj.alpha.grad).all()
    # the wrapper leaves the layer as it was: a plain call ignores the weights again
    if needs_wrapper:
        assert conv._edge_mask is None and not conv.explain


def test_wrapper_with_weights_equal_to_one_is_the_plain_layer():
    _, ei, w, x = _learned()
    conv = SAGEConv(FEAT, OUT).double()
    torch.testing.assert_close(EdgeWeighted(conv)(x, ei, torch.ones_like(w)), conv(x, ei))


def test_misused_layers_fail_loudly():
    with pytest.raises(ValueError, match="cached=False"):
        check_weight_consumers(GCNConv(FEAT, OUT, cached=True, normalize=False))
    with pytest.warns(UserWarning, match="normalize=False"):
        check_weight_consumers(GCNConv(FEAT, OUT))
    with pytest.raises(ValueError, match="EdgeWeighted"):
        check_weight_consumers(torch.nn.ModuleList([SAGEConv(FEAT, OUT)]))
    check_weight_consumers(GraphConv(FEAT, OUT))               # takes edge_weight: fine
    with pytest.raises(ValueError, match="MessagePassing"):
        EdgeWeighted(torch.nn.Linear(3, 3))
    _, ei, w, x = _learned()
    with pytest.raises(ValueError, match="edge_weight"):
        EdgeWeighted(SAGEConv(FEAT, OUT).double())(x, ei, w[:-1])
