"""Spot layouts on a dense integer grid, scatter/gather between spots and grids, and grid neighbours.

Layouts:

- ``"st"``: legacy ST square array (``array_row``/``array_col``, or rounded float ``array_y``/``array_x``).
- ``"tiles"``: square tiles of a bare image (``array_row``/``array_col`` tile indices).
- ``"visium"``: hexagonal Visium array; ``row = array_row``, ``col = array_col // 2`` on even rows and
  ``(array_col - 1) // 2`` on odd rows (HiST's rule). Which grid rows are odd array rows is kept as
  ``row_parity`` (the array row parity of grid row 0): the hexagonal neighbour rule needs it.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from anndata import AnnData

from hist_sd import _constants as C

__all__ = [
    "LAYOUTS",
    "GridCoords",
    "Layout",
    "assign_grid",
    "gather",
    "grid_coords",
    "neighbours",
    "pick_layout",
    "radius_pairs",
    "scatter",
]

Layout = Literal["auto", "visium", "st", "tiles"]
LAYOUTS: tuple[str, ...] = ("visium", "st", "tiles")
#: Layouts whose grid is square (8 symmetries, 4 or 8 neighbours); Visium's is hexagonal.
SQUARE_LAYOUTS: tuple[str, ...] = ("st", "tiles")


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
        col = np.where(row % 2 == 0, acol // 2, (acol - 1) // 2)
        return row, col
    if layout == "st":
        return _st_coords(adata)
    if layout == "tiles":
        return _obs_int(adata, "array_row", layout), _obs_int(adata, "array_col", layout)
    raise ValueError(f"`layout` must be one of 'auto', {', '.join(map(repr, LAYOUTS))}; got {layout!r}.")


def pick_layout(adata: AnnData, layout: str) -> str:
    """The concrete layout: ``layout`` itself, or for ``"auto"`` the one of ``uns["hist_sd"]["technology"]``."""
    if layout != "auto":
        if layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of 'auto', {', '.join(map(repr, LAYOUTS))}; got {layout!r}.")
        return layout
    tech = str(adata.uns.get(C.UNS_KEY, {}).get(C.TECHNOLOGY, "")).lower()
    if tech not in LAYOUTS:
        raise ValueError(
            f"layout='auto' reads `uns[{C.UNS_KEY!r}][{C.TECHNOLOGY!r}]`, which is {tech or 'missing'!r}; "
            f"pass `layout=` as one of {', '.join(map(repr, LAYOUTS))}."
        )
    return tech


class GridCoords(NamedTuple):
    """Where every spot sits on the dense grid of its layout."""

    rows: np.ndarray  #: 0-based grid row of every spot
    cols: np.ndarray  #: 0-based grid column of every spot
    shape: tuple[int, int]  #: padded grid ``(H, W)``
    layout: str  #: the resolved layout
    row_parity: int  #: parity of the array row of grid row 0 (Visium's hexagonal rule depends on it; else 0)


def assign_grid(adata: AnnData, *, layout: str = "auto", pad_multiple: int = 16, margin: int = 0) -> GridCoords:
    """0-based grid rows and columns of every spot, the padded grid shape and the layout used (writes nothing).

    Two spots on one cell are an error.
    """
    if adata.n_obs == 0:
        raise ValueError("The table has no spots to place on a grid.")
    lay = pick_layout(adata, layout)
    row, col = grid_coords(adata, lay)
    row0 = int(row.min()) - margin
    row = row - row0
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
    return GridCoords(row, col, (height, width), lay, row0 % 2 if lay == "visium" else 0)


def scatter(
    values: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], *, offset: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """Lay ``(n, c)`` spot values onto a float32 ``(c, H, W)`` grid (zeros off-spot), shifted by ``offset``."""
    h, w = shape
    out = np.zeros((values.shape[1], h, w), dtype=np.float32)
    out[:, rows + offset[0], cols + offset[1]] = values.T
    return out


def gather(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Inverse of :func:`scatter`: ``(c, H, W)`` -> contiguous float32 ``(n, c)``."""
    return np.ascontiguousarray(grid[:, rows + offset[0], cols + offset[1]].T, dtype=np.float32)


def radius_pairs(coords: np.ndarray, radius: float) -> np.ndarray:
    """``(E, 2)`` index pairs of points within ``radius`` of each other: both directions, no self pairs, sorted."""
    from scipy.spatial import cKDTree

    coords = np.asarray(coords, dtype=float)
    if len(coords) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = cKDTree(coords).query_pairs(r=float(radius), output_type="ndarray")
    both = np.concatenate([pairs, pairs[:, ::-1]]) if len(pairs) else np.zeros((0, 2), dtype=np.int64)
    return both[np.lexsort((both[:, 1], both[:, 0]))].astype(np.int64)


def neighbours(rows: Any, cols: Any, layout: str, *, n_neighs: int = 8, row_parity: int = 0) -> np.ndarray:
    """Neighbouring spots on the grid of ``layout``, as ``(E, 2)`` index pairs (both directions, sorted).

    Parameters
    ----------
    rows, cols
        0-based grid rows and columns, as :func:`assign_grid` gives them (the coordinates every caller holds).
    layout
        ``"st"`` or ``"tiles"``: a square grid, the 8 cells around a spot (``n_neighs=8``) or the 4 sharing a side
        (``n_neighs=4``). ``"visium"``: the 6 hexagonal neighbours (two in the same row, two in each row above
        and below; ``n_neighs`` is ignored).
    n_neighs
        4 or 8, for square grids.
    row_parity
        Visium: parity of the array row of grid row 0 (:attr:`GridCoords.row_parity`).
    """
    r = np.asarray(rows, dtype=np.int64)
    c = np.asarray(cols, dtype=np.int64)
    if r.ndim != 1 or r.shape != c.shape:
        raise ValueError(f"`rows` and `cols` must be 1-D arrays of equal length, got shapes {r.shape} and {c.shape}.")
    if layout == "visium":
        # back to the hexagonal array: columns step by 2 and odd rows are shifted by one
        acol = 2 * c + ((r + row_parity) % 2)
        return radius_pairs(np.column_stack([r * np.sqrt(3.0), acol]), 2.1)
    if layout in SQUARE_LAYOUTS:
        if n_neighs not in (4, 8):
            raise ValueError(f"`n_neighs` must be 4 or 8 on a square grid, got {n_neighs!r}.")
        return radius_pairs(np.column_stack([r, c]), 1.5 if n_neighs == 8 else 1.0)
    raise ValueError(f"`layout` must be one of {', '.join(map(repr, LAYOUTS))}; got {layout!r}.")
