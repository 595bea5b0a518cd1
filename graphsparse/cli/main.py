"""``graphsparse learn``: learn a sparse structure for your own graph.

    graphsparse learn                                   # karate club demo
    graphsparse learn edges.csv --labels labels.csv [--features feats.csv]
    graphsparse learn graph.graphml                     # labels from node attribute 'label'
    graphsparse learn data.pt                           # a PyG Data saved with torch.save
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from ..structure.io import GraphInputError
from ..structure.train import RECIPES, STRUCTURE_DEFAULTS


def _learn_parser(sub) -> None:
    p = sub.add_parser("learn", help="learn a sparse structure for a graph",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("edges", nargs="?", help="edge list (.csv/.tsv/.txt: source,target[,weight]), "
                   ".graphml, .gml, or .pt (PyG Data); omitted: the karate-club graph")
    p.add_argument("--features", help="CSV: node_id, feature columns")
    p.add_argument("--labels", help="CSV: node_id, label (nodes without a row are unlabelled)")
    p.add_argument("--directed", action="store_true", help="keep edge directions")
    p.add_argument("--label-attr", default="label", help="node attribute holding labels "
                   "in GraphML/GML files (default: label)")
    p.add_argument("--out", default="results/learn", help="output folder")
    p.add_argument("--val-fraction", type=float, default=0.25,
                   help="labelled nodes held out for validation (default: 0.25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe", default="auto", choices=["auto", *RECIPES],
                   help="training recipe; auto: all of them, the best on validation (default)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default: the recipe's own)")
    p.add_argument("--lam", type=float, default=None,
                   help="penalty weight lambda (default: the recipe's own)")
    p.add_argument("--normalization", default=None,
                   choices=["sinkhorn", "balanced", "row", "sym"],
                   help=f"default: {STRUCTURE_DEFAULTS['normalization']}")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="graphsparse",
                                     description="Learn sparse structure inside neural networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    _learn_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "learn":
        from ..structure.learn import learn_structure
        config = {k: v for k, v in dict(epochs=args.epochs, lam=args.lam,
                                        normalization=args.normalization).items()
                  if v is not None}
        recipes = tuple(RECIPES) if args.recipe == "auto" else (args.recipe,)
        try:
            learn_structure(args.edges, args.features, args.labels, out=args.out,
                            directed=args.directed, label_attr=args.label_attr,
                            val_fraction=args.val_fraction, config=config, seed=args.seed,
                            recipes=recipes, progress=not args.quiet, plot=not args.no_plot)
        except (GraphInputError, ValueError) as exc:
            print(f"graphsparse learn: error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
