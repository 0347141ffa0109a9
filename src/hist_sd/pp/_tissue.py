"""``hs.pp.detect_tissue``: the tissue of a slide, found on a coarse pyramid level, as polygons (a shapes element)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from hist_sd import _constants as C
from hist_sd._core._data import is_spatialdata
from hist_sd._core._image import block_mean, image_levels, resolve_image_key, stored_source
from hist_sd._core._params import log_written
from hist_sd._core._tissue import mask_to_polygons, tissue_mask

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")

#: Key of ``sdata.attrs["hist_sd"]`` recording each tissue shapes element's parameters (by element name).
TISSUE_ATTRS = "tissue"
#: Longest side (px) of the image the tissue mask is computed on.
MAX_WORK_SIDE = 8000
#: Reading a full-resolution level larger than this (px) for the mask is logged as a warning.
_BIG_LEVEL_PX = 8000 * 8000


def detect_tissue(
    sdata: SpatialData,
    *,
    image_key: str | None = None,
    target_mpp: float = 8.0,
    key_added: str = "tissue",
    overwrite: bool = False,
) -> None:
    """Find the tissue of an H&E slide on a coarse pyramid level and store it as polygons.

    The mask is computed on the coarsest stored pyramid level whose scale is at most 1.41 (√2) times
    ``target_mpp``, block-averaged to about ``target_mpp`` (never the full-resolution level when the slide has a
    pyramid): Otsu thresholds on the smoothed saturation and grey level, a closing, removal of specks smaller than
    (200 µm)² and filling of holes smaller than (500 µm)² (the mask :func:`hist_sd.pp.tile` computes on its
    own). Each connected tissue region becomes a polygon (holes kept) in full-resolution pixels.
    :func:`hist_sd.pp.tile` then lays its tiles over these polygons instead of computing a mask again.

    Parameters
    ----------
    sdata
        SpatialData with the H&E image (e.g. from :func:`hist_sd.io.read_wsi` or :func:`hist_sd.io.read_image`)
        and its scale (:func:`hist_sd.io.image_mpp`).
    image_key
        Image element (default: the only image).
    target_mpp
        µm per pixel of the image the mask is computed on (8 µm: a 20 mm section is a 2,500 px image).
    key_added
        Name of the new shapes element.
    overwrite
        Replace an existing shapes element called ``key_added``.

    Returns
    -------
    Nothing; adds ``sdata.shapes[key_added]`` (one polygon per tissue region, full-resolution pixels, the image's
    transformations) and ``sdata.attrs["hist_sd"]["tissue"][key_added]`` with the parameters: ``image_key``,
    ``target_mpp``, the ``level`` read and its ``level_mpp``, the mask's ``work_mpp``, ``tissue_area_fraction``
    (of the image), ``tissue_area_mm2`` and ``n_polygons``.
    """
    key, mpp = _check_args(sdata, image_key=image_key, target_mpp=target_mpp, key_added=key_added,
                           overwrite=overwrite)
    element = sdata.images[key]
    rgb, level, level_mpp_, fy, fx = tissue_image(element, mpp=mpp, target_mpp=float(target_mpp))
    work_mpp = mpp * math.sqrt(fy * fx)
    mask = tissue_mask(rgb, work_mpp=work_mpp)
    if not mask.any():
        raise ValueError(f"No tissue was found in the image {key!r}: it looks uniform (blank glass?).")
    polygons = mask_to_polygons(mask, fy, fx)
    shapes = _shapes_element(polygons, element)
    params = {
        C.IMAGE_KEY: key,
        "target_mpp": float(target_mpp),
        "level": int(level),
        "level_mpp": float(level_mpp_),
        "work_mpp": float(work_mpp),
        "tissue_area_fraction": float(mask.mean()),
        "tissue_area_mm2": float(mask.sum() * work_mpp**2 / 1e6),
        "n_polygons": len(polygons),
    }
    if overwrite and key_added in sdata.shapes:
        del sdata.shapes[key_added]
    sdata.shapes[key_added] = shapes
    meta = dict(sdata.attrs.get(C.UNS_KEY) or {})
    records = dict(meta.get(TISSUE_ATTRS) or {})
    records[key_added] = params
    meta[TISSUE_ATTRS] = records
    sdata.attrs[C.UNS_KEY] = meta
    logger.info(
        "tissue of %r: %d region(s), %.1f%% of the image (%.2f mm²), from level %d (%.3g µm/px) at %.3g µm/px",
        key, len(polygons), 100 * params["tissue_area_fraction"], params["tissue_area_mm2"], level, level_mpp_,
        work_mpp,
    )
    log_written("shapes", key_added)
    log_written("attrs", f"{C.UNS_KEY}/{TISSUE_ATTRS}/{key_added}")


def _check_args(
    sdata: SpatialData, *, image_key: str | None, target_mpp: float, key_added: str, overwrite: bool
) -> tuple[str, float]:
    """The image key and its µm per pixel; clear errors for bad arguments or an existing ``key_added``."""
    if not is_spatialdata(sdata):
        raise TypeError(f"`sdata` must be a SpatialData with an H&E image, got {type(sdata).__name__}.")
    key = resolve_image_key(sdata, image_key)
    try:
        ok = np.isfinite(float(target_mpp)) and float(target_mpp) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"`target_mpp` must be a positive number of µm per pixel, got {target_mpp!r}.")
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"`key_added` must be a non-empty string, got {key_added!r}.")
    for what in ("images", "labels", "points", "shapes", "tables"):
        if key_added in getattr(sdata, what):
            if what != "shapes":
                raise KeyError(f"An element called {key_added!r} exists already in `sdata.{what}`; pass another "
                               "`key_added`.")
            if not overwrite:
                raise KeyError(f"`sdata.shapes[{key_added!r}]` exists already; pass another `key_added` or "
                               "`overwrite=True`.")
    from hist_sd.io import image_mpp

    return key, image_mpp(sdata, key)


def tissue_image(element: Any, *, mpp: float, target_mpp: float) -> tuple[np.ndarray, int, float, float, float]:
    """A ``(y, x, 3)`` float32 copy of an image element at about ``target_mpp`` µm per pixel, from a coarse level.

    The level read is the coarsest stored one (not computed on the fly from a finer one) whose scale is at most
    1.41 (√2) ``target_mpp``; it is block-averaged by the integer factor that brings it closest to
    ``target_mpp`` from below, and further when the result would exceed :data:`MAX_WORK_SIDE` px. Returns the
    image, the level, its µm per pixel and the full-resolution pixels per returned pixel along y and x.
    """
    named = image_levels(element)
    h0, w0 = int(named[0][1].shape[-2]), int(named[0][1].shape[-1])
    stored = [i for i in range(len(named)) if stored_source(named, i) == i]
    mpps = {i: mpp * math.sqrt(h0 / int(named[i][1].shape[-2]) * w0 / int(named[i][1].shape[-1])) for i in stored}
    fine_enough = [i for i in stored if mpps[i] <= target_mpp * math.sqrt(2.0) * (1 + 1e-6)]
    level = max(fine_enough, key=lambda i: mpps[i]) if fine_enough else min(stored, key=lambda i: mpps[i])
    data = named[level][1]
    h, w = int(data.shape[-2]), int(data.shape[-1])
    k = max(1, int(math.floor(target_mpp / mpps[level] + 1e-6)), math.ceil(max(h, w) / MAX_WORK_SIDE))
    if level == 0 and h * w > _BIG_LEVEL_PX:
        logger.warning(
            "The image has no stored pyramid level near %.3g µm per pixel; its %d x %d px full-resolution level is "
            "read (in strips) to find the tissue.", target_mpp, w, h,
        )
    out = block_mean(data, k)
    if out.ndim != 3 or out.shape[0] < 3:
        raise ValueError(f"The image must be (c, y, x) with 3 colour channels; got shape {out.shape}.")
    rgb = np.moveaxis(out[:3], 0, -1)
    return rgb, level, mpps[level], k * h0 / h, k * w0 / w


def _shapes_element(polygons: list[Any], element: Any) -> Any:
    """The polygons as a spatialdata shapes element with the image's transformations."""
    import geopandas as gpd
    import pandas as pd
    from spatialdata.models import ShapesModel
    from spatialdata.transformations import Identity, get_transformation

    gdf = gpd.GeoDataFrame(geometry=polygons, index=pd.RangeIndex(len(polygons)))
    transforms = get_transformation(element, get_all=True)
    return ShapesModel.parse(gdf, transformations=dict(transforms) or {C.COORDINATE_SYSTEM_DEFAULT: Identity()})


def stored_tissue(sdata: SpatialData, image_key: str, tissue_key: str | None = None) -> str | None:
    """The shapes element holding the tissue of ``image_key``, or ``None`` when none was stored.

    ``tissue_key`` names it explicitly (it must be a shapes element); by default the elements recorded by
    :func:`detect_tissue` for this image are looked up: ``"tissue"`` first, else the only one.
    """
    if tissue_key is not None:
        if tissue_key not in sdata.shapes:
            raise KeyError(f"`tissue_key`={tissue_key!r} is not a shapes element; there are {sorted(sdata.shapes)}. "
                           "Create it with `hs.pp.detect_tissue`.")
        return tissue_key
    records = (sdata.attrs.get(C.UNS_KEY) or {}).get(TISSUE_ATTRS) or {}
    found = [k for k, rec in records.items()
             if isinstance(rec, Mapping) and rec.get(C.IMAGE_KEY) == image_key and k in sdata.shapes]
    if not found:
        return None
    if "tissue" in found:
        return "tissue"
    if len(found) > 1:
        raise ValueError(f"Several tissue shapes were stored for {image_key!r}: {sorted(found)}; pass `tissue_key`.")
    return found[0]
