"""Pictures of a learned structure."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

MAX_DRAWN_NODES = 300


def _save(fig, path: Path) -> None:
    """``fig.savefig`` through a temporary file renamed on success: an
    interrupted run never leaves a truncated picture."""
    from ..utils.io import atomic_open
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=110, format=path.suffix.lstrip(".") or "png")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_learned_graph(gi, kept_index: Tensor, kept_weight: Tensor, path: Path,
                       pred: Optional[Tensor] = None) -> None:
    """Original vs learned graph (networkx layout) for small graphs; kept
    degree and edge-weight histograms for large ones. Nodes are coloured by
    ``pred`` (the model's predicted class) when given, else by their label;
    labelled nodes are drawn larger with a thick outline."""
    import networkx as nx
    plt = _plt()
    n = gi.num_nodes
    nonloop = kept_index[0] != kept_index[1]
    if n <= MAX_DRAWN_NODES:
        orig = nx.Graph()
        orig.add_nodes_from(range(n))
        orig.add_edges_from(gi.edge_index.t().tolist())
        learned = nx.Graph()
        learned.add_nodes_from(range(n))
        wsum: Dict[tuple, float] = {}
        for (j, i), a in zip(kept_index[:, nonloop].t().tolist(), kept_weight[nonloop].tolist(),
                             strict=True):
            key = (min(i, j), max(i, j))
            wsum[key] = wsum.get(key, 0.0) + a
        learned.add_weighted_edges_from((u, v, w) for (u, v), w in wsum.items())
        pos = nx.spring_layout(orig, seed=0)
        color = (pred if pred is not None else gi.y).tolist()
        labelled = (gi.y >= 0).tolist()
        sizes = [260 if lab else 110 for lab in labelled]
        borders = [2.0 if lab else 0.4 for lab in labelled]
        fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
        for ax, g, title in ((axes[0], orig, f"input graph ({orig.number_of_edges()} edges)"),
                             (axes[1], learned,
                              f"learned graph ({learned.number_of_edges()} edges)")):
            widths = [0.5 + 3 * g[u][v].get("weight", 0.3) for u, v in g.edges()]
            nx.draw_networkx_edges(g, pos, ax=ax, width=widths, alpha=0.6)
            nx.draw_networkx_nodes(g, pos, ax=ax, node_size=sizes, cmap="tab10",
                                   node_color=[c if c >= 0 else 7 for c in color],
                                   vmin=0, vmax=9, edgecolors="k", linewidths=borders)
            if n <= 60:
                nx.draw_networkx_labels(g, pos, ax=ax, labels={i: gi.node_ids[i] for i in range(n)},
                                        font_size=6)
            ax.set_title(title)
            ax.axis("off")
        what = "predicted class" if pred is not None else "label (grey: unlabelled)"
        fig.suptitle(f"colour: {what}; large nodes: labelled; edge width: learned weight")
    else:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        d_in = torch.bincount(gi.edge_index[1], minlength=n)
        d_out = torch.bincount(kept_index[1][nonloop], minlength=n)
        bins = range(0, int(d_in.max()) + 2)
        axes[0].hist([d_in.tolist(), d_out.tolist()], bins=bins, label=["input", "learned"],
                     log=True)
        axes[0].set_xlabel("degree")
        axes[0].legend()
        axes[1].hist(kept_weight[nonloop].tolist(), bins=50, log=True)
        axes[1].set_xlabel("learned edge weight (kept edges)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_training(histories: Dict[str, List[dict]], weights: Dict[str, Sequence[float]],
                  path: Path, title: str = "") -> None:
    """Validation/test accuracy and edge sparsity over training, and the
    distribution of learned edge weights, one line per method."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, hist in histories.items():
        ep = [h["epoch"] for h in hist]
        axes[0].plot(ep, [h["val_acc"] for h in hist], label=name)
        axes[1].plot(ep, [h["edge_sparsity"] for h in hist], label=name)
    for name, w in weights.items():
        w = [v for v in w if v > 0]
        if w:
            axes[2].hist(w, bins=60, histtype="step", log=True, label=name)
    axes[0].set(xlabel="epoch", ylabel="validation accuracy")
    axes[1].set(xlabel="epoch", ylabel="fraction of gated edges exactly zero")
    axes[2].set(xlabel="learned edge weight (nonzero)", ylabel="count")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
