"""Resolving ``AnnData | SpatialData`` (and a table key), the readers' scale metadata, section collections."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from anndata import AnnData

from hist_sd import _constants as C

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = [
    "as_sections",
    "data_dir",
    "get_meta",
    "get_mpp",
    "get_table",
    "is_prediction",
    "is_spatialdata",
    "match_genes",
    "resolve",
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
        Which table of the SpatialData; by default ``"table"``, else the only table, else the only table that is not
        a prediction of :func:`hist_sd.tl.predict`.

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
        measured = [k for k, t in tables.items() if not is_prediction(t)]
        if C.TABLE_KEY in tables:
            table_key = C.TABLE_KEY
        elif len(tables) == 1:
            table_key = next(iter(tables))
        elif len(measured) == 1:  # e.g. "tiles" next to the predictions made from it
            table_key = measured[0]
        else:
            described = ", ".join(f"{k!r} ({'predicted' if is_prediction(t) else 'measured'}, {t.n_obs} rows)"
                                  for k, t in tables.items())
            raise ValueError(
                f"`table_key` must name one of the SpatialData's tables: {described}; there is no table called "
                f"{C.TABLE_KEY!r} and more than one holding measured data or features."
            )
    if table_key not in tables:
        raise KeyError(f"`table_key`={table_key!r} is not a table of this SpatialData; it has {sorted(tables)}.")
    return data, tables[table_key]


def is_prediction(table: AnnData) -> bool:
    """Whether a table holds predictions written by :func:`hist_sd.tl.predict` (``uns["hist_sd"]["prediction"]``)."""
    meta = table.uns.get(C.UNS_KEY)
    return isinstance(meta, Mapping) and bool(meta.get("prediction"))


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
    """Check that ``genes`` has no duplicates and every gene is in ``available``; raise naming the offenders."""
    genes = list(genes)
    dup = sorted(g for g, n in Counter(genes).items() if n > 1)
    if dup:
        raise ValueError(f"`{what}` lists {len(dup)} gene(s) more than once: {', '.join(map(str, dup[:10]))}.")
    avail = set(available)
    missing = [g for g in genes if g not in avail]
    if missing:
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        raise KeyError(f"`{what}` has {len(missing)} gene(s) not in the data: {shown}.")
    return genes
