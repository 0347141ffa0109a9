"""Write and read SpatialData zarr stores without ever losing data."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spatialdata import SpatialData

from hist_sd._core._files import atomic_path, clean_stale

logger = logging.getLogger("hist_sd")

#: Metadata files at the root of a zarr group (format 3, format 2).
_ZARR_ROOT_FILES = ("zarr.json", ".zgroup")

def write_zarr(sdata: SpatialData, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``sdata`` to a zarr store atomically.

    The store is written next to ``path`` under a temporary name and renamed into place only when complete,
    so an interrupted write never leaves a half store and never destroys an existing one. Temporaries that an
    interrupted earlier write of ``path`` left behind (``.<name>.tmp-*``, ``.<name>.old-*``) are removed (logged;
    one changed within the last minute may belong to a write in progress and is kept).

    Parameters
    ----------
    sdata
        The SpatialData to write.
    path
        Destination ``*.zarr`` directory.
    overwrite
        Replace an existing store at ``path``; without it an existing store is an error.

    Returns
    -------
    The path written.
    """
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp, warnings.catch_warnings():
        clean_stale(path, keep=tmp)
        warnings.filterwarnings("ignore", message=".*autosharding.*", category=UserWarning)
        sdata.write(tmp, update_sdata_path=False)  # `tmp` is renamed below: never let sdata point there
    sdata.path = path
    logger.info("wrote %s", path)
    return path


def read_zarr(path: str | os.PathLike[str]) -> SpatialData:
    """Read a SpatialData zarr store (written by :func:`write_zarr` or by spatialdata itself).

    Parameters
    ----------
    path
        The ``*.zarr`` directory.
    """
    import spatialdata as sd

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"`path`: no zarr store at {str(path)!r}.")
    if not path.is_dir() or not any((path / f).is_file() for f in _ZARR_ROOT_FILES):
        raise ValueError(
            f"`path`: {str(path)!r} is not a SpatialData zarr store ({'a file' if not path.is_dir() else 'a folder'}"
            f" without {' or '.join(_ZARR_ROOT_FILES)}); expected a *.zarr folder written by `hs.io.write_zarr` "
            "or `SpatialData.write`."
        )
    return sd.read_zarr(path)
