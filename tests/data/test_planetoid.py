import pytest

from graphsparse.data import DatasetNotFoundError
from graphsparse.data.planetoid import load_planetoid
from graphsparse.testing import require_data


@pytest.mark.data
@pytest.mark.parametrize("name,nodes,train", [("Cora", 2708, 140), ("CiteSeer", 3327, 120)])
def test_public_split(name, nodes, train):
    require_data(f"planetoid/{name}/raw")
    data = load_planetoid(name)
    assert data.num_nodes == nodes
    assert int(data.train_mask.sum()) == train
    assert int(data.val_mask.sum()) == 500 and int(data.test_mask.sum()) == 1000


def test_missing_root_gives_clear_error(tmp_path, monkeypatch):
    from torch_geometric.datasets import Planetoid

    def offline(self):
        raise OSError("no internet")
    monkeypatch.setattr(Planetoid, "download", offline)
    with pytest.raises(DatasetNotFoundError, match="GRAPHSPARSE_DATA"):
        load_planetoid("Cora", root=tmp_path)
