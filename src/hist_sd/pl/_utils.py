"""Helpers shared by the plotting functions: pyramid level choice and crops, saving, showing."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hist_sd._core._files import atomic_path
from hist_sd._core._image import block_mean, stored_source

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger("hist_sd")

PathLike = str | os.PathLike[str]


def pick_level(
    levels: Sequence[tuple[str, Any]],
    crop_px: float,
    *,
    target_px: float,
    scale: int | str | None = None,
) -> int:
    """Index of the level to draw.

    ``scale`` forces one (an index or a name such as ``"scale2"``); otherwise the coarsest level on which the
    crop, ``crop_px`` full-resolution pixels on its longest side, still spans ``target_px`` pixels.
    """
    names = [name for name, _ in levels]
    if scale is not None:
        if isinstance(scale, str):
            if scale not in names:
                raise KeyError(f"`scale`={scale!r} is not a level of the image; it has {names}.")
            return names.index(scale)
        if isinstance(scale, bool) or not isinstance(scale, int | np.integer) or not 0 <= scale < len(levels):
            raise ValueError(
                f"`scale` must be a level index 0..{len(levels) - 1} or a name of {names}, got {scale!r}."
            )
        return int(scale)
    full_w = levels[0][1].sizes["x"]
    best = 0
    for i, (_, arr) in enumerate(levels):
        factor = full_w / arr.sizes["x"]
        if crop_px / factor >= target_px:
            best = i
    return best


def read_crop(
    levels: Sequence[tuple[str, Any]], level: int, box: tuple[float, float, float, float]
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Read the part of pyramid ``level`` covering ``box = (x0, x1, y0, y1)`` in full-resolution pixels.

    A derived level is not computed as a whole: the crop is read from the stored level it derives from and
    block-averaged to the level's resolution. Returns the ``(y, x, 3)`` uint8 crop and its ``imshow`` extent
    ``(left, right, bottom, top)`` in full-resolution pixel coordinates.
    """
    full = levels[0][1]
    h0, w0 = int(full.sizes["y"]), int(full.sizes["x"])
    source = stored_source(levels, level)
    arr = levels[source][1]
    hs_, ws_ = int(arr.sizes["y"]), int(arr.sizes["x"])
    fy, fx = h0 / hs_, w0 / ws_  # full-res pixels per source pixel
    tgt = levels[level][1]
    step = max(1, round(ws_ / int(tgt.sizes["x"])))  # source pixels per drawn pixel
    x0, x1, y0, y1 = box
    # source pixel j covers full-res coordinates [j * f - 0.5, (j + 1) * f - 0.5)
    ix0 = int(np.clip(np.floor((x0 + 0.5) / fx), 0, ws_ - 1))
    ix1 = int(np.clip(np.ceil((x1 + 0.5) / fx), ix0 + 1, ws_))
    iy0 = int(np.clip(np.floor((y0 + 0.5) / fy), 0, hs_ - 1))
    iy1 = int(np.clip(np.ceil((y1 + 0.5) / fy), iy0 + 1, hs_))
    if step > 1:  # whole blocks only
        ix1 = min(ix0 + -(-(ix1 - ix0) // step) * step, ws_)
        iy1 = min(iy0 + -(-(iy1 - iy0) // step) * step, hs_)
    crop = np.asarray(arr.isel(y=slice(iy0, iy1), x=slice(ix0, ix1)).values)
    if step > 1:
        crop = block_mean(crop, step, dtype=np.uint8)
        iy1, ix1 = iy0 + crop.shape[1] * step, ix0 + crop.shape[2] * step
    crop = np.moveaxis(np.asarray(crop), 0, -1)
    if crop.shape[-1] == 1:
        crop = np.repeat(crop, 3, axis=-1)
    crop = np.clip(crop[..., :3], 0, 255).astype(np.uint8)
    extent = (ix0 * fx - 0.5, ix1 * fx - 0.5, iy1 * fy - 0.5, iy0 * fy - 0.5)
    return crop, extent


def save_figure(fig: Figure, save: PathLike, *, overwrite: bool = False, dpi: float | None = 150) -> Path:
    """Write ``fig`` to ``save`` atomically (temporary file, then rename); never replace a file unless asked.

    The format follows the suffix (``.png`` when there is none).
    """
    path = Path(save)
    if path.is_dir():
        raise IsADirectoryError(f"`save`: {str(path)!r} is a directory; give a file name such as 'plot.png'.")
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path, overwrite=overwrite, what="save") as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    logger.info("saved figure to %s", path)
    return path


def finish(
    fig: Figure,
    axes: list[Axes],
    *,
    own_figure: bool,
    show: bool | None,
    save: PathLike | None,
    overwrite: bool,
    dpi: float | None,
) -> Figure | list[Axes] | None:
    """Save and/or show; return the Figure (made here) or the Axes (drawn into the caller's), None when shown."""
    if save is not None:
        save_figure(fig, save, overwrite=overwrite, dpi=dpi)
    if show:
        import matplotlib.pyplot as plt

        plt.show()
        return None
    return fig if own_figure else axes


def as_list(x: str | Sequence[str] | None, what: str) -> list[str]:
    """``None`` -> ``[]``, a string -> ``[string]``, a sequence of strings -> list; else a clear error."""
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    try:
        out = list(x)
    except TypeError:
        raise TypeError(f"`{what}` must be a string or a list of strings, got {type(x).__name__}.") from None
    if not all(isinstance(v, str) for v in out):
        raise TypeError(f"`{what}` must be a string or a list of strings.")
    return out
