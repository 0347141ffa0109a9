"""A bare H&E image (no expression yet) and the scale bookkeeping of image elements."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hist_sd import _constants as C
from hist_sd._core._data import is_spatialdata
from hist_sd._core._image import resolve_image_key
from hist_sd._docs import doc_params
from hist_sd.io._build import DEFAULT_SCALE_FACTORS, IMAGE_MPP, ImageLike, image_model, load_rgb
from hist_sd.io._lazy_image import open_lazy_jpeg

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


@doc_params
def read_image(
    path: ImageLike,
    *,
    mpp: float,
    name: str | None = None,
    scale_factors: Sequence[int] | None = DEFAULT_SCALE_FACTORS,
    max_pixels: int | None = 200_000_000,
    lazy: bool = True,
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
    max_pixels
        Largest image (width x height) to decode: 200 Mpx by default (an H&E JPEG of a legacy-ST or Visium
        section is 10-100 Mpx; 200 Mpx decode to 600 MB), larger files are refused with an error instead of
        filling the memory. Pass the size of a larger image you trust to read it (it is decoded whole, in
        memory), or ``None`` for PIL's own decompression-bomb guard (a warning above about 89 Mpx, an error above
        twice that). Whole-slide images (SVS, pyramidal TIFF) are read lazily with :func:`hist_sd.io.read_wsi`.
        Does not apply to a JPEG read lazily, which is never decoded whole.
    %(lazy)s

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
    img = open_lazy_jpeg(Path(path), what="path") if lazy and isinstance(path, str | os.PathLike) else None
    if img is None:
        if isinstance(path, str | os.PathLike):
            path = _read_rgb_file(Path(path), max_pixels=max_pixels)
        img = load_rgb(path, what="path")
    key = f"{name}_full_image"
    element = image_model(img, coordinate_system=C.COORDINATE_SYSTEM_DEFAULT, scale_factors=scale_factors)
    sdata = SpatialData(images={key: element}, attrs={C.UNS_KEY: {IMAGE_MPP: {key: mpp}}})
    logger.info("%s: %d x %d px image at %.4g µm per pixel.", key, img.shape[1], img.shape[0], mpp)
    return sdata


_pil_lock = threading.Lock()


def _read_rgb_file(path: Path, *, max_pixels: int | None) -> np.ndarray:
    """Pixels of an RGB(A) image file under PIL's decompression-bomb guard (or ``max_pixels``); clear errors."""
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"`path`: no image file at {str(path)!r}.")
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer)
                                   or max_pixels < 1):
        raise ValueError(f"`max_pixels` must be a positive integer (width x height), got {max_pixels!r}.")
    hint = ("pass `max_pixels=` (width x height) to read an image this large that you trust, or read a whole-slide "
            "image lazily with `hs.io.read_wsi`.")
    try:
        if max_pixels is None:  # PIL's own guard, as configured
            return _decode(path)
        with _pil_lock, warnings.catch_warnings():
            # PIL's guard is a module global: raised to `max_pixels` for this read only, then restored
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = int(max_pixels)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                return _decode(path)
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
        raise ValueError(f"`path`: {str(path)!r} is larger than allowed ({err}; limit {limit} px); {hint}") from err


def _decode(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("RGB", "RGBA"):
                raise ValueError(
                    f"`path` must be an RGB H&E image with 3 channels; {path.name!r} has mode {im.mode!r}."
                )
            return np.asarray(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise
    except OSError as err:  # PIL: not an image (UnidentifiedImageError) or truncated / corrupt data
        raise ValueError(
            f"`path`: {str(path)!r} ({path.stat().st_size} bytes) could not be read as an image ({err}). "
            "Expected a complete JPEG, PNG or TIFF file; is it truncated (an interrupted download or copy)?"
        ) from err


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
