import hashlib
import json
import os

import pytest

from graphsparse.utils import io as gio
from graphsparse.utils.io import (atomic_open, atomic_write_text, file_sha256, prepare_output_dir,
                                  provenance)


def _tmp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_open_writes_on_success(tmp_path):
    with atomic_open(tmp_path / "a.csv", newline="") as f:
        f.write("x,y\r\n1,2\r\n")
        assert not (tmp_path / "a.csv").exists()     # nothing at the name until the end
    assert (tmp_path / "a.csv").read_bytes() == b"x,y\r\n1,2\r\n"
    with atomic_open(tmp_path / "b.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert _tmp_files(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_open_on_error_keeps_old_content_and_removes_temp(tmp_path, exc):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old")
    with pytest.raises(exc):
        with atomic_open(path) as f:
            f.write("new, half written")
            raise exc()
    assert path.read_text() == "old"
    assert _tmp_files(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(tmp_path / "fresh.txt") as f:
            f.write("x")
            raise KeyboardInterrupt
    assert not (tmp_path / "fresh.txt").exists()


def test_atomic_open_rejects_read_modes(tmp_path):
    with pytest.raises(ValueError, match="'mode'"):
        with atomic_open(tmp_path / "x", "r"):
            pass


def test_prepare_output_dir_creates_and_refuses_files(tmp_path):
    out = prepare_output_dir(tmp_path / "a" / "b")
    assert out.is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="--out.*existing file"):
        prepare_output_dir(tmp_path / "f")
    with pytest.raises(ValueError, match="--out.*existing file"):
        prepare_output_dir(tmp_path / "f" / "sub")
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs POSIX permissions and a non-root user")
def test_prepare_output_dir_read_only_parent(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="--out"):
            prepare_output_dir(ro / "out")
    finally:
        ro.chmod(0o700)


def test_prepare_output_dir_unwritable_folder(tmp_path, monkeypatch):
    # simulated: root ignores permission bits, so chmod cannot test this as root
    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(gio.tempfile, "mkstemp", denied)
    with pytest.raises(ValueError, match="'--out'.*not writable.*Permission denied"):
        prepare_output_dir(tmp_path)


def test_prepare_output_dir_non_empty(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "graph.png").write_text("old")
    (out / ".checkpoint").mkdir()
    (out / ".checkpoint" / "state.pt").write_text("ck")
    with pytest.raises(ValueError, match="not empty.*graph.png.*--overwrite"):
        prepare_output_dir(out, allow=(".checkpoint",))
    assert (out / "graph.png").exists()
    prepare_output_dir(out, overwrite=True, allow=(".checkpoint",))
    assert sorted(p.name for p in out.iterdir()) == [".checkpoint"]
    assert (out / ".checkpoint" / "state.pt").read_text() == "ck"
    prepare_output_dir(out, allow=(".checkpoint",))          # only allowed entries: fine
    with pytest.raises(ValueError, match="not empty"):
        prepare_output_dir(out)                              # not allowed: refused
    with pytest.raises(ValueError, match="sub-folder.*checkpoint"):
        prepare_output_dir(out, overwrite=True)             # never removes folders
    assert (out / ".checkpoint" / "state.pt").exists()


def test_file_sha256(tmp_path):
    data = os.urandom(3 << 20) + b"tail"
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_provenance(tmp_path):
    (tmp_path / "e.csv").write_text("0,1\n")
    p = provenance(5, {"lam": 0.1, "epochs": 3}, [tmp_path / "e.csv", None])
    assert p["seed"] == 5 and p["settings"] == {"lam": 0.1, "epochs": 3}
    import numpy
    import torch
    import torch_geometric
    assert p["versions"]["torch"] == torch.__version__
    assert p["versions"]["numpy"] == numpy.__version__
    assert p["versions"]["torch_geometric"] == torch_geometric.__version__
    assert p["versions"]["python"] and p["versions"]["graphsparse"] and p["platform"]
    entry = p["inputs"][str(tmp_path / "e.csv")]
    assert entry == {"sha256": hashlib.sha256(b"0,1\n").hexdigest(), "bytes": 4}
    json.dumps(p, allow_nan=False)


def test_atomic_files_get_ordinary_permissions(tmp_path):
    from graphsparse.utils.checkpoint import atomic_save
    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_save({}, tmp_path / "c.pt")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o644
        (tmp_path / "a.txt").chmod(0o640)          # a replaced file keeps its mode
        atomic_write_text(tmp_path / "a.txt", "y")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(mask)
