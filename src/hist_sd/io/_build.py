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
from hist_sd._core._image import block_mean, image_levels, stored_source
from hist_sd.io._lazy_image import JPEGSource, open_lazy_jpeg

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

ImageLike = str | os.PathLike[str] | np.ndarray

DEFAULT_SCALE_FACTORS: tuple[int, ...] = (2, 2, 2)

#: Key of ``sdata.attrs[UNS_KEY]`` mapping image element names to µm per pixel (survives zarr round trips,
#: unlike the attrs of the image element itself).
IMAGE_MPP = "image_mpp"

#: Longest side (px) of the image copy in ``uns["spatial"][library_id]["images"]["hires"]``.
PREVIEW_MAX_SIDE = 2000


def load_rgb(image: ImageLike, *, what: str = "image", lazy: bool = False) -> np.ndarray | JPEGSource:
    """Read an H&E image into a ``(y, x, 3)`` uint8 array (or open a JPEG lazily).

    A path (JPEG, PNG, TIFF) or an array ``(y, x, 3)`` / ``(3, y, x)`` is accepted. A fully opaque alpha
    channel is dropped; any other channel count is an error. Arrays of other dtypes are converted by their
    range (see :func:`to_uint8`). With ``lazy=True``, an RGB JPEG file is opened as a
    :class:`~hist_sd.io._lazy_image.JPEGSource` (nothing decoded; errors for missing, truncated or non-RGB files
    still raised here) when pyvips is installed; other files are decoded as usual.
    """
    if lazy and not isinstance(image, np.ndarray):
        source = open_lazy_jpeg(Path(image), what=what)
        if source is not None:
            return source
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
            arr = np.moveaxis(arr, 0, -1)
    else:
        arr = _read_image_file(Path(image), what=what)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"`{what}` must be an RGB image of shape (y, x, 3); got an array of shape {arr.shape}.")
    if arr.shape[-1] == 4:
        alpha = arr[..., 3]
        if alpha.min() < alpha.max() or (alpha.dtype == np.uint8 and alpha.min() != 255):
            logger.warning("`%s` has a non-opaque alpha channel; it is dropped.", what)
        arr = arr[..., :3]
    return np.ascontiguousarray(to_uint8(arr, what=what))


def _read_image_file(path: Path, *, what: str) -> np.ndarray:
    """The pixels of an RGB(A) image file; clear errors for missing, truncated or non-image files."""
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
            return np.asarray(im)
    except OSError as err:  # PIL: not an image (UnidentifiedImageError) or truncated / corrupt data
        raise ValueError(
            f"`{what}`: {str(path)!r} ({path.stat().st_size} bytes) could not be read as an image ({err}). "
            "Expected a complete JPEG, PNG or TIFF file; is it truncated (an interrupted download or copy)?"
        ) from err
    finally:
        Image.MAX_IMAGE_PIXELS = old


def to_uint8(arr: np.ndarray, *, what: str = "image") -> np.ndarray:
    """Colour values as uint8, converted by the range of their dtype; clear errors where it is ambiguous.

    Unsigned integers are scaled by their dtype's range (uint16: ``v / 257``, rounded); signed integers must
    hold 0..255. Floats in ``[0, 1]`` are scaled by 255; floats up to 255 are taken as 0..255 when that is
    clear (whole numbers, or a maximum of at least 2, which a 0..1 image never reaches); anything else
    (negative, NaN, above 255, ``bool``) is an error naming ``what``.
    """
    dtype = arr.dtype
    if dtype == np.uint8:
        return arr
    if np.issubdtype(dtype, np.unsignedinteger):
        top = np.iinfo(dtype).max
        if arr.size and arr.max() <= 255:
            logger.warning("`%s` is %s but all values are <= 255; it is scaled by the %s range (/ %d), which "
                           "makes it almost black. Pass `.astype(np.uint8)` if it holds 8-bit values.",
                           what, dtype, dtype, top // 255)
        return np.rint(arr / (top / 255.0)).astype(np.uint8)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    expected = "expected uint8 (or uint16), integers in 0..255, or floats in 0..1 or 0..255"
    if np.issubdtype(dtype, np.signedinteger):
        if lo < 0 or hi > 255:
            raise ValueError(f"`{what}`: {dtype} values span [{lo:g}, {hi:g}], outside 0..255; {expected}.")
        return arr.astype(np.uint8)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"`{what}`: an image of dtype {dtype} is not colour values; {expected}.")
    if not (np.isfinite(lo) and np.isfinite(hi)):  # min / max propagate NaN and show infinities
        raise ValueError(f"`{what}`: the image holds NaN or infinite values; {expected}.")
    if lo < 0:
        raise ValueError(f"`{what}`: the image holds negative values (min {lo:g}); {expected}.")
    if hi <= 1.0:
        return np.rint(arr * 255.0).astype(np.uint8)
    if hi > 255 or (hi < 2.0 and not np.array_equal(arr, np.rint(arr))):
        raise ValueError(f"`{what}`: float values span [{lo:g}, {hi:g}], neither 0..1 nor clearly 0..255; "
                         f"{expected}.")
    return np.rint(arr).astype(np.uint8)


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
    image: np.ndarray | JPEGSource | None,
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
    library_id: str | None = None,
    image_element: Any = None,
) -> SpatialData:
    """Build the SpatialData every reader returns.

    Parameters
    ----------
    image
        ``(y, x, 3)`` uint8 image, or a lazily read JPEG (``None`` for a table without an image).
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
    library_id
        Key of the table's ``uns["spatial"]`` entry (scanpy / squidpy plots; default: ``name``).
    image_element
        With ``image=None``: an image element the spots refer to (e.g. the slide's, for tiles); its small copy
        goes to ``uns["spatial"]``.
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
    element = images[image_key] if image is not None else image_element
    if element is not None:
        adata.uns[C.SPATIAL] = {
            library_id or name: spatial_library(element, spot_diameter_px=spot_diameter_um / mpp,
                                                metadata={C.IMAGE_KEY: meta[C.IMAGE_KEY], C.MPP: float(mpp)})
        }
    table = TableModel.parse(adata, region=shapes_key, region_key=C.REGION_KEY, instance_key=C.INSTANCE_KEY)
    attrs = {C.UNS_KEY: {IMAGE_MPP: {image_key: float(mpp)}}} if image is not None else {}
    return SpatialData(images=images, shapes={shapes_key: shapes}, tables={C.TABLE_KEY: table}, attrs=attrs)


def image_model(
    image: np.ndarray | JPEGSource,
    *,
    coordinate_system: str = C.COORDINATE_SYSTEM_DEFAULT,
    scale_factors: Sequence[int] | None = DEFAULT_SCALE_FACTORS,
) -> Any:
    """A ``(y, x, 3)`` uint8 array as a spatialdata image element ``(c, y, x)`` (multiscale with ``scale_factors``).

    A :class:`~hist_sd.io._lazy_image.JPEGSource` gives lazy levels decoded from the file on demand instead.
    For an array, the pyramid is computed once, eagerly, by block means rounded to uint8 (:func:`hist_sd._core._image.block_mean`), so reading a coarse level
    costs no more than its size; spatialdata's default builds the levels lazily in float64 and recomputes them
    from full resolution on every read. Pyramid levels that would be smaller than 64 px are dropped.
    """
    import xarray as xr
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Identity, set_transformation

    levels = _lazy_levels(image, scale_factors) if isinstance(image, JPEGSource) else _eager_levels(image, scale_factors)
    chw_shape = tuple(int(v) for v in levels[0].shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = [
            Image2DModel.parse(a, dims=("c", "y", "x"), c_coords=["r", "g", "b"],
                               transformations={coordinate_system: Identity()})
            for a in levels
        ]
        if len(parsed) == 1:
            return parsed[0]
        tree = xr.DataTree.from_dict(
            {f"scale{i}": xr.Dataset({"image": _full_res_coords(da, chw_shape)}) for i, da in enumerate(parsed)}
        )
        # level k: Scale(full shape / level shape) then the coordinate system's transform, as spatialdata's own
        # multiscale parse and a zarr round trip give (queries and plots read the levels through it)
        set_transformation(tree, {coordinate_system: Identity()}, set_all=True)
        Image2DModel().validate(tree)
    return tree


def _eager_levels(image: np.ndarray, scale_factors: Sequence[int] | None) -> list[np.ndarray]:
    """Pyramid levels ``(c, y, x)`` of an in-memory image: block means rounded to uint8."""
    levels = [np.ascontiguousarray(np.moveaxis(image, -1, 0))]
    for f in scale_factors or ():
        prev = levels[-1]
        if min(prev.shape[1] // f, prev.shape[2] // f) < 64:
            break
        levels.append(block_mean(prev, f, dtype=np.uint8))
    return levels


def _lazy_levels(source: JPEGSource, scale_factors: Sequence[int] | None) -> list[Any]:
    """Pyramid levels ``(c, y, x)`` of a JPEG file as dask arrays, each decoded from the file on demand."""
    levels = [source.to_dask(1)]
    factor = 1
    for f in scale_factors or ():
        factor *= int(f)
        h, w = source.level_shape(factor)
        if min(h, w) < 64:
            break
        levels.append(source.to_dask(factor))
    return levels


def _full_res_coords(level: Any, full_shape: tuple[int, ...]) -> Any:
    """A pyramid level with ``y``/``x`` coordinates at its pixel centres in full-resolution pixels."""
    coords = {}
    for ax, full in zip(("y", "x"), full_shape[1:], strict=True):
        n = level.sizes[ax]
        coords[ax] = np.linspace(0, full, n + 1)[:-1] + full / n / 2
    return level.assign_coords(coords)


def image_preview(element: Any, *, max_side: int = PREVIEW_MAX_SIDE) -> tuple[np.ndarray, float]:
    """A small ``(y, x, 3)`` uint8 copy of an image element and its size relative to full resolution.

    The finest stored pyramid level whose longest side is at most ``max_side`` is used as it is; without one,
    the coarsest stored level is block-averaged (:func:`hist_sd._core._image.block_mean`) down to ``max_side``.
    Levels computed on the fly from a finer one are not read. Returns the image and its scale factor (preview
    pixels per full-resolution pixel, scanpy's ``tissue_hires_scalef``).
    """
    levels = image_levels(element)
    stored = [i for i in range(len(levels)) if stored_source(levels, i) == i]
    fits = [i for i in stored if max(levels[i][1].shape[-2:]) <= max_side]
    arr = levels[fits[0] if fits else stored[-1]][1]
    k = -(-max(arr.shape[-2:]) // max_side)  # 1 when the level fits
    data = np.asarray(arr.values) if k == 1 else block_mean(arr, k, dtype=arr.dtype)
    rgb = to_uint8(np.moveaxis(data[:3], 0, -1), what="image")
    full_per_level_px = int(levels[0][1].shape[-1]) / int(arr.shape[-1])
    return np.ascontiguousarray(rgb), 1.0 / (k * full_per_level_px)


def spatial_library(element: Any, *, spot_diameter_px: float, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``uns["spatial"][library_id]`` entry scanpy's and squidpy's spatial plots read.

    ``images["hires"]`` is :func:`image_preview` of ``element``; ``scalefactors`` hold ``tissue_hires_scalef``
    (preview pixels per pixel of ``obsm["spatial"]``, i.e. of the full-resolution image) and
    ``spot_diameter_fullres`` (the spot diameter in those pixels).
    """
    hires, scalef = image_preview(element)
    return {
        "images": {"hires": hires},
        "scalefactors": {"tissue_hires_scalef": scalef, "spot_diameter_fullres": float(spot_diameter_px)},
        "metadata": dict(metadata or {}),
    }


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
