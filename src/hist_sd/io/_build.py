"""Assemble a SpatialData from an H&E image, spot coordinates and a table (shared by every reader)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from hist_sd import _constants as C
from hist_sd._core._image import block_mean

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

ImageLike = str | os.PathLike[str] | np.ndarray

DEFAULT_SCALE_FACTORS: tuple[int, ...] = (2, 2, 2)

#: Key of ``sdata.attrs[UNS_KEY]`` mapping image element names to µm per pixel (survives zarr round trips,
#: unlike the attrs of the image element itself).
IMAGE_MPP = "image_mpp"


def load_rgb(image: ImageLike, *, what: str = "image") -> np.ndarray:
    """Read an H&E image into a ``(y, x, 3)`` uint8 array.

    A path (JPEG, PNG, TIFF) or an array ``(y, x, 3)`` / ``(3, y, x)`` is accepted. A fully opaque alpha
    channel is dropped; any other channel count is an error.
    """
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
            arr = np.moveaxis(arr, 0, -1)
    else:
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"`{what}`: no image file at {str(path)!r}.")
        from PIL import Image

        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # whole-slide H&E JPEGs are larger than PIL's bomb limit
        try:
            with Image.open(path) as im:
                mode = im.mode
                if mode not in ("RGB", "RGBA"):
                    raise ValueError(
                        f"`{what}` must be an RGB H&E image with 3 channels; {path.name!r} has mode {mode!r}."
                    )
                arr = np.asarray(im)
        finally:
            Image.MAX_IMAGE_PIXELS = old
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"`{what}` must be an RGB image of shape (y, x, 3); got an array of shape {arr.shape}.")
    if arr.shape[-1] == 4:
        alpha = arr[..., 3]
        if alpha.min() < alpha.max() or (alpha.dtype == np.uint8 and alpha.min() != 255):
            logger.warning("`%s` has a non-opaque alpha channel; it is dropped.", what)
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.max() <= 1.0:
            arr = np.round(arr * 255)
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def check_inside(xy: np.ndarray, shape: tuple[int, int], *, what: str = "spots") -> None:
    """Raise when any ``(x, y)`` pixel coordinate lies outside an image of ``shape = (height, width)``."""
    h, w = shape
    bad = (xy[:, 0] < 0) | (xy[:, 1] < 0) | (xy[:, 0] >= w) | (xy[:, 1] >= h)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {len(xy)} {what} have coordinates outside the image ({w} x {h} px), "
            f"e.g. x={xy[bad][0, 0]:.1f}, y={xy[bad][0, 1]:.1f}. Check `scale` (spot pixels -> image pixels) "
            "and that the image belongs to this section."
        )


def to_csr(x: Any) -> sparse.csr_matrix:
    """Counts as a float32 CSR matrix."""
    if sparse.issparse(x):
        return sparse.csr_matrix(x, dtype=np.float32)
    return sparse.csr_matrix(np.asarray(x, dtype=np.float32))


def build_sdata(
    *,
    image: np.ndarray | None,
    xy: np.ndarray,
    adata: AnnData,
    name: str,
    mpp: float,
    spot_diameter_um: float,
    spot_spacing_um: float | None,
    technology: str,
    image_key: str | None = None,
    shapes_key: str | None = None,
    coordinate_system: str = C.COORDINATE_SYSTEM_DEFAULT,
    scale_factors: Sequence[int] | None = DEFAULT_SCALE_FACTORS,
    extra_images: dict[str, Any] | None = None,
    extra_meta: dict[str, Any] | None = None,
    shape_kind: str = "circle",
) -> SpatialData:
    """Build the SpatialData every reader returns.

    Parameters
    ----------
    image
        ``(y, x, 3)`` uint8 image (``None`` for a table without an image).
    xy
        Spot centres in pixels of ``image``, ``(n, 2)`` as ``(x, y)``.
    adata
        The table, one row per spot in the order of ``xy``.
    name
        Section name: shapes are called ``name``, the image ``f"{name}_full_image"``.
    mpp
        µm per pixel of ``image``.
    spot_diameter_um, spot_spacing_um
        Spot geometry in µm.
    technology
        ``"st"``, ``"visium"`` or ``"tiles"`` …
    coordinate_system
        Name of the pixel coordinate system.
    scale_factors
        Downscale factors of the image pyramid (``None``: one scale).
    shape_kind
        ``"circle"`` (radius = half the spot diameter) or ``"square"`` (tiles as polygons of side
        ``spot_diameter_um``).
    """
    from spatialdata import SpatialData
    from spatialdata.models import ShapesModel, TableModel
    from spatialdata.transformations import Identity

    image_key = image_key or f"{name}_full_image"
    shapes_key = shapes_key or name
    n = len(adata)
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape != (n, 2):
        raise ValueError(f"Spot coordinates must be (n_spots, 2) = ({n}, 2); got {xy.shape}.")
    if image is not None:
        check_inside(xy, image.shape[:2])

    images: dict[str, Any] = dict(extra_images or {})
    if image is not None:
        images[image_key] = image_model(image, coordinate_system=coordinate_system, scale_factors=scale_factors)

    radius_px = spot_diameter_um / mpp / 2.0
    index = pd.RangeIndex(n)
    if shape_kind == "circle":
        shapes = ShapesModel.parse(
            xy,
            geometry=0,
            radius=np.full(n, radius_px),
            index=index,
            transformations={coordinate_system: Identity()},
        )
    elif shape_kind == "square":
        import geopandas as gpd
        from shapely.geometry import box

        half = radius_px
        gdf = gpd.GeoDataFrame(
            geometry=[box(x - half, y - half, x + half, y + half) for x, y in xy], index=index
        )
        shapes = ShapesModel.parse(gdf, transformations={coordinate_system: Identity()})
    else:
        raise ValueError(f"`shape_kind` must be 'circle' or 'square', got {shape_kind!r}.")

    adata = adata.copy() if adata.is_view else adata
    adata.obs_names = adata.obs_names.astype(str)
    adata.obs[C.REGION_KEY] = pd.Categorical([shapes_key] * n)
    adata.obs[C.INSTANCE_KEY] = np.arange(n)
    adata.obsm[C.SPATIAL] = xy.copy()
    meta = dict(adata.uns.get(C.UNS_KEY, {}))
    meta.update(
        {
            C.MPP: float(mpp),
            C.SPOT_DIAMETER_UM: float(spot_diameter_um),
            C.SPOT_SPACING_UM: float(spot_spacing_um) if spot_spacing_um else float("nan"),
            C.IMAGE_KEY: image_key if image is not None else "",
            C.SHAPES_KEY: shapes_key,
            C.TECHNOLOGY: technology,
            C.COORDINATE_SYSTEM: coordinate_system,
        }
    )
    meta.update(extra_meta or {})
    adata.uns[C.UNS_KEY] = meta
    table = TableModel.parse(adata, region=shapes_key, region_key=C.REGION_KEY, instance_key=C.INSTANCE_KEY)
    attrs = {C.UNS_KEY: {IMAGE_MPP: {image_key: float(mpp)}}} if image is not None else {}
    return SpatialData(images=images, shapes={shapes_key: shapes}, tables={C.TABLE_KEY: table}, attrs=attrs)


def image_model(
    image: np.ndarray,
    *,
    coordinate_system: str = C.COORDINATE_SYSTEM_DEFAULT,
    scale_factors: Sequence[int] | None = DEFAULT_SCALE_FACTORS,
) -> Any:
    """A ``(y, x, 3)`` uint8 array as a spatialdata image element ``(c, y, x)`` (multiscale with ``scale_factors``).

    The pyramid is computed once, eagerly, by block means rounded to uint8 (:func:`hist_sd._core._image.block_mean`), so reading a coarse level
    costs no more than its size; spatialdata's default builds the levels lazily in float64 and recomputes them
    from full resolution on every read. Pyramid levels that would be smaller than 64 px are dropped.
    """
    import xarray as xr
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Identity

    chw = np.ascontiguousarray(np.moveaxis(image, -1, 0))
    levels = [chw]
    for f in scale_factors or ():
        prev = levels[-1]
        if min(prev.shape[1] // f, prev.shape[2] // f) < 64:
            break
        levels.append(block_mean(prev, f, dtype=np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = [
            Image2DModel.parse(a, dims=("c", "y", "x"), c_coords=["r", "g", "b"],
                               transformations={coordinate_system: Identity()})
            for a in levels
        ]
        if len(parsed) == 1:
            return parsed[0]
        tree = xr.DataTree.from_dict({f"scale{i}": xr.Dataset({"image": da}) for i, da in enumerate(parsed)})
        Image2DModel().validate(tree)
    return tree


def estimate_mpp(array_xy: np.ndarray, pixel_xy: np.ndarray, spacing_um: float) -> float:
    """µm per pixel from a spot array: pixels per array step (least squares) against the physical spacing."""
    a = np.asarray(array_xy, dtype=float)
    p = np.asarray(pixel_xy, dtype=float)
    slopes = []
    for k in range(2):
        if np.ptp(a[:, k]) <= 0:
            continue
        design = np.column_stack([a[:, k], np.ones(len(a))])
        coef, *_ = np.linalg.lstsq(design, p[:, k], rcond=None)
        slopes.append(abs(coef[0]))
    if not slopes or min(slopes) <= 0:
        raise ValueError("Cannot estimate µm per pixel from the spot grid; pass `mpp=`.")
    return float(spacing_um / np.mean(slopes))
