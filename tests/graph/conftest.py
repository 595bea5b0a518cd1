"""Dense N x N references for the graph tests, obviously correct and
independent of the package: the edge ``(j, i)`` is the entry ``A[i, j]``."""
import pytest
import torch
from torch_geometric.utils import add_remaining_self_loops, erdos_renyi_graph


def _inv(d, exponent):
    # The same where-on-the-input trick, written independently.
    return torch.where(d > 0, d, torch.ones_like(d)) ** (-exponent)


class Dense:
    @staticmethod
    def adjacency(edge_index, weight, num_nodes):
        a = weight.new_zeros(num_nodes, num_nodes)
        return a.index_put((edge_index[1], edge_index[0]), weight, accumulate=True)

    @staticmethod
    def entries(a, edge_index):
        return a[edge_index[1], edge_index[0]]

    @staticmethod
    def row_norm(a):
        return a * _inv(a.sum(1), 1.0)[:, None]

    @staticmethod
    def sym_norm(a):
        d = _inv(a.sum(1), 0.5)
        return d[:, None] * a * d[None, :]

    @staticmethod
    def sinkhorn(a, num_iters, balanced=False, marginals=None):
        """``marginals``: ``[2, N]`` target row and column sums (None: ones);
        an empty row or column is left as it is."""
        n = a.size(0)
        r, c = (a.new_ones(n), a.new_ones(n)) if marginals is None else marginals.to(a.dtype)

        def scale(s, t, e):
            return torch.where(s > 0, t ** e, torch.ones_like(s)) * _inv(s, e)

        for _ in range(num_iters):
            if balanced:
                a = scale(a.sum(1), r, 0.5)[:, None] * a * scale(a.sum(0), c, 0.5)[None, :]
            else:
                a = a * scale(a.sum(1), r, 1.0)[:, None]
                a = a * scale(a.sum(0), c, 1.0)[None, :]
        return a

    @classmethod
    def normalize(cls, a, normalization, num_iters=10):
        if normalization in ("sinkhorn", "balanced"):
            return cls.sinkhorn(a, num_iters, normalization == "balanced")
        if normalization == "row":
            return cls.row_norm(a)
        if normalization == "sym":
            return cls.sym_norm(a)
        return a

    @staticmethod
    def gate(alpha, mask, beta_row, beta_col, groups):
        """Thresholded strengths of the row and/or column competitions
        (paper Eq. 3), combined by product; ``alpha`` is dense [N, N]."""
        alpha = -15 + torch.nn.functional.softplus(alpha + 15)   # the soft floor
        gamma = torch.sigmoid(alpha) * mask
        rows = torch.relu(gamma - torch.sigmoid(beta_row)[:, None] * gamma.sum(1, keepdim=True))
        cols = torch.relu(gamma - torch.sigmoid(beta_col)[None, :] * gamma.sum(0, keepdim=True))
        out = {"row": rows, "col": cols, "both": rows * cols}[groups]
        return out * mask

    @staticmethod
    def penalty(a, p=0.5):
        return (a.pow(p).sum(1).pow(1 / p).sum() + a.pow(p).sum(0).pow(1 / p).sum())


@pytest.fixture(autouse=True)
def _one_thread():
    """The graphs here are tiny: extra threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def dense():
    return Dense


def random_graph(num_nodes, p, directed=True, self_loops=True, seed=0):
    torch.manual_seed(seed)
    edge_index = erdos_renyi_graph(num_nodes, p, directed=directed)
    if self_loops:
        edge_index, _ = add_remaining_self_loops(edge_index, num_nodes=num_nodes)
    return edge_index


@pytest.fixture
def graph():
    return random_graph
