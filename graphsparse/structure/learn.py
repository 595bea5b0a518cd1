"""``learn_structure``: learn a sparse structure for a user's own graph and
write the learned graph, a summary and a picture.

Everything that can be checked is checked before training starts: the
settings, every input file (:func:`~graphsparse.structure.read_graph_input`),
the train / validation split, and that the output folder can be written and
holds no earlier run's files. The outputs are all or nothing: each file is
written under a temporary name and renamed when complete, and an error or
Ctrl-C while writing removes the files this run had already written.
``summary.json`` is written last.
"""
from __future__ import annotations

import csv
import inspect
import json
import math
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..utils.checkpoint import rng_state, set_rng_state
from ..utils.io import atomic_open, atomic_write_text, prepare_output_dir, provenance
from ..utils.seed import deterministic_algorithms
from .io import GraphInput, PathLike, read_graph_input
from .train import (
    DEFAULT_RECIPES,
    RECIPES,
    fit_gcn,
    recipe_config,
    select_structure,
    selected_config,
)

#: The files ``learn_structure`` writes (``summary.json`` last).
OUTPUT_FILES = ("graph.png", "learned_edges.csv", "learned_graph.pt", "summary.json")
#: The folder, inside ``out``, that holds the checkpoints of an unfinished run.
CHECKPOINT_DIR = ".checkpoint"


def split_labelled(y: Tensor, val_fraction: float, seed: int) -> Tuple[Tensor, Tensor]:
    """Stratified split of the labelled nodes (``y >= 0``) into disjoint
    train and validation masks.

    Each class with ``n`` labelled nodes puts ``round(val_fraction * n)`` of
    them, a seeded random choice, in validation, but at least one when
    ``val_fraction > 0`` and ``n >= 2``, and never all: every class keeps at
    least one training node. Unlabelled nodes are in neither mask.

    Args:
        y (LongTensor): ``[N]`` labels, ``-1`` for unlabelled nodes.
        val_fraction (float): in ``[0, 1)``.
        seed (int): seeds the choice (a private generator: the global RNGs
            are not touched).

    Returns:
        ``(train_mask, val_mask)``, BoolTensors ``[N]``.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or \
            not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"'val_fraction' must lie in [0, 1) (got {val_fraction!r})")
    gen = torch.Generator().manual_seed(seed)
    train = torch.zeros_like(y, dtype=torch.bool)
    val = torch.zeros_like(y, dtype=torch.bool)
    for c in y[y >= 0].unique().tolist():
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_val = int(round(val_fraction * idx.numel()))
        if val_fraction > 0:
            n_val = max(n_val, 1)
        n_val = min(n_val, idx.numel() - 1)
        val[idx[:n_val]] = True
        train[idx[n_val:]] = True
    return train, val


def check_learn_settings(val_fraction: float, config: Optional[Dict[str, Any]],
                         recipes: Sequence[str], seed: int,
                         normalizations: Sequence[Optional[str]] = (None,)) -> None:
    """Checks the settings of :func:`learn_structure` before anything is read
    or trained: ``ValueError`` naming the setting (as its command-line
    option) and the fix."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"'--seed' (seed) must be an integer (got {seed!r})")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or \
            not math.isfinite(val_fraction) or not 0.0 < val_fraction < 1.0:
        raise ValueError(
            f"'--val-fraction' (val_fraction) must lie in (0, 1) (got {val_fraction!r}): the "
            f"held-out labelled nodes choose the checkpoint and the recipe, so at least one is "
            f"needed; 0.25 is the default")
    if not recipes or any(r not in RECIPES for r in recipes):
        raise ValueError(f"'--recipe' (recipes) must name recipes among {sorted(RECIPES)} "
                         f"(got {list(recipes)!r})")
    from ..graph.adjacency import NORMALIZATIONS
    if not normalizations or any(n is not None and n not in NORMALIZATIONS
                                 for n in normalizations):
        raise ValueError(f"'--normalization' (normalizations) must name normalizations among "
                         f"{list(NORMALIZATIONS)} (got {list(normalizations)!r})")
    config = dict(config or {})
    if len(normalizations) > 1 and "normalization" in config:
        raise ValueError("choose the normalization either in config['normalization'] or "
                         "among 'normalizations' (--normalization auto), not both")
    if "epochs" in config:
        e = config["epochs"]
        if isinstance(e, bool) or not isinstance(e, int) or e < 1:
            raise ValueError(f"'--epochs' (config['epochs']) must be an integer >= 1 (got {e!r})")
    if "knn" in config:
        k = config["knn"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"'--knn' (config['knn']) must be an integer >= 0 (got {k!r}); "
                             f"0 adds no candidate edges")
    if "lam" in config:
        lam = config["lam"]
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or \
                not math.isfinite(lam) or lam < 0:
            raise ValueError(f"'--lam' (config['lam']) must be a finite number >= 0 (got "
                             f"{lam!r}); 0 turns the penalty off")
    from ..graph.adjacency import MARGINALS
    if config.get("marginals", "uniform") not in MARGINALS:
        raise ValueError(f"'--marginals' (config['marginals']) must be one of {list(MARGINALS)} "
                         f"(got {config['marginals']!r})")
    for name in recipes:
        cfg = recipe_config(name, config)
        e = cfg["epochs"]
        if isinstance(e, bool) or not isinstance(e, int) or e < 1:
            raise ValueError(f"recipe {name!r}: 'epochs' must be an integer >= 1 (got {e!r})")
        norms = [cfg["normalization"] if n is None else n for n in normalizations]
        if cfg["marginals"] != "uniform" and any(n not in ("sinkhorn", "balanced")
                                                 for n in norms):
            raise ValueError(f"'--marginals {cfg['marginals']}' needs '--normalization "
                             f"sinkhorn' or 'balanced' (recipe {name!r} runs {norms}): the "
                             f"marginals are Sinkhorn's target row and column sums")


def _check_split(gi: GraphInput, train: Tensor, val: Tensor) -> None:
    if int(val.sum()) == 0:
        counts = {gi.classes[c]: int((gi.y == c).sum()) for c in range(len(gi.classes))}
        raise ValueError(
            f"no labelled node is left for validation: every class has a single labelled node "
            f"({counts}) and each class keeps one for training; the validation nodes choose "
            f"the checkpoint and the recipe, so label at least two nodes of some class")


def _select_kwargs(out: Path, resume: bool) -> Dict[str, Any]:
    """``checkpoint_dir`` / ``resume`` for :func:`select_structure`, when it
    takes them."""
    params = inspect.signature(select_structure).parameters
    if "checkpoint_dir" in params and "resume" in params:
        return dict(checkpoint_dir=out / CHECKPOINT_DIR, resume=resume)
    if resume:
        raise ValueError("'--resume' (resume=True): this version of select_structure does not "
                         "write checkpoints, so there is nothing to resume; run without it")
    return {}


def _prepare_out(out: Union[str, Path], overwrite: bool, resume: bool) -> Path:
    out = Path(out)
    ck = out / CHECKPOINT_DIR
    if resume:
        # the interrupted run's own outputs (if it got that far) are replaced
        out = prepare_output_dir(out, overwrite=overwrite, allow=(CHECKPOINT_DIR, *OUTPUT_FILES))
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
        return out
    if ck.is_dir() and out.is_dir():
        if not overwrite:
            raise ValueError(f"'--out' '{out}' holds the checkpoint of an interrupted run; "
                             f"pass --resume to continue it, or --overwrite to start over")
        prepare_output_dir(out, overwrite=False, allow=[p.name for p in out.iterdir()])
        shutil.rmtree(ck)
    return prepare_output_dir(out, overwrite=overwrite)


def learn_structure(edges: Optional[PathLike] = None, features: Optional[PathLike] = None,
                    labels: Optional[PathLike] = None, *, out: Union[str, Path] = "results/learn",
                    directed: bool = False, label_attr: Optional[str] = None,
                    val_fraction: float = 0.25, config: Optional[Dict[str, Any]] = None,
                    seed: int = 0, recipes: Sequence[str] = DEFAULT_RECIPES,
                    progress: bool = True, plot: bool = True, verbose: bool = True,
                    header: Optional[bool] = None, overwrite: bool = False,
                    resume: bool = False, deterministic: bool = False,
                    baselines: bool = True,
                    normalizations: Sequence[Optional[str]] = (None,)) -> Dict[str, Any]:
    """Learns a sparse structure for a graph given as files (see
    :func:`~graphsparse.structure.read_graph_input`; no input: the karate-club
    graph), trains the learned-structure GCN with each recipe of ``recipes``
    (names of :data:`~graphsparse.structure.RECIPES`; default
    :data:`~graphsparse.structure.DEFAULT_RECIPES`; ``config`` overrides
    the settings of all of them), keeps the one of best accuracy on the
    held-out labelled nodes (:func:`~graphsparse.structure.select_structure`)
    and writes to ``out``:

    * ``learned_edges.csv``: ``source,target,weight`` of every surviving entry
      of the learned adjacency, with the original node ids (self-loops
      included: they are part of the learned adjacency);
    * ``learned_graph.pt``: the same as a PyG ``Data`` (``edge_index``,
      ``edge_weight``, ``x``, ``y``, ``node_ids``);
    * ``summary.json``: accuracy on the held-out labelled nodes, edges kept and
      removed, kept degree and predicted class of every node, the settings,
      the input log and the provenance (seed, every setting, package
      versions, SHA-256 of every input file);
    * ``graph.png``: the original and learned graphs (drawn for up to 300
      nodes; degree and weight histograms above that).

    With ``normalizations`` (e.g. ``("row", "sym")``, ``--normalization
    auto``) every recipe runs under each of them and the normalization is
    chosen on the held-out nodes too (the four recipes under two
    normalizations: 8 configurations); the chosen one is
    ``summary["recipe"]``, e.g. ``"preserve/sym"``.

    With ``baselines`` (the default) the same run also trains, on the same
    split and seed, a plain GCN on the input graph and the same network
    without a graph (an MLP: a GCN on self-loops only), and reports their
    held-out accuracies next to the learned structure's (console and
    ``summary["baselines"]``), so you see whether the learned graph helps.

    ``out`` must be a new or empty folder, unless ``overwrite`` (the old
    outputs are then removed first); it is checked before training. With a
    :func:`select_structure` that takes ``checkpoint_dir``, checkpoints go
    to ``out/.checkpoint`` (removed once the outputs are written) and
    ``resume`` continues an interrupted run from there.

    The caller's global random generators (torch, CUDA, ``random``, NumPy)
    are the same after the call as before it.

    Args:
        header (bool, optional): whether the CSV inputs start with a header
            row (default: recognised by shape, logged).
        overwrite (bool): replace the outputs of an earlier run in ``out``.
        resume (bool): continue the interrupted run whose checkpoint is in
            ``out/.checkpoint``.
        deterministic (bool): deterministic algorithms only
            (:func:`~graphsparse.utils.seed.deterministic_algorithms`: for
            CUDA; CPU training is deterministic already).
        baselines (bool): also train the same-run GCN and MLP baselines.

    Returns:
        The summary dictionary.
    """
    config = dict(config or {})
    recipes, normalizations = tuple(recipes), tuple(normalizations)
    check_learn_settings(val_fraction, config, recipes, seed, normalizations)
    gi = read_graph_input(edges, features, labels, directed=directed, label_attr=label_attr,
                          header=header)
    say = print if verbose else (lambda *a, **k: None)
    for line in gi.log:
        say(f"[input] {line}")
    train, val = split_labelled(gi.y, val_fraction, seed)
    _check_split(gi, train, val)
    kwargs = _select_kwargs(Path(out), resume)      # before anything in 'out' is removed
    # chosen on validation too (passed only then: a select_structure without it still works)
    extra: Dict[str, Any] = ({} if normalizations == (None,)
                             else {"normalizations": normalizations})
    out = _prepare_out(out, overwrite, resume)
    if kwargs:
        kwargs["checkpoint_dir"].mkdir(exist_ok=True)
    say(f"[graph] {gi.num_nodes} nodes, {gi.edge_index.size(1) // (1 if directed else 2)} "
        f"edges, {gi.x.size(1)} features ({gi.feature_source}), {len(gi.classes)} classes, "
        f"{int(train.sum())} train / {int(val.sum())} validation labels")
    true_y = getattr(gi, "true_y", None)
    eval_mask = None
    if true_y is not None:  # karate club: every member's club is known
        eval_mask = gi.y < 0
    caller_rng = rng_state()
    try:
        with deterministic_algorithms(deterministic):
            result = select_structure(gi.x, gi.edge_index, true_y if true_y is not None else gi.y,
                                      train, val, eval_mask, config, seed=seed, recipes=recipes,
                                      progress=progress, desc="learn", **kwargs, **extra)
            assert result.recipe is not None and result.model is not None
            cfg = selected_config(result.recipe, config)
            model: Any = result.model
            adj = model.adjacency
            x_in = gi.x if adj.scorer is not None else None
            model.eval()
            with torch.no_grad():
                kept_index, kept_weight = adj.export(x_in)
                pred = model(gi.x).argmax(-1)
            compared = (_baselines(gi, true_y if true_y is not None else gi.y, train, val,
                                   eval_mask, seed, result.val_acc) if baselines else None)
    except BaseException:
        ck = kwargs.get("checkpoint_dir")
        if ck is not None and ck.is_dir() and not any(ck.iterdir()):
            ck.rmdir()          # nothing saved: leave no folder that asks for --resume
        raise
    finally:
        set_rng_state(caller_rng)
    summary = _summarize(gi, adj, kept_index, kept_weight, result, cfg, train, val, true_y)
    if compared is not None:
        summary["baselines"] = compared
    summary["predictions"] = {gi.node_ids[i]: gi.classes[c] for i, c in enumerate(pred.tolist())}
    settings = dict(edges=None if edges is None else str(edges),
                    features=None if features is None else str(features),
                    labels=None if labels is None else str(labels), directed=directed,
                    label_attr=label_attr, header=header, val_fraction=val_fraction,
                    recipes=list(recipes), normalizations=list(normalizations), config=config,
                    deterministic=deterministic,
                    resumed=resume, baselines=baselines, selected_settings=cfg)
    summary["seed"] = seed
    summary["provenance"] = provenance(seed, settings, [edges, features, labels])
    written = _write_outputs(out, gi, kept_index, kept_weight, summary, pred if plot else None,
                             plot)
    if kwargs:
        shutil.rmtree(kwargs["checkpoint_dir"], ignore_errors=True)
    say(f"[result] recipe {result.recipe!r}, validation accuracy {summary['val_acc']:.3f}; kept "
        f"{summary['edges']['original_kept']} of {summary['edges']['original']} edge entries "
        f"({summary['edges']['original_removed']} removed)"
        + (f", added {summary['edges']['new_kept']} of {summary['edges']['new_candidates']} "
           f"new candidate entries" if summary["edges"]["new_candidates"] else ""))
    if compared is not None:
        say(f"[compare] validation accuracy: learned {summary['val_acc']:.3f}, plain GCN "
            f"{compared['gcn']['val_acc']:.3f}, MLP without the graph "
            f"{compared['mlp']['val_acc']:.3f}: {compared['verdict']}")
        if "unlabelled_acc" in summary:
            say(f"[compare] accuracy on the unlabelled nodes: learned "
                f"{summary['unlabelled_acc']:.3f}, plain GCN "
                f"{compared['gcn']['unlabelled_acc']:.3f}, MLP "
                f"{compared['mlp']['unlabelled_acc']:.3f}")
    say(f"[result] wrote {', '.join(sorted(p.name for p in written))} to {out}")
    return summary


def _baselines(gi: GraphInput, y: Tensor, train: Tensor, val: Tensor,
               eval_mask: Optional[Tensor], seed: int,
               learned_val: Optional[float]) -> Dict[str, Any]:
    """The same-run baselines of :func:`learn_structure`: Kipf & Welling's GCN
    (:func:`~graphsparse.structure.fit_gcn`) on the input graph and on no
    graph (self-loops only: each layer is then a linear map, the network an
    MLP with the same width, dropout and optimizer), with the same split and
    seed, model selection on the same held-out nodes, and a verdict."""
    empty = gi.edge_index.new_empty(2, 0)
    runs = {"gcn": fit_gcn(gi.x, gi.edge_index, y, train, val, eval_mask, seed=seed),
            "mlp": fit_gcn(gi.x, empty, y, train, val, eval_mask, seed=seed)}
    out: Dict[str, Any] = {name: dict(val_acc=r.val_acc, selected_epoch=r.epoch)
                           for name, r in runs.items()}
    if eval_mask is not None:
        for name, r in runs.items():
            out[name]["unlabelled_acc"] = r.test_acc
    gcn, mlp = runs["gcn"].val_acc, runs["mlp"].val_acc
    learned = learned_val if learned_val is not None else float("nan")
    if gcn is None or mlp is None or learned != learned:
        out["verdict"] = "no held-out labels to compare on"
    elif learned > max(gcn, mlp):
        out["verdict"] = "the learned graph helps"
    elif learned == max(gcn, mlp):
        out["verdict"] = "the learned graph ties the best baseline"
    else:
        best = "the plain GCN" if gcn >= mlp else "the MLP (no graph)"
        out["verdict"] = f"the learned graph does not help here: {best} is better on validation"
    out["note"] = ("validation accuracy on the held-out labelled nodes, same split and seed; "
                   "'mlp' is the GCN on self-loops only")
    return out


def _summarize(gi: GraphInput, adj, kept_index: Tensor, kept_weight: Tensor, result, cfg,
               train: Tensor, val: Tensor, true_y: Optional[Tensor]) -> Dict[str, Any]:
    cand = adj.edge_index
    values = result.edge_values
    loops = cand[0] == cand[1]
    new = adj.new_mask
    alive = values > 0
    deg = torch.bincount(kept_index[1][kept_index[0] != kept_index[1]], minlength=gi.num_nodes)
    summary: Dict[str, Any] = dict(
        val_acc=result.val_acc,
        selected_epoch=result.epoch,
        recipe=result.recipe,
        edge_sparsity=result.edge_sparsity,    # of the gated edges: self-loops are always on
        edges=dict(
            candidates=int(cand.size(1)),
            original=int((~loops & ~new).sum()),
            original_kept=int((alive & ~loops & ~new).sum()),
            original_removed=int((~alive & ~loops & ~new).sum()),
            new_candidates=int(new.sum()),   # k-nearest-neighbour candidates not in the input
            new_kept=int((alive & new).sum()),
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
                   summary: Dict[str, Any], pred: Optional[Tensor], plot: bool) -> List[Path]:
    """Writes every output through a temporary file; ``summary.json`` last.
    On any error (Ctrl-C included) the files already written are removed, so
    the folder holds all the outputs or none."""
    text = json.dumps(summary, indent=2, allow_nan=False)   # before any file: fails early
    written: List[Path] = []
    try:
        if plot:
            from .plot import plot_learned_graph
            plot_learned_graph(gi, kept_index, kept_weight, out / "graph.png", pred)
            written.append(out / "graph.png")
        with atomic_open(out / "learned_edges.csv", newline="") as f:
            w = csv.writer(f)
            w.writerow(["source", "target", "weight"])
            for (j, i), a in zip(kept_index.t().tolist(), kept_weight.tolist(), strict=True):
                w.writerow([gi.node_ids[j], gi.node_ids[i], f"{a:.6g}"])
        written.append(out / "learned_edges.csv")
        from torch_geometric.data import Data
        data = Data(x=gi.x, edge_index=kept_index.cpu(), edge_weight=kept_weight.cpu(), y=gi.y,
                    num_nodes=gi.num_nodes)
        data.node_ids = list(gi.node_ids)
        with atomic_open(out / "learned_graph.pt", "wb") as f:
            torch.save(data, f)
        written.append(out / "learned_graph.pt")
        atomic_write_text(out / "summary.json", text)
        written.append(out / "summary.json")
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return written
