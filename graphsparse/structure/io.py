"""Reading a user's graph: edge lists, node features and labels from CSV/TSV,
networkx-readable files (edge list, GraphML, GML), a saved PyG ``Data``, or
the karate-club graph that networkx ships.

Everything becomes a :class:`GraphInput`: a PyG ``Data`` with integer node
indices plus the original node ids (strings) to map results back, and a log
of every change made to the input (nothing is dropped silently).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

PathLike = Union[str, Path]
HEADER_WORDS = {"source", "target", "src", "dst", "u", "v", "from", "to", "node1", "node2",
                "weight", "w", "node", "id", "node_id", "label", "class", "y"}
MAX_IDENTITY_FEATURES = 4096  # above this many nodes, degree features replace one-hot ids


class GraphInputError(ValueError):
    """A problem with a user's input file; the message names the file and line."""


@dataclass
class GraphInput:
    """A graph ready for structure learning.

    Attributes:
        edge_index (LongTensor): ``[2, E]``, both directions of every undirected edge.
        edge_weight (Tensor, optional): ``[E]`` input weights (unused by the gate,
            kept for export).
        x (Tensor): ``[N, F]`` node features.
        y (LongTensor): ``[N]`` labels, ``-1`` for unlabelled nodes.
        node_ids (list[str]): original id of node ``i``.
        classes (list[str]): original name of class ``c``.
        log (list[str]): every change made to the input, with counts.
    """
    edge_index: Tensor
    x: Tensor
    y: Tensor
    node_ids: List[str]
    classes: List[str]
    edge_weight: Optional[Tensor] = None
    log: List[str] = field(default_factory=list)
    feature_source: str = "file"

    @property
    def num_nodes(self) -> int:
        return len(self.node_ids)

    def to_data(self):
        from torch_geometric.data import Data
        return Data(x=self.x, edge_index=self.edge_index, y=self.y,
                    edge_weight=self.edge_weight, num_nodes=self.num_nodes)


def _delimiter(path: Path) -> Optional[str]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return ","
    if suffix in (".tsv", ".tab"):
        return "\t"
    return None  # any whitespace


def _rows(path: Path) -> List[Tuple[int, List[str]]]:
    """Non-empty, non-comment rows of a delimited text file with line numbers."""
    if not path.is_file():
        raise GraphInputError(f"{path}: file not found")
    delim = _delimiter(path)
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        lines = csv.reader(f, delimiter=delim) if delim else (ln.split() for ln in f)
        for lineno, row in enumerate(lines, start=1):
            row = [c.strip() for c in row]
            if not row or all(c == "" for c in row) or row[0].startswith("#"):
                continue
            out.append((lineno, row))
    return out


def _is_header(row: Sequence[str]) -> bool:
    return all(c.lower() in HEADER_WORDS for c in row[:2])


def _float(value: str, path: Path, lineno: int, what: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise GraphInputError(f"{path}:{lineno}: {what} {value!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise GraphInputError(f"{path}:{lineno}: {what} {value!r} is not finite")
    return v


def _finish(edges: List[Tuple[str, str, float]], node_ids: List[str], directed: bool,
            log: List[str], source: str) -> Tuple[Tensor, Tensor]:
    """Removes self-loops, merges duplicates, symmetrizes; logs every change."""
    index = {n: i for i, n in enumerate(node_ids)}
    seen: Dict[Tuple[int, int], float] = {}
    loops = dups = 0
    for u, v, w in edges:
        i, j = index[u], index[v]
        if i == j:
            loops += 1
            continue
        key = (i, j) if directed else (min(i, j), max(i, j))
        if key in seen:
            dups += 1
            continue
        seen[key] = w
    if loops:
        log.append(f"{source}: removed {loops} self-loop(s) (the model adds its own)")
    if dups:
        log.append(f"{source}: merged {dups} duplicate edge(s), keeping the first weight"
                   + ("" if directed else " (u-v and v-u count as one undirected edge)"))
    if not seen:
        raise GraphInputError(f"{source}: the graph has no edges (after removing self-loops)")
    pairs = torch.tensor(list(seen.keys()), dtype=torch.long).t()
    weights = torch.tensor(list(seen.values()), dtype=torch.float)
    if directed:
        return pairs, weights
    return torch.cat([pairs, pairs.flip(0)], 1), torch.cat([weights, weights])


def read_edge_list(path: PathLike, directed: bool = False, log: Optional[List[str]] = None
                   ) -> Tuple[List[str], Tensor, Tensor]:
    """Reads ``source, target[, weight]`` rows (CSV, TSV or whitespace).

    A first row made of column names (``source,target,weight``...) is skipped.
    Undirected by default: an edge given in both directions, or twice, is one
    edge (counted and logged). Self-loops are removed (logged).

    Returns:
        ``(node_ids, edge_index, edge_weight)``.
    """
    path, log = Path(path), log if log is not None else []
    rows = _rows(path)
    if rows and _is_header(rows[0][1]):
        rows = rows[1:]
    edges, node_ids, known = [], [], set()
    for lineno, row in rows:
        if len(row) not in (2, 3):
            raise GraphInputError(
                f"{path}:{lineno}: expected 'source, target[, weight]' (2 or 3 fields), "
                f"got {len(row)}: {row}")
        u, v = row[0], row[1]
        if u == "" or v == "":
            raise GraphInputError(f"{path}:{lineno}: empty node id")
        w = _float(row[2], path, lineno, "weight") if len(row) == 3 else 1.0
        for n in (u, v):
            if n not in known:
                known.add(n)
                node_ids.append(n)
        edges.append((u, v, w))
    if not edges:
        raise GraphInputError(f"{path}: no edges found")
    edge_index, edge_weight = _finish(edges, node_ids, directed, log, str(path))
    return node_ids, edge_index, edge_weight


def read_features(path: PathLike, node_ids: List[str]) -> Tensor:
    """Reads ``node_id, f1, f2, ...`` rows; every node needs a row."""
    path = Path(path)
    rows = _rows(path)
    index = {n: i for i, n in enumerate(node_ids)}
    if rows and any(not _numeric(c) for c in rows[0][1][1:]):
        rows = rows[1:]  # header
    if not rows:
        raise GraphInputError(f"{path}: no feature rows")
    width = len(rows[0][1]) - 1
    if width < 1:
        raise GraphInputError(f"{path}:{rows[0][0]}: expected 'node_id, feature, ...'")
    x = torch.zeros(len(node_ids), width)
    filled = torch.zeros(len(node_ids), dtype=torch.bool)
    for lineno, row in rows:
        if len(row) - 1 != width:
            raise GraphInputError(f"{path}:{lineno}: expected {width} features, got {len(row) - 1}")
        if row[0] not in index:
            raise GraphInputError(f"{path}:{lineno}: unknown node id {row[0]!r} (not in the graph)")
        i = index[row[0]]
        if filled[i]:
            raise GraphInputError(f"{path}:{lineno}: node {row[0]!r} has features twice")
        x[i] = torch.tensor([_float(c, path, lineno, "feature") for c in row[1:]])
        filled[i] = True
    if not filled.all():
        missing = [node_ids[i] for i in (~filled).nonzero().flatten()[:5].tolist()]
        raise GraphInputError(f"{path}: {int((~filled).sum())} node(s) have no features, "
                              f"e.g. {missing}")
    return x


def _numeric(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def read_labels(path: PathLike, node_ids: List[str]) -> Tuple[Tensor, List[str]]:
    """Reads ``node_id, label`` rows; nodes without a row are unlabelled (-1)."""
    path = Path(path)
    rows = _rows(path)
    if rows and _is_header(rows[0][1]):
        rows = rows[1:]
    index = {n: i for i, n in enumerate(node_ids)}
    raw: Dict[int, str] = {}
    for lineno, row in rows:
        if len(row) != 2:
            raise GraphInputError(f"{path}:{lineno}: expected 'node_id, label', got {row}")
        if row[0] not in index:
            raise GraphInputError(f"{path}:{lineno}: unknown node id {row[0]!r} (not in the graph)")
        i = index[row[0]]
        if i in raw and raw[i] != row[1]:
            raise GraphInputError(f"{path}:{lineno}: node {row[0]!r} has two labels")
        raw[i] = row[1]
    return _encode_labels(raw, len(node_ids), str(path))


def _encode_labels(raw: Dict[int, str], num_nodes: int, source: str) -> Tuple[Tensor, List[str]]:
    classes = sorted(set(raw.values()), key=lambda c: (not _numeric(c), float(c) if _numeric(c) else 0, c))
    if len(classes) < 2:
        raise GraphInputError(f"{source}: structure learning needs labels of at least two "
                              f"classes (got {len(classes)}: {classes})")
    code = {c: k for k, c in enumerate(classes)}
    y = torch.full((num_nodes,), -1, dtype=torch.long)
    for i, c in raw.items():
        y[i] = code[c]
    return y, classes


def default_features(edge_index: Tensor, num_nodes: int) -> Tuple[Tensor, str]:
    """Features for a graph that has none: one-hot node identity for up to
    4,096 nodes, else log-degree plus a one-hot degree bucket (32 buckets),
    which keeps memory O(N)."""
    if num_nodes <= MAX_IDENTITY_FEATURES:
        return torch.eye(num_nodes), "one-hot node identity"
    deg = torch.bincount(edge_index[0], minlength=num_nodes).float()
    bucket = torch.clamp(torch.log2(deg + 1).long(), max=31)
    return torch.cat([torch.log1p(deg)[:, None], torch.nn.functional.one_hot(bucket, 32).float()], 1), \
        "log-degree + one-hot degree bucket"


def read_networkx_file(path: PathLike, directed: bool = False, label_attr: str = "label",
                       log: Optional[List[str]] = None):
    """Reads an edge list / GraphML / GML file with networkx."""
    import networkx as nx
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".graphml":
            g = nx.read_graphml(path)
        elif suffix == ".gml":
            g = nx.read_gml(path, label="id")
        else:
            raise GraphInputError(f"{path}: unknown graph format {suffix!r} "
                                  f"(use .graphml, .gml, or a .csv/.tsv/.txt edge list)")
    except GraphInputError:
        raise
    except Exception as exc:
        raise GraphInputError(f"{path}: could not be parsed ({exc})") from exc
    return from_networkx(g, directed=directed, label_attr=label_attr, log=log, source=str(path))


def from_networkx(g, directed: bool = False, label_attr: str = "label",
                  log: Optional[List[str]] = None, source: str = "graph") -> GraphInput:
    """Builds a :class:`GraphInput` from a networkx graph. Node attribute
    ``label_attr`` gives labels (missing: unlabelled); every other numeric node
    attribute present on all nodes becomes a feature column."""
    log = log if log is not None else []
    node_ids = [str(n) for n in g.nodes()]
    if g.is_directed() and not directed:
        log.append(f"{source}: directed graph read as undirected (pass directed=True to keep directions)")
    edges = []
    for u, v, d in g.edges(data=True):
        w = d.get("weight", 1.0)
        edges.append((str(u), str(v), float(w)))
    edge_index, edge_weight = _finish(edges, node_ids, directed, log, source)
    attrs = [dict(d) for _, d in g.nodes(data=True)]
    raw = {i: str(a[label_attr]) for i, a in enumerate(attrs) if label_attr in a}
    y, classes = _encode_labels(raw, len(node_ids), source)
    keys = sorted({k for a in attrs for k in a if k != label_attr})
    cols = [k for k in keys if all(k in a and _numeric(str(a[k])) for a in attrs)]
    skipped = [k for k in keys if k not in cols]
    if skipped:
        log.append(f"{source}: node attribute(s) {skipped} not used as features "
                   f"(non-numeric or missing on some nodes)")
    if cols:
        x = torch.tensor([[float(a[k]) for k in cols] for a in attrs])
        how = f"node attributes {cols}"
    else:
        x, how = default_features(edge_index, len(node_ids))
        log.append(f"{source}: no numeric node attributes: using {how} as features")
    return GraphInput(edge_index, x, y, node_ids, classes, edge_weight, log, how)


def karate_club(labels_per_class: int = 4, seed: int = 0) -> GraphInput:
    """Zachary's karate club (34 members, 78 friendships), shipped with networkx.

    Labels are the two clubs after the split (``"Mr. Hi"`` / ``"Officer"``);
    only ``labels_per_class`` members of each club are labelled (always the two
    leaders, nodes 0 and 33, plus a seeded random choice), the rest are
    unlabelled. The true clubs of all members are kept in ``true_y`` for
    evaluation.
    """
    import networkx as nx
    g = nx.karate_club_graph()
    for _, d in g.nodes(data=True):
        d.pop("name", None)
    clubs = [d["club"] for _, d in g.nodes(data=True)]
    gen = torch.Generator().manual_seed(seed)
    labelled = set()
    for club, leader in (("Mr. Hi", 0), ("Officer", 33)):
        members = [i for i, c in enumerate(clubs) if c == club and i != leader]
        pick = torch.randperm(len(members), generator=gen)[: labels_per_class - 1].tolist()
        labelled |= {leader, *[members[k] for k in pick]}
    h = nx.Graph()
    h.add_nodes_from((n, {"label": clubs[n]} if n in labelled else {}) for n in g.nodes())
    h.add_edges_from(g.edges())
    gi = from_networkx(h, source="karate club")
    gi.log.append(f"karate club: {len(labelled)} of 34 members labelled "
                  f"({labels_per_class} per club)")
    gi.true_y = torch.tensor([gi.classes.index(c) for c in clubs])
    return gi


def read_data_file(path: PathLike, log: Optional[List[str]] = None) -> GraphInput:
    """Reads a PyG ``Data`` saved with ``torch.save`` (``x``, ``edge_index``,
    ``y`` with -1 or a ``label_mask`` for unlabelled nodes).

    .. warning:: this unpickles the file: only load files you trust.
    """
    path = Path(path)
    log = log if log is not None else []
    try:
        data = torch.load(path, weights_only=False)
    except Exception as exc:
        raise GraphInputError(f"{path}: not a readable torch.save file ({exc})") from exc
    for attr in ("edge_index", "y"):
        if getattr(data, attr, None) is None:
            raise GraphInputError(f"{path}: the saved Data has no '{attr}'")
    n = data.num_nodes
    ids = [str(i) for i in range(n)]
    y = data.y.long().clone()
    if getattr(data, "label_mask", None) is not None:
        y[~data.label_mask.bool()] = -1
    edges = [(str(u), str(v), 1.0) for u, v in data.edge_index.t().tolist()]
    edge_index, edge_weight = _finish(edges, ids, False, log, str(path))
    raw = {i: str(int(c)) for i, c in enumerate(y.tolist()) if c >= 0}
    y, classes = _encode_labels(raw, n, str(path))
    if getattr(data, "x", None) is not None:
        x, how = data.x.float(), "Data.x"
    else:
        x, how = default_features(edge_index, n)
    return GraphInput(edge_index, x, y, ids, classes, edge_weight, log, how)


def read_graph_input(edges: Optional[PathLike] = None, features: Optional[PathLike] = None,
                     labels: Optional[PathLike] = None, directed: bool = False,
                     label_attr: str = "label") -> GraphInput:
    """One entry point for every input form.

    * ``edges`` a ``.csv``/``.tsv``/``.txt``/``.edgelist`` edge list, with
      optional ``features`` and ``labels`` CSVs;
    * ``edges`` a ``.graphml`` or ``.gml`` file (labels from node attribute
      ``label_attr``, numeric attributes as features);
    * ``edges`` a ``.pt`` file holding a PyG ``Data``;
    * nothing: the karate-club graph.
    """
    if edges is None:
        if features is not None or labels is not None:
            raise GraphInputError("'features' and 'labels' need an edge list ('edges')")
        return karate_club()
    path = Path(edges)
    suffix = path.suffix.lower()
    log: List[str] = []
    if suffix == ".pt":
        return read_data_file(path, log)
    if suffix in (".graphml", ".gml"):
        gi = read_networkx_file(path, directed, label_attr, log)
        if labels is not None:
            gi.y, gi.classes = read_labels(labels, gi.node_ids)
        if features is not None:
            gi.x, gi.feature_source = read_features(features, gi.node_ids), str(features)
        return gi
    node_ids, edge_index, edge_weight = read_edge_list(path, directed, log)
    if labels is None:
        raise GraphInputError(f"{path}: structure learning needs labels for some nodes "
                              f"('labels' CSV: node_id, label)")
    y, classes = read_labels(labels, node_ids)
    if features is not None:
        x, how = read_features(features, node_ids), str(features)
    else:
        x, how = default_features(edge_index, len(node_ids))
        log.append(f"no features given: using {how}")
    return GraphInput(edge_index, x, y, node_ids, classes, edge_weight, log, how)
