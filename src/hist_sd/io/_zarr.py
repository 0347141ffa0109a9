"""Write and read SpatialData zarr stores without ever losing data."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")


def write_zarr(sdata: SpatialData, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``sdata`` to a zarr store atomically.

    The store is written next to ``path`` under a temporary name and renamed into place only when complete,
    so an interrupted write never leaves a half store and never destroys an existing one.

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
    if path.exists() and not overwrite:
        raise FileExistsError(f"`path`: {str(path)!r} exists already; pass `overwrite=True` to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*autosharding.*", category=UserWarning)
            sdata.write(tmp, update_sdata_path=False)  # `tmp` disappears below: never let sdata point there
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
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
    return sd.read_zarr(path)
