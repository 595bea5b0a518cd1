"""Readers of a user's graph: every format checked before training (file and
line in every error), label conventions, headers by shape, isolated nodes,
weights, and .pt files loaded without running any code."""
import os

import networkx as nx
import pytest
import torch

from graphsparse.structure.io import (GraphInputError, karate_club, load_data_file,
                                      read_graph_input)


def write(path, text):
    path.write_text(text)
    return path


def logged(gi, *words):
    return any(all(w in m for w in words) for m in gi.log)


# ----------------------------------------------------------------- CSV edge lists

def test_edge_list_with_string_ids_duplicates_loops(tmp_path):
    edges = write(tmp_path / "e.csv", "source,target,weight\nalice,bob,1\nbob,alice,2\n"
                  "bob,carol,0.5\ncarol,carol,1\ndave,alice,1\n")
    labels = write(tmp_path / "l.csv", "node,label\nalice,x\ncarol,y\n")
    gi = read_graph_input(edges, labels=labels)
    assert gi.node_ids == ["alice", "bob", "carol", "dave"]
    assert gi.edge_index.size(1) == 6            # 3 undirected edges, both directions
    assert logged(gi, "1 self-loop") and logged(gi, "1 duplicate")
    assert logged(gi, "e.csv:1", "read as a header")
    assert gi.y.tolist() == [0, -1, 1, -1] and gi.classes == ["x", "y"]
    assert gi.x.shape == (4, 4)                   # one-hot identity by default
    assert logged(gi, "no features")


def test_features_and_directed(tmp_path):
    edges = write(tmp_path / "e.tsv", "a\tb\nb\ta\nb\tc\n")
    labels = write(tmp_path / "l.csv", "a,0\nc,1\n")
    feats = write(tmp_path / "f.csv", "id,f1,f2\nc,5,6\na,1,2\nb,3,4\n")
    gi = read_graph_input(edges, feats, labels, directed=True)
    assert gi.edge_index.size(1) == 3
    torch.testing.assert_close(gi.x, torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))


@pytest.mark.parametrize("first", ["from_id,to_id", "paper,cites", "src,dst,w"])
def test_header_of_numeric_ids_recognised_by_shape(tmp_path, first):
    rows = "0,1\n1,2\n2,0\n" if first.count(",") == 1 else "0,1,1\n1,2,1\n2,0,1\n"
    edges = write(tmp_path / "e.csv", f"{first}\n{rows}")
    gi = read_graph_input(edges, labels=write(tmp_path / "l.csv", "0,a\n1,b\n"))
    assert gi.node_ids == ["0", "1", "2"]          # no phantom nodes from the header
    assert gi.edge_index.size(1) == 6
    assert logged(gi, "e.csv:1", first.split(",")[0], "read as a header", "--header no")


def test_header_of_string_ids_recognised_by_shape(tmp_path):
    # 'paper' and 'cites' appear in no other row: a header, not an isolated edge
    edges = write(tmp_path / "e.csv", "paper,cites\np1,p2\np2,p3\np3,p1\n")
    gi = read_graph_input(edges, labels=write(tmp_path / "l.csv", "p1,a\np2,b\n"))
    assert gi.node_ids == ["p1", "p2", "p3"]
    assert logged(gi, "appear in no other row")


def test_numeric_first_row_is_never_a_header(tmp_path):
    edges = write(tmp_path / "e.csv", "5,6\n1,2\n2,3\n")    # 5-6: an isolated edge, numeric
    gi = read_graph_input(edges, labels=write(tmp_path / "l.csv", "1,a\n2,b\n"))
    assert gi.node_ids == ["5", "6", "1", "2", "3"] and gi.edge_index.size(1) == 6
    assert not logged(gi, "header")


def test_explicit_header_option(tmp_path):
    edges = write(tmp_path / "e.csv", "x,y\ny,z\nz,x\nw,x\n")
    labels = write(tmp_path / "l.csv", "x,a\ny,b\n")
    gi = read_graph_input(edges, labels=labels, header=False)
    assert gi.node_ids == ["x", "y", "z", "w"] and gi.edge_index.size(1) == 8
    gi = read_graph_input(edges, labels=write(tmp_path / "l2.csv", "node,class\ny,a\nz,b\n"),
                          header=True)
    assert gi.node_ids == ["y", "z", "x", "w"] and gi.edge_index.size(1) == 6
    assert logged(gi, "e.csv:1", "skipped as a header (--header yes)")
    assert logged(gi, "l2.csv:1", "skipped as a header")


@pytest.mark.parametrize("content,match", [
    ("a,b\nc\n", r"e.csv:2: expected 'source, target\[, weight\]'"),
    ("a,b,heavy\n", r"e.csv:1: weight 'heavy' is not a number"),
    ("a,b,1\nb,c,inf\n", r"e.csv:2: weight 'inf' is not finite"),
    ("a,b,1\nb,c,nan\n", r"e.csv:2: weight 'nan' is not finite"),
    ("a,a\n", "no edges"),
    ("a,b\n,c\n", r"e.csv:2: empty node id"),
])
def test_malformed_edges_name_file_and_line(tmp_path, content, match):
    edges = write(tmp_path / "e.csv", content)
    labels = write(tmp_path / "l.csv", "a,0\nb,1\n")
    with pytest.raises(GraphInputError, match=match):
        read_graph_input(edges, labels=labels)


def test_edge_weights_read_and_logged_as_unused(tmp_path):
    edges = write(tmp_path / "e.csv", "a,b,2.5\nb,c,0.5\n")
    gi = read_graph_input(edges, labels=write(tmp_path / "l.csv", "a,0\nb,1\n"))
    assert gi.edge_weight.tolist() == [2.5, 0.5, 2.5, 0.5]
    assert logged(gi, "edge weights", "not used for learning")
    gi = read_graph_input(write(tmp_path / "u.csv", "a,b\nb,c\n"),
                          labels=write(tmp_path / "l.csv", "a,0\nb,1\n"))
    assert not logged(gi, "edge weights")


def test_undecodable_files_name_file_and_line(tmp_path):
    (tmp_path / "e.csv").write_bytes(b"a,b\nb,c\nc,\xff\xfed\n")
    labels = write(tmp_path / "l.csv", "a,0\nb,1\n")
    with pytest.raises(GraphInputError, match=r"e.csv:3: not UTF-8 text \(byte 0xff at column 3"):
        read_graph_input(tmp_path / "e.csv", labels=labels)
    edges = write(tmp_path / "ok.csv", "a,b\nb,c\n")
    (tmp_path / "bad.csv").write_bytes(b"a,0\n\x80,1\n")
    with pytest.raises(GraphInputError, match=r"bad.csv:2: not UTF-8"):
        read_graph_input(edges, labels=tmp_path / "bad.csv")
    (tmp_path / "bom.csv").write_bytes("\ufeffa,b\nb,c\n".encode("utf-8"))
    assert read_graph_input(tmp_path / "bom.csv", labels=labels).node_ids == ["a", "b", "c"]


# ----------------------------------------------------------------- labels and features

def test_minus_one_and_empty_labels_are_unlabelled(tmp_path):
    edges = write(tmp_path / "e.csv", "0,1\n1,2\n2,3\n3,4\n")
    labels = write(tmp_path / "l.csv", "node,club\n0,red\n1,-1\n2,\n3\n4,blue\n")
    gi = read_graph_input(edges, labels=labels)
    assert gi.classes == ["blue", "red"]          # neither '-1' nor '' is a class
    assert gi.y.tolist() == [1, -1, -1, -1, 0]
    assert logged(gi, "3 row(s) with an empty or -1 label")
    assert logged(gi, "l.csv:1", "header")


def test_numeric_labels_whole_numbers_only(tmp_path):
    edges = write(tmp_path / "e.csv", "a,b\nb,c\nc,d\n")
    gi = read_graph_input(edges, labels=write(tmp_path / "l.csv", "a,1.0\nb,1\nc,2\nd,-1.0\n"))
    assert gi.classes == ["1", "2"] and gi.y.tolist() == [0, 0, 1, -1]
    with pytest.raises(GraphInputError, match=r"l2.csv:2: label '1.5' is not a whole number"):
        read_graph_input(edges, labels=write(tmp_path / "l2.csv", "a,1\nb,1.5\nc,2\n"))
    with pytest.raises(GraphInputError, match=r"l3.csv:1: label 'nan' is not finite"):
        read_graph_input(edges, labels=write(tmp_path / "l3.csv", "a,nan\nb,1\nc,2\n"))


def test_label_header_of_string_ids_by_shape(tmp_path):
    edges = write(tmp_path / "e.csv", "alice,bob\nbob,carol\n")
    gi = read_graph_input(edges, labels=write(tmp_path / "l.csv", "name,club\nalice,x\ncarol,y\n"))
    assert gi.num_nodes == 3 and gi.classes == ["x", "y"]
    assert logged(gi, "l.csv:1", "read as a header")


def test_isolated_nodes_declared_by_features_or_labels(tmp_path):
    edges = write(tmp_path / "e.csv", "a,b\nb,c\n")
    labels = write(tmp_path / "l.csv", "a,0\nz,1\n")
    feats = write(tmp_path / "f.csv", "a,1\nb,2\nc,3\nz,4\n")
    gi = read_graph_input(edges, feats, labels)
    assert gi.node_ids == ["a", "b", "c", "z"] and gi.x[:, 0].tolist() == [1, 2, 3, 4]
    assert int(gi.edge_index.max()) == 2          # z has no edge
    assert gi.y.tolist() == [0, -1, -1, 1]
    assert logged(gi, "f.csv", "1 node(s) with no edge", "isolated", "'z'")
    gi = read_graph_input(edges, labels=labels)   # no features: the labels file declares z
    assert gi.node_ids == ["a", "b", "c", "z"] and gi.x.shape == (4, 4)
    assert logged(gi, "l.csv", "isolated")


def test_bad_labels_and_features(tmp_path):
    edges = write(tmp_path / "e.csv", "a,b\nb,c\n")
    feats = write(tmp_path / "f0.csv", "a,1\nb,2\nc,3\n")
    with pytest.raises(GraphInputError, match=r"l.csv:2: unknown node id 'zz'"):
        read_graph_input(edges, feats, labels=write(tmp_path / "l.csv", "a,0\nzz,1\n"))
    with pytest.raises(GraphInputError, match="at least two classes"):
        read_graph_input(edges, labels=write(tmp_path / "l1.csv", "a,0\nb,0\n"))
    with pytest.raises(GraphInputError, match=r"l4.csv:2: node 'a' has two labels"):
        read_graph_input(edges, labels=write(tmp_path / "l4.csv", "a,0\na,1\nb,1\n"))
    labels = write(tmp_path / "l2.csv", "a,0\nb,1\n")
    with pytest.raises(GraphInputError, match=r"f.csv:2: feature 'red' is not a number"):
        read_graph_input(edges, write(tmp_path / "f.csv", "a,1\nb,red\nc,2\n"), labels)
    with pytest.raises(GraphInputError, match=r"f4.csv:3: feature 'inf' is not finite"):
        read_graph_input(edges, write(tmp_path / "f4.csv", "a,1\nb,2\nc,inf\n"), labels)
    with pytest.raises(GraphInputError, match="1 node\\(s\\) have no features"):
        read_graph_input(edges, write(tmp_path / "f3.csv", "a,1\nb,2\n"), labels)
    with pytest.raises(GraphInputError, match="needs labels"):
        read_graph_input(edges)


def test_options_that_do_not_apply_are_refused(tmp_path):
    edges = write(tmp_path / "e.csv", "a,b\nb,c\n")
    labels = write(tmp_path / "l.csv", "a,0\nb,1\n")
    with pytest.raises(GraphInputError, match="--label-attr applies to GraphML/GML"):
        read_graph_input(edges, labels=labels, label_attr="club")
    with pytest.raises(GraphInputError, match="need an input graph"):
        read_graph_input(directed=True)


# ----------------------------------------------------------------- GraphML / GML

def test_graphml_with_attributes(tmp_path):
    g = nx.DiGraph()
    g.add_node("u", label="red", size=1.0)
    g.add_node("v", label="blue", size=2.0)
    g.add_node("w", size=3.0)
    g.add_edges_from([("u", "v"), ("v", "w"), ("w", "u")])
    nx.write_graphml(g, tmp_path / "g.graphml")
    gi = read_graph_input(tmp_path / "g.graphml")
    assert gi.x.tolist() == [[1.0], [2.0], [3.0]]
    assert sorted(gi.classes) == ["blue", "red"] and gi.y[2] == -1
    assert logged(gi, "read as undirected")
    assert gi.edge_index.size(1) == 6


def _graphml(tmp_path, **node_attrs):
    g = nx.path_graph(4)
    for i in g.nodes:
        g.nodes[i]["label"] = ["a", "b", "a", "b"][i]
        g.nodes[i]["x"] = float(i)
    for i, attrs in node_attrs.items():
        g.nodes[int(i[1:])].update(attrs)
    nx.write_graphml(g, tmp_path / "g.graphml")
    return tmp_path / "g.graphml"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_graphml_non_finite_attribute_is_an_error(tmp_path, value):
    path = _graphml(tmp_path, n2={"x": value})
    with pytest.raises(GraphInputError, match=r"g.graphml: node '2' has attribute 'x' = "
                                              r"(nan|inf), not finite"):
        read_graph_input(path)


def test_graphml_labels_and_weights(tmp_path):
    g = nx.path_graph(5)
    for i, lab in enumerate([0, -1, "", 1, 1.0]):
        g.nodes[i]["label"] = lab
    g.edges[0, 1]["weight"] = 2.0
    nx.write_graphml(g, tmp_path / "g.graphml")
    gi = read_graph_input(tmp_path / "g.graphml")
    assert gi.classes == ["0", "1"] and gi.y.tolist() == [0, -1, -1, 1, 1]
    assert logged(gi, "edge attribute 'weight'", "not used for learning")
    g.nodes[4]["label"] = 1.5
    nx.write_graphml(g, tmp_path / "h.graphml")
    with pytest.raises(GraphInputError, match=r"node '4': label 1.5 is not a whole number"):
        read_graph_input(tmp_path / "h.graphml")
    g.nodes[4]["label"] = 1
    g.edges[0, 1]["weight"] = float("nan")
    nx.write_graphml(g, tmp_path / "w.graphml")
    with pytest.raises(GraphInputError, match=r"edge \('0', '1'\) has weight nan, not finite"):
        read_graph_input(tmp_path / "w.graphml")


def test_graphml_unparsable_names_the_line(tmp_path):
    path = _graphml(tmp_path)
    text = path.read_text().splitlines()
    text[5] = text[5] + "<broken"
    path.write_text("\n".join(text))
    with pytest.raises(GraphInputError, match=r"g.graphml:\d+: could not be parsed as GRAPHML"):
        read_graph_input(path)


def _gml(tmp_path):
    g = nx.Graph()
    for i, (name, club) in enumerate([("ann", "x"), ("bob", "y"), ("cat", "x"), ("dan", "y")]):
        g.add_node(name, club=club, age=20 + i)         # written as id i, label "name"
    g.add_edges_from([("ann", "bob"), ("bob", "cat"), ("cat", "dan")])
    nx.write_gml(g, tmp_path / "g.gml", stringizer=str)
    return tmp_path / "g.gml"


def test_gml_node_name_is_not_the_class(tmp_path):
    path = _gml(tmp_path)
    with pytest.raises(GraphInputError, match=r"which GML node attribute holds the class.*"
                                              r"'age', 'club'"):
        read_graph_input(path)
    with pytest.raises(GraphInputError, match="'label' attribute is the node's name"):
        read_graph_input(path, label_attr="label")
    gi = read_graph_input(path, label_attr="club")
    assert gi.node_ids == ["ann", "bob", "cat", "dan"]     # names as ids
    assert gi.classes == ["x", "y"] and gi.y.tolist() == [0, 1, 0, 1]
    assert gi.x.tolist() == [[20.0], [21.0], [22.0], [23.0]]  # 'label' is no feature
    labels = write(tmp_path / "l.csv", "ann,p\ndan,q\n")
    gi = read_graph_input(path, labels=labels)             # labels from a file: no attr needed
    assert gi.classes == ["p", "q"] and gi.y.tolist() == [0, -1, -1, 1]
    with pytest.raises(GraphInputError, match="--label-attr and --labels both"):
        read_graph_input(path, labels=labels, label_attr="club")
    with pytest.raises(GraphInputError, match="--header applies to CSV files only"):
        read_graph_input(path, label_attr="club", header=True)


# ----------------------------------------------------------------- .pt

class _Payload:
    def __init__(self, mark):
        self.mark = str(mark)

    def __reduce__(self):
        return (os.system, (f"touch '{self.mark}'",))


def _data(**kw):
    from torch_geometric.data import Data
    base = dict(x=torch.randn(4, 3), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]),
                y=torch.tensor([0, 1, -1, 1]))
    base.update(kw)
    return Data(**{k: v for k, v in base.items() if v is not None})


def test_pyg_data_file(tmp_path):
    data = _data()
    torch.save(data, tmp_path / "d.pt")
    gi = read_graph_input(tmp_path / "d.pt")
    assert gi.num_nodes == 4 and gi.edge_index.size(1) == 6
    assert gi.y.tolist() == [0, 1, -1, 1] and gi.edge_weight is None
    torch.testing.assert_close(gi.x, data.x)


@pytest.mark.parametrize("where", ["file", "inside-data"])
def test_pt_payload_runs_nothing(tmp_path, where):
    mark = tmp_path / "PWNED"
    obj = _Payload(mark) if where == "file" else _data()
    if where == "inside-data":
        obj.extra = _Payload(mark)
    torch.save(obj, tmp_path / "evil.pt")
    with pytest.raises(GraphInputError, match=r"evil.pt: refused: the file needs "
                                              r"'(posix|os|nt)\.system'.*weights_only=True"):
        read_graph_input(tmp_path / "evil.pt")
    assert not mark.exists()


def test_pt_loading_is_scoped(tmp_path):
    from torch import serialization as ser
    before = set(ser.get_safe_globals())
    torch.save(_data(), tmp_path / "d.pt")
    load_data_file(tmp_path / "d.pt")
    assert set(ser.get_safe_globals()) == before        # the process-wide list is restored
    # inside the scope only the Data classes are admitted: an EdgeIndex (which PyG
    # allow-lists process-wide) is refused, naming it
    from torch_geometric import EdgeIndex
    torch.save(_data(edge_index=EdgeIndex(torch.tensor([[0, 1], [1, 2]]))), tmp_path / "e.pt")
    from graphsparse.structure.io import _data_classes
    saved = ser.get_safe_globals()
    ser.add_safe_globals(_data_classes())                 # PyG's process-wide list
    try:
        torch.load(tmp_path / "e.pt", weights_only=True)  # admits it...
    finally:
        ser.clear_safe_globals()
        ser.add_safe_globals(saved)
    with pytest.raises(GraphInputError, match="refused.*EdgeIndex"):
        load_data_file(tmp_path / "e.pt")                 # ...ours does not
    assert set(ser.get_safe_globals()) == before


@pytest.mark.parametrize("kw,match", [
    (dict(x=torch.tensor([[0.0], [float("nan")], [1.0], [2.0]])),
     r"Data.x has 1 non-finite value\(s\).*node 1"),
    (dict(x=torch.randn(3, 2), num_nodes=4), r"Data.x must be \[num_nodes=4, F\]"),
    (dict(y=torch.tensor([0.0, 1.5, -1.0, 1.0])), r"Data.y\[1\] = 1.5 is not a whole number"),
    (dict(y=torch.tensor([0.0, float("nan"), -1.0, 1.0])), "Data.y has 1 non-finite"),
    (dict(y=torch.tensor([0, 1, -2, 1])), "Data.y has value -2"),
    (dict(edge_index=torch.tensor([[0, 1], [1, 7]]), num_nodes=4), "outside \\[0, 4\\)"),
    (dict(edge_index=torch.tensor([[0.0, 1.0], [1.0, 2.0]])), "integer tensor"),
    (dict(y=None), "has no 'y'"),
    (dict(edge_weight=torch.tensor([1.0, float("inf"), 1.0])), "edge_weight must be finite"),
])
def test_pt_bad_content(tmp_path, kw, match):
    torch.save(_data(**kw), tmp_path / "d.pt")
    with pytest.raises(GraphInputError, match="d.pt: .*" + match):
        read_graph_input(tmp_path / "d.pt")


def test_pt_labels_weights_ids(tmp_path):
    data = _data(y=torch.tensor([0.0, 1.0, -1.0, 1.0]),
                 edge_weight=torch.tensor([0.5, 1.0, 2.0]),
                 label_mask=torch.tensor([True, False, True, True]))
    data.node_ids = ["p", "q", "r", "s"]
    torch.save(data, tmp_path / "d.pt")
    gi = read_graph_input(tmp_path / "d.pt")
    assert gi.y.tolist() == [0, -1, -1, 1] and gi.node_ids == ["p", "q", "r", "s"]
    assert gi.edge_weight.tolist() == [0.5, 1.0, 2.0, 0.5, 1.0, 2.0]
    assert logged(gi, "Data.y is torch.float32 with whole values")
    assert logged(gi, "Data.edge_weight", "not used for learning")
    torch.save({"x": torch.ones(2)}, tmp_path / "dict.pt")
    with pytest.raises(GraphInputError, match="dict.pt: holds a dict, not a PyG Data"):
        read_graph_input(tmp_path / "dict.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(GraphInputError, match="junk.pt: not a readable torch.save file"):
        read_graph_input(tmp_path / "junk.pt")


@pytest.mark.parametrize("option", ["features", "labels", "directed", "label_attr", "header"])
def test_pt_refuses_options_that_do_not_apply(tmp_path, option):
    torch.save(_data(), tmp_path / "d.pt")
    value = {"features": tmp_path / "f.csv", "labels": tmp_path / "l.csv", "directed": True,
             "label_attr": "club", "header": True}[option]
    with pytest.raises(GraphInputError, match=f"--{option.replace('_', '-')} do not apply to "
                                              f"a .pt input"):
        read_graph_input(tmp_path / "d.pt", **{option: value})


def test_karate_club():
    gi = karate_club(labels_per_class=3, seed=1)
    assert gi.num_nodes == 34 and gi.edge_index.size(1) == 2 * 78
    assert int((gi.y >= 0).sum()) == 6
    assert gi.y[0] == gi.true_y[0] and gi.y[33] == gi.true_y[33]
    labelled = gi.y >= 0
    assert torch.equal(gi.y[labelled], gi.true_y[labelled])
