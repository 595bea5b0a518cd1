"""Run by ``test_ddp.py`` under ``torchrun --nproc_per_node 2`` (gloo, CPU): a
few mini-batch steps of a GatedGCN with its adjacency, every process on its
own batches, the learner's warm start included; then every process saves its
parameters. Also imported by the test for the one-process reference, which
averages the losses of the same batches."""
import os
import sys

import torch
import torch.nn.functional as F
from torch_geometric.data import Data

from graphsparse.graph import GatedAdjacency, GatedGCN
from graphsparse.structure import StructureLearner

STEPS, PARTS = 6, 4


def _data():
    g = torch.Generator().manual_seed(0)
    n = 48
    ei = torch.randint(0, n, (2, 300), generator=g)
    ei = ei[:, ei[0] != ei[1]]
    y = torch.arange(n) % 3
    x = F.one_hot(y, 3).float() + torch.randn(n, 3, generator=g)
    data = Data(x=x, edge_index=ei, y=y, train_mask=torch.rand(n, generator=g) < 0.5)
    data.e_id, data.n_id = torch.arange(ei.size(1)), torch.arange(n)
    return data


def run(rank: int = 0, ddp: bool = False) -> dict:
    data = _data()
    torch.manual_seed(0)
    adj = GatedAdjacency(data.edge_index, data.num_nodes, groups="row", normalization="row",
                         gate_self_loops=False, unit_init=True, init_noise=0.3)
    net = GatedGCN(3, 8, 3, dropout=0.0, adjacency=adj)
    model = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True) \
        if ddp else net
    learner = StructureLearner(adj, data.y, data.train_mask, x=data.x, model=net, gate_start=2,
                               warmup=1, distill=0.0, prior=None, lam=0.05, threshold_lr=0.05)
    opt = torch.optim.Adam([dict(params=net.weight_parameters(), lr=0.02),
                            *learner.param_groups()])
    g = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        order = torch.randperm(data.num_nodes, generator=g)
        batches = [data.subgraph(i) for i in order.chunk(PARTS)]
        shards = [batches[r::2] for r in range(2)]          # two processes' shares
        for step in range(len(shards[0])):
            opt.zero_grad()
            # one process: the mean of both processes' losses, as DDP averages gradients
            group = [shards[rank][step]] if ddp else [shards[0][step], shards[1][step]]
            loss = 0.0
            for b in group:
                out = model(b.x, b.edge_index, e_id=b.e_id, n_id=b.n_id)
                loss = loss + (F.cross_entropy(out[b.train_mask], b.y[b.train_mask])
                               + learner.loss(out, b.n_id)) / len(group)
            loss.backward()
            opt.step()
        with torch.no_grad():
            learner.step(net.eval()(data.x))
        net.train()
    return {k: v.detach().clone() for k, v in net.named_parameters()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    assert torch.distributed.get_world_size() == 2
    rank = torch.distributed.get_rank()
    torch.save(run(rank, ddp=True), os.path.join(sys.argv[1], f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()
