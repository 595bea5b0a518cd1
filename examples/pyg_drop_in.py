"""PyG's standard GCN training loop on Cora, with a learned sparse adjacency.

    python examples/pyg_drop_in.py               # 3 seeds -> results/pyg_drop_in.json
    python examples/pyg_drop_in.py --seeds 10

The loop is PyG's ``examples/gcn.py`` (Kipf & Welling: GCNConv, 16 hidden,
dropout 0.5, Adam lr 0.01, weight decay 5e-4 on the first layer); the lines
marked ``# +`` add the learned adjacency and the
:class:`~graphsparse.structure.StructureLearner` that holds the recipe (warm
start, lambda schedule, self-distillation, agreement prior, sparsity-aware
checkpoint). The README shows the diff. The test accuracy is reported at the
checkpoint chosen on validation accuracy, never on test.
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.nn import GCNConv

from graphsparse.data.planetoid import load_planetoid
from graphsparse.graph import GatedAdjacency
from graphsparse.structure import StructureLearner

SETTINGS = dict(
    hidden=16, lr=0.01, weight_decay=5e-4, epochs=300,  # PyG's gcn.py (300 epochs: the gate starts at 100)
    adjacency=dict(groups="row", normalization="row", gate_self_loops=False,  # + the recipe's
                   unit_init=True, init_noise=0.1),                           #   adjacency
    learner=dict(),                                     # + StructureLearner defaults ("preserve")
)


class GCN(torch.nn.Module):
    def __init__(self, in_channels, hidden_channels, out_channels):
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden_channels, normalize=False)    # + normalize=False
        self.conv2 = GCNConv(hidden_channels, out_channels, normalize=False)   # + (no cache)

    def forward(self, x, edge_index, edge_weight=None):
        x = F.dropout(x, p=0.5, training=self.training)
        x = self.conv1(x, edge_index, edge_weight).relu()
        x = F.dropout(x, p=0.5, training=self.training)
        x = self.conv2(x, edge_index, edge_weight)
        return x


def train(model, optimizer, adj, learner, data):
    model.train()
    optimizer.zero_grad()
    out = model(data.x, *adj())                                               # + learned edges
    loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
    loss = loss + learner.loss(out)                                           # + distill + penalty
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def test(model, adj, learner, data):
    model.eval()
    out = model(data.x, *adj())                                               # + learned edges
    pred = out.argmax(dim=-1)
    accs = [float((pred[m] == data.y[m]).float().mean())
            for m in (data.train_mask, data.val_mask, data.test_mask)]
    learner.step(out, accs[1])                                                # + prior, checkpoint
    return accs


def run(data, seed, settings=SETTINGS, progress=True):
    """One training run; returns the record of the checkpoint chosen on validation."""
    torch.manual_seed(seed)
    adj = GatedAdjacency(data.edge_index, data.num_nodes, **settings["adjacency"])  # +
    adj = adj.to(data.x.device)
    model = GCN(data.num_features, settings["hidden"], int(data.y.max()) + 1).to(data.x.device)
    learner = StructureLearner(adj, data.y, data.train_mask, x=data.x, model=model,  # +
                               **settings["learner"])
    optimizer = torch.optim.Adam([
        dict(params=model.conv1.parameters(), weight_decay=settings["weight_decay"]),
        dict(params=model.conv2.parameters(), weight_decay=0),
        *learner.param_groups(),                                              # + gate groups
    ], lr=settings["lr"])
    history = []
    epochs = range(1, settings["epochs"] + 1)
    if progress:
        from tqdm import tqdm
        epochs = tqdm(epochs, desc=f"seed {seed}", leave=False)
    t0 = time.perf_counter()
    for epoch in epochs:
        loss = train(model, optimizer, adj, learner, data)
        train_acc, val_acc, test_acc = test(model, adj, learner, data)
        history.append(dict(epoch=epoch, loss=loss, val_acc=val_acc, test_acc=test_acc,
                            edge_sparsity=learner.last["sparsity"]))
    seconds = time.perf_counter() - t0
    best = learner.restore()                                                  # + best checkpoint
    chosen = history[best["epoch"]]
    return dict(seed=seed, val_acc=chosen["val_acc"], test_acc=chosen["test_acc"],
                epoch=chosen["epoch"], edge_sparsity=best["sparsity"], seconds=seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="data root (default: $GRAPHSPARSE_DATA)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/pyg_drop_in.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_planetoid("Cora", root=args.root)
    runs = [run(data, seed) for seed in range(args.seeds)]
    for r in runs:
        print(f"seed {r['seed']}: test {100 * r['test_acc']:.2f}  val {100 * r['val_acc']:.2f}  "
              f"epoch {r['epoch']}  {100 * r['edge_sparsity']:.1f}% of gated edges exactly zero")
    acc = [100 * r["test_acc"] for r in runs]
    sparsity = [100 * r["edge_sparsity"] for r in runs]
    std = statistics.stdev(acc) if len(acc) > 1 else 0.0
    print(f"Cora, {len(runs)} seeds: test accuracy {statistics.fmean(acc):.2f} ± {std:.2f}, "
          f"{statistics.fmean(sparsity):.1f}% of gated edges exactly zero")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(settings=SETTINGS, runs=runs, test_acc_mean=statistics.fmean(acc),
                                   test_acc_std=std,
                                   edge_sparsity_mean=statistics.fmean(sparsity)), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
