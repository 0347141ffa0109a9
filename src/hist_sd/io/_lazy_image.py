"""Spot-image JPEGs read lazily: every pyramid level a dask array decoded by region with libvips (pyvips).

A legacy-ST or Visium H&E JPEG is 50-100 Mpx. Decoding it whole (PIL) costs about a second and 300-900 MiB before
the first patch is cut. Here nothing is decoded at read time but the small preview: level 0 is a dask array whose
chunks (horizontal bands) libvips decodes on demand, and the coarser levels are decoded with libjpeg's DCT scaling
(shrink-on-load by 2, 4 or 8), which costs a fraction of a full decode. :class:`hist_sd.encoders.PatchReader`
finds the file behind a level-0 array (:func:`hist_sd._core._image.region_reader`) and decodes only the band of
rows its patches need, once, instead of going through the chunks.

Level-0 pixels are those of libjpeg-turbo, as PIL decodes them (checked by the tests); the coarser levels are
DCT-scaled rather than block means of level 0 (within a few grey levels of them).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hist_sd._core._image import register_region_reader

logger = logging.getLogger("hist_sd")

#: Suffixes read lazily (JPEG only: libjpeg's DCT scaling and sequential decoding make region reads cheap).
LAZY_SUFFIXES = (".jpg", ".jpeg")
#: Target bytes of one dask chunk (a band of full-width rows) of a lazy level.
CHUNK_BYTES = 64 * 2**20
#: Shrink factors that libjpeg decodes directly (DCT scaling).
_JPEG_SHRINKS = (1, 2, 4, 8)

__all__ = ["JPEGSource", "open_lazy_jpeg"]


def _pyvips() -> Any:
    """pyvips, or ``None`` when it (or its libvips) cannot be loaded."""
    try:
        import pyvips
    except (ImportError, OSError) as err:  # no package, or no shared library behind it
        logger.debug("pyvips unavailable (%s); images are decoded whole with PIL.", err)
        return None
    return pyvips


class JPEGSource:
    """An RGB JPEG file whose pixels are decoded by region (libvips, sequential access).

    Parameters
    ----------
    path
        The JPEG file.
    what
        How error messages name the file's argument.
    """

    def __init__(self, path: Path, *, what: str = "image") -> None:
        pyvips = _pyvips()
        if pyvips is None:
            raise ImportError("pyvips is needed to read a JPEG lazily (`pip install pyvips[binary]`).")
        self.path = Path(path)
        self.what = what
        try:
            head = pyvips.Image.new_from_file(str(self.path), access="sequential")
        except pyvips.Error as err:
            raise self._error(err) from err
        if head.bands != 3 or head.format != "uchar":
            raise ValueError(
                f"`{what}` must be an 8-bit RGB H&E image with 3 channels; {self.path.name!r} has {head.bands} "
                f"band(s) of {head.format}."
            )
        self.height, self.width = int(head.height), int(head.width)
        _check_complete(self.path, what)
        stat = self.path.stat()
        token = f"{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        self.token = hashlib.sha1(token.encode(), usedforsecurity=False).hexdigest()[:16]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(height, width, 3)`` of the full-resolution image."""
        return self.height, self.width, 3

    def level_shape(self, factor: int) -> tuple[int, int]:
        """``(height, width)`` of the level downsampled by ``factor`` (floored, like a block-mean pyramid)."""
        return self.height // factor, self.width // factor

    def read(self, y0: int, y1: int, x0: int, x1: int, *, factor: int = 1) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` of the level downsampled by ``factor`` as ``(y, x, 3)`` uint8.

        Rows down to ``y1`` are entropy-decoded (JPEG is sequential); only the region is kept in memory.
        """
        shrink = max(s for s in _JPEG_SHRINKS if factor % s == 0)
        pyvips = _pyvips()
        try:
            im = pyvips.Image.new_from_file(str(self.path), access="sequential", fail_on="error",
                                                shrink=shrink)
            if shrink == factor:
                out = im.crop(x0, y0, x1 - x0, y1 - y0).numpy()
            else:  # coarser than libjpeg scales: a box filter on the DCT-scaled image
                out = im.shrink(factor // shrink, factor // shrink).crop(x0, y0, x1 - x0, y1 - y0).numpy()
        except pyvips.Error as err:
            raise self._error(err) from err
        return np.ascontiguousarray(out, dtype=np.uint8)

    def to_dask(self, factor: int = 1) -> Any:
        """The level downsampled by ``factor`` as a lazy ``(3, y, x)`` uint8 dask array of full-width bands.

        Level 0 is registered as a region source, so patch readers decode its regions directly.
        """
        import dask.array as da

        h, w = self.level_shape(factor)
        rows = int(min(h, max(256, CHUNK_BYTES // (3 * max(w, 1)))))
        name = f"hist-sd-jpeg-{self.token}-{factor}"
        arr = da.from_array(_Level(self, factor), chunks=(3, rows, w), name=name, asarray=True, lock=False)
        if factor == 1:
            register_region_reader(name, self.read)
        return arr

    def _error(self, err: Exception | str) -> ValueError:
        size = self.path.stat().st_size if self.path.is_file() else 0
        err = " ".join(str(err).split())  # libvips' messages span lines
        return ValueError(
            f"`{self.what}`: {str(self.path)!r} ({size} bytes) could not be decoded as a JPEG image ({err}). "
            "Expected a complete JPEG, PNG or TIFF file; is it truncated (an interrupted download or copy)?"
        )


class _Level:
    """``(3, y, x)`` array-like view of one level of a :class:`JPEGSource` (what dask's ``from_array`` slices)."""

    ndim = 3
    dtype = np.dtype(np.uint8)

    def __init__(self, source: JPEGSource, factor: int) -> None:
        self.source = source
        self.factor = factor
        self.shape = (3, *source.level_shape(factor))

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        c, ys, xs = key
        rows = np.arange(self.shape[1])[ys]  # any index dask passes: slices with steps, integers, arrays
        cols = np.arange(self.shape[2])[xs]
        if rows.size == 0 or cols.size == 0:
            return np.zeros((3, *np.shape(rows), *np.shape(cols)), dtype=np.uint8)[c]
        y0, y1 = int(rows.min()), int(rows.max()) + 1
        x0, x1 = int(cols.min()), int(cols.max()) + 1
        region = self.source.read(y0, y1, x0, x1, factor=self.factor)
        if not (isinstance(ys, slice) and isinstance(xs, slice) and rows.size == y1 - y0 and cols.size == x1 - x0
                and (ys.step or 1) == 1 and (xs.step or 1) == 1):
            region = region[rows - y0][:, cols - x0] if rows.ndim and cols.ndim else region[rows - y0, cols - x0]
        return np.moveaxis(region, -1, 0)[c]


def _check_complete(path: Path, what: str) -> None:
    """Refuse a JPEG whose end-of-image marker is missing (a truncated file), before anything is decoded."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(size - 64, 0))
        tail = fh.read()
    if b"\xff\xd9" not in tail:
        raise ValueError(
            f"`{what}`: {str(path)!r} ({size} bytes) has no JPEG end-of-image marker; it is truncated (an "
            "interrupted download or copy?). Expected a complete JPEG, PNG or TIFF file."
        )


def open_lazy_jpeg(path: Path, *, what: str = "image") -> JPEGSource | None:
    """A :class:`JPEGSource` for an RGB JPEG file when pyvips is available, else ``None`` (decode it whole).

    Errors for missing, truncated or non-RGB files are raised here, at read time, as for an eager decode.
    """
    if path.suffix.lower() not in LAZY_SUFFIXES or _pyvips() is None:
        return None
    if not path.is_file():
        raise FileNotFoundError(f"`{what}`: no image file at {str(path)!r}.")
    return JPEGSource(path, what=what)
