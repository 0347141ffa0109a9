"""Shared helpers: resolving ``AnnData | SpatialData``, scale metadata, devices, seeding, key bookkeeping.

Each helper here exists once; modules import them instead of writing their own.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from anndata import AnnData

from hist_sd import _constants as C

if TYPE_CHECKING:
    import torch
    import xarray as xr
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

T = TypeVar("T")

__all__ = [
    "as_sections",
    "atomic_path",
    "check_key_free",
    "get_device",
    "get_image",
    "get_meta",
    "get_mpp",
    "get_table",
    "is_spatialdata",
    "log_written",
    "progress",
    "resolve",
    "resolve_image_key",
    "set_seed",
    "store_params",
]


def is_spatialdata(data: Any) -> bool:
    """Whether ``data`` is a :class:`spatialdata.SpatialData` (checked without importing spatialdata eagerly)."""
    return type(data).__name__ == "SpatialData" and hasattr(data, "tables")


def resolve(data: AnnData | SpatialData, table_key: str | None = None) -> tuple[SpatialData | None, AnnData]:
    """Return ``(sdata, table)`` for an ``AnnData`` or a ``SpatialData``.

    Parameters
    ----------
    data
        An AnnData (returned as the table, with ``sdata=None``) or a SpatialData.
    table_key
        Which table of the SpatialData; by default ``"table"``, or the only table when there is one.

    Returns
    -------
    The SpatialData (or ``None``) and the table.
    """
    if isinstance(data, AnnData):
        return None, data
    if not is_spatialdata(data):
        raise TypeError(f"`data` must be an AnnData or a SpatialData, got {type(data).__name__}.")
    tables = data.tables
    if table_key is None:
        if C.TABLE_KEY in tables:
            table_key = C.TABLE_KEY
        elif len(tables) == 1:
            table_key = next(iter(tables))
        else:
            raise ValueError(
                f"`table_key` must name one of the SpatialData's tables {sorted(tables)}; "
                f"there is no table called {C.TABLE_KEY!r}."
            )
    if table_key not in tables:
        raise KeyError(f"`table_key`={table_key!r} is not a table of this SpatialData; it has {sorted(tables)}.")
    return data, tables[table_key]


def get_table(data: AnnData | SpatialData, table_key: str | None = None) -> AnnData:
    """The table of ``data`` (see :func:`resolve`)."""
    return resolve(data, table_key)[1]


def get_meta(adata: AnnData) -> dict[str, Any]:
    """``adata.uns["hist_sd"]``: the scale and element names written by the readers."""
    meta = adata.uns.get(C.UNS_KEY)
    if meta is None:
        raise KeyError(
            f"The table has no `uns[{C.UNS_KEY!r}]` with the image scale. "
            "Read the data with `hs.io.read_st`, `hs.io.read_visium`, `hs.io.read_image` or `hs.datasets.*`."
        )
    return meta


def get_mpp(adata: AnnData) -> float:
    """Microns per pixel of the table's image at full resolution."""
    meta = get_meta(adata)
    mpp = meta.get(C.MPP)
    if mpp is None or not np.isfinite(float(mpp)) or float(mpp) <= 0:
        raise ValueError(f"`uns[{C.UNS_KEY!r}][{C.MPP!r}]` must be a positive number (µm per pixel), got {mpp!r}.")
    return float(mpp)


def get_image(sdata: SpatialData, image_key: str | None = None, *, table: AnnData | None = None) -> xr.DataArray:
    """The full-resolution image ``(c, y, x)`` of ``sdata`` as an xarray (lazy when the store is).

    Parameters
    ----------
    sdata
        The SpatialData.
    image_key
        Image element name; by default the one recorded in ``table.uns["hist_sd"]``, else the only image.
    table
        Table whose metadata names the image.
    """
    if image_key is None and table is not None:
        image_key = table.uns.get(C.UNS_KEY, {}).get(C.IMAGE_KEY) or None
    img = sdata.images[resolve_image_key(sdata, image_key)]
    if hasattr(img, "children"):  # multiscale DataTree: take the full-resolution level
        img = next(iter(img["scale0"].data_vars.values()))
    return img


def resolve_image_key(sdata: SpatialData, image_key: str | None = None) -> str:
    """The image element to use: ``image_key``, or the only image of ``sdata``; clear errors otherwise."""
    if image_key is None:
        if len(sdata.images) != 1:
            raise ValueError(
                f"`image_key` must name one of the images {sorted(sdata.images)}"
                + ("; this SpatialData has no image (an H&E image is needed for this step)." if not sdata.images else ".")
            )
        return next(iter(sdata.images))
    if image_key not in sdata.images:
        raise KeyError(
            f"`image_key`={image_key!r} is not an image of this SpatialData; it has {sorted(sdata.images)}. "
            "An H&E image is needed for this step."
        )
    return image_key


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = False, what: str = "path") -> Iterator[Path]:
    """Write a file or directory atomically: yields a temporary sibling path, renamed onto ``path`` on success.

    An existing ``path`` is an error unless ``overwrite``; a failed write leaves any existing ``path`` untouched
    and removes the temporary.

    Parameters
    ----------
    path
        Destination.
    overwrite
        Replace an existing destination.
    what
        Argument name for the error message.
    """
    import shutil
    import uuid

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"`{what}`: {str(path)!r} exists already; pass `overwrite=True` to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = path.with_name(f".{path.name}.tmp-{tag}")

    def _remove(p: Path) -> None:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()

    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{tag}")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def check_key_free(container: Mapping[str, Any], key: str, what: str, *, overwrite: bool = False) -> None:
    """Raise if ``key`` already exists in ``container`` unless ``overwrite`` was asked for.

    Parameters
    ----------
    container
        ``adata.obsm``, ``adata.obs``, ``adata.uns``, ``sdata.tables`` …
    key
        The key about to be written.
    what
        How to name the container in the message, e.g. ``"obsm"``.
    overwrite
        Allow replacing an existing entry.
    """
    if key in container and not overwrite:
        raise KeyError(f"`{what}[{key!r}]` exists already; pass another `key_added` or `overwrite=True`.")


def store_params(adata: AnnData, key: str, params: Mapping[str, Any], **extra: Any) -> None:
    """Record a step's parameters in ``adata.uns[key]["params"]`` (values made h5ad/zarr friendly)."""
    entry = dict(adata.uns.get(key, {})) if isinstance(adata.uns.get(key), Mapping) else {}
    entry["params"] = {k: _serialisable(v) for k, v in params.items()}
    entry.update({k: _serialisable(v) for k, v in extra.items()})
    adata.uns[key] = entry


def _serialisable(value: Any) -> Any:
    if value is None:
        return "None"
    if isinstance(value, bool | int | float | str | np.generic | np.ndarray):
        return value
    if isinstance(value, Mapping):
        return {str(k): _serialisable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return np.asarray(value, dtype=object).astype(str)
        if all(isinstance(v, bool | int | float | np.generic) for v in value):
            return np.asarray(value)
        return [_serialisable(v) for v in value]
    return str(value)


def log_written(where: str, *keys: str) -> None:
    """Log the keys a function has written (scanpy style)."""
    for key in keys:
        logger.info("added %s", f"{where}[{key!r}]")


def get_device(device: str | torch.device = "auto") -> torch.device:
    """Pick a torch device: ``"auto"`` takes CUDA, then MPS, then the CPU.

    Parameters
    ----------
    device
        ``"auto"``, or anything :class:`torch.device` accepts.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"`device` must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}.") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device`={device!r} was asked for but CUDA is not available; use device='auto'.")
    return dev


def set_seed(seed: int | None) -> np.random.Generator:
    """Seed Python, NumPy and torch (when imported) and return a NumPy generator for the caller."""
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % (2**32))
        import sys

        if "torch" in sys.modules:
            import torch

            torch.manual_seed(seed)
    return np.random.default_rng(seed)


def progress(iterable: Iterable[T], *, enabled: bool = True, **kwargs: Any) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar when ``enabled``."""
    if not enabled:
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, **kwargs)


def as_sections(datas: Any) -> dict[str, AnnData | SpatialData]:
    """Normalise one or many slides into ``{section name: data}``.

    Accepts a dict (kept), a list/tuple (named by ``table.obs["section"]`` or by position) or a single object.
    """
    if isinstance(datas, Mapping):
        if not datas:
            raise ValueError("No sections were given.")
        return dict(datas)
    if isinstance(datas, AnnData) or is_spatialdata(datas):
        datas = [datas]
    if not isinstance(datas, Sequence) or not datas:
        raise TypeError("Expected a SpatialData/AnnData, or a non-empty list or dict of them.")
    out: dict[str, AnnData | SpatialData] = {}
    for i, d in enumerate(datas):
        table = get_table(d)
        name = str(table.obs["section"].iloc[0]) if "section" in table.obs and table.n_obs else str(i)
        if name in out:
            name = f"{name}_{i}"
        out[name] = d
    return out


def data_dir(data_dir: str | os.PathLike[str] | None = None) -> str | None:
    """The local data mirror: ``data_dir`` if given, else ``$HIST_SD_DATA_DIR`` (``None`` when neither)."""
    if data_dir is not None:
        return os.fspath(data_dir)
    return os.environ.get(C.DATA_DIR_ENV) or None


def match_genes(available: Sequence[str], genes: Iterable[str], *, what: str = "genes") -> list[str]:
    """Check that every gene of ``genes`` is in ``available``; raise naming the unknown ones."""
    genes = list(genes)
    avail = set(available)
    missing = [g for g in genes if g not in avail]
    if missing:
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        raise KeyError(f"`{what}` has {len(missing)} gene(s) not in the data: {shown}.")
    return genes


def regex_any(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """Compile a list of regexes into one (``None`` for an empty list)."""
    patterns = list(patterns)
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
