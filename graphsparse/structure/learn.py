"""``learn_structure``: learn a sparse structure for a user's own graph and
write the learned graph, a summary and a picture."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch
from torch import Tensor

from .io import GraphInput, PathLike, read_graph_input
from .train import RECIPES, recipe_config, select_structure


def split_labelled(y: Tensor, val_fraction: float, seed: int) -> tuple:
    """Stratified split of the labelled nodes (``y >= 0``) into train and
    validation masks; every class keeps at least one training node."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"'val_fraction' must lie in [0, 1) (got {val_fraction})")
    gen = torch.Generator().manual_seed(seed)
    train = torch.zeros_like(y, dtype=torch.bool)
    val = torch.zeros_like(y, dtype=torch.bool)
    for c in y[y >= 0].unique().tolist():
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_val = min(int(round(val_fraction * idx.numel())), idx.numel() - 1)
        val[idx[:n_val]] = True
        train[idx[n_val:]] = True
    return train, val


def learn_structure(edges: Optional[PathLike] = None, features: Optional[PathLike] = None,
                    labels: Optional[PathLike] = None, *, out: Union[str, Path] = "results/learn",
                    directed: bool = False, label_attr: str = "label", val_fraction: float = 0.25,
                    config: Optional[Dict[str, Any]] = None, seed: int = 0,
                    recipes: Sequence[str] = tuple(RECIPES), progress: bool = True,
                    plot: bool = True, verbose: bool = True) -> Dict[str, Any]:
    """Learns a sparse structure for a graph given as files (see
    :func:`~graphsparse.structure.read_graph_input`; no input: the karate-club
    graph), trains the learned-structure GCN with every recipe of
    :data:`~graphsparse.structure.RECIPES` (``recipes``; ``config`` overrides
    the settings of all of them), keeps the one of best accuracy on the
    held-out labelled nodes (:func:`~graphsparse.structure.select_structure`)
    and writes to ``out``:

    * ``learned_edges.csv``: ``source,target,weight`` of every surviving entry
      of the learned adjacency, with the original node ids (self-loops
      included: they are part of the learned adjacency);
    * ``learned_graph.pt``: the same as a PyG ``Data`` (``edge_index``,
      ``edge_weight``, ``x``, ``y``, ``node_ids``);
    * ``summary.json``: accuracy on the held-out labelled nodes, edges kept and
      removed, kept degree and predicted class of every node, the settings and
      the input log;
    * ``graph.png``: the original and learned graphs (drawn for up to 300
      nodes; degree and weight histograms above that).

    Returns:
        The summary dictionary.
    """
    gi = read_graph_input(edges, features, labels, directed=directed, label_attr=label_attr)
    say = print if verbose else (lambda *a, **k: None)
    for line in gi.log:
        say(f"[input] {line}")
    train, val = split_labelled(gi.y, val_fraction, seed)
    say(f"[graph] {gi.num_nodes} nodes, {gi.edge_index.size(1) // (1 if directed else 2)} "
        f"edges, {gi.x.size(1)} features ({gi.feature_source}), {len(gi.classes)} classes, "
        f"{int(train.sum())} train / {int(val.sum())} validation labels")
    true_y = getattr(gi, "true_y", None)
    eval_mask = None
    if true_y is not None:  # karate club: every member's club is known
        eval_mask = gi.y < 0
    result = select_structure(gi.x, gi.edge_index, true_y if true_y is not None else gi.y,
                              train, val, eval_mask, config, seed=seed, recipes=recipes,
                              progress=progress, desc="learn")
    cfg = recipe_config(result.recipe, config)
    model = result.model
    adj = model.adjacency
    x_in = gi.x if adj.scorer is not None else None
    model.eval()
    with torch.no_grad():
        kept_index, kept_weight = adj.export(x_in)
        pred = model(gi.x).argmax(-1)
    summary = _summarize(gi, adj, kept_index, kept_weight, result, cfg, train, val, true_y)
    summary["predictions"] = {gi.node_ids[i]: gi.classes[c] for i, c in enumerate(pred.tolist())}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_outputs(out, gi, kept_index, kept_weight, summary)
    if plot:
        from .plot import plot_learned_graph
        plot_learned_graph(gi, kept_index, kept_weight, out / "graph.png", pred)
    say(f"[result] recipe {result.recipe!r}, validation accuracy {summary['val_acc']:.3f}; kept "
        f"{summary['edges']['original_kept']} of {summary['edges']['original']} edge entries "
        f"({summary['edges']['original_removed']} removed)")
    say(f"[result] wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")
    return summary


def _summarize(gi: GraphInput, adj, kept_index: Tensor, kept_weight: Tensor, result, cfg,
               train: Tensor, val: Tensor, true_y: Optional[Tensor]) -> Dict[str, Any]:
    cand = adj.edge_index
    values = result.edge_values
    loops = cand[0] == cand[1]
    alive = values > 0
    deg = torch.bincount(kept_index[1][kept_index[0] != kept_index[1]], minlength=gi.num_nodes)
    summary: Dict[str, Any] = dict(
        val_acc=result.val_acc,
        selected_epoch=result.epoch,
        recipe=result.recipe,
        edge_sparsity=result.edge_sparsity,    # of the gated edges: self-loops are always on
        edges=dict(
            candidates=int(cand.size(1)),
            original=int((~loops).sum()),
            original_kept=int((alive & ~loops).sum()),
            original_removed=int((~alive & ~loops).sum()),
            self_loops_kept=int((alive & loops).sum()),
            counting="directed entries A[i, j]: an undirected edge counts twice",
        ),
        kept_degree={gi.node_ids[i]: int(d) for i, d in enumerate(deg.tolist())},
        num_nodes=gi.num_nodes,
        classes=gi.classes,
        num_train_labels=int(train.sum()),
        num_val_labels=int(val.sum()),
        features=gi.feature_source,
        settings=cfg,
        input_log=gi.log,
    )
    if true_y is not None:
        summary["unlabelled_acc"] = result.test_acc
    return summary


def _write_outputs(out: Path, gi: GraphInput, kept_index: Tensor, kept_weight: Tensor,
                   summary: Dict[str, Any]) -> None:
    with open(out / "learned_edges.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "target", "weight"])
        for (j, i), a in zip(kept_index.t().tolist(), kept_weight.tolist()):
            w.writerow([gi.node_ids[j], gi.node_ids[i], f"{a:.6g}"])
    from torch_geometric.data import Data
    data = Data(x=gi.x, edge_index=kept_index.cpu(), edge_weight=kept_weight.cpu(), y=gi.y,
                num_nodes=gi.num_nodes)
    data.node_ids = list(gi.node_ids)
    torch.save(data, out / "learned_graph.pt")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
