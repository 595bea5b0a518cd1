import math

import pytest
import torch
from torch import nn

from graphsparse.regularizers import SGL0, hard_threshold
from graphsparse.testing import devices


def test_hard_threshold_by_hand():
    x = torch.tensor([-2.0, -0.5, -0.3, 0.0, 0.29, 0.5, 1.0])
    out = hard_threshold(x, 0.5)  # |x| <= t is zeroed, Eq. (11)
    assert torch.equal(out, torch.tensor([-2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]))


def _linear(weight, bias):
    m = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        m.weight.copy_(weight)
        m.bias.copy_(bias)
    return m


def test_penalty_by_hand():
    w = torch.tensor([[3.0, 0.1], [0.0, -0.2]])
    b = torch.tensor([0.0, 4.0])
    m = _linear(w, b)
    lam, beta, n = 0.25, 2.0, 4
    reg = SGL0(m, lam, beta, num_samples=n)
    t = math.sqrt(2 * lam / beta)
    assert reg.threshold == pytest.approx(0.5)
    # V = H_t(W): groups are rows + bias: [3, .1, 0] and [0, -.2, 4]
    assert torch.equal(reg.V[0], torch.tensor([[3.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(reg.V[1], torch.tensor([0.0, 4.0]))
    group_lasso = math.sqrt(3) * (math.sqrt(9 + 0.01) + math.sqrt(0.04 + 16))
    coupling = 0.1 ** 2 + 0.2 ** 2
    expected = lam / n * group_lasso + beta / (2 * n) * coupling
    assert float(reg.penalty().detach()) == pytest.approx(expected, rel=1e-6)
    assert reg.l0() == pytest.approx(lam / n * 2)
    assert t == reg.threshold


def test_penalty_conv_and_input_groups_by_hand():
    conv = nn.Conv2d(2, 3, 2)
    fc = nn.Linear(4, 2)
    model = nn.Sequential(conv, nn.Flatten(), fc)
    reg = SGL0(model, lam=1.0, beta=1e6, num_samples=1, linear_groups="in")
    # beta huge: threshold ~0, V == W, so the coupling vanishes.
    ref = 0.0
    for g in range(3):  # conv: output channels, 8 weights + 1 bias each
        row = torch.cat([conv.weight[g].flatten(), conv.bias[g:g + 1]])
        ref += math.sqrt(9) * float(row.detach().norm())
    for j in range(4):  # linear, "in": columns of 2 weights, bias not covered
        ref += math.sqrt(2) * float(fc.weight[:, j].detach().norm())
    assert float(reg.penalty().detach()) == pytest.approx(ref, rel=1e-5)


def test_step_and_schedule():
    m = nn.Linear(3, 2)
    reg = SGL0(m, lam=0.02, beta=1.0, beta_growth=2.0, grow_every=3)
    betas = []
    for _ in range(7):
        reg.epoch_end()
        betas.append(reg.beta)
    assert betas == [1.0, 1.0, 2.0, 2.0, 2.0, 4.0, 4.0]
    with torch.no_grad():
        m.weight.fill_(0.15)
    reg.step()  # threshold sqrt(0.04 / 4) = 0.1 < 0.15
    assert torch.equal(reg.V[0], m.weight.detach())


def _toy(optimizer_cls, lr):
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    w_true = torch.zeros(3, 10)
    w_true[0, :3] = torch.tensor([1.0, -2.0, 0.5])
    w_true[2, 5] = 1.5  # row 1 is a dead neuron
    y = x @ w_true.t() + 0.01 * torch.randn(256, 3)
    model = nn.Linear(10, 3, bias=False)
    reg = SGL0(model, lam=1e-3, beta=0.05, beta_growth=2.0, grow_every=1)
    opt = optimizer_cls(model.parameters(), lr=lr)
    distances = []
    for _ in range(6):  # 6 "epochs", beta doubles after each
        for _ in range(40):
            loss = (model(x) - y).pow(2).mean() + reg.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            reg.step()
        distances.append(reg.distance())
        reg.epoch_end()
    return model, reg, distances, w_true


@pytest.mark.parametrize("optimizer_cls,lr", [(torch.optim.SGD, 0.1), (torch.optim.Adam, 0.05)])
def test_toy_problem_distance_shrinks_and_v_is_sparse(optimizer_cls, lr):
    model, reg, distances, w_true = _toy(optimizer_cls, lr)
    # ||W - V|| shrinks as beta grows (Theorem 2: ||W - V||^2 <= 2 M / beta).
    assert distances[-1] < 0.1 * distances[0]
    assert max(distances[2:]) < 0.5 * min(distances[:2])
    v = reg.V[0]
    assert torch.equal(v == 0, w_true == 0)  # exact zeros where the truth is zero
    reg.finalize()
    assert torch.equal(model.weight.detach(), v)
    assert reg.sparsity()["layers"]["Linear"]["zero_neurons"] == 1  # row 1 is dead
    assert torch.allclose(model.weight.detach(), w_true, atol=0.05)


def test_finalize_threshold_mode_keeps_w():
    m = nn.Linear(4, 2)
    reg = SGL0(m, lam=0.5, beta=1.0)
    w = m.weight.detach().clone()
    reg.finalize(mode="threshold")
    assert torch.equal(m.weight.detach(), torch.where(w.abs() < 1e-5, 0.0, w))


def test_state_dict_round_trip():
    m = nn.Linear(4, 2)
    reg = SGL0(m, lam=0.01, beta=1.0, grow_every=1)
    reg.epoch_end()
    state = reg.state_dict()
    other = SGL0(m, lam=0.01, beta=1.0)
    other.load_state_dict(state)
    assert other.beta == reg.beta == 1.25 and other.epoch == 1
    assert all(torch.equal(a, b) for a, b in zip(other.V, reg.V))


@pytest.mark.parametrize("device", devices())
def test_penalty_on_device(device):
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 4, 2)).to(device)
    reg = SGL0(m, lam=0.1, beta=2.5, num_samples=10)
    p = reg.penalty()
    p.backward()
    assert p.device.type == device and torch.isfinite(p)
    assert all(v.device.type == device for v in reg.V)


def test_finalize_takes_the_base_class_tolerance_positionally():
    torch.manual_seed(0)
    model = nn.Linear(6, 4)
    reg = SGL0(model, lam=0.1, beta=1.0, num_samples=10)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([1e-3, 2.0]).repeat(4, 3))
    reg.finalize(1e-2, mode="threshold")      # the base class's finalize(tol) signature
    assert (model.weight.abs() < 1e-2).sum() > 0
    assert ((model.weight == 0) == (torch.tensor([1e-3, 2.0]).repeat(4, 3) < 1e-2)).all()
