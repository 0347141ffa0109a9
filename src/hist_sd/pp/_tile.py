"""Square tiles over the tissue of a bare H&E image: the spots of a slide that has no expression."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from hist_sd import _constants as C
from hist_sd._core._data import is_spatialdata
from hist_sd._core._image import block_mean, image_levels, resolve_image_key, stored_source
from hist_sd._core._params import log_written, store_params
from hist_sd._core._tissue import polygons_to_mask, tissue_mask

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

#: Longest side of the downsampled image used to find the tissue.
_MAX_WORK_SIDE = 8000


def downsample(element: Any, factor: float) -> tuple[np.ndarray, float, float]:
    """Block-mean downsample an image element by about ``factor``.

    A stored pyramid level is used when one is at most ``factor`` coarser (levels computed on the fly from
    the full-resolution array, as in an in-memory SpatialData, are skipped: they are slower to compute than
    block means). Returns the ``(y, x, 3)`` float32 image and the full-resolution pixels per working pixel
    along y and x.
    """
    named = image_levels(element)
    levels = [lev for _, lev in named]
    h0, w0 = int(levels[0].shape[-2]), int(levels[0].shape[-1])
    best = levels[0]
    for i, lev in enumerate(levels[1:], start=1):
        if w0 / int(lev.shape[-1]) <= factor + 1e-6 and stored_source(named, i) == i:
            best = lev
    k = max(1, int(factor / (w0 / int(best.shape[-1]))))
    out = block_mean(best, k)
    if out.ndim != 3 or out.shape[0] < 3:
        raise ValueError(f"The image must be (c, y, x) with 3 colour channels; got shape {out.shape}.")
    out = np.moveaxis(out[:3], 0, -1)
    return out, h0 / out.shape[0], w0 / out.shape[1]


def _box_sums(mask: np.ndarray, y_edges: np.ndarray, x_edges: np.ndarray) -> np.ndarray:
    """Sum of ``mask`` in every box between consecutive integer edges (clipped to the image)."""
    integ = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integ[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    ye = np.clip(y_edges, 0, mask.shape[0])
    xe = np.clip(x_edges, 0, mask.shape[1])
    y0, y1 = ye[:-1, None], ye[1:, None]
    x0, x1 = xe[None, :-1], xe[None, 1:]
    return integ[y1, x1] - integ[y0, x1] - integ[y1, x0] + integ[y0, x0]


def _layout(lo: float, length: float, n: int, side: float, limit: float) -> float:
    """Origin of ``n`` tiles of ``side`` centred on ``[lo, lo + length)`` and kept inside ``[0, limit)``."""
    origin = lo + (length - n * side) / 2.0
    return float(np.clip(origin, 0.0, max(limit - n * side, 0.0)))


def tile(
    sdata: SpatialData,
    *,
    tile_um: float = 100.0,
    shape: tuple[int, int] | None = None,
    min_tissue: float = 0.5,
    image_key: str | None = None,
    mpp: float | None = None,
    key_added: str = "tiles",
    overwrite: bool = False,
    tissue_key: str | None = None,
) -> None:
    """Cover the tissue of an H&E image with square tiles that act as spots.

    The tissue is the polygons stored by :func:`hist_sd.pp.detect_tissue` when there are some (rasterised at the
    working resolution), else it is found on a downsampled copy of the image, read from a stored pyramid level
    (Otsu on saturation and grey level, see :func:`tissue_mask`). A regular grid of square tiles is laid over
    its bounding box, and the tiles whose tissue fraction reaches ``min_tissue`` are kept. The tiles become a
    shapes element and a table with no genes, ready for :func:`hist_sd.pp.features` (one patch per tile) and
    :func:`hist_sd.pp.grid`. On a whole slide (:func:`hist_sd.io.read_wsi`) with a pyramid, no full-resolution
    pixel is read: the mask and the table's preview image come from coarse levels.

    Parameters
    ----------
    sdata
        SpatialData with the H&E image (e.g. from :func:`hist_sd.io.read_image`).
    tile_um
        Side of a tile in µm, which is also the tiles' spacing. A tile wider and taller than the tissue's
        bounding box is refused (one tile over the whole section is no spatial map). To apply a trained model,
        tile at the spacing of its training spots (``model.spacing_um``: 200 µm for legacy ST, 100 µm for
        Visium) and encode patches of its training size (``hs.pp.features(..., patch_um=model.patch_um)``);
        spatial models warn otherwise.
    shape
        ``(rows, cols)``: instead of ``tile_um``, divide the tissue bounding box into this many square tiles
        (side = the larger of box height / rows and box width / cols; HiST's TCGA slides use ``(80, 64)``).
    min_tissue
        Minimum fraction of a tile covered by tissue, in ``[0, 1]``.
    image_key
        Image element (default: the only image).
    mpp
        µm per pixel of the image; by default :func:`hist_sd.io.image_mpp` (recorded by the readers).
    key_added
        Name of the new shapes element and table.
    overwrite
        Replace an existing element or table called ``key_added``.
    tissue_key
        Shapes element with the tissue polygons (full-resolution pixels). By default the one
        :func:`hist_sd.pp.detect_tissue` stored for this image (``"tissue"``), if any; otherwise the mask is
        computed here and not stored.

    Returns
    -------
    Nothing; adds ``sdata.shapes[f"{key_added}_shapes"]`` (squares, full-resolution pixels) and ``sdata.tables[key_added]``
    (``X`` of shape ``(n_tiles, 0)``; obs ``array_row``, ``array_col`` (tile indices), ``in_tissue``,
    ``tissue_fraction``, ``section``; ``obsm["spatial"]`` tile centres ``(x, y)``; ``uns["hist_sd"]`` with
    ``mpp``, ``spot_diameter_um`` = ``spot_spacing_um`` = tile side in µm, ``technology="tiles"``,
    ``image_key``, ``shapes_key``; ``uns["spatial"][section]`` with a small copy of the image and its scale
    factors, for :func:`scanpy.pl.spatial` / :func:`squidpy.pl.spatial_scatter`; ``uns[key_added]["params"]``).
    """
    from spatialdata.transformations import get_transformation, set_transformation

    from hist_sd.io._build import build_sdata

    key, shapes_key, mpp = _check_tile_args(
        sdata,
        tile_um=tile_um,
        shape=shape,
        min_tissue=min_tissue,
        image_key=image_key,
        mpp=mpp,
        key_added=key_added,
        overwrite=overwrite,
    )

    element = sdata.images[key]
    from hist_sd.pp._tissue import stored_tissue

    tissue_key = stored_tissue(sdata, key, tissue_key)
    tissue = sdata.shapes[tissue_key].geometry if tissue_key is not None else None
    mask, fy, fx, h0, w0 = _find_tissue(element, key, mpp=mpp, tile_um=tile_um, shape=shape, tissue=tissue)
    n_rows, n_cols, side, y0, x0 = _grid_layout(mask, fy, fx, h0, w0, tile_um=tile_um, shape=shape, mpp=mpp)
    side_um = side * mpp
    ii, jj, frac, xy = _tiles_on_tissue(
        mask, fy, fx, h0, w0, origin=(y0, x0), side=side, n_rows=n_rows, n_cols=n_cols, min_tissue=min_tissue
    )

    section, adata = _tiles_table(key, ii, jj, frac)
    transforms = get_transformation(element, get_all=True)
    cs = next(iter(transforms)) if transforms else C.COORDINATE_SYSTEM_DEFAULT
    built = build_sdata(
        image=None,
        xy=xy,
        adata=adata,
        name=section,
        mpp=mpp,
        spot_diameter_um=side_um,
        spot_spacing_um=side_um,
        technology="tiles",
        shapes_key=shapes_key,
        coordinate_system=cs,
        scale_factors=None,
        extra_meta={C.IMAGE_KEY: key, "tile_px": float(side)},
        shape_kind="square",
        image_element=element,
    )
    shapes = built.shapes[shapes_key]
    if transforms:
        set_transformation(shapes, dict(transforms), set_all=True)
    table = built.tables[C.TABLE_KEY]
    store_params(
        table,
        key_added,
        {"tile_um": float(tile_um), "shape": list(shape) if shape else None, "min_tissue": float(min_tissue),
         "image_key": key, "mpp": mpp, "tissue_key": tissue_key},
        grid_shape=[n_rows, n_cols],
        tile_um=float(side_um),
        tissue_area_fraction=float(mask.mean()),
    )
    _write_tiles(sdata, key_added, shapes_key, shapes=shapes, table=table, overwrite=overwrite)
    n = len(ii)
    logger.info("%d tiles of %.1f µm over the tissue of %r (%d x %d grid)", n, side_um, key, n_rows, n_cols)


def _check_tile_args(
    sdata: SpatialData,
    *,
    tile_um: float,
    shape: tuple[int, int] | None,
    min_tissue: float,
    image_key: str | None,
    mpp: float | None,
    key_added: str,
    overwrite: bool,
) -> tuple[str, str, float]:
    """Check the arguments of :func:`tile`; the image key, the shapes key and µm per pixel."""
    if not is_spatialdata(sdata):
        raise TypeError(f"`sdata` must be a SpatialData with an H&E image, got {type(sdata).__name__}.")
    key = resolve_image_key(sdata, image_key)
    if not 0.0 <= float(min_tissue) <= 1.0:
        raise ValueError(f"`min_tissue` must be a fraction in [0, 1], got {min_tissue!r}.")
    if shape is None:
        if not np.isfinite(tile_um) or tile_um <= 0:
            raise ValueError(f"`tile_um` must be a positive number of µm, got {tile_um!r}.")
    else:
        if len(shape) != 2 or any(not isinstance(v, int | np.integer) or v < 1 for v in shape):
            raise ValueError(f"`shape` must be (rows, cols) of positive integers, got {shape!r}.")
    shapes_key = f"{key_added}_shapes"
    for name, what in ((key_added, "tables"), (shapes_key, "shapes")):
        if name in sdata.tables or name in sdata.shapes or name in sdata.images or name in sdata.labels:
            if not overwrite or name not in getattr(sdata, what):
                raise KeyError(
                    f"An element called {name!r} exists already; pass another `key_added`"
                    + (" or `overwrite=True`." if name in getattr(sdata, what) else ".")
                )
    if mpp is None:
        from hist_sd.io import image_mpp

        mpp = image_mpp(sdata, key)
    if not np.isfinite(mpp) or mpp <= 0:
        raise ValueError(f"`mpp` must be a positive number of µm per pixel, got {mpp!r}.")
    return key, shapes_key, float(mpp)


def _find_tissue(
    element: Any, key: str, *, mpp: float, tile_um: float, shape: tuple[int, int] | None, tissue: Any = None
) -> tuple[np.ndarray, float, float, int, int]:
    """Tissue mask of a downsampled image, full-res px per mask px along y and x, full height and width.

    With ``tissue`` (polygons in full-resolution pixels) the mask is those polygons rasterised; no pixel is read.
    """
    full = image_levels(element)[0][1]
    h0, w0 = int(full.shape[-2]), int(full.shape[-1])
    work_mpp = max(mpp, tile_um / 16.0 if shape is None else 4.0, max(h0, w0) * mpp / _MAX_WORK_SIDE)
    if tissue is not None:
        f = work_mpp / mpp
        mask = polygons_to_mask(tissue, (math.ceil(h0 / f), math.ceil(w0 / f)), f, f)
        if not mask.any():
            raise ValueError(f"The stored tissue polygons of {key!r} cover no part of the image.")
        return mask, f, f, h0, w0
    rgb, fy, fx = downsample(element, work_mpp / mpp)
    mask = tissue_mask(rgb, work_mpp=mpp * (fy + fx) / 2.0)
    if not mask.any():
        raise ValueError(f"No tissue was found in the image {key!r}: it looks uniform (blank glass?).")
    return mask, fy, fx, h0, w0


def _grid_layout(
    mask: np.ndarray,
    fy: float,
    fx: float,
    h0: int,
    w0: int,
    *,
    tile_um: float,
    shape: tuple[int, int] | None,
    mpp: float,
) -> tuple[int, int, float, float, float]:
    """Rows, columns, side and origin (y, x) in full-res px of the tile grid over the tissue's bounds."""
    rows_any, cols_any = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    by0, by1 = rows_any[0] * fy, (rows_any[-1] + 1) * fy
    bx0, bx1 = cols_any[0] * fx, (cols_any[-1] + 1) * fx
    if shape is None:
        side = tile_um / mpp
        if side > max(by1 - by0, bx1 - bx0):
            raise ValueError(
                f"`tile_um`={tile_um:g} µm is larger than the tissue ({(by1 - by0) * mpp:.0f} x {(bx1 - bx0) * mpp:.0f} "
                "µm): one tile would cover the whole section. Pass a smaller `tile_um`, or `shape=(rows, cols)`."
            )
        n_rows, n_cols = math.ceil((by1 - by0) / side), math.ceil((bx1 - bx0) / side)
    else:
        n_rows, n_cols = int(shape[0]), int(shape[1])
        side = max((by1 - by0) / n_rows, (bx1 - bx0) / n_cols)
    y0 = _layout(by0, by1 - by0, n_rows, side, h0)
    x0 = _layout(bx0, bx1 - bx0, n_cols, side, w0)
    return n_rows, n_cols, side, y0, x0


def _tiles_on_tissue(
    mask: np.ndarray,
    fy: float,
    fx: float,
    h0: int,
    w0: int,
    *,
    origin: tuple[float, float],
    side: float,
    n_rows: int,
    n_cols: int,
    min_tissue: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row and column indices, tissue fractions and centres ``(x, y)`` of the tiles with enough tissue."""
    y0, x0 = origin
    y_edges = np.rint((y0 + side * np.arange(n_rows + 1)) / fy).astype(np.int64)
    x_edges = np.rint((x0 + side * np.arange(n_cols + 1)) / fx).astype(np.int64)
    area = np.diff(y_edges)[:, None] * np.diff(x_edges)[None, :]
    frac = _box_sums(mask, y_edges, x_edges) / np.maximum(area, 1)
    ii, jj = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    cy = y0 + (ii + 0.5) * side
    cx = x0 + (jj + 0.5) * side
    keep = (frac >= float(min_tissue)) & (cy < h0) & (cx < w0)
    if not keep.any():
        raise ValueError(f"No tile has a tissue fraction >= `min_tissue`={min_tissue}; lower it or the tile size.")
    return ii[keep], jj[keep], frac[keep], np.column_stack([cx[keep], cy[keep]])


def _tiles_table(key: str, ii: np.ndarray, jj: np.ndarray, frac: np.ndarray) -> tuple[str, AnnData]:
    """The section name (from the image key) and the gene-less table of the tiles."""
    section = key[: -len("_full_image")] if key.endswith("_full_image") else key
    n = len(ii)
    obs = pd.DataFrame(
        {
            "array_row": ii.astype(int),
            "array_col": jj.astype(int),
            "in_tissue": np.ones(n, dtype=int),
            "tissue_fraction": frac.astype(float),
            "section": pd.Categorical([section] * n),
        },
        index=pd.Index([f"{section}_tile_{i}_{j}" for i, j in zip(ii, jj, strict=True)]),
    )
    return section, AnnData(X=sparse.csr_matrix((n, 0), dtype=np.float32), obs=obs)


def _write_tiles(
    sdata: SpatialData, key_added: str, shapes_key: str, *, shapes: Any, table: AnnData, overwrite: bool
) -> None:
    """Add the tiles' shapes element and table to ``sdata`` (replacing old ones with ``overwrite``)."""
    if overwrite:
        if key_added in sdata.tables:
            del sdata.tables[key_added]
        if shapes_key in sdata.shapes:
            del sdata.shapes[shapes_key]
    sdata.shapes[shapes_key] = shapes
    sdata.tables[key_added] = table
    log_written("shapes", shapes_key)
    log_written("tables", key_added)
