"""Where the tissue is: pixels darker than glass in a patch, and the tissue mask of a downsampled slide."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["TISSUE_MAX", "tissue_fraction", "tissue_mask"]

#: A pixel counts as tissue when every channel is at most this value (optical density >= 0.15 at Io = 240).
TISSUE_MAX = 206


def tissue_fraction(patches: np.ndarray) -> np.ndarray:
    """Fraction of tissue pixels (every channel ``<= TISSUE_MAX``) of ``(..., y, x, 3)`` uint8 patches."""
    return (patches.max(axis=-1) <= TISSUE_MAX).mean(axis=(-2, -1))


def _otsu_split(values: np.ndarray, min_gap: float) -> float | None:
    """Otsu's threshold when it separates two classes whose means differ by at least ``min_gap``."""
    from skimage.filters import threshold_otsu

    if float(np.ptp(values)) < min_gap:
        return None
    t = float(threshold_otsu(values))
    lo, hi = values[values <= t], values[values > t]
    if lo.size == 0 or hi.size == 0 or float(hi.mean() - lo.mean()) < min_gap:
        return None
    return t


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[lab]


def tissue_mask(rgb: np.ndarray, work_mpp: float) -> np.ndarray:
    """Tissue pixels of a downsampled H&E image ``(y, x, 3)`` (0..255) at ``work_mpp`` µm per pixel.

    Tissue is darker or more saturated than the glass: Otsu thresholds on the smoothed (sigma 25 µm)
    saturation and grey level (each used only when it separates two clearly different classes), then a
    closing (50 µm), removal of specks smaller than (200 µm)² and filling of holes smaller than (500 µm)².
    """
    rgb = rgb.astype(np.float32) / 255.0
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0).astype(np.float32)
    gray = rgb.mean(axis=-1)
    sigma = max(25.0 / work_mpp, 0.5)
    sat = ndimage.gaussian_filter(sat, sigma)
    gray = ndimage.gaussian_filter(gray, sigma)
    mask = np.zeros(gray.shape, dtype=bool)
    t_sat = _otsu_split(sat, 0.05)
    if t_sat is not None:
        mask |= sat > t_sat
    t_gray = _otsu_split(gray, 0.05)
    if t_gray is not None:
        mask |= gray < t_gray
    if not mask.any():
        return mask
    radius = max(50.0 / work_mpp, 1.0)
    pad = int(math.ceil(radius)) + 1
    padded = np.pad(mask, pad, mode="edge")
    # closing with a disk through Euclidean distance transforms (fast for any radius)
    dilated = ndimage.distance_transform_edt(~padded) <= radius
    mask = (ndimage.distance_transform_edt(dilated) > radius)[pad:-pad, pad:-pad] | mask
    mask = _drop_small(mask, (200.0 / work_mpp) ** 2)
    holes = _drop_small(~mask, (500.0 / work_mpp) ** 2)
    # background touching the border is never a hole
    lab, _ = ndimage.label(~mask)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    outside = np.isin(lab, border[border > 0])
    return mask | ~(holes | outside)
