import random

import numpy as np
import pytest
import torch

from graphsparse.utils.checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state


class _Payload:
    """Unpickling this would create a file: a loader that runs it is unsafe."""

    def __init__(self, mark):
        self.mark = str(mark)

    def __reduce__(self):
        return (open, (self.mark, "w"))


class _Interrupt:
    def __reduce__(self):
        raise KeyboardInterrupt


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_save_round_trip(tmp_path):
    obj = dict(w=torch.arange(6.0).view(2, 3), step=7, name="x", hist=[1.5, None, (2, 3)])
    atomic_save(obj, tmp_path / "c.pt")
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["w"], obj["w"]) and back["step"] == 7 and back["name"] == "x"
    assert back["hist"] == [1.5, None, (2, 3)]
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("bad", [lambda: (lambda: 0), _Interrupt])
def test_atomic_save_failure_keeps_the_old_file(tmp_path, bad):
    path = tmp_path / "c.pt"
    atomic_save({"v": torch.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises((Exception, KeyboardInterrupt)):
        atomic_save({"v": bad()}, path)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_load_checkpoint_refuses_code_and_runs_nothing(tmp_path):
    mark = tmp_path / "PWNED"
    torch.save({"state": _Payload(mark)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not mark.exists()


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing.pt.*does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    atomic_save({"w": torch.randn(100)}, tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pt.*not a valid checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="text.pt"):
        load_checkpoint(tmp_path / "text.pt")
    atomic_save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt.*not a dictionary"):
        load_checkpoint(tmp_path / "list.pt")


def _draws():
    return (torch.rand(4), torch.randn(3), random.random(), random.gauss(0, 1),
            np.random.rand(3), np.random.normal(size=2))


def _same(a, b):
    for u, v in zip(a, b):
        if isinstance(u, torch.Tensor):
            assert torch.equal(u, v)
        elif isinstance(u, np.ndarray):
            np.testing.assert_array_equal(u, v)
        else:
            assert u == v


def test_rng_state_round_trip_through_a_safe_checkpoint(tmp_path):
    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    random.gauss(0, 1), np.random.normal()   # leave a cached Gaussian in both
    state = rng_state()
    first = _draws()
    atomic_save({"rng": state}, tmp_path / "rng.pt")
    _draws()                                  # move every generator on
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    second = _draws()
    _same(first, second)
    # a different state gives different draws: the restore is not a no-op
    torch.manual_seed(4), random.seed(4), np.random.seed(4)
    third = _draws()
    assert not torch.equal(first[0], third[0]) and first[2] != third[2]
    assert not np.array_equal(first[4], third[4])


def test_set_rng_state_rejects_an_incomplete_state():
    with pytest.raises(ValueError, match="'numpy'"):
        set_rng_state({"torch": torch.get_rng_state(), "python": random.getstate()})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rng_state_includes_cuda():
    state = rng_state()
    assert len(state["cuda"]) == torch.cuda.device_count()
    a = torch.rand(3, device="cuda")
    set_rng_state(state)
    assert torch.equal(a, torch.rand(3, device="cuda"))
