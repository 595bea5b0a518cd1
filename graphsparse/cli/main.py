"""``graphsparse learn``: learn a sparse structure for your own graph.

    graphsparse learn                                   # karate club demo
    graphsparse learn edges.csv --labels labels.csv [--features feats.csv]
    graphsparse learn graph.graphml                     # labels from node attribute 'label'
    graphsparse learn graph.gml --label-attr value      # GML: 'label' is the node's name
    graphsparse learn data.pt                           # a PyG Data saved with torch.save

Every input and setting is checked before training; a problem stops with
one line naming the file (and line) or the option, exit status 2. The output
folder must be new or empty (--overwrite replaces an earlier run's files).
Ctrl-C saves a checkpoint (when the trainer supports it) and prints the
command that resumes (--resume); exit status 130.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Sequence

# Only the standard library at import: the checks that need no torch (the
# output folder) answer before torch and PyG are imported (seconds).
_HEADER = {"auto": None, "yes": True, "no": False}
_OUTPUTS = ("graph.png", "learned_edges.csv", "learned_graph.pt", "summary.json")


def _learn_parser(sub, recipes: Optional[Sequence[str]] = None) -> None:
    p = sub.add_parser("learn", help="learn a sparse structure for a graph",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("edges", nargs="?", help="edge list (.csv/.tsv/.txt: source,target[,weight]), "
                   ".graphml, .gml, or .pt (PyG Data); omitted: the karate-club graph")
    p.add_argument("--features", help="CSV: node_id, feature columns (ids without an edge: "
                   "isolated nodes)")
    p.add_argument("--labels", help="CSV: node_id, label (no row, an empty label or -1: "
                   "unlabelled)")
    p.add_argument("--header", default="auto", choices=list(_HEADER),
                   help="whether the CSV files start with a header row (default: auto, "
                   "recognised by shape and logged)")
    p.add_argument("--directed", action="store_true", help="keep edge directions")
    p.add_argument("--label-attr", default=None, help="node attribute holding labels "
                   "(GraphML default: label; GML: required, 'label' is the node name)")
    p.add_argument("--out", default="results/learn", help="output folder, new or empty "
                   "(default: results/learn)")
    p.add_argument("--overwrite", action="store_true",
                   help="remove an earlier run's outputs from --out first")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run whose checkpoint is in --out")
    p.add_argument("--val-fraction", type=float, default=0.25,
                   help="labelled nodes held out for validation, in (0, 1) (default: 0.25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms only (torch.use_deterministic_algorithms; "
                   "for CUDA, CPU runs are deterministic already)")
    p.add_argument("--recipe", default="auto", choices=None if recipes is None else
                   ["auto", *recipes], help="training recipe (graphsparse.structure.RECIPES); "
                   "auto: the four GCN and residual ones (DEFAULT_RECIPES), the best on "
                   "validation (default); the +dagnn ones are opt-in (about 8x slower)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs, >= 1 (default: the recipe's own)")
    p.add_argument("--lam", type=float, default=None,
                   help="penalty weight lambda, finite and >= 0 (default: the recipe's own)")
    p.add_argument("--normalization", default=None,
                   choices=["sinkhorn", "balanced", "row", "sym", "auto"],
                   help="default: the recipe's own; auto: row and sym, chosen on validation "
                   "with the recipe (8 configurations with --recipe auto)")
    p.add_argument("--marginals", default=None, choices=["uniform", "degree"],
                   help="Sinkhorn's target row and column sums (with --normalization sinkhorn "
                   "or balanced): uniform (doubly stochastic, the paper's; default) or degree "
                   "(the input graph's degrees, in GCN's frame: starts at GCN's matrix)")
    p.add_argument("--knn", type=int, default=None, metavar="K",
                   help="add each node's K nearest neighbours by feature cosine as candidate "
                   "edges, so the learned graph can add edges (default: the recipe's own, 0)")
    p.add_argument("--no-baselines", action="store_true",
                   help="skip the same-run plain GCN and MLP the learned graph is compared to")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _resume_hint(argv: List[str], out: str) -> str:
    ck = Path(out) / ".checkpoint"
    if not ck.is_dir() or not any(ck.iterdir()):
        return ("graphsparse learn: interrupted before a checkpoint was saved; nothing to "
                "resume")
    again = [a for a in argv if a != "--resume"] + ["--resume"]
    return f"graphsparse learn: interrupted; resume with: graphsparse {shlex.join(again)}"


def _preflight_out(out: str, overwrite: bool, resume: bool) -> None:
    """The output-folder checks that need no torch, so that a bad ``--out``
    is reported at once; :func:`~graphsparse.utils.io.prepare_output_dir`
    checks again (and creates the folder) once the inputs are read."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ValueError(f"'--out' '{p}' is an existing file, not a folder; pass a folder path "
                         f"(it is created when missing)")
    base = p
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ValueError(f"'--out' '{p}': a part of the path ('{base}') is an existing file, "
                         f"not a folder; pass a folder path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"'--out' folder '{base}' is not writable; choose a folder you can "
                         f"write to, or fix its permissions")
    if p.is_dir() and not overwrite:
        keep = {".checkpoint", *_OUTPUTS} if resume else set()
        old = sorted(e for e in os.listdir(p) if e not in keep)
        if ".checkpoint" in old:
            raise ValueError(f"'--out' '{p}' holds the checkpoint of an interrupted run; pass "
                             f"--resume to continue it, or --overwrite to start over")
        if old:
            raise ValueError(f"'--out' '{p}' is not empty ({len(old)} entries: "
                             f"{', '.join(old[:5])}{', ...' if len(old) > 5 else ''}); choose "
                             f"a new folder, or pass --overwrite to remove the old outputs first")


def _parser(recipes: Optional[Sequence[str]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphsparse",
                                     description="Learn sparse structure inside neural networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    _learn_parser(sub, recipes)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:     # the full help lists the recipes
        from ..structure.train import RECIPES as all_recipes
        _parser(tuple(all_recipes)).parse_args(argv)
    args = _parser(None).parse_args(argv)
    if args.command == "learn":
        try:
            _preflight_out(args.out, args.overwrite, args.resume)
            from ..structure.learn import learn_structure
            from ..structure.train import DEFAULT_RECIPES, RECIPES
            if args.recipe != "auto" and args.recipe not in RECIPES:
                raise ValueError(f"'--recipe' must be 'auto' or one of {sorted(RECIPES)} (got "
                                 f"{args.recipe!r})")
            auto = args.normalization == "auto"
            config = {k: v for k, v in dict(epochs=args.epochs, lam=args.lam,
                                            normalization=None if auto else args.normalization,
                                            knn=args.knn, marginals=args.marginals).items()
                      if v is not None}
            chosen = DEFAULT_RECIPES if args.recipe == "auto" else (args.recipe,)
            learn_structure(args.edges, args.features, args.labels, out=args.out,
                            directed=args.directed, label_attr=args.label_attr,
                            val_fraction=args.val_fraction, config=config, seed=args.seed,
                            recipes=chosen, progress=not args.quiet, plot=not args.no_plot,
                            header=_HEADER[args.header], overwrite=args.overwrite,
                            resume=args.resume, deterministic=args.deterministic,
                            baselines=not args.no_baselines,
                            normalizations=("row", "sym") if auto else (None,))
        except ValueError as exc:     # GraphInputError included
            print(f"graphsparse learn: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(_resume_hint(argv, args.out), file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
