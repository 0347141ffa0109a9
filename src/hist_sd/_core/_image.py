"""Image elements: which image, its pyramid levels, and the one block-mean downsampling."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hist_sd import _constants as C

if TYPE_CHECKING:
    import xarray as xr
    from anndata import AnnData
    from spatialdata import SpatialData

__all__ = [
    "block_mean",
    "get_image",
    "image_levels",
    "level_names",
    "region_reader",
    "register_region_reader",
    "resolve_image_key",
    "stored_source",
]

#: Lazy image arrays backed by a file that decodes regions directly: dask array name -> ``read(y0, y1, x0, x1)``
#: returning ``(y, x, c)`` uint8 pixels (see :mod:`hist_sd.io._lazy_image`).
_REGION_READERS: dict[str, Callable[[int, int, int, int], np.ndarray]] = {}


def register_region_reader(name: str, read: Callable[[int, int, int, int], np.ndarray]) -> None:
    """Record that the dask array called ``name`` is backed by ``read(y0, y1, x0, x1) -> (y, x, c)`` pixels."""
    _REGION_READERS[name] = read


def region_reader(data: Any) -> Callable[[int, int, int, int], np.ndarray] | None:
    """The direct region reader behind a lazy image array (xarray or dask), or ``None`` for any other array."""
    data = getattr(data, "data", data)
    name = getattr(data, "name", None)
    return _REGION_READERS.get(name) if isinstance(name, str) else None


def resolve_image_key(sdata: SpatialData, image_key: str | None = None) -> str:
    """The image element to use: ``image_key``, or the only image of ``sdata``; clear errors otherwise."""
    if image_key is None:
        if len(sdata.images) != 1:
            raise ValueError(
                f"`image_key` must name one of the images {sorted(sdata.images)}"
                + ("; this SpatialData has no image (an H&E image is needed for this step)." if not sdata.images else ".")
            )
        return next(iter(sdata.images))
    if image_key not in sdata.images:
        raise KeyError(
            f"`image_key`={image_key!r} is not an image of this SpatialData; it has {sorted(sdata.images)}. "
            "An H&E image is needed for this step."
        )
    return image_key


def level_names(element: Any) -> list[str]:
    """Names of the levels of a multiscale image element, full resolution first (``["scale0"]`` otherwise)."""
    if not hasattr(element, "children"):
        return ["scale0"]
    return sorted(element.children, key=lambda s: int("".join(ch for ch in s if ch.isdigit()) or 0))


def image_levels(element: Any) -> list[tuple[str, xr.DataArray]]:
    """The levels of an image element as ``[(name, DataArray (c, y, x)), ...]``, full resolution first."""
    if not hasattr(element, "children"):
        return [("scale0", element)]
    return [(name, next(iter(element[name].data_vars.values()))) for name in level_names(element)]


def get_image(sdata: SpatialData, image_key: str | None = None, *, table: AnnData | None = None) -> xr.DataArray:
    """The full-resolution image ``(c, y, x)`` of ``sdata`` as an xarray (lazy when the store is).

    Parameters
    ----------
    sdata
        The SpatialData.
    image_key
        Image element name; by default the one recorded in ``table.uns["hist_sd"]``, else the only image.
    table
        Table whose metadata names the image.
    """
    if image_key is None and table is not None:
        image_key = table.uns.get(C.UNS_KEY, {}).get(C.IMAGE_KEY) or None
    return image_levels(sdata.images[resolve_image_key(sdata, image_key)])[0][1]


def block_mean(data: Any, k: int, *, dtype: Any = np.float32, strip: int = 2048) -> np.ndarray:
    """``(c, y, x)`` means over ``k x k`` pixel blocks (partial blocks at the far edges dropped).

    Reads ``data`` (NumPy, dask or xarray) in strips of about ``strip`` rows, so memory stays bounded for whole
    slides. An integer ``dtype`` rounds the mean to the nearest integer (halves to even, as :func:`numpy.rint`);
    floating dtypes keep the mean.
    """
    if hasattr(data, "dims"):  # xarray: its numpy/dask array
        data = data.data
    c, h, w = (int(v) for v in data.shape)
    k = int(k)
    nh, nw = h // k, w // k
    if k < 1 or nh == 0 or nw == 0:
        raise ValueError(f"The image ({h} x {w} px) is too small to downsample by {k}.")
    out = np.empty((c, nh, nw), dtype=dtype)
    step = max(1, strip // k)
    if np.dtype(data.dtype) == np.uint8:  # exact integer sums, small accumulators
        acc_t: Any = np.uint16 if k * k * 255 < 2**16 else np.uint64
    else:
        acc_t = np.float64
    for i in range(0, nh, step):
        j = min(nh, i + step)
        block = np.asarray(data[:, i * k : j * k, : nw * k])
        sums = np.zeros((c, j - i, nw), dtype=acc_t)
        for dy in range(k):  # strided sums of the block members: no reshaped copy, twice as fast
            for dx in range(k):
                sums += block[:, dy::k, dx::k]
        if np.issubdtype(np.dtype(dtype), np.integer):
            out[:, i:j] = np.rint(sums / np.float64(k * k))
        else:
            out[:, i:j] = sums / np.float64(k * k)
    return out


def _graph_keys(arr: Any) -> set[Any]:
    data = getattr(arr, "data", arr)
    graph = getattr(data, "__dask_graph__", None)
    g = graph() if graph is not None else None
    return set(g.keys()) if g is not None else set()


def stored_source(levels: Sequence[tuple[str, Any]], level: int) -> int:
    """The level to read for ``level``: itself when it is stored, else the coarsest finer level it derives from.

    A pyramid built in memory (e.g. by ``Image2DModel.parse(scale_factors=...)``) computes every coarse level
    lazily from the full-resolution array, so reading it resamples the whole image; a level read from a zarr
    store is stored. A level counts as derived when its dask graph contains a finer level's tasks.
    """
    keys = _graph_keys(levels[level][1])
    if not keys:
        return level
    for k in range(level - 1, -1, -1):
        finer = _graph_keys(levels[k][1])
        if finer and finer & keys:
            source = k
            while source > 0:  # the coarsest finer level that is itself stored
                below = _graph_keys(levels[source][1])
                if any(_graph_keys(levels[j][1]) & below for j in range(source)):
                    source -= 1
                else:
                    break
            return source
    return level
