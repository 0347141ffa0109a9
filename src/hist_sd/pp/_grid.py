"""Spots on a dense integer grid: the (C, H, W) tensors HiST's convolutional models read and write."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from hist_sd import _constants as C
from hist_sd._utils import check_key_free, log_written, resolve, store_params

if TYPE_CHECKING:
    import torch
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

Layout = Literal["auto", "visium", "st", "tiles"]

_LAYOUTS = ("visium", "st", "tiles")
_TECHNOLOGY_LAYOUT = {"visium": "visium", "st": "st", "tiles": "tiles"}


def _obs_int(adata: AnnData, key: str, what: str) -> np.ndarray:
    """``obs[key]`` as integers (raises when missing, non-finite or not whole numbers)."""
    if key not in adata.obs:
        raise KeyError(f"layout={what!r} needs `obs[{key!r}]`; the table has {list(adata.obs.columns)}.")
    vals = pd.to_numeric(adata.obs[key], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(vals).all():
        raise ValueError(f"`obs[{key!r}]` has missing or non-numeric values; layout={what!r} needs integers.")
    rounded = np.rint(vals)
    if not np.allclose(vals, rounded, atol=1e-6):
        raise ValueError(f"`obs[{key!r}]` must hold whole numbers for layout={what!r}.")
    return rounded.astype(np.int64)


def _st_coords(adata: AnnData) -> tuple[np.ndarray, np.ndarray]:
    """Legacy ST: integer array rows/cols, or the rounded float array coordinates ``array_y``/``array_x``."""
    if "array_row" in adata.obs and "array_col" in adata.obs:
        row = pd.to_numeric(adata.obs["array_row"], errors="coerce").to_numpy(dtype=float)
        col = pd.to_numeric(adata.obs["array_col"], errors="coerce").to_numpy(dtype=float)
    elif "array_y" in adata.obs and "array_x" in adata.obs:
        row = pd.to_numeric(adata.obs["array_y"], errors="coerce").to_numpy(dtype=float)
        col = pd.to_numeric(adata.obs["array_x"], errors="coerce").to_numpy(dtype=float)
    else:
        raise KeyError(
            "layout='st' needs `obs['array_row']`/`obs['array_col']` (or float `obs['array_y']`/`obs['array_x']`); "
            f"the table has {list(adata.obs.columns)}."
        )
    if not (np.isfinite(row).all() and np.isfinite(col).all()):
        raise ValueError("The spots' array coordinates have missing or non-numeric values.")
    return np.rint(row).astype(np.int64), np.rint(col).astype(np.int64)


def grid_coords(adata: AnnData, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer ``(row, col)`` of every spot for ``layout`` (before shifting to a 0 origin)."""
    if layout == "visium":
        row = _obs_int(adata, "array_row", layout)
        acol = _obs_int(adata, "array_col", layout)
        # HiST: Visium's hexagonal array interleaves even and odd columns row by row.
        col = np.where(row % 2 == 0, acol // 2, (acol - 1) // 2)
        return row, col
    if layout == "st":
        return _st_coords(adata)
    if layout == "tiles":
        return _obs_int(adata, "array_row", layout), _obs_int(adata, "array_col", layout)
    raise ValueError(f"`layout` must be one of 'auto', {', '.join(map(repr, _LAYOUTS))}; got {layout!r}.")


def _pick_layout(adata: AnnData, layout: str) -> str:
    if layout != "auto":
        if layout not in _LAYOUTS:
            raise ValueError(f"`layout` must be one of 'auto', {', '.join(map(repr, _LAYOUTS))}; got {layout!r}.")
        return layout
    tech = str(adata.uns.get(C.UNS_KEY, {}).get(C.TECHNOLOGY, "")).lower()
    if tech not in _TECHNOLOGY_LAYOUT:
        raise ValueError(
            f"layout='auto' reads `uns[{C.UNS_KEY!r}][{C.TECHNOLOGY!r}]`, which is {tech or 'missing'!r}; "
            f"pass `layout=` as one of {', '.join(map(repr, _LAYOUTS))}."
        )
    return _TECHNOLOGY_LAYOUT[tech]


def assign_grid(
    adata: AnnData, *, layout: str = "auto", pad_multiple: int = 16, margin: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[int, int], str]:
    """0-based grid rows and columns of every spot, the padded grid shape and the layout used (writes nothing).

    The engine of :func:`grid`; two spots on one cell are an error.
    """
    lay = _pick_layout(adata, layout)
    row, col = grid_coords(adata, lay)
    row = row - row.min() + margin
    col = col - col.min() + margin

    flat = pd.Series(row * (int(col.max()) + 1) + col)
    dup = flat.duplicated(keep=False).to_numpy()
    if dup.any():
        names = list(adata.obs_names[dup][:4])
        raise ValueError(
            f"{int(dup.sum())} spots share a grid cell with another spot under layout={lay!r} (e.g. {names} "
            f"at row {int(row[dup][0])}, col {int(col[dup][0])}); check the layout and the array coordinates."
        )
    height = math.ceil((int(row.max()) + 1 + margin) / pad_multiple) * pad_multiple
    width = math.ceil((int(col.max()) + 1 + margin) / pad_multiple) * pad_multiple
    return row, col, (height, width), lay


def grid(
    data: AnnData | SpatialData,
    *,
    layout: Layout = "auto",
    pad_multiple: int = 16,
    margin: int = 0,
    table_key: str | None = None,
    key_added: str = C.GRID_UNS,
    overwrite: bool = False,
) -> None:
    """Place every spot on a dense integer grid (HiST's image-like layout of a slide).

    Parameters
    ----------
    data
        AnnData or SpatialData whose table has the spots' array coordinates.
    layout
        How array coordinates map to grid cells:

        - ``"visium"``: hexagonal Visium array; ``row = array_row``, ``col = array_col // 2`` on even rows and
          ``(array_col - 1) // 2`` on odd rows (HiST's rule).
        - ``"st"``: legacy ST square array; ``obs["array_row"]``/``obs["array_col"]`` (array y/x), or the
          float ``obs["array_y"]``/``obs["array_x"]`` rounded.
        - ``"tiles"``: tile indices in ``obs["array_row"]``/``obs["array_col"]`` (from :func:`hist_sd.pp.tile`).
        - ``"auto"``: from ``uns["hist_sd"]["technology"]``.
    pad_multiple
        Grid height and width are rounded up to a multiple of this (U-Net style models halve the grid
        several times); ``1`` for no padding.
    margin
        Empty cells added before the first and after the last occupied row and column.
    table_key
        Table of a SpatialData (see :func:`hist_sd._utils.resolve`).
    key_added
        Grid cells go to ``obs[f"{key_added}_row"]`` and ``obs[f"{key_added}_col"]`` (``grid_row``,
        ``grid_col`` by default); the grid description to ``uns[key_added]``.
    overwrite
        Replace existing grid keys.

    Returns
    -------
    Nothing; writes 0-based ``obs["grid_row"]``/``obs["grid_col"]`` and ``uns[key_added]`` with ``"shape"``
    ``[H, W]``, ``"layout"``, ``"row_key"``, ``"col_key"`` and ``"params"``.
    """
    _, adata = resolve(data, table_key)
    if not isinstance(pad_multiple, int | np.integer) or pad_multiple < 1:
        raise ValueError(f"`pad_multiple` must be a positive integer, got {pad_multiple!r}.")
    if not isinstance(margin, int | np.integer) or margin < 0:
        raise ValueError(f"`margin` must be a non-negative integer, got {margin!r}.")
    if adata.n_obs == 0:
        raise ValueError("The table has no spots to place on a grid.")
    row_key, col_key = f"{key_added}_row", f"{key_added}_col"
    check_key_free(adata.obs, row_key, "obs", overwrite=overwrite)
    check_key_free(adata.obs, col_key, "obs", overwrite=overwrite)
    check_key_free(adata.uns, key_added, "uns", overwrite=overwrite)

    row, col, (height, width), lay = assign_grid(adata, layout=layout, pad_multiple=pad_multiple, margin=margin)

    adata.obs[row_key] = row
    adata.obs[col_key] = col
    params = {"layout": layout, "pad_multiple": int(pad_multiple), "margin": int(margin)}
    if key_added in adata.uns and overwrite:
        del adata.uns[key_added]
    store_params(adata, key_added, params, shape=[height, width], layout=lay, row_key=row_key, col_key=col_key)
    log_written("obs", row_key, col_key)
    log_written("uns", key_added)
    logger.info("grid %d x %d (%s layout) for %d spots", height, width, lay, adata.n_obs)


def _grid_info(adata: AnnData, grid_key: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    entry = adata.uns.get(grid_key)
    if not isinstance(entry, dict) or "shape" not in entry:
        raise KeyError(f"`uns[{grid_key!r}]` has no grid; run `hs.pp.grid(data, key_added={grid_key!r})` first.")
    row_key = str(entry.get("row_key", f"{grid_key}_row"))
    col_key = str(entry.get("col_key", f"{grid_key}_col"))
    for key in (row_key, col_key):
        if key not in adata.obs:
            raise KeyError(f"`obs[{key!r}]` is missing; run `hs.pp.grid(data, key_added={grid_key!r})` again.")
    height, width = (int(v) for v in np.asarray(entry["shape"]).ravel()[:2])
    row = adata.obs[row_key].to_numpy(dtype=np.int64)
    col = adata.obs[col_key].to_numpy(dtype=np.int64)
    if row.min() < 0 or col.min() < 0 or row.max() >= height or col.max() >= width:
        raise ValueError(
            f"`obs[{row_key!r}]`/`obs[{col_key!r}]` fall outside the grid {height} x {width} in "
            f"`uns[{grid_key!r}]`; run `hs.pp.grid` again."
        )
    return row, col, (height, width)


def _values(adata: AnnData, values: str | np.ndarray | Any, layer: str | None) -> np.ndarray:
    """Spot values ``(n_obs, C)`` as float32, from an obsm key, ``"X"``, a layer or an array."""
    if layer is not None:
        if not isinstance(values, str):
            raise ValueError("Pass either an array as `values` or `layer=`, not both.")
        if layer not in adata.layers:
            raise KeyError(f"`layer`={layer!r} is not a layer of the table; it has {list(adata.layers)}.")
        mat: Any = adata.layers[layer]
    elif isinstance(values, str):
        if values == "X":
            mat = adata.X
        elif values in adata.obsm:
            mat = adata.obsm[values]
        else:
            raise KeyError(
                f"`values`={values!r} is neither 'X' nor an obsm key of the table; obsm has {list(adata.obsm)}."
            )
    else:
        mat = values
    if sparse.issparse(mat):
        mat = mat.toarray()
    elif isinstance(mat, pd.DataFrame):
        mat = mat.to_numpy()
    elif hasattr(mat, "detach"):
        mat = mat.detach().cpu().numpy()
    arr = np.asarray(mat, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != adata.n_obs:
        raise ValueError(f"`values` must be (n_obs, C) = ({adata.n_obs}, C); got shape {arr.shape}.")
    return arr


def in_tissue_mask(adata: AnnData) -> np.ndarray:
    """Boolean ``(n_obs,)``: ``obs["in_tissue"]`` truthy, or all spots when the column is absent."""
    if "in_tissue" not in adata.obs:
        return np.ones(adata.n_obs, dtype=bool)
    vals = adata.obs["in_tissue"]
    if vals.dtype == bool:
        return vals.to_numpy(dtype=bool)
    num = pd.to_numeric(vals, errors="coerce").to_numpy(dtype=float)
    return np.nan_to_num(num, nan=0.0) != 0


def to_grid(
    data: AnnData | SpatialData,
    values: str | np.ndarray = C.FEATURES,
    *,
    layer: str | None = None,
    table_key: str | None = None,
    grid_key: str = C.GRID_UNS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter per-spot values onto the grid from :func:`hist_sd.pp.grid`.

    Parameters
    ----------
    data
        AnnData or SpatialData with a grid.
    values
        An ``obsm`` key (``"X_hist"`` features by default), ``"X"`` (the expression matrix, densified, genes in
        ``var_names`` order) or an array ``(n_obs, C)`` in the table's row order.
    layer
        Take ``layers[layer]`` instead of ``values``.
    table_key
        Table of a SpatialData.
    grid_key
        ``key_added`` of :func:`hist_sd.pp.grid`.

    Returns
    -------
    A float32 tensor ``(C, H, W)`` holding each spot's values at its cell (zeros elsewhere) and a bool mask
    ``(H, W)`` that is ``True`` exactly at the in-tissue spots (``obs["in_tissue"]``; every spot when absent).
    """
    import torch

    _, adata = resolve(data, table_key)
    row, col, (height, width) = _grid_info(adata, grid_key)
    vals = _values(adata, values, layer)
    out = np.zeros((vals.shape[1], height, width), dtype=np.float32)
    out[:, row, col] = vals.T
    mask = np.zeros((height, width), dtype=bool)
    keep = in_tissue_mask(adata)
    mask[row[keep], col[keep]] = True
    return torch.from_numpy(out), torch.from_numpy(mask)


def from_grid(
    data: AnnData | SpatialData,
    grid: torch.Tensor | np.ndarray,
    *,
    table_key: str | None = None,
    grid_key: str = C.GRID_UNS,
) -> np.ndarray:
    """Read per-spot values back from a grid (the inverse of :func:`to_grid`).

    Parameters
    ----------
    data
        AnnData or SpatialData with a grid.
    grid
        Tensor or array ``(C, H, W)``, ``(1, C, H, W)`` or ``(H, W)`` on the grid of ``grid_key``.
    table_key
        Table of a SpatialData.
    grid_key
        ``key_added`` of :func:`hist_sd.pp.grid`.

    Returns
    -------
    float32 array ``(n_obs, C)`` in the table's row order.
    """
    _, adata = resolve(data, table_key)
    row, col, (height, width) = _grid_info(adata, grid_key)
    if hasattr(grid, "detach"):
        arr = grid.detach().to("cpu").float().numpy()
    else:
        arr = np.asarray(grid, dtype=np.float32)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(f"`grid` with a batch dimension must have batch size 1; got shape {arr.shape}.")
        arr = arr[0]
    elif arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (height, width):
        raise ValueError(
            f"`grid` must be (C, {height}, {width}) (or (1, C, {height}, {width})) to match "
            f"`uns[{grid_key!r}]['shape']`; got shape {tuple(arr.shape)}."
        )
    return np.ascontiguousarray(arr[:, row, col].T, dtype=np.float32)
