"""Structure learning in mini-batches: the learned gates applied to sampled
subgraphs through their edge ids, against the same recipe in full batch.

    python examples/minibatch.py                    # Cora, 3 seeds, 2 random node parts
    python examples/minibatch.py --parts 4 --seeds 5
    torchrun --nproc_per_node 2 examples/minibatch.py --ddp   # DistributedDataParallel, gloo

Every epoch the training nodes' loss is taken over ``RandomNodeLoader``
batches (``--parts`` random node subsets with the edges among them; no
compiled extension needed). Each batch gets its weights from
``adj.subgraph(batch.edge_index, batch.e_id, batch.n_id)``: the global gate
parameters, with per-batch competition groups (see
:meth:`GatedAdjacency.subgraph`). Evaluation, the learner's prior and its
checkpoint choice use the full graph (Cora fits in memory). With ``--ddp``
each process trains on its own share of the batches and
DistributedDataParallel averages the gradients. Results (mean and std over
seeds, per mode) go to ``results/minibatch.json``.
"""
import argparse
import json
import os
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.loader import RandomNodeLoader

from graphsparse.data.planetoid import load_planetoid
from graphsparse.graph import GatedAdjacency, GatedGCN
from graphsparse.structure import ADJACENCY_DEFAULTS, MODEL_DEFAULTS, StructureLearner
from graphsparse.utils import seed_everything

SETTINGS = dict(
    model=dict(hidden=MODEL_DEFAULTS["hidden"], dropout=MODEL_DEFAULTS["dropout"]),
    lr=MODEL_DEFAULTS["lr"], weight_decay=MODEL_DEFAULTS["weight_decay"],
    epochs=MODEL_DEFAULTS["epochs"],
    adjacency={k: v for k, v in ADJACENCY_DEFAULTS.items() if not k.startswith("scorer")},
    learner=dict(),                     # the "preserve" recipe
)


def accuracy(out, data, mask):
    return float((out[mask].argmax(-1) == data.y[mask]).float().mean())


def run(data, seed, parts, settings=SETTINGS, ddp=False, progress=True):
    """Trains one seed; ``parts=1`` is full-batch training. Returns the chosen checkpoint."""
    seed_everything(seed)
    num_classes = int(data.y.max()) + 1
    adj = GatedAdjacency(data.edge_index, data.num_nodes, **settings["adjacency"])
    net = GatedGCN(data.num_features, settings["model"]["hidden"], num_classes,
                   dropout=settings["model"]["dropout"], adjacency=adj)
    model = net
    rank, world = 0, 1
    if ddp:   # before the learner freezes the gate for its warm start: DDP must see it
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        model = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)
    learner = StructureLearner(adj, data.y, data.train_mask, x=data.x, model=net,
                               **settings["learner"])
    opt = torch.optim.Adam([dict(params=net.weight_parameters(), lr=settings["lr"],
                                 weight_decay=settings["weight_decay"]),
                            *learner.param_groups()])
    data = data.clone()
    data.e_id, data.n_id = torch.arange(data.num_edges), torch.arange(data.num_nodes)
    gen = torch.Generator().manual_seed(seed)
    epochs = range(settings["epochs"])
    if progress and rank == 0:
        from tqdm import tqdm
        epochs = tqdm(epochs, desc=f"seed {seed}, {parts} part(s)", leave=False)
    history = []
    for _ in epochs:
        net.train()
        if parts == 1:
            batches = [None]
        else:
            order = torch.randperm(data.num_nodes, generator=gen)
            batches = [data.subgraph(idx) for idx in order.chunk(parts)][rank::world]
        for batch in batches:
            opt.zero_grad()
            if batch is None:
                out = model(data.x)
            else:
                out = model(batch.x, batch.edge_index, e_id=batch.e_id, n_id=batch.n_id)
            b = data if batch is None else batch
            loss = F.cross_entropy(out[b.train_mask], b.y[b.train_mask])
            loss = loss + learner.loss(out, None if batch is None else batch.n_id)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            out = net(data.x)                       # the full graph
        val = accuracy(out, data, data.val_mask)
        learner.step(out, val)
        history.append(dict(val_acc=val, test_acc=accuracy(out, data, data.test_mask)))
    best = learner.restore()
    return dict(seed=seed, parts=parts, epoch=best["epoch"], edge_sparsity=best["sparsity"],
                val_acc=history[best["epoch"]]["val_acc"],
                test_acc=history[best["epoch"]]["test_acc"]), net


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="data root (default: $GRAPHSPARSE_DATA)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--parts", type=int, default=2, help="random node parts per epoch")
    parser.add_argument("--ddp", action="store_true", help="DistributedDataParallel (torchrun)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/minibatch.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.ddp:
        torch.distributed.init_process_group("gloo")
    rank = int(os.environ.get("RANK", 0))
    data = load_planetoid("Cora", root=args.root)
    modes = [args.parts] if args.ddp else [1, args.parts]
    records = {}
    for parts in modes:
        runs = [run(data, seed, parts, ddp=args.ddp)[0] for seed in range(args.seeds)]
        acc = [100 * r["test_acc"] for r in runs]
        records[f"{parts} part(s)"] = dict(
            runs=runs, test_acc_mean=statistics.fmean(acc),
            test_acc_std=statistics.stdev(acc) if len(acc) > 1 else 0.0,
            edge_sparsity_mean=statistics.fmean(r["edge_sparsity"] for r in runs))
        if rank == 0:
            r = records[f"{parts} part(s)"]
            print(f"{'full batch' if parts == 1 else f'{parts} random node parts'}: test "
                  f"{r['test_acc_mean']:.2f} ± {r['test_acc_std']:.2f}, "
                  f"{100 * r['edge_sparsity_mean']:.1f}% of gated edges exactly zero")
    if rank == 0:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(settings=SETTINGS, ddp=args.ddp, results=records),
                                  indent=2))
        print(f"wrote {out}")
    if args.ddp:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
