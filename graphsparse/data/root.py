"""Where datasets live: one data root for every loader."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

ENV_VAR = "GRAPHSPARSE_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a dataset is neither under the data root nor downloadable."""


def default_root() -> Path:
    """The repository's ``datasets/`` folder when running from a checkout,
    else ``~/.cache/graphsparse/datasets``."""
    repo = Path(__file__).resolve().parents[2] / "datasets"
    if repo.is_dir():
        return repo
    return Path.home() / ".cache" / "graphsparse" / "datasets"


def get_data_root(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Resolves the data root: the ``root`` argument, else the environment
    variable ``GRAPHSPARSE_DATA``, else :func:`default_root`."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return default_root()


def writable_cache(path: Path) -> Path:
    """A writable folder mirroring ``path``: ``path`` itself when writable,
    else ``~/.cache/graphsparse/<path name>``."""
    if os.access(path, os.W_OK):
        return path
    cache = Path.home() / ".cache" / "graphsparse" / path.name
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def missing_dataset(name: str, where: Path, cause: Optional[BaseException] = None
                    ) -> DatasetNotFoundError:
    """The error every loader raises when it cannot find or download data."""
    msg = (f"{name} was not found under '{where}' and could not be downloaded"
           + (f" ({type(cause).__name__}: {cause})" if cause else "")
           + f". Download it on a machine with internet, or point the environment "
           f"variable {ENV_VAR} (or the 'root' argument) at a folder that holds it.")
    return DatasetNotFoundError(msg)
