import math

import pytest
import torch
from torch import nn

from graphsparse.cnn.lenet import LeNet5Caffe
from graphsparse.regularizers import L1, SGL0, GroupLasso, SparseGroupLasso


def _model():
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5),
                         nn.ReLU(), nn.Linear(5, 2, bias=False))


def _reference_groups(model, linear_groups):
    """Groups listed one by one with Python loops: the obviously correct reference."""
    groups = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            for g in range(m.out_channels):
                groups.append(torch.cat([m.weight[g].flatten(), m.bias[g:g + 1]]))
        elif isinstance(m, nn.Linear) and linear_groups == "in":
            groups += [m.weight[:, j] for j in range(m.in_features)]
        elif isinstance(m, nn.Linear):
            for g in range(m.out_features):
                row = [m.weight[g]] + ([m.bias[g:g + 1]] if m.bias is not None else [])
                groups.append(torch.cat(row))
    return [g.detach() for g in groups]


@pytest.mark.parametrize("linear_groups", ["out", "in"])
def test_penalties_match_reference(linear_groups):
    model = _model()
    n, lam, lam_l1 = 7, 0.3, 0.2
    groups = _reference_groups(model, linear_groups)
    gl = sum(math.sqrt(g.numel()) * float(g.norm()) for g in groups)
    l1 = sum(float(g.abs().sum()) for g in groups)
    kw = dict(num_samples=n, linear_groups=linear_groups)
    value = lambda reg: float(reg.penalty().detach())  # noqa: E731
    assert value(GroupLasso(model, lam, **kw)) == pytest.approx(lam / n * gl, rel=1e-5)
    assert value(L1(model, lam, **kw)) == pytest.approx(lam / n * l1, rel=1e-5)
    sgl = SparseGroupLasso(model, lam, lam_l1=lam_l1, **kw).penalty()
    assert float(sgl.detach()) == pytest.approx((lam * gl + lam_l1 * l1) / n, rel=1e-5)
    default = SparseGroupLasso(model, lam, **kw).penalty()  # paper Eq. (3): same lambda
    assert float(default.detach()) == pytest.approx(lam * (gl + l1) / n, rel=1e-5)


def test_group_lasso_zero_group_has_zero_gradient():
    m = nn.Linear(3, 2)
    with torch.no_grad():
        m.weight[0] = 0
        m.bias[0] = 0
    GroupLasso(m, 1.0).penalty().backward()
    assert torch.equal(m.weight.grad[0], torch.zeros(3)) and torch.isfinite(m.weight.grad).all()


def test_lenet_counts_match_paper():
    model = LeNet5Caffe()
    out = GroupLasso(model, 0.1).sparsity()["total"]
    assert out["weights"] == 431_080 and out["neurons"] == 20 + 50 + 500 + 10
    paper = GroupLasso(model, 0.1, linear_groups="in").sparsity()["total"]
    assert paper["neurons"] == 1_370  # the paper's count, 20-50-800-500


@pytest.mark.parametrize("make,name", [
    (lambda m: SGL0(m, lam=-0.1, beta=1.0), "lam"),
    (lambda m: SGL0(m, lam=0.1, beta=-1.0), "beta"),
    (lambda m: SGL0(m, lam=0.1, beta=0.0), "beta"),
    (lambda m: SGL0(m, lam=0.1, beta=1.0, beta_growth=0.9), "beta_growth"),
    (lambda m: SGL0(m, lam=0.1, beta=1.0, grow_every=0), "grow_every"),
    (lambda m: SGL0(m, lam=float("nan"), beta=1.0), "lam"),
    (lambda m: GroupLasso(m, lam=-1.0), "lam"),
    (lambda m: GroupLasso(m, lam=0.1, num_samples=0), "num_samples"),
    (lambda m: GroupLasso(m, lam=0.1, linear_groups="rows"), "linear_groups"),
    (lambda m: SparseGroupLasso(m, lam=0.1, lam_l1=-2.0), "lam_l1"),
    (lambda m: L1(m, lam="0.1"), "lam"),
    (lambda m: SGL0(nn.Sequential(nn.ReLU(), nn.Dropout()), 0.1, 1.0), "model"),
    (lambda m: SGL0(m, 0.1, 1.0).finalize(mode="W"), "mode"),
])
def test_bad_arguments_name_them(make, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        make(nn.Linear(3, 2))


def test_make_regularizer_by_name():
    from graphsparse.regularizers.experiment import make_regularizer
    m = nn.Linear(3, 2)
    assert make_regularizer("none", m, lam=0.1) is None
    reg = make_regularizer("sgl0", m, lam=0.1, beta=2.0, grow_every=5, num_samples=3)
    assert isinstance(reg, SGL0) and reg.grow_every == 5 and reg.num_samples == 3
    assert isinstance(make_regularizer("group_lasso", m, lam=0.1, beta=2.0), GroupLasso)
    with pytest.raises(ValueError, match="'method'"):
        make_regularizer("l0", m, lam=0.1)
