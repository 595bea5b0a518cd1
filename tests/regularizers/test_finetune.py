import pytest
import torch
import torch.nn.functional as F
from torch import nn

from graphsparse.cnn.lenet import LeNet5Caffe
from graphsparse.regularizers import SGL0, GroupLasso, ZeroMask, sparsity_report
from graphsparse.regularizers.experiment import train_epoch


def _sparse_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    with torch.no_grad():
        model[0].weight[1].zero_()       # a dead channel (its bias too)
        model[0].bias[1] = 0.0
        model[3].weight[:, ::3] = 0.0    # scattered zeros
    return model


def _batches(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 1, 6, 6, generator=g), torch.randint(0, 3, (16,), generator=g))
            for _ in range(n)]


@pytest.mark.parametrize("opt_cls,kw", [(torch.optim.Adam, {}),
                                        (torch.optim.AdamW, {"weight_decay": 0.1}),
                                        (torch.optim.SGD, {"momentum": 0.9})])
def test_zeros_stay_exactly_zero_while_others_train(opt_cls, kw):
    model = _sparse_model()
    before = [p.detach().clone() for p in model.parameters()]
    mask = ZeroMask(model)
    assert mask.num_zeros == 9 + 1 + 3 * 22
    opt = opt_cls(model.parameters(), lr=0.05, **kw)
    for _ in range(3):
        train_epoch(model, None, opt, _batches(), mask=mask)
    for p, b, m in zip(mask.params, before, mask.masks):
        assert torch.equal(m, b != 0)
        assert bool((p.detach()[~m] == 0).all())            # zeros exactly zero
        # the others train (those fed only by the dead channel get no gradient)
        assert float((p.detach()[m] != b[m]).float().mean()) > 0.6
    rep = sparsity_report(model)["total"]
    assert rep["zero_weights"] == mask.num_zeros and rep["zero_neurons"] == 1


def test_without_mask_the_same_training_revives_zeros():
    # The setting above is not trivially zero-preserving: unmasked, zeros move.
    model = _sparse_model()
    zeros = model[3].weight.detach() == 0
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    train_epoch(model, None, opt, _batches())
    assert float((model[3].weight.detach()[zeros] != 0).float().mean()) > 0.5


def test_grad_is_masked_before_the_step():
    model = _sparse_model()
    mask = ZeroMask(model)
    x, y = _batches(1)[0]
    F.cross_entropy(model(x), y).backward()
    assert bool((model[3].weight.grad[:, ::3] != 0).any())
    mask.mask_grad_()
    assert bool((model[3].weight.grad[:, ::3] == 0).all())
    assert bool((model[3].weight.grad[:, 1::3] != 0).any())


def test_mask_from_regularizer_uses_its_groups():
    model = LeNet5Caffe()
    reg = GroupLasso(model, lam=0.1, linear_groups="in")
    with torch.no_grad():
        model.fc1.weight[:, :10] = 0.0
        model.fc1.bias.zero_()          # not covered with linear_groups="in"
    mask = ZeroMask(reg)
    assert len(mask.params) == len(reg.params) == 6
    assert mask.num_zeros == 500 * 10
    sgl0_mask = ZeroMask(SGL0(model, lam=0.1, beta=2.5))  # "out": biases covered
    assert sgl0_mask.num_zeros == 500 * 10 + 500


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="linear_groups"):
        ZeroMask(_sparse_model(), linear_groups="rows")
    with pytest.raises(ValueError, match="model"):
        ZeroMask(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="source"):
        ZeroMask([])
