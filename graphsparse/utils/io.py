"""Output files that are all or nothing, output folders checked before any
work starts, and the provenance of a run.

Every file goes through a temporary name in its destination folder and is
renamed over the destination once complete (:func:`atomic_write_text`,
:func:`atomic_open`): an interrupted run leaves the old file or none, never a
truncated one. :func:`prepare_output_dir` checks that an output folder can be
written before training, and refuses to mix a new run's files with an old
run's.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Dict, Iterable, Iterator, Optional, Union

PathLike = Union[str, Path]

__all__ = ["atomic_write_text", "atomic_open", "prepare_output_dir", "file_sha256", "provenance"]

_WRITE_MODES = ("w", "wt", "wb")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(path: Path) -> int:
    """The permission bits a plain ``open(path, "w")`` would give: those of
    the file it replaces, else ``0o666`` less the umask (``mkstemp`` alone
    would make the file private, ``0o600``)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", newline: Optional[str] = None) -> Iterator[IO]:
    """Opens ``path`` for writing through a temporary file.

    The ``with`` block writes to a temporary file in ``path``'s folder; when it
    ends normally the file is flushed, synced and renamed over ``path``
    (:func:`os.replace`, atomic). When it raises (``KeyboardInterrupt``
    included) the temporary file is removed, ``path`` keeps its old content
    (or stays absent) and the exception propagates.

    Args:
        path (str or Path): the destination file; its folder must exist.
        mode (str): ``"w"`` (text, UTF-8) or ``"wb"`` (binary).
        newline (str, optional): as for :func:`open` (``""`` for the
            :mod:`csv` module).

    Example:
        >>> with atomic_open("edges.csv", newline="") as f:
        ...     csv.writer(f).writerows(rows)
    """
    if mode not in _WRITE_MODES:
        raise ValueError(f"'atomic_open' expects 'mode' to be one of {_WRITE_MODES} (got {mode!r})")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        f = os.fdopen(fd, "wb" if binary else "w", newline=None if binary else newline,
                      encoding=None if binary else "utf-8")
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path``, all or nothing (see :func:`atomic_open`)."""
    with atomic_open(path, "w", newline="") as f:
        f.write(text)


def _probe_writable(folder: Path, name: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=folder)
    except OSError as exc:
        raise ValueError(f"'{name}' folder '{folder}' is not writable ({exc.strerror}); choose "
                         f"a folder you can write to, or fix its permissions") from None
    os.close(fd)
    os.unlink(tmp)


def prepare_output_dir(out: PathLike, overwrite: bool = False, allow: Iterable[str] = (),
                       name: str = "--out") -> Path:
    """Creates the output folder ``out`` and checks, before any work starts,
    that a run can write its files there.

    * ``out`` (or a folder above it) is an existing file, or cannot be
      created or written (a read-only parent, no permission):
      ``ValueError`` naming ``name`` and the fix;
    * ``out`` holds entries other than those named in ``allow`` (e.g.
      ``".checkpoint"`` when resuming): ``ValueError`` unless ``overwrite``;
      with ``overwrite`` those files are removed first, so the folder never
      shows an old run's file next to the new ones. Sub-folders not in
      ``allow`` are never removed (``ValueError``: remove them yourself or
      choose another folder).

    Args:
        out (str or Path): the output folder.
        overwrite (bool): remove the files of an earlier run.
        allow (iterable of str): entry names that may exist (kept as they are).
        name (str): how the folder is called in error messages.

    Returns:
        ``Path(out)``.
    """
    out = Path(out)
    allow = set(allow)
    if out.exists() and not out.is_dir():
        raise ValueError(f"'{name}' '{out}' is an existing file, not a folder; pass a folder "
                         f"path (it is created when missing)")
    if not out.exists():
        try:
            out.mkdir(parents=True)
        except FileExistsError:
            raise ValueError(f"'{name}' '{out}': a part of the path is an existing file; pass "
                             f"a folder path") from None
        except NotADirectoryError:
            raise ValueError(f"'{name}' '{out}': a part of the path is an existing file, not a "
                             f"folder; pass a folder path") from None
        except OSError as exc:
            raise ValueError(f"'{name}' '{out}' cannot be created ({exc.strerror}); choose a "
                             f"folder you can write to, e.g. under your home folder") from None
    _probe_writable(out, name)
    old = sorted(p for p in out.iterdir() if p.name not in allow)
    if old and not overwrite:
        shown = ", ".join(p.name for p in old[:5]) + (", ..." if len(old) > 5 else "")
        raise ValueError(f"'{name}' '{out}' is not empty ({len(old)} entries: {shown}); choose "
                         f"a new folder, or pass --overwrite (overwrite=True) to remove the "
                         f"old outputs first")
    folders = [p for p in old if p.is_dir() and not p.is_symlink()]
    if folders:
        raise ValueError(f"'{name}' '{out}' holds sub-folder(s) {[p.name for p in folders]} that "
                         f"--overwrite does not remove; remove them yourself or choose a new "
                         f"folder")
    for p in old:
        p.unlink()
    return out


def file_digest(path: PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes with a ``hashlib`` algorithm (read in
    1 MiB blocks)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    return file_digest(path, "sha256")


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version(module.replace("_", "-")) if module != "torch_geometric" \
                else version("torch_geometric")
        except PackageNotFoundError:
            pass
        mod = sys.modules.get(module) or __import__(module)
        return str(getattr(mod, "__version__", None))
    except Exception:
        return None


def provenance(seed: int, settings: Dict[str, Any], inputs: Iterable[Optional[PathLike]] = ()
               ) -> Dict[str, Any]:
    """What is needed to reproduce a run: the seed, every setting, the
    versions of Python and of the packages that compute the result, the
    platform and the SHA-256 of every input file (``None`` entries skipped).

    Returns:
        ``{"seed", "settings", "versions": {python, torch, torch_geometric,
        numpy, graphsparse}, "platform", "inputs": {path: {"sha256", "bytes"}}}``.
    """
    import torch
    files: Dict[str, Dict[str, Any]] = {}
    for p in inputs:
        if p is None:
            continue
        p = Path(p)
        files[str(p)] = dict(sha256=file_sha256(p), bytes=p.stat().st_size)
    return dict(
        seed=int(seed),
        settings=dict(settings),
        versions=dict(python=platform.python_version(), torch=torch.__version__,
                      torch_geometric=_version("torch_geometric"), numpy=_version("numpy"),
                      graphsparse=_version("graphsparse"),
                      cuda=torch.version.cuda if torch.cuda.is_available() else None),
        platform=platform.platform(),
        inputs=files,
    )
