import networkx as nx
import pytest
import torch

from graphsparse.structure.io import GraphInputError, karate_club, read_graph_input


def write(path, text):
    path.write_text(text)
    return path


def test_edge_list_with_string_ids_duplicates_loops(tmp_path):
    edges = write(tmp_path / "e.csv", "source,target,weight\nalice,bob,1\nbob,alice,2\n"
                  "bob,carol,0.5\ncarol,carol,1\ndave,alice,1\n")
    labels = write(tmp_path / "l.csv", "node,label\nalice,x\ncarol,y\n")
    gi = read_graph_input(edges, labels=labels)
    assert gi.node_ids == ["alice", "bob", "carol", "dave"]
    assert gi.edge_index.size(1) == 6            # 3 undirected edges, both directions
    assert any("1 self-loop" in m for m in gi.log)
    assert any("1 duplicate" in m for m in gi.log)
    assert gi.y.tolist() == [0, -1, 1, -1] and gi.classes == ["x", "y"]
    assert gi.x.shape == (4, 4)                   # one-hot identity by default
    assert any("no features" in m for m in gi.log)


def test_features_and_directed(tmp_path):
    edges = write(tmp_path / "e.tsv", "a\tb\nb\ta\nb\tc\n")
    labels = write(tmp_path / "l.csv", "a,0\nc,1\n")
    feats = write(tmp_path / "f.csv", "id,f1,f2\nc,5,6\na,1,2\nb,3,4\n")
    gi = read_graph_input(edges, feats, labels, directed=True)
    assert gi.edge_index.size(1) == 3
    torch.testing.assert_close(gi.x, torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))


@pytest.mark.parametrize("content,match", [
    ("a,b\nc\n", r"e.csv:2: expected 'source, target\[, weight\]'"),
    ("a,b,heavy\n", r"e.csv:1: weight 'heavy' is not a number"),
    ("a,a\n", "no edges"),
])
def test_malformed_edges_name_file_and_line(tmp_path, content, match):
    edges = write(tmp_path / "e.csv", content)
    labels = write(tmp_path / "l.csv", "a,0\nb,1\n")
    with pytest.raises(GraphInputError, match=match):
        read_graph_input(edges, labels=labels)


def test_bad_labels_and_features(tmp_path):
    edges = write(tmp_path / "e.csv", "a,b\nb,c\n")
    with pytest.raises(GraphInputError, match=r"l.csv:2: unknown node id 'zz'"):
        read_graph_input(edges, labels=write(tmp_path / "l.csv", "a,0\nzz,1\n"))
    with pytest.raises(GraphInputError, match="at least two classes"):
        read_graph_input(edges, labels=write(tmp_path / "l1.csv", "a,0\nb,0\n"))
    labels = write(tmp_path / "l2.csv", "a,0\nb,1\n")
    with pytest.raises(GraphInputError, match=r"f.csv:2: feature 'red' is not a number"):
        read_graph_input(edges, write(tmp_path / "f.csv", "a,1\nb,red\nc,2\n"), labels)
    with pytest.raises(GraphInputError, match=r"f2.csv:1: unknown node id 'q'"):
        read_graph_input(edges, write(tmp_path / "f2.csv", "q,1\n"), labels)
    with pytest.raises(GraphInputError, match="1 node\\(s\\) have no features"):
        read_graph_input(edges, write(tmp_path / "f3.csv", "a,1\nb,2\n"), labels)
    with pytest.raises(GraphInputError, match="needs labels"):
        read_graph_input(edges)


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
    assert any("read as undirected" in m for m in gi.log)
    assert gi.edge_index.size(1) == 6


def test_pyg_data_file(tmp_path):
    from torch_geometric.data import Data
    data = Data(x=torch.randn(4, 3), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]),
                y=torch.tensor([0, 1, -1, 1]))
    torch.save(data, tmp_path / "d.pt")
    gi = read_graph_input(tmp_path / "d.pt")
    assert gi.num_nodes == 4 and gi.edge_index.size(1) == 6
    assert gi.y.tolist() == [0, 1, -1, 1]
    torch.testing.assert_close(gi.x, data.x)


def test_karate_club():
    gi = karate_club(labels_per_class=3, seed=1)
    assert gi.num_nodes == 34 and gi.edge_index.size(1) == 2 * 78
    assert int((gi.y >= 0).sum()) == 6
    assert gi.y[0] == gi.true_y[0] and gi.y[33] == gi.true_y[33]
    labelled = gi.y >= 0
    assert torch.equal(gi.y[labelled], gi.true_y[labelled])
