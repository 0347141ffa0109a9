"""Spots on a dense integer grid: the (C, H, W) tensors HiST's convolutional models read and write."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from hist_sd import _constants as C
from hist_sd._core._data import resolve
from hist_sd._core._expr import in_tissue_mask
from hist_sd._core._grid import Layout, assign_grid, gather, scatter
from hist_sd._core._params import check_key_free, input_keys, log_written, store_params
from hist_sd._docs import doc_params

if TYPE_CHECKING:
    import torch
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

@doc_params
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
    %(table_key)s
    key_added
        Grid cells go to ``obs[f"{key_added}_row"]`` and ``obs[f"{key_added}_col"]`` (``grid_row``,
        ``grid_col`` by default); the grid description to ``uns[key_added]``.
    overwrite
        Replace existing grid keys.

    Returns
    -------
    Nothing; writes 0-based ``obs["grid_row"]``/``obs["grid_col"]`` and ``uns[key_added]`` with ``"shape"``
    ``[H, W]``, ``"layout"``, ``"row_key"``, ``"col_key"``, ``"row_parity"`` (Visium: the array row parity of grid
    row 0, which fixes the hexagonal neighbours; 0 otherwise) and ``"params"``.
    """
    _, adata = resolve(data, table_key)
    if not isinstance(pad_multiple, int | np.integer) or pad_multiple < 1:
        raise ValueError(f"`pad_multiple` must be a positive integer, got {pad_multiple!r}.")
    if not isinstance(margin, int | np.integer) or margin < 0:
        raise ValueError(f"`margin` must be a non-negative integer, got {margin!r}.")
    if adata.n_obs == 0:
        raise ValueError("The table has no spots to place on a grid.")
    row_key, col_key = f"{key_added}_row", f"{key_added}_col"
    check_key_free(adata.obs, row_key, "obs", overwrite=overwrite, protected=input_keys(adata, "obs"))
    check_key_free(adata.obs, col_key, "obs", overwrite=overwrite, protected=input_keys(adata, "obs"))
    check_key_free(adata.uns, key_added, "uns", overwrite=overwrite, protected=input_keys(adata, "uns"))

    row, col, (height, width), lay, parity = assign_grid(
        adata, layout=layout, pad_multiple=pad_multiple, margin=margin
    )

    adata.obs[row_key] = row
    adata.obs[col_key] = col
    params = {"layout": layout, "pad_multiple": int(pad_multiple), "margin": int(margin)}
    if key_added in adata.uns and overwrite:
        del adata.uns[key_added]
    store_params(adata, key_added, params, shape=[height, width], layout=lay, row_key=row_key, col_key=col_key,
                 row_parity=int(parity))
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


@doc_params
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
    %(table_key)s
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
    out = scatter(_values(adata, values, layer), row, col, (height, width))
    mask = np.zeros((height, width), dtype=bool)
    keep = in_tissue_mask(adata)
    mask[row[keep], col[keep]] = True
    return torch.from_numpy(out), torch.from_numpy(mask)


@doc_params
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
    %(table_key)s
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
    return gather(arr, row, col)
