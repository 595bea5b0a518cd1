"""Reading a user's graph: edge lists, node features and labels from CSV/TSV,
GraphML and GML files, a saved PyG ``Data``, or the karate-club graph that
networkx ships.

Everything becomes a :class:`GraphInput`: a PyG ``Data`` with integer node
indices plus the original node ids (strings) to map results back, and a log
of every change made to the input (nothing is dropped silently). Every reader
checks its input completely before any training starts:

* non-finite numbers (features, weights, labels) stop with the file, line or
  node and attribute;
* labels: ``-1`` and an empty value mean *unlabelled* in every format; labels
  that are numbers must be whole numbers (``1.0`` is class ``1``, ``1.5`` is
  an error, never truncated);
* a CSV header is recognised by its shape (a non-numeric field in a column
  whose other rows are all numeric, or an edge between two ids that appear
  in no other row) or declared with ``header=True/False``; either way it is
  logged;
* nodes that have no edge can be declared in the features file (or, without
  one, in the labels file): they become isolated nodes (logged);
* edge weights are read, checked and kept (``edge_weight``) but not used by
  structure learning, which learns its own weights; that is logged;
* a ``.pt`` file is loaded with ``torch.load(weights_only=True)`` admitting
  exactly the PyG classes a saved ``Data`` consists of: no code in the file
  can run, and a file that needs anything else is refused with the reason;
* files that are not UTF-8 text are reported with file and line.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

PathLike = Union[str, Path]
MAX_IDENTITY_FEATURES = 4096  # above this many nodes, degree features replace one-hot ids
UNLABELLED = ("", "-1")       # label values that mean "unlabelled" in every format


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
    true_y: Optional[Tensor] = None   # every node's class, when known (the karate club)

    @property
    def num_nodes(self) -> int:
        return len(self.node_ids)

    def to_data(self):
        from torch_geometric.data import Data
        return Data(x=self.x, edge_index=self.edge_index, y=self.y,
                    edge_weight=self.edge_weight, num_nodes=self.num_nodes)


# --------------------------------------------------------------------------- text files

def _delimiter(path: Path) -> Optional[str]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return ","
    if suffix in (".tsv", ".tab"):
        return "\t"
    return None  # any whitespace


def _read_text(path: Path) -> str:
    """The file as text (UTF-8, an initial byte-order mark dropped); a file
    that is not UTF-8 stops with the line of the first bad byte."""
    if not path.is_file():
        raise GraphInputError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise GraphInputError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {col}); "
            f"save the file as UTF-8 text (a binary file is not a {path.suffix or 'text'} "
            f"file)") from None


def _rows(path: Path) -> List[Tuple[int, List[str]]]:
    """Non-empty, non-comment rows of a delimited text file with line numbers."""
    text = _read_text(path)
    delim = _delimiter(path)
    out = []
    if delim:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
        try:
            for row in reader:
                row = [c.strip() for c in row]
                if not row or all(c == "" for c in row) or row[0].startswith("#"):
                    continue
                out.append((reader.line_num, row))
        except csv.Error as exc:
            raise GraphInputError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            row = line.split()
            if row and not row[0].startswith("#"):
                out.append((lineno, row))
    return out


def _numeric(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def _float(value: str, path: Path, lineno: int, what: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise GraphInputError(f"{path}:{lineno}: {what} {value!r} is not a number") from None
    if not math.isfinite(v):
        raise GraphInputError(f"{path}:{lineno}: {what} {value!r} is not finite")
    return v


def _shape_header(rows: List[Tuple[int, List[str]]], skip_empty: bool = False) -> Optional[str]:
    """Why the first row looks like a header by its shape, or None: one of
    its fields is non-numeric in a column whose other rows are all numeric."""
    if len(rows) < 2:
        return None
    first = rows[0][1]
    for c, value in enumerate(first):
        if _numeric(value) or (skip_empty and value == ""):
            continue
        rest = [r[c] for _, r in rows[1:] if c < len(r) and not (skip_empty and r[c] in UNLABELLED)]
        if rest and all(_numeric(v) for v in rest):
            return f"{value!r} is not a number while column {c + 1} of every other row is"
    return None


def _drop_header(rows: List[Tuple[int, List[str]]], header: Optional[bool], reason: Optional[str],
                 path: Path, log: List[str]) -> List[Tuple[int, List[str]]]:
    if not rows or header is False:
        return rows
    lineno, first = rows[0]
    if header:
        log.append(f"{path}:{lineno}: first row {first} skipped as a header (--header yes)")
        return rows[1:]
    if reason is None:
        return rows
    log.append(f"{path}:{lineno}: first row {first} read as a header ({reason}); pass "
               f"--header no (header=False) to read it as data")
    return rows[1:]


# --------------------------------------------------------------------------- edges

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


def _weights_note(source: str, what: str) -> str:
    return (f"{source}: {what} read and kept in edge_weight, but not used for learning: the "
            f"gate learns its own edge weights from the graph's structure")


def read_edge_list(path: PathLike, directed: bool = False, log: Optional[List[str]] = None,
                   header: Optional[bool] = None) -> Tuple[List[str], Tensor, Tensor]:
    """Reads ``source, target[, weight]`` rows (CSV, TSV or whitespace).

    A first row of column names is recognised by its shape and skipped
    (logged): a non-numeric field where the other rows are numeric
    (``from_id,to_id`` above numeric ids, ``weight`` above numbers), or two
    ids that appear in no other row (``paper,cites`` above string ids).
    ``header=True`` / ``False`` decides it instead. Undirected by default: an
    edge given in both directions, or twice, is one edge (counted and
    logged). Self-loops are removed (logged). Weights must be finite; they
    are kept but not used for learning (logged).

    Returns:
        ``(node_ids, edge_index, edge_weight)``.
    """
    path, log = Path(path), log if log is not None else []
    rows = _rows(path)
    reason = _shape_header(rows)
    if reason is None and len(rows) > 2 and len(rows[0][1]) >= 2:
        u, v = rows[0][1][:2]
        rest = {n for _, r in rows[1:] for n in r[:2]}
        if not (_numeric(u) and _numeric(v)) and u not in rest and v not in rest:
            reason = f"{u!r} and {v!r} appear in no other row"
    rows = _drop_header(rows, header, reason, path, log)
    edges, node_ids, known = [], [], set()
    weighted = False
    for lineno, row in rows:
        if len(row) not in (2, 3):
            raise GraphInputError(
                f"{path}:{lineno}: expected 'source, target[, weight]' (2 or 3 fields), "
                f"got {len(row)}: {row}")
        u, v = row[0], row[1]
        if u == "" or v == "":
            raise GraphInputError(f"{path}:{lineno}: empty node id")
        w = 1.0
        if len(row) == 3 and row[2] != "":
            w, weighted = _float(row[2], path, lineno, "weight"), True
        for n in (u, v):
            if n not in known:
                known.add(n)
                node_ids.append(n)
        edges.append((u, v, w))
    if not edges:
        raise GraphInputError(f"{path}: no edges found")
    if weighted:
        log.append(_weights_note(str(path), "edge weights (3rd column)"))
    edge_index, edge_weight = _finish(edges, node_ids, directed, log, str(path))
    return node_ids, edge_index, edge_weight


# --------------------------------------------------------------------------- node files

def _add_isolated(new: List[str], node_ids: List[str], path: Path, log: List[str],
                  what: str) -> None:
    if new:
        node_ids.extend(new)
        log.append(f"{path}: {len(new)} node(s) with no edge declared by the {what} file, "
                   f"added as isolated nodes (e.g. {new[:5]})")


def read_features(path: PathLike, node_ids: List[str], log: Optional[List[str]] = None,
                  header: Optional[bool] = None, declare: bool = False) -> Tensor:
    """Reads ``node_id, f1, f2, ...`` rows; every node needs a row. With
    ``declare``, rows of ids not in ``node_ids`` add isolated nodes (appended
    to ``node_ids``, logged); otherwise they are an error. A first row with a
    non-numeric feature is a header (logged)."""
    path, log = Path(path), log if log is not None else []
    rows = _rows(path)
    reason = _shape_header(rows)
    if reason is None and rows and any(not _numeric(c) for c in rows[0][1][1:]):
        reason = "non-numeric feature names"
    rows = _drop_header(rows, header, reason, path, log)
    if not rows:
        raise GraphInputError(f"{path}: no feature rows")
    width = len(rows[0][1]) - 1
    if width < 1:
        raise GraphInputError(f"{path}:{rows[0][0]}: expected 'node_id, feature, ...'")
    known = set(node_ids)
    new = []
    for lineno, row in rows:
        if row[0] == "":
            raise GraphInputError(f"{path}:{lineno}: empty node id")
        if row[0] not in known:
            if not declare:
                raise GraphInputError(f"{path}:{lineno}: unknown node id {row[0]!r} "
                                      f"(not in the graph)")
            known.add(row[0])
            new.append(row[0])
    _add_isolated(new, node_ids, path, log, "features")
    index = {n: i for i, n in enumerate(node_ids)}
    x = torch.zeros(len(node_ids), width)
    filled = torch.zeros(len(node_ids), dtype=torch.bool)
    for lineno, row in rows:
        if len(row) - 1 != width:
            raise GraphInputError(f"{path}:{lineno}: expected {width} features, got {len(row) - 1}")
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


def _label_value(value: Any, where: str) -> Optional[str]:
    """A label as a class name, or None for unlabelled (``-1``, empty,
    ``None``). Numbers must be whole: ``1.0`` -> ``"1"``; ``1.5`` and
    non-finite numbers are errors (a label is never truncated)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        v = float(value)
    else:
        s = str(value).strip()
        if s in UNLABELLED:
            return None
        if not _numeric(s):
            return s
        v = float(s)
    if not math.isfinite(v):
        raise GraphInputError(f"{where}: label {value!r} is not finite; leave it empty or -1 "
                              f"for an unlabelled node")
    if v != int(v):
        raise GraphInputError(f"{where}: label {value!r} is not a whole number; class labels "
                              f"are names or integers (a fractional label is not truncated)")
    return None if int(v) == -1 else str(int(v))


def read_labels(path: PathLike, node_ids: List[str], log: Optional[List[str]] = None,
                header: Optional[bool] = None, declare: bool = False
                ) -> Tuple[Tensor, List[str]]:
    """Reads ``node_id, label`` rows; nodes without a row, and rows whose
    label is empty or ``-1``, are unlabelled (``y = -1``). With ``declare``,
    rows of ids not in ``node_ids`` add isolated nodes (logged); otherwise
    they are an error. A header row is recognised by its shape (logged)."""
    path, log = Path(path), log if log is not None else []
    rows = _rows(path)
    reason = _shape_header(rows, skip_empty=True)
    if reason is None and len(rows) > 1 and len(rows[0][1]) == 2:
        first_id, first_label = rows[0][1]
        if first_id not in set(node_ids) and \
                first_label not in {r[1] for _, r in rows[1:] if len(r) > 1}:
            reason = (f"{first_id!r} is not a node of the graph and {first_label!r} is no other "
                      f"row's class")
    rows = _drop_header(rows, header, reason, path, log)
    known = set(node_ids)
    new: List[str] = []
    parsed: List[Tuple[int, str, Optional[str]]] = []
    unlabelled = 0
    for lineno, row in rows:
        if len(row) not in (1, 2):
            raise GraphInputError(f"{path}:{lineno}: expected 'node_id, label', got {row}")
        nid = row[0]
        if nid == "":
            raise GraphInputError(f"{path}:{lineno}: empty node id")
        lab = _label_value(row[1] if len(row) == 2 else "", f"{path}:{lineno}")
        unlabelled += int(lab is None)
        if nid not in known:
            if not declare:
                raise GraphInputError(f"{path}:{lineno}: unknown node id {nid!r} (not in the "
                                      f"graph{' nor in the features file' if node_ids else ''})")
            known.add(nid)
            new.append(nid)
        parsed.append((lineno, nid, lab))
    _add_isolated(new, node_ids, path, log, "labels")
    if unlabelled:
        log.append(f"{path}: {unlabelled} row(s) with an empty or -1 label read as unlabelled")
    index = {n: i for i, n in enumerate(node_ids)}
    raw: Dict[int, str] = {}
    for lineno, nid, lab in parsed:
        if lab is None:
            continue
        i = index[nid]
        if i in raw and raw[i] != lab:
            raise GraphInputError(f"{path}:{lineno}: node {nid!r} has two labels "
                                  f"({raw[i]!r} and {lab!r})")
        raw[i] = lab
    return _encode_labels(raw, len(node_ids), str(path))


def _encode_labels(raw: Dict[int, str], num_nodes: int, source: str) -> Tuple[Tensor, List[str]]:
    classes = sorted(set(raw.values()),
                     key=lambda c: (not _numeric(c), float(c) if _numeric(c) else 0, c))
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
    onehot = torch.nn.functional.one_hot(bucket, 32).float()
    return torch.cat([torch.log1p(deg)[:, None], onehot], 1), "log-degree + one-hot degree bucket"


# --------------------------------------------------------------------------- GraphML / GML

_LINE = re.compile(r"line (\d+)")


def read_networkx_file(path: PathLike, directed: bool = False, label_attr: Optional[str] = None,
                       log: Optional[List[str]] = None, labels_given: bool = False
                       ) -> GraphInput:
    """Reads a GraphML or GML file with networkx.

    GraphML: classes from node attribute ``label_attr`` (default ``"label"``).
    GML: the ``label`` attribute is the node's *name* (used as its id, never
    as a class or feature); the class attribute must be named with
    ``label_attr`` unless a labels file is given (``labels_given``).
    """
    import networkx as nx
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".graphml", ".gml"):
        raise GraphInputError(f"{path}: unknown graph format {suffix!r} "
                              f"(use .graphml, .gml, or a .csv/.tsv/.txt edge list)")
    if suffix == ".gml" and label_attr == "label":
        raise GraphInputError(f"{path}: in GML the 'label' attribute is the node's name, not "
                              f"its class; pass --label-attr naming the class attribute")
    _read_text(path)   # not UTF-8: file and line
    try:
        if suffix == ".graphml":
            g = nx.read_graphml(path)
        else:
            g = nx.read_gml(path, label="id")
    except Exception as exc:
        m = _LINE.search(str(exc))
        where = f"{path}:{m.group(1)}" if m else str(path)
        raise GraphInputError(f"{where}: could not be parsed as {suffix[1:].upper()} "
                              f"({type(exc).__name__}: {exc})") from None
    log = log if log is not None else []
    if suffix == ".gml":
        names = [d.get("label") for _, d in g.nodes(data=True)]
        if all(n is not None for n in names) and len(set(map(str, names))) == len(names):
            g = nx.relabel_nodes(g, {n: str(d["label"]) for n, d in g.nodes(data=True)})
        elif any(n is not None for n in names):
            log.append(f"{path}: node 'label' (name) missing or repeated: GML ids used as "
                       f"node ids")
        for _, d in g.nodes(data=True):
            d.pop("label", None)
        if label_attr is None and not labels_given:
            attrs = sorted({k for _, d in g.nodes(data=True) for k in d})
            raise GraphInputError(f"{path}: which GML node attribute holds the class? pass "
                                  f"--label-attr (attributes present: {attrs}), or a labels "
                                  f"file with --labels")
    elif label_attr is None:
        label_attr = "label"
    return from_networkx(g, directed=directed, label_attr=None if labels_given else label_attr,
                         log=log, source=str(path),
                         exclude=(label_attr,) if label_attr else ())


def from_networkx(g, directed: bool = False, label_attr: Optional[str] = "label",
                  log: Optional[List[str]] = None, source: str = "graph",
                  exclude: Sequence[str] = ()) -> GraphInput:
    """Builds a :class:`GraphInput` from a networkx graph. Node attribute
    ``label_attr`` gives labels (missing, empty or ``-1``: unlabelled;
    ``None``: no labels, all ``-1``, to be set from a labels file); every
    other numeric node attribute present on all nodes (and not in
    ``exclude``) becomes a feature column. Non-finite attribute values and
    edge weights are errors naming the node or edge."""
    log = log if log is not None else []
    node_ids = [str(n) for n in g.nodes()]
    if g.is_directed() and not directed:
        log.append(f"{source}: directed graph read as undirected (pass directed=True to keep "
                   f"directions)")
    edges = []
    weighted, other = False, set()
    for u, v, d in g.edges(data=True):
        w = d.get("weight", 1.0)
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise GraphInputError(f"{source}: edge ({u!r}, {v!r}) has weight {w!r}, not a "
                                  f"number") from None
        if not math.isfinite(w):
            raise GraphInputError(f"{source}: edge ({u!r}, {v!r}) has weight {w}, not finite")
        weighted |= "weight" in d
        other |= set(d) - {"weight"}
        edges.append((str(u), str(v), w))
    if weighted:
        log.append(_weights_note(source, "edge attribute 'weight'"))
    if other:
        log.append(f"{source}: edge attribute(s) {sorted(other)} not used")
    edge_index, edge_weight = _finish(edges, node_ids, directed, log, source)
    attrs = [dict(d) for _, d in g.nodes(data=True)]
    if label_attr is not None:
        raw = {}
        for i, a in enumerate(attrs):
            lab = _label_value(a.get(label_attr), f"{source}: node {node_ids[i]!r}")
            if lab is not None:
                raw[i] = lab
        y, classes = _encode_labels(raw, len(node_ids), f"{source} (node attribute "
                                                         f"{label_attr!r})")
    else:
        y, classes = torch.full((len(node_ids),), -1, dtype=torch.long), []
    drop = {label_attr, *exclude}
    keys = sorted({k for a in attrs for k in a if k not in drop})
    cols = [k for k in keys if all(k in a and not isinstance(a[k], bool) and _numeric(str(a[k]))
                                   for a in attrs)]
    skipped = [k for k in keys if k not in cols]
    if skipped:
        log.append(f"{source}: node attribute(s) {skipped} not used as features "
                   f"(non-numeric or missing on some nodes)")
    if cols:
        x = torch.tensor([[float(a[k]) for k in cols] for a in attrs], dtype=torch.float)
        bad = (~torch.isfinite(x)).nonzero()
        if bad.numel():
            i, k = bad[0].tolist()
            raise GraphInputError(f"{source}: node {node_ids[i]!r} has attribute {cols[k]!r} = "
                                  f"{attrs[i][cols[k]]!r}, not finite ({bad.size(0)} non-finite "
                                  f"value(s) in all); fix or remove them")
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


# --------------------------------------------------------------------------- .pt

def _data_classes() -> list:
    """Exactly the classes a ``torch.save``-d PyG ``Data`` consists of."""
    from torch_geometric.data import Data
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage
    return [Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]


@contextlib.contextmanager
def _only_data_globals() -> Iterator[None]:
    """Within the block, ``weights_only`` loading admits torch's own types
    plus exactly :func:`_data_classes`: the process-wide allow-list (to which
    PyG adds many classes on import) is set aside and restored after."""
    from torch import serialization as ser
    saved = ser.get_safe_globals()
    ser.clear_safe_globals()
    try:
        ser.add_safe_globals(_data_classes())
        yield
    finally:
        ser.clear_safe_globals()
        ser.add_safe_globals(saved)


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|callable ([\w.]+)|Unsupported class ([\w.]+)")


def load_data_file(path: PathLike):
    """``torch.load(path, weights_only=True)`` admitting only the PyG classes
    of a saved ``Data``: nothing in the file can run. A file that needs other
    classes or functions is refused, naming the first one."""
    path = Path(path)
    if not path.is_file():
        raise GraphInputError(f"{path}: file not found")
    try:
        with _only_data_globals():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "Unsupported operand" in msg:      # not a pickle at all
            raise GraphInputError(f"{path}: not a readable torch.save file (neither a zip "
                                  f"archive nor a pickle)") from None
        m = _GLOBAL.search(msg)
        what = next((g for g in m.groups() if g), None) if m else None
        need = f"'{what}'" if what else "objects other than tensors and a PyG Data"
        raise GraphInputError(
            f"{path}: refused: the file needs {need}, which a saved PyG Data (x, edge_index, y "
            f"tensors) does not; graphsparse loads .pt files with weights_only=True so that no "
            f"code in them can run. Save Data(x=..., edge_index=..., y=...) with plain tensors, "
            f"or give the graph as CSV files") from None
    except Exception as exc:
        raise GraphInputError(f"{path}: not a readable torch.save file ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _tensor_attr(data, name: str, path: Path) -> Optional[Tensor]:
    value = getattr(data, name, None)
    if value is not None and not isinstance(value, Tensor):
        raise GraphInputError(f"{path}: Data.{name} is a {type(value).__name__}, not a tensor")
    return value


def read_data_file(path: PathLike, log: Optional[List[str]] = None) -> GraphInput:
    """Reads a PyG ``Data`` saved with ``torch.save`` (``x``, ``edge_index``,
    ``y`` with ``-1`` or a ``label_mask`` for unlabelled nodes; optional
    ``edge_weight`` and ``node_ids``), loaded safely (:func:`load_data_file`)
    and checked: ``edge_index`` an integer ``[2, E]`` in range, ``x`` finite
    with one row per node, ``y`` whole numbers (floats are not truncated)."""
    from torch_geometric.data import Data
    path = Path(path)
    log = log if log is not None else []
    data = load_data_file(path)
    if not isinstance(data, Data):
        raise GraphInputError(f"{path}: holds a {type(data).__name__}, not a PyG Data; save "
                              f"torch_geometric.data.Data(x=..., edge_index=..., y=...)")
    ei = _tensor_attr(data, "edge_index", path)
    y = _tensor_attr(data, "y", path)
    x = _tensor_attr(data, "x", path)
    if ei is None:
        raise GraphInputError(f"{path}: the saved Data has no 'edge_index'")
    if y is None:
        raise GraphInputError(f"{path}: the saved Data has no 'y'")
    n = int(data.num_nodes)
    if ei.dim() != 2 or ei.size(0) != 2 or ei.is_floating_point() or ei.is_complex():
        raise GraphInputError(f"{path}: Data.edge_index must be an integer tensor [2, E] (got "
                              f"{ei.dtype} {tuple(ei.shape)})")
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
        raise GraphInputError(f"{path}: Data.edge_index has entries outside [0, {n}) "
                              f"(min {int(ei.min())}, max {int(ei.max())})")
    if y.dim() != 1 or y.numel() != n:
        raise GraphInputError(f"{path}: Data.y must have one entry per node ({n}) (got shape "
                              f"{tuple(y.shape)})")
    if y.is_floating_point():
        if not bool(torch.isfinite(y).all()):
            raise GraphInputError(f"{path}: Data.y has {int((~torch.isfinite(y)).sum())} "
                                  f"non-finite value(s); use -1 for unlabelled nodes")
        if not bool((y == y.round()).all()):
            i = int((y != y.round()).nonzero()[0])
            raise GraphInputError(f"{path}: Data.y[{i}] = {float(y[i])} is not a whole number; "
                                  f"class labels must be integers (not truncated)")
        log.append(f"{path}: Data.y is {y.dtype} with whole values: read as class integers")
    y = y.long().clone()
    if int(y.min()) < -1:
        raise GraphInputError(f"{path}: Data.y has value {int(y.min())}; labels are >= 0, "
                              f"-1 for unlabelled nodes")
    mask = _tensor_attr(data, "label_mask", path)
    if mask is not None:
        if mask.shape != (n,):
            raise GraphInputError(f"{path}: Data.label_mask must have shape [{n}] (got "
                                  f"{tuple(mask.shape)})")
        y[~mask.bool()] = -1
    if x is not None:
        if x.dim() != 2 or x.size(0) != n:
            raise GraphInputError(f"{path}: Data.x must be [num_nodes={n}, F] (got "
                                  f"{tuple(x.shape)})")
        x = x.float()
        if not bool(torch.isfinite(x).all()):
            bad = (~torch.isfinite(x)).nonzero()
            raise GraphInputError(f"{path}: Data.x has {bad.size(0)} non-finite value(s) (NaN or "
                                  f"inf), e.g. at node {int(bad[0, 0])}, column {int(bad[0, 1])}")
    ew = _tensor_attr(data, "edge_weight", path)
    weights = torch.ones(ei.size(1))
    if ew is not None:
        if ew.shape != (ei.size(1),) or not bool(torch.isfinite(ew.float()).all()):
            raise GraphInputError(f"{path}: Data.edge_weight must be finite with one entry per "
                                  f"edge ({ei.size(1)}) (got shape {tuple(ew.shape)})")
        weights = ew.float()
        log.append(_weights_note(str(path), "Data.edge_weight"))
    ids_attr = getattr(data, "node_ids", None)
    ids = [str(i) for i in range(n)]
    if isinstance(ids_attr, (list, tuple)) and len(ids_attr) == n and \
            len(set(map(str, ids_attr))) == n:
        ids = [str(i) for i in ids_attr]
    extra = sorted(set(data.keys()) - {"x", "edge_index", "y", "label_mask", "edge_weight",
                                       "node_ids", "num_nodes"})
    if extra:
        log.append(f"{path}: Data attribute(s) {extra} not used")
    edges = [(ids[u], ids[v], w)
             for (u, v), w in zip(ei.t().tolist(), weights.tolist(), strict=True)]
    log.append(f"{path}: edges read as undirected (a saved Data is treated as undirected)")
    edge_index, edge_weight = _finish(edges, ids, False, log, str(path))
    raw = {i: str(c) for i, c in enumerate(y.tolist()) if c >= 0}
    y, classes = _encode_labels(raw, n, str(path))
    if x is not None:
        how = "Data.x"
    else:
        x, how = default_features(edge_index, n)
        log.append(f"{path}: no Data.x: using {how} as features")
    return GraphInput(edge_index, x, y, ids, classes, edge_weight if ew is not None else None,
                      log, how)


# --------------------------------------------------------------------------- entry point

def read_graph_input(edges: Optional[PathLike] = None, features: Optional[PathLike] = None,
                     labels: Optional[PathLike] = None, directed: bool = False,
                     label_attr: Optional[str] = None, header: Optional[bool] = None
                     ) -> GraphInput:
    """One entry point for every input form.

    * ``edges`` a ``.csv``/``.tsv``/``.txt``/``.edgelist`` edge list, with
      ``labels`` and optional ``features`` CSVs;
    * ``edges`` a ``.graphml`` file (labels from node attribute
      ``label_attr``, default ``"label"``; numeric attributes as features) or
      ``.gml`` file (``label_attr`` required, GML's ``label`` is the node
      name), each optionally with ``labels`` / ``features`` CSVs;
    * ``edges`` a ``.pt`` file holding a PyG ``Data`` (``features``,
      ``labels``, ``directed``, ``label_attr`` and ``header`` do not apply
      and are refused);
    * nothing: the karate-club graph.

    Args:
        header (bool, optional): whether the CSV files start with a header
            row; ``None`` (default): recognised by shape, logged.
    """
    if edges is None:
        given = [n for n, v in (("features", features), ("labels", labels),
                                ("directed", directed or None), ("label_attr", label_attr),
                                ("header", header)) if v is not None]
        if given:
            raise GraphInputError(f"{given} need an input graph ('edges'); the karate-club "
                                  f"demo takes none of them")
        return karate_club()
    path = Path(edges)
    suffix = path.suffix.lower()
    log: List[str] = []
    if suffix == ".pt":
        given = [n for n, v in (("--features", features), ("--labels", labels),
                                ("--directed", directed or None), ("--label-attr", label_attr),
                                ("--header", header)) if v is not None]
        if given:
            raise GraphInputError(f"{path}: {', '.join(given)} do not apply to a .pt input (a "
                                  f"saved Data carries its own x and y, and is read as "
                                  f"undirected); remove them, or give the graph as CSV files")
        return read_data_file(path, log)
    if suffix in (".graphml", ".gml"):
        if header is not None and features is None and labels is None:
            raise GraphInputError(f"{path}: --header applies to CSV files only")
        if label_attr is not None and labels is not None:
            raise GraphInputError(f"{path}: --label-attr and --labels both say where the "
                                  f"classes are; pass one of them")
        gi = read_networkx_file(path, directed, label_attr, log, labels_given=labels is not None)
        if features is not None:
            gi.x = read_features(features, gi.node_ids, log, header, declare=False)
            gi.feature_source = str(features)
        if labels is not None:
            gi.y, gi.classes = read_labels(labels, gi.node_ids, log, header, declare=False)
        return gi
    if label_attr is not None:
        raise GraphInputError(f"{path}: --label-attr applies to GraphML/GML files; an edge "
                              f"list takes its labels from --labels")
    node_ids, edge_index, edge_weight = read_edge_list(path, directed, log, header)
    if labels is None:
        raise GraphInputError(f"{path}: structure learning needs labels for some nodes "
                              f"('labels' CSV: node_id, label)")
    if features is not None:
        x, how = read_features(features, node_ids, log, header, declare=True), str(features)
    y, classes = read_labels(labels, node_ids, log, header, declare=features is None)
    if features is None:
        x, how = default_features(edge_index, len(node_ids))
        log.append(f"no features given: using {how}")
    return GraphInput(edge_index, x, y, node_ids, classes, edge_weight, log, how)
