"""Checkpoints that are written atomically and load without unpickling code.

:func:`atomic_save` writes ``torch.save`` output to a temporary file in the
target's folder, flushes it to disk and renames it over the target, so a
checkpoint on disk is always either the old one or the complete new one.
:func:`load_checkpoint` loads with ``weights_only=True``: tensors, numbers,
strings and containers only, never arbitrary objects. :func:`rng_state` /
:func:`set_rng_state` capture every global random generator a training run
uses, in that same restricted vocabulary.
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
import torch

from .io import default_mode

PathLike = Union[str, Path]

__all__ = ["atomic_save", "load_checkpoint", "rng_state", "set_rng_state"]


def _fsync_dir(folder: Path) -> None:
    try:  # the rename itself is durable only once the folder is synced (POSIX)
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save(obj, path)``, all or nothing.

    The object is written to a temporary file in the same folder, flushed with
    ``fsync`` and renamed over ``path`` with :func:`os.replace` (atomic on
    POSIX and Windows). On any error, ``KeyboardInterrupt`` included, the
    temporary file is removed and ``path`` is left as it was.

    Args:
        obj: anything ``torch.save`` accepts; keep it to tensors, numbers,
            strings and containers so that :func:`load_checkpoint` can read it.
        path (str or Path): the destination file; its folder must exist.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode(path))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Loads a checkpoint written by :func:`atomic_save` with
    ``torch.load(weights_only=True)``: no code in the file can run.

    Args:
        path (str or Path): the checkpoint file.
        map_location: as for :func:`torch.load` (default ``"cpu"``).

    Returns:
        The saved dictionary.

    Raises:
        ValueError: naming the file, when it is missing, truncated, not a
            ``torch.save`` file, holds objects other than tensors / numbers /
            strings / containers, or is not a dictionary.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint '{path}' does not exist (or is not a file)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"checkpoint '{path}' holds objects that are not plain tensors, numbers, strings "
            f"or containers and was refused (weights_only=True): {str(exc).splitlines()[0]}; "
            f"only load checkpoints written by graphsparse") from None
    except Exception as exc:  # truncated, not a zip / pickle, ...
        raise ValueError(f"checkpoint '{path}' is not a valid checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}); delete it "
                         f"or start without resuming") from None
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint '{path}' holds a {type(obj).__name__}, not a dictionary")
    return obj


def rng_state() -> Dict[str, Any]:
    """The state of every global random generator: torch CPU, every CUDA
    device (when CUDA is available), Python's ``random`` and NumPy's global
    generator, as tensors, ints, floats, strings, lists and tuples only (so
    ``weights_only=True`` loads it). Restore it with :func:`set_rng_state`."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: Dict[str, Any] = dict(
        torch=torch.get_rng_state(),
        python=(int(version), [int(v) for v in internal], None if gauss is None else float(gauss)),
        numpy=(str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos),
               int(has_gauss), float(cached)),
    )
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restores the generators saved by :func:`rng_state`. A state saved
    without CUDA leaves the CUDA generators as they are; a state saved with
    more CUDA devices than are present restores the ones present."""
    for key in ("torch", "python", "numpy"):
        if key not in state:
            raise ValueError(f"'state' lacks the '{key}' generator; pass a dictionary made by "
                             f"rng_state()")
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(torch.as_tensor(keys).numpy(), dtype=np.uint32),
                         int(pos), int(has_gauss), float(cached)))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        n = torch.cuda.device_count()
        for i, s in enumerate(list(cuda)[:n]):
            torch.cuda.set_rng_state(s.cpu(), i)
