"""A bare H&E image (no expression yet) and the scale bookkeeping of image elements."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hist_sd import _constants as C
from hist_sd._core._data import is_spatialdata
from hist_sd._core._image import resolve_image_key
from hist_sd.io._build import DEFAULT_SCALE_FACTORS, IMAGE_MPP, ImageLike, image_model, load_rgb

if TYPE_CHECKING:
    from spatialdata import SpatialData

logger = logging.getLogger("hist_sd")


def _check_mpp(mpp: float) -> float:
    try:
        value = float(mpp)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`mpp` must be a number of µm per pixel, got {mpp!r}.") from err
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"`mpp` must be a positive number of µm per pixel, got {mpp!r}.")
    return value


def read_image(
    path: ImageLike,
    *,
    mpp: float,
    name: str | None = None,
    scale_factors: Sequence[int] | None = DEFAULT_SCALE_FACTORS,
) -> SpatialData:
    """Read an H&E image (no spots, no expression) into a SpatialData.

    The starting point for predicting expression on a new slide: :func:`hist_sd.pp.tile` then adds tiles
    and an empty-expression table. The scale is recorded in ``sdata.attrs["hist_sd"]["image_mpp"]``
    (read it back with :func:`image_mpp`); it survives a zarr round trip.

    Parameters
    ----------
    path
        JPEG, PNG or TIFF file with 3 channels (RGB; a fully opaque alpha channel is dropped), or a
        ``(y, x, 3)`` uint8 array.
    mpp
        µm per pixel of the image (e.g. 0.5 for a 20x scan, 0.25 for 40x).
    name
        Section name; the image is called ``f"{name}_full_image"`` (default: the file name without
        extension, ``"image"`` for an array).
    scale_factors
        Image pyramid downscale factors (``None``: full resolution only).

    Returns
    -------
    SpatialData with one image ``(c, y, x)`` uint8 in the coordinate system ``"global"``.
    """
    from spatialdata import SpatialData

    mpp = _check_mpp(mpp)
    if name is None:
        name = Path(path).name.split(".")[0] if isinstance(path, str | os.PathLike) else "image"
    if not name:
        raise ValueError("`name` must be a non-empty string.")
    img = load_rgb(path, what="path")
    key = f"{name}_full_image"
    element = image_model(img, coordinate_system=C.COORDINATE_SYSTEM_DEFAULT, scale_factors=scale_factors)
    sdata = SpatialData(images={key: element}, attrs={C.UNS_KEY: {IMAGE_MPP: {key: mpp}}})
    logger.info("%s: %d x %d px image at %.4g µm per pixel.", key, img.shape[1], img.shape[0], mpp)
    return sdata


def image_mpp(sdata: SpatialData, image_key: str | None = None) -> float:
    """µm per pixel of an image element (at full resolution).

    Looks in ``sdata.attrs["hist_sd"]["image_mpp"]`` (written by every hist_sd reader), then in the
    ``uns["hist_sd"]`` of a table that names this image.

    Parameters
    ----------
    sdata
        The SpatialData.
    image_key
        Image element name (default: the only image).

    Returns
    -------
    The scale in µm per pixel.
    """
    if not is_spatialdata(sdata):
        raise TypeError(f"`sdata` must be a SpatialData, got {type(sdata).__name__}.")
    key = resolve_image_key(sdata, image_key)
    recorded = (sdata.attrs.get(C.UNS_KEY) or {}).get(IMAGE_MPP) or {}
    if key in recorded:
        return _check_mpp(recorded[key])
    for table in sdata.tables.values():
        meta = table.uns.get(C.UNS_KEY) or {}
        if meta.get(C.IMAGE_KEY) == key and meta.get(C.MPP) is not None:
            return _check_mpp(meta[C.MPP])
    raise KeyError(
        f"No µm per pixel is recorded for the image {key!r}. Read it with `hs.io.read_image(path, mpp=...)`, "
        "or record it with `hs.io.set_image_mpp(sdata, mpp, image_key=...)`."
    )


def set_image_mpp(sdata: SpatialData, mpp: float, *, image_key: str | None = None) -> None:
    """Record the µm per pixel of an image element in ``sdata.attrs["hist_sd"]["image_mpp"]``.

    Parameters
    ----------
    sdata
        The SpatialData (modified in place).
    mpp
        µm per pixel of the image at full resolution.
    image_key
        Image element name (default: the only image).
    """
    if not is_spatialdata(sdata):
        raise TypeError(f"`sdata` must be a SpatialData, got {type(sdata).__name__}.")
    key = resolve_image_key(sdata, image_key)
    meta = dict(sdata.attrs.get(C.UNS_KEY) or {})
    recorded = dict(meta.get(IMAGE_MPP) or {})
    recorded[key] = _check_mpp(mpp)
    meta[IMAGE_MPP] = recorded
    sdata.attrs[C.UNS_KEY] = meta
    logger.info("added attrs[%r][%r][%r]", C.UNS_KEY, IMAGE_MPP, key)
