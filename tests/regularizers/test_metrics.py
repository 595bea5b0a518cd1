import pytest
import torch
from torch import nn

from graphsparse.regularizers import (neuron_sparsity, prune_small_, sparsity_report,
                                      weight_sparsity)


def test_metrics_by_hand():
    m = torch.tensor([[0.0, 2e-6, 1.0],      # 2 zero weights, alive neuron
                      [1e-6, -2e-5, 2e-5],   # each |w| >= 1e-5 but two: mean 1.4e-5 >= 1e-5
                      [4e-6, 2e-5, -4e-6]])  # mean 9.3e-6 < 1e-5: dead, all 3 count as zero
    assert weight_sparsity(m) == pytest.approx((2 + 1 + 3) / 9)
    assert neuron_sparsity(m) == pytest.approx(1 / 3)


def test_report_per_layer_and_total():
    a, b = nn.Linear(2, 2), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        a.bias.copy_(torch.tensor([0.0, 3.0]))
        b.weight.copy_(torch.tensor([[1e-7, 5.0]]))
    model = nn.Sequential(a, b)
    rep = sparsity_report(model)
    # layer 0: rows [0, 0, 0] (dead) and [1, 0, 3]: 4 of 6 weights zero, 1 of 2 neurons
    assert rep["layers"]["0"] == dict(weights=6, zero_weights=4, neurons=2, zero_neurons=1,
                                      weight_sparsity=pytest.approx(400 / 6),
                                      neuron_sparsity=50.0)
    assert rep["layers"]["1"]["zero_weights"] == 1 and rep["layers"]["1"]["zero_neurons"] == 0
    tot = rep["total"]
    counts = (tot["weights"], tot["zero_weights"], tot["neurons"], tot["zero_neurons"])
    assert counts == (8, 5, 3, 1)
    assert tot["weight_sparsity"] == pytest.approx(62.5)
    # columns of layer 0: [0, 1] alive, [0, 0] dead
    cols = sparsity_report(model, linear_groups="in")["layers"]["0"]
    assert (cols["weights"], cols["neurons"], cols["zero_neurons"]) == (4, 2, 1)


def test_prune_small_writes_what_the_metrics_count():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight[1].mul_(1e-6)
        model[0].bias[1] = 1e-6
        model[2].weight[0, 0] = 3e-6
    before = sparsity_report(model)["total"]
    prune_small_(model)
    assert model[0].weight[1].abs().sum() == 0 and model[0].bias[1] == 0
    assert model[2].weight[0, 0] == 0
    exact = sum(int((p == 0).sum()) for p in model.parameters())
    assert exact == before["zero_weights"] == 11
    assert sparsity_report(model)["total"] == before
